//! Renders the Envoy bootstrap from the gateway file, so routes are declared once.
//!
//! Every configured host gets a virtual host whose reserved paths (`/.well-known`, `/.mcpgate`) go
//! to the token service and whose server routes go, through the mcpgate filter, to their MCP
//! servers. A catch-all virtual host serves only the reserved paths.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::filter::MAX_LIST_RESPONSE_BYTES;
use crate::gateway::{
    ServerRoute, Upstream, TOKEN_SERVICE_CLUSTER, TOKEN_SERVICE_INTERNAL_CLUSTER,
};
use crate::{paths, ConfigError, GatewayConfig, HeaderMode};

/// Envoy cluster name of a server route's upstream; its `upstream_rq_total` stat counts what
/// reached that MCP server.
pub fn route_cluster_name(route: &ServerRoute) -> String {
    format!("mcp_route_{}", route.index)
}

/// The whole bootstrap as YAML.
pub fn render_bootstrap(config: &GatewayConfig) -> Result<String, ConfigError> {
    let bootstrap = bootstrap(config)?;
    serde_yaml_ng::to_string(&bootstrap)
        .map_err(|e| ConfigError::new("", format!("cannot render bootstrap: {e}")))
}

fn bootstrap(config: &GatewayConfig) -> Result<Value, ConfigError> {
    let routes = config.server_routes()?;
    let mut filter_config = config.filter_config()?;
    // mcpgate's own bootstrap sets the flag below, so the filter may hold headers.
    filter_config.header_mode = HeaderMode::HoldHeaders;
    let hold_headers = filter_config.header_mode.allow_on_headers_stop_iteration();
    let filter_config = serde_json::to_string(&filter_config)
        .map_err(|e| ConfigError::new("", format!("cannot encode filter configuration: {e}")))?;
    let wasm = std::path::absolute(&config.envoy.wasm_module)
        .map_err(|e| ConfigError::new("envoy.wasm_module", e.to_string()))?;

    let client_routes = config.client_routes()?;
    // Every host's routes (server and client), plus the issuer's host.
    let proxied = routes
        .iter()
        .map(|r| {
            let cluster = route_cluster_name(r);
            (
                &r.authority,
                r.port,
                &r.path_prefix,
                &r.upstream,
                cluster,
                true,
            )
        })
        .chain(client_routes.iter().map(|r| {
            let cluster = client_route_cluster_name(r.index);
            (
                &r.authority,
                r.port,
                &r.path_prefix,
                &r.upstream,
                cluster,
                false,
            )
        }));
    let mut hosts: BTreeMap<String, Vec<Proxied>> = BTreeMap::new();
    for (authority, port, prefix, upstream, cluster, gateway_paths_below) in proxied {
        hosts.entry(authority.clone()).or_default().push(Proxied {
            port,
            prefix,
            upstream,
            cluster,
            gateway_paths_below,
        });
    }
    let issuer_authority = config
        .authorization_server
        .issuer
        .split_once("://")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_default();
    hosts.entry(issuer_authority).or_default();

    let mut virtual_hosts: Vec<Value> = hosts
        .iter()
        .enumerate()
        .map(|(i, (authority, proxied))| {
            let mut host_routes = reserved_routes();
            let mut sorted: Vec<&Proxied> = proxied.iter().collect();
            // Longest prefix first, as the filter matches.
            sorted.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
            for route in sorted {
                if route.gateway_paths_below && !route.prefix.is_empty() {
                    // `<prefix>/.mcpgate/mcp/connect` is the token service's, path unchanged.
                    host_routes.push(json!({
                        "match": {"path_separated_prefix": format!("{}{}", route.prefix, paths::GATEWAY_PREFIX)},
                        "route": {"cluster": TOKEN_SERVICE_CLUSTER, "timeout": "30s"},
                    }));
                }
                host_routes.extend(route_entries(route.prefix, route.upstream, &route.cluster));
            }
            json!({
                "name": format!("host_{i}"),
                "domains": domains(authority, proxied.first().map(|r| r.port)),
                "routes": host_routes,
            })
        })
        .collect();
    virtual_hosts.push(json!({"name": "any_host", "domains": ["*"], "routes": reserved_routes()}));

    let token_service = http_upstream(&config.token_service_address());
    let internal = http_upstream(&config.internal_service_address());
    // The filter holds whole request bodies and JSON list answers while it decides; Envoy's
    // default 1 MiB connection buffer would reset those streams before the filter's own limits
    // (which answer with a clear error) are reached.
    let buffer_limit = routes
        .iter()
        .map(|r| r.max_request_bytes)
        .chain(std::iter::once(MAX_LIST_RESPONSE_BYTES))
        .max()
        .unwrap_or(MAX_LIST_RESPONSE_BYTES)
        .saturating_add(1 << 20);
    let mut clusters = vec![
        upstream_cluster(TOKEN_SERVICE_CLUSTER, &token_service, buffer_limit),
        upstream_cluster(TOKEN_SERVICE_INTERNAL_CLUSTER, &internal, buffer_limit),
    ];
    for route in &routes {
        clusters.push(upstream_cluster(
            &route_cluster_name(route),
            &route.upstream,
            buffer_limit,
        ));
    }
    for route in &client_routes {
        clusters.push(upstream_cluster(
            &client_route_cluster_name(route.index),
            &route.upstream,
            buffer_limit,
        ));
    }

    Ok(json!({
        "admin": {"address": socket_address(config.envoy.admin)},
        "static_resources": {
            "listeners": [{
                "name": "mcpgate",
                "address": socket_address(config.envoy.listen),
                "per_connection_buffer_limit_bytes": buffer_limit,
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "mcpgate",
                        "codec_type": "AUTO",
                        // Route and filter see one canonical path: no `/a/../b` or `//` tricks.
                        "normalize_path": true,
                        "merge_slashes": true,
                        "path_with_escaped_slashes_action": "REJECT_REQUEST",
                        "access_log": [access_log()],
                        "route_config": {"name": "mcpgate", "virtual_hosts": virtual_hosts},
                        "http_filters": [
                            {
                                "name": "mcpgate",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                    "config": {
                                        "name": "mcpgate",
                                        "root_id": "mcpgate",
                                        "configuration": {
                                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                                            "value": filter_config,
                                        },
                                        "vm_config": {
                                            "vm_id": "mcpgate",
                                            "runtime": "envoy.wasm.runtime.v8",
                                            "code": {"local": {"filename": wasm.display().to_string()}},
                                            // The internal API secret reaches the VM from Envoy's
                                            // environment, so the bootstrap holds no secret.
                                            "environment_variables": {"host_env_keys": [paths::INTERNAL_SECRET_ENV]},
                                        },
                                        // A trapped VM is replaced instead of failing open or closed forever.
                                        "failure_policy": "FAIL_RELOAD",
                                        // Lets the filter hold a request's headers until its body is
                                        // decided, so a denied call never opens an upstream request.
                                        "allow_on_headers_stop_iteration": hold_headers,
                                    },
                                },
                            },
                            {
                                "name": "envoy.filters.http.router",
                                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                            },
                        ],
                    },
                }]}],
            }],
            "clusters": clusters,
        },
    }))
}

/// A route Envoy proxies (server or client), as the virtual host needs it.
struct Proxied<'a> {
    port: u16,
    prefix: &'a str,
    upstream: &'a Upstream,
    cluster: String,
    /// Server routes: `<prefix>/.mcpgate/…` belongs to the token service.
    gateway_paths_below: bool,
}

/// Envoy cluster name of a client route's app.
pub fn client_route_cluster_name(index: usize) -> String {
    format!("client_route_{index}")
}

/// A plain-http upstream from `host:port` (the token service's listeners).
fn http_upstream(address: &str) -> Upstream {
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "80"));
    Upstream {
        scheme: "http".into(),
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port: port.parse().unwrap_or(80),
        path: String::new(),
    }
}

fn domains(authority: &str, port: Option<u16>) -> Vec<String> {
    let mut domains = vec![authority.to_string()];
    if let Some(port) = port {
        // Clients may send the default port explicitly.
        if !authority.contains(':') || authority.ends_with(']') {
            domains.push(format!("{authority}:{port}"));
        }
    }
    domains
}

fn reserved_routes() -> Vec<Value> {
    paths::RESERVED_PREFIXES
        .iter()
        .map(|prefix| {
            json!({
                "match": {"path_separated_prefix": prefix},
                "route": {"cluster": TOKEN_SERVICE_CLUSTER, "timeout": "30s"},
            })
        })
        .collect()
}

/// Envoy routes for one proxied route: the public path prefix is replaced by the upstream path.
/// Streams (SSE) get no route or idle timeout.
fn route_entries(prefix: &str, upstream_url: &Upstream, cluster: &str) -> Vec<Value> {
    let action = |rewrite: Value| {
        let mut action = json!({
            "cluster": cluster,
            "timeout": "0s",
            "idle_timeout": "0s",
            "host_rewrite_literal": upstream_authority(upstream_url),
        });
        if let (Some(obj), Value::Object(extra)) = (action.as_object_mut(), rewrite) {
            obj.extend(extra);
        }
        action
    };
    let upstream = upstream_url.path.as_str();
    match (prefix.is_empty(), upstream.is_empty()) {
        (false, false) => vec![json!({
            "match": {"path_separated_prefix": prefix},
            "route": action(json!({"prefix_rewrite": upstream})),
        })],
        (false, true) => vec![json!({
            "match": {"path_separated_prefix": prefix},
            "route": action(json!({"regex_rewrite": {
                "pattern": {"regex": format!("^{}/?", regex_escape(prefix))},
                "substitution": "/",
            }})),
        })],
        (true, false) => vec![
            json!({"match": {"path": "/"}, "route": action(json!({"prefix_rewrite": upstream}))}),
            json!({"match": {"prefix": "/"}, "route": action(json!({"prefix_rewrite": format!("{upstream}/")}))}),
        ],
        (true, true) => vec![json!({"match": {"prefix": "/"}, "route": action(json!({}))})],
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escape = "\\.+*?()|[]{}^$".contains(c);
            escape.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

fn upstream_authority(u: &Upstream) -> String {
    let host = if u.host.contains(':') {
        format!("[{}]", u.host)
    } else {
        u.host.clone()
    };
    format!("{host}:{}", u.port)
}

fn socket_address(addr: SocketAddr) -> Value {
    json!({"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}})
}

fn upstream_cluster(name: &str, upstream: &Upstream, buffer_limit: usize) -> Value {
    let mut cluster = json!({
        "name": name,
        "per_connection_buffer_limit_bytes": buffer_limit,
        "type": if upstream.host.parse::<std::net::IpAddr>().is_ok() { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": upstream.host, "port_value": upstream.port,
            }}}}]}],
        },
    });
    if upstream.scheme == "https" {
        if let Some(obj) = cluster.as_object_mut() {
            obj.insert(
                "transport_socket".into(),
                json!({
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "sni": upstream.host,
                    },
                }),
            );
        }
    }
    cluster
}

/// One JSON line per request. The query string is left out: it can carry codes and state.
fn access_log() -> Value {
    json!({
        "name": "envoy.access_loggers.stdout",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            "log_format": {
                // REQ_WITHOUT_QUERY is an extension formatter in Envoy 1.40: it must be declared.
                "formatters": [{
                    "name": "envoy.formatter.req_without_query",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery"},
                }],
                "json_format": {
                "time": "%START_TIME%",
                "request_id": "%REQ(X-REQUEST-ID)%",
                "method": "%REQ(:METHOD)%",
                "authority": "%REQ(:AUTHORITY)%",
                "path": "%REQ_WITHOUT_QUERY(:PATH)%",
                "status": "%RESPONSE_CODE%",
                "response_flags": "%RESPONSE_FLAGS%",
                "upstream_cluster": "%UPSTREAM_CLUSTER%",
                "duration_ms": "%DURATION%",
                "mcp_session_id": "%REQ(MCP-SESSION-ID)%",
                "sub": "%FILTER_STATE(wasm.mcpgate_sub:PLAIN)%",
                "email": "%FILTER_STATE(wasm.mcpgate_email:PLAIN)%",
                "client_id": "%FILTER_STATE(wasm.mcpgate_client_id:PLAIN)%",
                "route": "%FILTER_STATE(wasm.mcpgate_route:PLAIN)%",
                "mcp_method": "%FILTER_STATE(wasm.mcpgate_method:PLAIN)%",
                "mcp_target": "%FILTER_STATE(wasm.mcpgate_target:PLAIN)%",
                "mcp_arguments": "%FILTER_STATE(wasm.mcpgate_arguments:PLAIN)%",
                "decision": "%FILTER_STATE(wasm.mcpgate_decision:PLAIN)%",
                "reason": "%FILTER_STATE(wasm.mcpgate_reason:PLAIN)%",
                "user_agent": "%REQ(USER-AGENT)%",
            }},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
authorization_server:
  issuer: http://localhost:18080
  signing_key_file: key.pem
token_service:
  listen: 127.0.0.1:18081
  database_url: sqlite://x.db
  users_file: users.yaml
routes:
  - from: http://localhost:18080/everything
    to: http://127.0.0.1:3001/mcp
    mcp: {server: {}}
  - from: http://localhost:18080/bare
    to: http://127.0.0.1:3002
    mcp: {server: {}}
  - from: https://other.example
    to: https://mcp.internal:8443/mcp
    mcp: {server: {}}
  - from: http://localhost:18080/app
    to: http://127.0.0.1:3005
    mcp: {client: {}}
"#;

    fn rendered() -> Value {
        let config = GatewayConfig::from_yaml(CONFIG).expect("valid");
        bootstrap(&config).expect("renders")
    }

    fn vhost<'a>(b: &'a Value, domain: &str) -> &'a Value {
        b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["route_config"]["virtual_hosts"]
            .as_array()
            .and_then(|v| {
                v.iter().find(|h| {
                    h["domains"]
                        .as_array()
                        .is_some_and(|d| d.iter().any(|x| x == domain))
                })
            })
            .expect("virtual host exists")
    }

    #[test]
    fn reserved_paths_come_first_then_longest_prefix() {
        let b = rendered();
        let routes = vhost(&b, "localhost:18080")["routes"]
            .as_array()
            .expect("routes")
            .clone();
        assert_eq!(routes[0]["match"]["path_separated_prefix"], "/.well-known");
        assert_eq!(routes[1]["match"]["path_separated_prefix"], "/.mcpgate");
        // The connect path under a server route goes to the token service, unrewritten.
        assert_eq!(
            routes[2]["match"]["path_separated_prefix"],
            "/everything/.mcpgate"
        );
        assert_eq!(routes[2]["route"]["cluster"], TOKEN_SERVICE_CLUSTER);
        assert_eq!(routes[3]["match"]["path_separated_prefix"], "/everything");
        assert_eq!(routes[3]["route"]["prefix_rewrite"], "/mcp");
        assert_eq!(routes[3]["route"]["timeout"], "0s");
        assert_eq!(
            routes[4]["match"]["path_separated_prefix"],
            "/bare/.mcpgate"
        );
        assert_eq!(
            routes[5]["route"]["regex_rewrite"]["pattern"]["regex"],
            "^/bare/?"
        );
        // The client route, with its own cluster and no token-service path below it.
        assert_eq!(routes[6]["match"]["path_separated_prefix"], "/app");
        assert_eq!(routes[6]["route"]["cluster"], "client_route_3");
        assert_eq!(routes.len(), 7);
    }

    #[test]
    fn root_routes_default_ports_and_tls_upstreams() {
        let b = rendered();
        let other = vhost(&b, "other.example");
        assert!(other["domains"]
            .as_array()
            .expect("domains")
            .iter()
            .any(|d| d == "other.example:443"));
        assert_eq!(other["routes"][2]["match"]["path"], "/");
        assert_eq!(other["routes"][3]["route"]["prefix_rewrite"], "/mcp/");
        let clusters = b["static_resources"]["clusters"]
            .as_array()
            .expect("clusters");
        let tls = clusters
            .iter()
            .find(|c| c["name"] == "mcp_route_2")
            .expect("cluster");
        assert_eq!(tls["type"], "STRICT_DNS");
        assert_eq!(
            tls["transport_socket"]["typed_config"]["sni"],
            "mcp.internal"
        );
        vhost(&b, "*");
    }

    #[test]
    fn filter_gets_the_projection_and_fails_reload() {
        let b = rendered();
        let wasm = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"]["http_filters"][0]["typed_config"]["config"];
        assert_eq!(wasm["failure_policy"], "FAIL_RELOAD");
        let listener = &b["static_resources"]["listeners"][0];
        assert!(
            listener["per_connection_buffer_limit_bytes"].as_u64()
                > Some(MAX_LIST_RESPONSE_BYTES as u64)
        );
        let json = wasm["configuration"]["value"]
            .as_str()
            .expect("string value");
        let filter = crate::FilterConfig::from_json(json.as_bytes()).expect("valid projection");
        assert_eq!(filter.routes.len(), 3);
        assert_eq!(filter.token_service_cluster, TOKEN_SERVICE_CLUSTER);
        assert_eq!(filter.internal_cluster, TOKEN_SERVICE_INTERNAL_CLUSTER);
        assert_eq!(filter.internal_authority, "127.0.0.1:18082");
        assert_eq!(filter.client_routes.len(), 1);
        assert_eq!(
            filter.sign_in_url,
            "http://localhost:18080/.mcpgate/sign_in"
        );
        assert_eq!(
            wasm["vm_config"]["environment_variables"]["host_env_keys"][0],
            paths::INTERNAL_SECRET_ENV
        );
        let clusters = b["static_resources"]["clusters"]
            .as_array()
            .expect("clusters");
        assert!(clusters
            .iter()
            .any(|c| c["name"] == TOKEN_SERVICE_INTERNAL_CLUSTER));
        // No route of the public listener reaches the internal cluster.
        let listener_json = b["static_resources"]["listeners"].to_string();
        assert!(
            !listener_json.contains(&format!("\"cluster\":\"{TOKEN_SERVICE_INTERNAL_CLUSTER}\""))
        );
    }
}
