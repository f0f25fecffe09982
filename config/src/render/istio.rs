//! The `istio` target: what an Istio mesh needs, as multi-document YAML.
//!
//! Routes are Gateway API `HTTPRoute`s on the operator's `Gateway` (`gatewayClassName: istio`):
//! Istio's documentation uses the Gateway API in every task and means it to become the default
//! API for traffic management, and the same routes serve the `envoy-gateway` target.
//!
//! - the token service's `Service` (public and internal port) and `ReferenceGrant`s;
//! - `HTTPRoute`s: `/.well-known`, `/.mcpgate` and each server route's `<prefix>/.mcpgate` to the
//!   public port (the internal port is never routed), each gateway route to its Service;
//! - a `ConfigMap` for the Gateway's `infrastructure.parametersRef` that gives the gateway's
//!   `istio-proxy` container `MCPGATE_INTERNAL_API_SECRET` from a Secret;
//! - an `EnvoyFilter` raising the connection buffer limits to what the filter holds;
//! - the filter: a `WasmPlugin` on the Gateway, `header_mode: hold_body` (a `WasmPlugin` cannot
//!   set `allow_on_headers_stop_iteration`). With [`HeaderMode::HoldHeaders`] an `EnvoyFilter`
//!   replaces it: the same module by ECDS, with the flag set.
//!
//! The filter's call-out clusters are named as istiod names a Service port's cluster:
//! `outbound|<port>||<service host>`.

use serde_json::{json, Value};

use super::artifact::ModuleArtifact;
use super::gateway_api::{self, metadata};
use super::xds::{self, WasmCode};
use crate::gateway::KubernetesTarget;
use crate::{paths, ConfigError, GatewayConfig, HeaderMode};

/// The `WasmPlugin` (or `EnvoyFilter`) name, in the Gateway's namespace.
pub const PLUGIN_NAME: &str = "mcpgate";
/// The `EnvoyFilter` raising the connection buffer limits.
pub const BUFFER_LIMITS_NAME: &str = "mcpgate-buffer-limits";
/// The `ConfigMap` the Gateway's `infrastructure.parametersRef` names.
pub const PROXY_OPTIONS_CONFIG_MAP: &str = "mcpgate-gateway-proxy";

const RBAC_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// istiod's cluster name for a Service port.
pub fn cluster_name(host: &str, port: u16) -> String {
    format!("outbound|{port}||{host}")
}

/// Every object, as multi-document YAML.
pub fn render(
    config: &GatewayConfig,
    artifact: &ModuleArtifact,
    header_mode: HeaderMode,
) -> Result<String, ConfigError> {
    let t = config.kubernetes_target()?;
    let mut objects = vec![gateway_api::token_service(&t)];
    objects.extend(gateway_api::reference_grants(&t));
    objects.extend(
        gateway_api::http_routes(config, &t)?
            .into_iter()
            .map(|r| r.value),
    );
    objects.push(proxy_options(&t)?);
    objects.push(buffer_limits(
        &t,
        xds::buffer_limit(&config.server_routes()?),
    ));
    let host = t.service_host(&t.token_service);
    let filter = gateway_api::filter_config(
        config,
        &t,
        cluster_name(&host, t.token_service.port),
        cluster_name(&host, t.internal_port),
        header_mode,
    )?;
    objects.push(match header_mode {
        HeaderMode::HoldBody => {
            wasm_plugin(&t, artifact, gateway_api::filter_config_object(&filter)?)
        }
        HeaderMode::HoldHeaders => envoy_filter(&t, artifact, &filter)?,
    });
    let header = format!(
        "mcpgate for Istio, rendered from the gateway file by `mcpgate-token-service render istio`.\n\
         Filter header mode: {}. Apply with `kubectl apply -f`; see docs/deploy-istio.md.\n\
         The Gateway {}/{} must name ConfigMap {} in spec.infrastructure.parametersRef, and\n\
         Secret {}/{} (key {}) must hold {}.",
        match header_mode {
            HeaderMode::HoldBody => "hold_body (WasmPlugin)",
            HeaderMode::HoldHeaders => "hold_headers (EnvoyFilter)",
        },
        t.gateway_namespace,
        t.gateway_name,
        PROXY_OPTIONS_CONFIG_MAP,
        t.gateway_namespace,
        t.internal_api_secret.name,
        t.internal_api_secret.key,
        paths::INTERNAL_SECRET_ENV,
    );
    gateway_api::documents(&header, &objects)
}

/// The connection buffer limits the filter needs (it holds whole request bodies and JSON list
/// answers), on the Gateway's listeners and on the clusters of the Services it routes to:
/// Envoy's default of 1 MiB (32 KiB with Istio's edge connection profile) would reset those
/// streams before the filter's own limits answer with a clear error.
fn buffer_limits(t: &KubernetesTarget, limit: usize) -> Value {
    let mut patches = vec![json!({
        "applyTo": "LISTENER",
        "match": {"context": "GATEWAY"},
        "patch": {"operation": "MERGE", "value": {"per_connection_buffer_limit_bytes": limit}},
    })];
    let services: std::collections::BTreeSet<(String, u16)> = t
        .backends
        .values()
        .chain(std::iter::once(&t.token_service))
        .map(|s| (t.service_host(s), s.port))
        .collect();
    for (host, port) in services {
        patches.push(json!({
            "applyTo": "CLUSTER",
            "match": {"context": "GATEWAY", "cluster": {"service": host, "portNumber": port}},
            "patch": {"operation": "MERGE", "value": {"per_connection_buffer_limit_bytes": limit}},
        }));
    }
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": metadata(BUFFER_LIMITS_NAME, &t.gateway_namespace),
        "spec": {
            "targetRefs": [gateway_api::gateway_target_ref(t)],
            "configPatches": patches,
        },
    })
}

/// Deployment overlay for the Gateway's generated proxy: the internal API secret from a Secret.
fn proxy_options(t: &KubernetesTarget) -> Result<Value, ConfigError> {
    let overlay = json!({"spec": {"template": {"spec": {"containers": [{
        "name": "istio-proxy",
        "env": [{
            "name": paths::INTERNAL_SECRET_ENV,
            "valueFrom": {"secretKeyRef": {"name": t.internal_api_secret.name, "key": t.internal_api_secret.key}},
        }],
    }]}}}});
    let overlay = serde_yaml_ng::to_string(&overlay)
        .map_err(|e| ConfigError::new("", format!("cannot render YAML: {e}")))?;
    Ok(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(PROXY_OPTIONS_CONFIG_MAP, &t.gateway_namespace),
        "data": {"deployment": overlay},
    }))
}

fn wasm_plugin(t: &KubernetesTarget, artifact: &ModuleArtifact, plugin_config: Value) -> Value {
    let url = match artifact {
        ModuleArtifact::Image { url, .. } => format!("oci://{url}"),
        ModuleArtifact::Http { url, .. } => url.clone(),
    };
    let mut spec = json!({
        "targetRefs": [gateway_api::gateway_target_ref(t)],
        "url": url,
        "sha256": artifact.sha256(),
        "type": "HTTP",
        // Before Istio's own authentication and authorization filters, like any gatekeeper.
        "phase": "AUTHN",
        // A trapped VM is replaced for the next request; a failed fetch denies (fail closed).
        "failStrategy": "FAIL_RELOAD",
        "pluginName": xds::NAME,
        "vmConfig": {"env": [{"name": paths::INTERNAL_SECRET_ENV, "valueFrom": "HOST"}]},
        "pluginConfig": plugin_config,
    });
    if let Some(obj) = spec.as_object_mut() {
        if let Some(policy) = t.pull_policy {
            obj.insert("imagePullPolicy".into(), policy.as_str().into());
        }
        if let Some(secret) = &t.pull_secret {
            obj.insert("imagePullSecret".into(), secret.as_str().into());
        }
    }
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": metadata(PLUGIN_NAME, &t.gateway_namespace),
        "spec": spec,
    })
}

/// The header-holding alternative: an extension config carrying the Wasm filter with
/// `allow_on_headers_stop_iteration`, delivered by ECDS (Istio's agent fetches its remote code as
/// it does a `WasmPlugin`'s), and the HTTP filter that asks for it, before the router.
fn envoy_filter(
    t: &KubernetesTarget,
    artifact: &ModuleArtifact,
    filter: &crate::FilterConfig,
) -> Result<Value, ConfigError> {
    if t.pull_secret.is_some() {
        return Err(ConfigError::new(
            "kubernetes.filter.pull_secret",
            "an EnvoyFilter cannot reference a pull Secret (only a WasmPlugin can): use a \
             public image or the default hold_body header mode",
        ));
    }
    let uri = match artifact {
        ModuleArtifact::Image { url, .. } => format!("oci://{url}"),
        ModuleArtifact::Http { url, .. } => url.clone(),
    };
    let mut wasm = xds::wasm_filter(
        filter,
        WasmCode::Remote {
            uri: &uri,
            sha256: artifact.sha256(),
            cluster: "_",
        },
    )?;
    if let (Some(policy), Some(vars)) = (
        t.pull_policy,
        wasm.pointer_mut("/config/vm_config/environment_variables")
            .and_then(Value::as_object_mut),
    ) {
        // Read (and stripped) by Istio's agent, as for a WasmPlugin's imagePullPolicy.
        vars.insert(
            "key_values".into(),
            json!({"ISTIO_META_WASM_IMAGE_PULL_POLICY": policy.as_str()}),
        );
    }
    let name = format!("{}.{PLUGIN_NAME}", t.gateway_namespace);
    Ok(json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": metadata(PLUGIN_NAME, &t.gateway_namespace),
        "spec": {
            "targetRefs": [gateway_api::gateway_target_ref(t)],
            "configPatches": [
                {
                    "applyTo": "EXTENSION_CONFIG",
                    "patch": {"operation": "ADD", "value": {"name": name, "typed_config": wasm}},
                },
                {
                    "applyTo": "HTTP_FILTER",
                    "match": {"context": "GATEWAY", "listener": {"filterChain": {"filter": {
                        "name": "envoy.filters.network.http_connection_manager",
                        "subFilter": {"name": "envoy.filters.http.router"},
                    }}}},
                    "patch": {"operation": "INSERT_BEFORE", "value": {
                        "name": name,
                        "config_discovery": {
                            // The listener waits for the filter: no request passes unchecked.
                            "config_source": {"ads": {}, "initial_fetch_timeout": "0s"},
                            // RBAC: what Istio's agent sends instead when the fetch fails
                            // (deny-all, as the filter fails closed).
                            "type_urls": [xds::WASM_TYPE_URL, RBAC_TYPE_URL],
                        },
                    }},
                },
            ],
        },
    }))
}
