//! Kubernetes and Gateway API objects both Kubernetes targets render alike: the token service's
//! `Service`, the `HTTPRoute`s (token-service paths per host, one per gateway route), the
//! `ReferenceGrant`s that let those routes reach Services in other namespaces, and the filter
//! configuration with the call-out clusters named as the target names them.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::{json, Value};

use crate::gateway::{KubernetesTarget, ServiceRef};
use crate::{paths, ConfigError, FilterConfig, GatewayConfig, HeaderMode};

pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
/// Label on every rendered object, so `kubectl get -l` finds them all.
const PART_OF: &str = "app.kubernetes.io/part-of";
/// Gateway API caps `matches` per rule; the token-service rule of a host holds the two reserved
/// prefixes plus one connect prefix per server route on that host.
const MAX_MATCHES: usize = 64;

/// `metadata` of a rendered object.
pub fn metadata(name: &str, namespace: &str) -> Value {
    json!({"name": name, "namespace": namespace, "labels": {PART_OF: "mcpgate"}})
}

/// The `parentRefs` entry of the operator's Gateway.
fn parent_ref(t: &KubernetesTarget) -> Value {
    let mut parent = json!({
        "group": GATEWAY_GROUP,
        "kind": "Gateway",
        "name": t.gateway_name,
        "namespace": t.gateway_namespace,
    });
    if let (Some(listener), Some(obj)) = (&t.gateway_listener, parent.as_object_mut()) {
        obj.insert("sectionName".into(), listener.as_str().into());
    }
    parent
}

/// `targetRefs` entry naming the operator's Gateway (policies live in its namespace).
pub fn gateway_target_ref(t: &KubernetesTarget) -> Value {
    json!({"group": GATEWAY_GROUP, "kind": "Gateway", "name": t.gateway_name})
}

/// The token service's Service: the public port (routed from the gateway) and the internal
/// port (reached only by the filter's call-outs; no route points at it).
pub fn token_service(t: &KubernetesTarget) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(&t.token_service.name, &t.namespace),
        "spec": {
            "selector": {"app.kubernetes.io/name": t.token_service.name},
            "ports": [
                {"name": "http", "appProtocol": "http", "port": t.token_service.port, "targetPort": t.token_service.port},
                {"name": "http-internal", "appProtocol": "http", "port": t.internal_port, "targetPort": t.internal_port},
            ],
        },
    })
}

/// One `ReferenceGrant` per namespace, other than the gateway's, holding a Service a rendered
/// route points at.
pub fn reference_grants(t: &KubernetesTarget) -> Vec<Value> {
    let namespaces: BTreeSet<&str> = std::iter::once(&t.token_service)
        .chain(t.backends.values())
        .map(|s| s.namespace.as_str())
        .filter(|ns| *ns != t.gateway_namespace)
        .collect();
    namespaces
        .into_iter()
        .map(|ns| {
            json!({
                "apiVersion": format!("{GATEWAY_GROUP}/v1beta1"),
                "kind": "ReferenceGrant",
                "metadata": metadata(&format!("mcpgate-routes-from-{}", t.gateway_namespace), ns),
                "spec": {
                    "from": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute", "namespace": t.gateway_namespace}],
                    "to": [{"group": "", "kind": "Service"}],
                },
            })
        })
        .collect()
}

/// A rendered `HTTPRoute` and what it carries.
pub struct HttpRoute {
    pub name: String,
    pub value: Value,
    /// A gateway route (server or client): the filter must run on it.
    pub filtered: bool,
}

/// Name of the route serving the token service's paths on `host`.
pub fn token_service_route_name(host: &str) -> String {
    format!("mcpgate-token-service-{host}")
}

/// The `HTTPRoute`s: per host, the reserved paths and each server route's connect path to the
/// token service; per gateway route, its prefix to its Service, the prefix replaced by the
/// upstream path, with no request timeout (SSE streams stay open).
pub fn http_routes(
    config: &GatewayConfig,
    t: &KubernetesTarget,
) -> Result<Vec<HttpRoute>, ConfigError> {
    let routes = config.server_routes()?;
    let client_routes = config.client_routes()?;
    let mut hosts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let issuer_host = url::Url::parse(&config.authorization_server.issuer)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    hosts.entry(issuer_host).or_default();
    for r in &routes {
        let connect = hosts.entry(r.host.clone()).or_default();
        if !r.path_prefix.is_empty() {
            connect.push(format!("{}{}", r.path_prefix, paths::GATEWAY_PREFIX));
        }
    }
    for r in &client_routes {
        hosts.entry(r.host.clone()).or_default();
    }
    let token_service = backend_ref(&t.token_service);
    let mut out = Vec::new();
    for (host, connect) in &hosts {
        let prefixes: Vec<String> = paths::RESERVED_PREFIXES
            .iter()
            .map(|p| p.to_string())
            .chain(connect.iter().cloned())
            .collect();
        if prefixes.len() > MAX_MATCHES {
            return Err(ConfigError::new(
                "routes",
                format!(
                    "host {host} has {} server routes with a path; a Gateway API rule matches at \
                     most {MAX_MATCHES} paths (2 reserved plus one connect path per route)",
                    connect.len()
                ),
            ));
        }
        let name = token_service_route_name(host);
        out.push(HttpRoute {
            value: http_route(
                &name,
                t,
                host,
                json!([{
                    "matches": prefixes.iter().map(|p| json!({"path": {"type": "PathPrefix", "value": p}})).collect::<Vec<_>>(),
                    "backendRefs": [token_service],
                }]),
            ),
            name,
            filtered: false,
        });
    }
    let mut names = HashSet::new();
    let proxied = routes
        .iter()
        .map(|r| (r.index, &r.name, &r.host, &r.path_prefix, &r.upstream.path))
        .chain(
            client_routes
                .iter()
                .map(|r| (r.index, &r.name, &r.host, &r.path_prefix, &r.upstream.path)),
        );
    for (index, route_name, host, prefix, upstream_path) in proxied {
        let backend = t.backends.get(&index).ok_or_else(|| {
            ConfigError::new(format!("routes[{index}].to"), "has no Kubernetes Service")
        })?;
        let mut slug = slug(route_name);
        if slug.is_empty() || !names.insert(slug.clone()) {
            slug = format!("route-{index}");
            names.insert(slug.clone());
        }
        let name = format!("mcpgate-{slug}");
        let replacement = if upstream_path.is_empty() {
            "/".to_string()
        } else {
            upstream_path.clone()
        };
        let rule = json!({
            "matches": [{"path": {"type": "PathPrefix", "value": if prefix.is_empty() { "/" } else { prefix.as_str() }}}],
            "filters": [{"type": "URLRewrite", "urlRewrite": {
                "hostname": t.service_host(backend),
                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": replacement},
            }}],
            "backendRefs": [backend_ref(backend)],
            "timeouts": {"request": "0s"},
        });
        out.push(HttpRoute {
            value: http_route(&name, t, host, json!([rule])),
            name,
            filtered: true,
        });
    }
    Ok(out)
}

fn http_route(name: &str, t: &KubernetesTarget, host: &str, rules: Value) -> Value {
    json!({
        "apiVersion": format!("{GATEWAY_GROUP}/v1"),
        "kind": "HTTPRoute",
        "metadata": metadata(name, &t.gateway_namespace),
        "spec": {
            "parentRefs": [parent_ref(t)],
            "hostnames": [host],
            "rules": rules,
        },
    })
}

fn backend_ref(service: &ServiceRef) -> Value {
    json!({"name": service.name, "namespace": service.namespace, "port": service.port})
}

/// Lower-case letters and digits of a route name, other runs as one `-` (a DNS label part).
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let cut: String = out.trim_matches('-').chars().take(40).collect();
    cut.trim_end_matches('-').to_string()
}

/// The filter configuration a Kubernetes target hands the filter: call-outs go to the token
/// service's Service by its host name, through the clusters the target names.
pub fn filter_config(
    config: &GatewayConfig,
    t: &KubernetesTarget,
    public_cluster: String,
    internal_cluster: String,
    header_mode: HeaderMode,
) -> Result<FilterConfig, ConfigError> {
    let host = t.service_host(&t.token_service);
    Ok(FilterConfig {
        token_service_cluster: public_cluster,
        token_service_authority: format!("{host}:{}", t.token_service.port),
        internal_cluster,
        internal_authority: format!("{host}:{}", t.internal_port),
        header_mode,
        ..config.filter_config()?
    })
}

/// The filter configuration as a YAML/JSON object (how `pluginConfig` and `config` carry it).
pub fn filter_config_object(filter: &FilterConfig) -> Result<Value, ConfigError> {
    serde_json::to_value(filter)
        .map_err(|e| ConfigError::new("", format!("cannot encode filter configuration: {e}")))
}

/// Several objects as one multi-document YAML file, after a comment header.
pub fn documents(header: &str, objects: &[Value]) -> Result<String, ConfigError> {
    let mut out = String::new();
    for line in header.lines() {
        out.push_str(if line.is_empty() { "#" } else { "# " });
        out.push_str(line);
        out.push('\n');
    }
    for object in objects {
        out.push_str("---\n");
        out.push_str(
            &serde_yaml_ng::to_string(object)
                .map_err(|e| ConfigError::new("", format!("cannot render YAML: {e}")))?,
        );
    }
    Ok(out)
}
