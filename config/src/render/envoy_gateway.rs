//! The `envoy-gateway` target: what Envoy Gateway needs, as multi-document YAML.
//!
//! - the token service's `Service`, `ReferenceGrant`s and the Gateway API `HTTPRoute`s (shared
//!   with the `istio` target);
//! - an `EnvoyProxy` giving the gateway's `envoy` container `MCPGATE_INTERNAL_API_SECRET` from a
//!   Secret (the Gateway names it in `spec.infrastructure.parametersRef`);
//! - a `ClientTrafficPolicy` and a `BackendTrafficPolicy` raising the connection buffer limits
//!   (Envoy Gateway's default is 32 KiB) to what the filter holds: whole request bodies and JSON
//!   list answers;
//! - an `EnvoyExtensionPolicy` with the filter on the gateway routes, `header_mode: hold_body`
//!   (it cannot set `allow_on_headers_stop_iteration`);
//! - an `EnvoyPatchPolicy` adding the internal API's cluster, which no route points at, and with
//!   [`HeaderMode::HoldHeaders`] setting the flag on the filter.
//!
//! Call-out clusters: the JWKS goes through the cluster Envoy Gateway's translator makes for the
//! issuer host's token-service route (`httproute/<namespace>/<name>/rule/0`); the internal API
//! through the patched-in cluster.

use serde_json::{json, Value};

use super::artifact::ModuleArtifact;
use super::gateway_api::{self, metadata, GATEWAY_GROUP};
use super::xds;
use crate::gateway::{KubernetesTarget, TOKEN_SERVICE_INTERNAL_CLUSTER};
use crate::{paths, ConfigError, GatewayConfig, HeaderMode};

/// Name of every Envoy Gateway policy rendered, in the Gateway's namespace.
pub const POLICY_NAME: &str = "mcpgate";
const API_VERSION: &str = "gateway.envoyproxy.io/v1alpha1";

/// The cluster Envoy Gateway's translator makes for rule `rule` of an `HTTPRoute`.
pub fn route_cluster_name(namespace: &str, route: &str, rule: usize) -> String {
    format!("httproute/{namespace}/{route}/rule/{rule}")
}

/// Envoy Gateway's name for the HTTP filter of Wasm entry `index` of an `EnvoyExtensionPolicy`.
pub fn wasm_filter_name(namespace: &str, policy: &str, index: usize) -> String {
    format!("envoy.filters.http.wasm/envoyextensionpolicy/{namespace}/{policy}/wasm/{index}")
}

/// Every object, as multi-document YAML.
pub fn render(
    config: &GatewayConfig,
    artifact: &ModuleArtifact,
    header_mode: HeaderMode,
) -> Result<String, ConfigError> {
    let t = config.kubernetes_target()?;
    let issuer_host = url::Url::parse(&config.authorization_server.issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    let routes = gateway_api::http_routes(config, &t)?;
    let filtered: Vec<&str> = routes
        .iter()
        .filter(|r| r.filtered)
        .map(|r| r.name.as_str())
        .collect();
    let limit = xds::buffer_limit(&config.server_routes()?);
    let filter = gateway_api::filter_config(
        config,
        &t,
        route_cluster_name(
            &t.gateway_namespace,
            &gateway_api::token_service_route_name(&issuer_host),
            0,
        ),
        TOKEN_SERVICE_INTERNAL_CLUSTER.to_string(),
        header_mode,
    )?;

    let mut objects = vec![gateway_api::token_service(&t)];
    objects.extend(gateway_api::reference_grants(&t));
    objects.extend(routes.iter().map(|r| r.value.clone()));
    objects.push(envoy_proxy(&t));
    objects.push(json!({
        "apiVersion": API_VERSION,
        "kind": "ClientTrafficPolicy",
        "metadata": metadata(POLICY_NAME, &t.gateway_namespace),
        "spec": {
            "targetRefs": [gateway_api::gateway_target_ref(&t)],
            "connection": {"bufferLimit": limit.to_string()},
        },
    }));
    objects.push(json!({
        "apiVersion": API_VERSION,
        "kind": "BackendTrafficPolicy",
        "metadata": metadata(POLICY_NAME, &t.gateway_namespace),
        "spec": {
            "targetRefs": route_target_refs(&filtered),
            "connection": {"bufferLimit": limit.to_string()},
        },
    }));
    objects.push(json!({
        "apiVersion": API_VERSION,
        "kind": "EnvoyExtensionPolicy",
        "metadata": metadata(POLICY_NAME, &t.gateway_namespace),
        "spec": {
            "targetRefs": route_target_refs(&filtered),
            "wasm": [{
                "name": xds::NAME,
                "rootID": xds::NAME,
                "code": code(&t, artifact),
                "config": gateway_api::filter_config_object(&filter)?,
                // A failed fetch or a trapped VM denies: the filter is a gatekeeper.
                "failOpen": false,
                "env": {"hostKeys": [paths::INTERNAL_SECRET_ENV]},
            }],
        },
    }));
    objects.push(patch_policy(&t, header_mode, limit)?);
    let header = format!(
        "mcpgate for Envoy Gateway, rendered from the gateway file by\n\
         `mcpgate-token-service render envoy-gateway`. Filter header mode: {}.\n\
         Apply with `kubectl apply -f`; see docs/deploy-envoy-gateway.md. Needs EnvoyPatchPolicy\n\
         enabled in the EnvoyGateway configuration (extensionApis.enableEnvoyPatchPolicy), the\n\
         Gateway {}/{} naming EnvoyProxy {} in spec.infrastructure.parametersRef, and\n\
         Secret {} (key {}) holding {} in the namespace the gateway's Envoy pods run in.",
        match header_mode {
            HeaderMode::HoldBody => "hold_body",
            HeaderMode::HoldHeaders => "hold_headers (the EnvoyPatchPolicy sets the flag)",
        },
        t.gateway_namespace,
        t.gateway_name,
        POLICY_NAME,
        t.internal_api_secret.name,
        t.internal_api_secret.key,
        paths::INTERNAL_SECRET_ENV,
    );
    gateway_api::documents(&header, &objects)
}

fn route_target_refs(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|name| json!({"group": GATEWAY_GROUP, "kind": "HTTPRoute", "name": name}))
        .collect()
}

fn code(t: &KubernetesTarget, artifact: &ModuleArtifact) -> Value {
    let mut code = match artifact {
        ModuleArtifact::Image { url, sha256 } => {
            let mut image = json!({"url": url, "sha256": sha256});
            if let (Some(secret), Some(obj)) = (&t.pull_secret, image.as_object_mut()) {
                obj.insert(
                    "pullSecretRef".into(),
                    json!({"group": "", "kind": "Secret", "name": secret}),
                );
            }
            json!({"type": "Image", "image": image})
        }
        ModuleArtifact::Http { url, sha256 } => {
            json!({"type": "HTTP", "http": {"url": url, "sha256": sha256}})
        }
    };
    if let (Some(policy), Some(obj)) = (t.pull_policy, code.as_object_mut()) {
        obj.insert("pullPolicy".into(), policy.as_str().into());
    }
    code
}

fn envoy_proxy(t: &KubernetesTarget) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "EnvoyProxy",
        "metadata": metadata(POLICY_NAME, &t.gateway_namespace),
        "spec": {"provider": {"type": "Kubernetes", "kubernetes": {"envoyDeployment": {"container": {
            "env": [{
                "name": paths::INTERNAL_SECRET_ENV,
                "valueFrom": {"secretKeyRef": {"name": t.internal_api_secret.name, "key": t.internal_api_secret.key}},
            }],
        }}}}},
    })
}

/// The internal API's cluster, and with `hold_headers` the flag on the filter (in every filter
/// chain of the Gateway listener's Envoy listener).
fn patch_policy(
    t: &KubernetesTarget,
    header_mode: HeaderMode,
    buffer_limit: usize,
) -> Result<Value, ConfigError> {
    let internal = xds::http_upstream(&format!(
        "{}:{}",
        t.service_host(&t.token_service),
        t.internal_port
    ));
    let mut patches = vec![json!({
        "type": xds::CLUSTER_TYPE_URL,
        "name": TOKEN_SERVICE_INTERNAL_CLUSTER,
        "operation": {
            "op": "add",
            "path": "",
            "value": xds::cluster(TOKEN_SERVICE_INTERNAL_CLUSTER, &internal, buffer_limit),
        },
    })];
    if header_mode == HeaderMode::HoldHeaders {
        let listener = t.gateway_listener.as_deref().ok_or_else(|| {
            ConfigError::new(
                "kubernetes.gateway.listener",
                "name the Gateway listener: with hold_headers the EnvoyPatchPolicy sets \
                 allow_on_headers_stop_iteration on Envoy Gateway's listener \
                 <namespace>/<gateway>/<listener>",
            )
        })?;
        let filter = wasm_filter_name(&t.gateway_namespace, POLICY_NAME, 0);
        patches.push(json!({
            "type": xds::LISTENER_TYPE_URL,
            "name": format!("{}/{}/{listener}", t.gateway_namespace, t.gateway_name),
            "operation": {
                "op": "add",
                "jsonPath": format!("..http_filters[?(@.name=='{filter}')].typed_config.config"),
                "path": "allow_on_headers_stop_iteration",
                "value": true,
            },
        }));
    }
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": "EnvoyPatchPolicy",
        "metadata": metadata(POLICY_NAME, &t.gateway_namespace),
        "spec": {
            "targetRef": gateway_api::gateway_target_ref(t),
            "type": "JSONPatch",
            "jsonPatches": patches,
        },
    }))
}
