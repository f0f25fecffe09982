//! Envoy xDS resources built from the gateway file: the route table, the clusters, the mcpgate
//! Wasm filter and the connection manager around them. The `envoy` target assembles them into a
//! bootstrap or into xDS files; the Kubernetes targets reuse the pieces their patches carry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde_json::{json, Value};

use crate::filter::MAX_LIST_RESPONSE_BYTES;
use crate::gateway::{
    ClientRoute, ServerRoute, Upstream, TOKEN_SERVICE_CLUSTER, TOKEN_SERVICE_INTERNAL_CLUSTER,
};
use crate::telemetry::{Tracing, OTLP_CLUSTER};
use crate::{paths, ConfigError, FilterConfig, GatewayConfig};

pub const WASM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
pub const LISTENER_TYPE_URL: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const CLUSTER_TYPE_URL: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ROUTE_CONFIGURATION_TYPE_URL: &str =
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const TYPED_EXTENSION_CONFIG_TYPE_URL: &str =
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
const HCM_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// Name of the listener, its route table, the HTTP filter and its root context.
pub const NAME: &str = "mcpgate";

/// Envoy cluster name of a server route's upstream; its `upstream_rq_total` stat counts what
/// reached that MCP server.
pub fn route_cluster_name(route: &ServerRoute) -> String {
    format!("mcp_route_{}", route.index)
}

/// Envoy cluster name of a client route's app.
pub fn client_route_cluster_name(index: usize) -> String {
    format!("client_route_{index}")
}

/// The filter's JSON configuration, as the Wasm `configuration` string carries it.
pub fn filter_config_json(filter: &FilterConfig) -> Result<String, ConfigError> {
    serde_json::to_string(filter)
        .map_err(|e| ConfigError::new("", format!("cannot encode filter configuration: {e}")))
}

/// Where the Wasm VM gets the module from.
pub enum WasmCode<'a> {
    /// A file on Envoy's machine.
    Local(&'a Path),
    /// A URL the host fetches (Istio's agent fetches `oci://` and `http(s)://` ones itself, so
    /// the cluster is a placeholder there), checked against `sha256`.
    Remote {
        uri: &'a str,
        sha256: &'a str,
        cluster: &'a str,
    },
}

/// The `envoy.extensions.filters.http.wasm.v3.Wasm` message of the mcpgate filter.
pub fn wasm_filter(filter: &FilterConfig, code: WasmCode<'_>) -> Result<Value, ConfigError> {
    let configuration = filter_config_json(filter)?;
    let code = match code {
        WasmCode::Local(path) => json!({"local": {"filename": path.display().to_string()}}),
        WasmCode::Remote {
            uri,
            sha256,
            cluster,
        } => json!({"remote": {
            "http_uri": {"uri": uri, "cluster": cluster, "timeout": "30s"},
            "sha256": sha256,
        }}),
    };
    Ok(json!({
        "@type": WASM_TYPE_URL,
        "config": {
            "name": NAME,
            "root_id": NAME,
            "configuration": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": configuration,
            },
            "vm_config": {
                "vm_id": NAME,
                "runtime": "envoy.wasm.runtime.v8",
                "code": code,
                // The internal API secret reaches the VM from Envoy's environment, so no
                // rendered file holds it.
                "environment_variables": {"host_env_keys": [paths::INTERNAL_SECRET_ENV]},
            },
            // A trapped VM is replaced instead of failing open or closed forever.
            "failure_policy": "FAIL_RELOAD",
            // Set with `hold_headers`: the filter holds a request's headers until its body is
            // decided, so a denied call never opens an upstream request.
            "allow_on_headers_stop_iteration": filter.header_mode.allow_on_headers_stop_iteration(),
        },
    }))
}

/// Largest buffer the filter needs: whole request bodies and JSON list answers are held while it
/// decides. Envoy's default 1 MiB would reset those streams before the filter's own limits (which
/// answer with a clear error) are reached.
pub fn buffer_limit(routes: &[ServerRoute]) -> usize {
    routes
        .iter()
        .map(|r| r.max_request_bytes)
        .chain(std::iter::once(MAX_LIST_RESPONSE_BYTES))
        .max()
        .unwrap_or(MAX_LIST_RESPONSE_BYTES)
        .saturating_add(1 << 20)
}

/// The route table: every configured host gets a virtual host whose reserved paths
/// (`/.well-known`, `/.mcpgate`) go to the token service and whose routes go to their upstreams;
/// a catch-all virtual host serves only the reserved paths.
pub fn route_configuration(config: &GatewayConfig) -> Result<Value, ConfigError> {
    let routes = config.server_routes()?;
    let client_routes = config.client_routes()?;
    let mut hosts: BTreeMap<String, Vec<Proxied>> = BTreeMap::new();
    for p in proxied(&routes, &client_routes) {
        hosts.entry(p.authority.to_string()).or_default().push(p);
    }
    let issuer_authority = config
        .authorization_server
        .issuer
        .split_once("://")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_default();
    hosts.entry(issuer_authority).or_default();

    let to_token_service = token_service_route(config);
    let mut virtual_hosts: Vec<Value> = hosts
        .iter()
        .enumerate()
        .map(|(i, (authority, proxied))| {
            let mut host_routes = reserved_routes(&to_token_service);
            let mut sorted: Vec<&Proxied> = proxied.iter().collect();
            // Longest prefix first, as the filter matches.
            sorted.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
            for route in sorted {
                if route.gateway_paths_below && !route.prefix.is_empty() {
                    // `<prefix>/.mcpgate/mcp/connect` is the token service's, path unchanged.
                    host_routes.push(json!({
                        "match": {"path_separated_prefix": format!("{}{}", route.prefix, paths::GATEWAY_PREFIX)},
                        "route": to_token_service,
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
    virtual_hosts.push(
        json!({"name": "any_host", "domains": ["*"], "routes": reserved_routes(&to_token_service)}),
    );
    Ok(json!({"name": NAME, "virtual_hosts": virtual_hosts}))
}

/// Every cluster the route table and the filter's call-outs use.
pub fn clusters(config: &GatewayConfig) -> Result<Vec<Value>, ConfigError> {
    let routes = config.server_routes()?;
    let client_routes = config.client_routes()?;
    let limit = buffer_limit(&routes);
    let endpoints = config.token_service_endpoints();
    let public: Vec<Upstream> = endpoints.iter().map(|e| http_upstream(&e.public)).collect();
    let internal: Vec<Upstream> = endpoints
        .iter()
        .map(|e| http_upstream(&e.internal))
        .collect();
    let mut clusters = vec![
        token_service_cluster(TOKEN_SERVICE_CLUSTER, &public, limit, paths::HEALTH),
        token_service_cluster(
            TOKEN_SERVICE_INTERNAL_CLUSTER,
            &internal,
            limit,
            paths::INTERNAL_READYZ,
        ),
    ];
    for p in proxied(&routes, &client_routes) {
        clusters.push(cluster(&p.cluster, p.upstream, limit));
    }
    if let Some(tracing) = &config.telemetry.tracing {
        clusters.push(cluster(
            OTLP_CLUSTER,
            &tracing.collector_upstream()?,
            OTLP_BUFFER_LIMIT,
        ));
    }
    Ok(clusters)
}

/// Buffer limit of the collector's cluster: span batches, not MCP bodies.
const OTLP_BUFFER_LIMIT: usize = 1 << 20;

/// A cluster of the token service's replicas. One replica: as any upstream. Several: round robin,
/// an active health check of `health_path` every 2 s, and outlier detection that ejects a replica
/// whose connections fail, so neither routes nor the filter's call-outs keep trying a dead one.
fn token_service_cluster(
    name: &str,
    replicas: &[Upstream],
    buffer_limit: usize,
    health_path: &str,
) -> Value {
    let mut cluster = cluster_of(name, replicas, buffer_limit);
    if replicas.len() > 1 {
        if let Some(obj) = cluster.as_object_mut() {
            obj.insert("lb_policy".into(), "ROUND_ROBIN".into());
            obj.insert(
                "health_checks".into(),
                json!([{
                    "timeout": "1s",
                    "interval": "2s",
                    // Also while no request uses the cluster (Envoy's default is 60 s then).
                    "no_traffic_interval": "2s",
                    "unhealthy_threshold": 2,
                    "healthy_threshold": 1,
                    "http_health_check": {"path": health_path},
                }]),
            );
            obj.insert(
                "outlier_detection".into(),
                json!({
                    // Connect failures and 502/503/504: the replica, not the request, is at fault.
                    "consecutive_gateway_failure": 3,
                    "enforcing_consecutive_gateway_failure": 100,
                    // A 500 is the request's (or the shared database's) business: eject nobody.
                    "enforcing_consecutive_5xx": 0,
                    "enforcing_success_rate": 0,
                    "interval": "2s",
                    "base_ejection_time": "10s",
                    "max_ejection_percent": 50,
                }),
            );
        }
    }
    cluster
}

/// The route action of every path the token service serves on the public listener. With several
/// replicas, a request that never reached one (connection refused or failed, stream refused) is
/// retried on another: safe for POSTs too, since no replica saw it.
fn token_service_route(config: &GatewayConfig) -> Value {
    let replicas = config.token_service_endpoints().len();
    let mut action = json!({"cluster": TOKEN_SERVICE_CLUSTER, "timeout": "30s"});
    if replicas > 1 {
        if let Some(obj) = action.as_object_mut() {
            obj.insert(
                "retry_policy".into(),
                json!({
                    "retry_on": "connect-failure,refused-stream",
                    "num_retries": (replicas - 1).max(1),
                    "retry_host_predicate": [{
                        "name": "envoy.retry_host_predicates.previous_hosts",
                        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"},
                    }],
                    "host_selection_retry_max_attempts": 3,
                }),
            );
        }
    }
    action
}

/// The HttpConnectionManager's `tracing`: OpenTelemetry spans exported over OTLP/HTTP to the
/// collector's cluster ([`OTLP_CLUSTER`]).
pub fn tracing(tracing: &Tracing) -> Value {
    json!({
        "random_sampling": {"value": tracing.sampling.percent()},
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "http_service": {
                    "http_uri": {
                        "uri": tracing.traces_url(),
                        "cluster": OTLP_CLUSTER,
                        "timeout": "5s",
                    },
                },
                "service_name": tracing.envoy_service_name,
            },
        },
    })
}

/// The connection manager of the public listener. `routes` is either an inline route table
/// (`route_config`) or where to discover it (`rds`); `http_filter` is the mcpgate filter entry;
/// `tracing` the HCM's `tracing` (see [`tracing`]), when the gateway file asks for traces.
pub fn http_connection_manager(
    routes: (&str, Value),
    http_filter: Value,
    tracing: Option<Value>,
) -> Value {
    let mut hcm = json!({
        "@type": HCM_TYPE_URL,
        "stat_prefix": NAME,
        "codec_type": "AUTO",
        // Route and filter see one canonical path: no `/a/../b` or `//` tricks.
        "normalize_path": true,
        "merge_slashes": true,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "access_log": [access_log()],
        "http_filters": [
            http_filter,
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            },
        ],
    });
    if let Some(obj) = hcm.as_object_mut() {
        obj.insert(routes.0.to_string(), routes.1);
        if let Some(tracing) = tracing {
            obj.insert("tracing".into(), tracing);
        }
    }
    hcm
}

/// The public listener around a connection manager.
pub fn listener(address: SocketAddr, buffer_limit: usize, hcm: Value) -> Value {
    json!({
        "name": NAME,
        "address": socket_address(address),
        "per_connection_buffer_limit_bytes": buffer_limit,
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": hcm,
        }]}],
    })
}

pub fn socket_address(addr: SocketAddr) -> Value {
    json!({"socket_address": {"address": addr.ip().to_string(), "port_value": addr.port()}})
}

/// A route Envoy proxies (server or client), as the virtual host needs it.
struct Proxied<'a> {
    authority: &'a str,
    port: u16,
    prefix: &'a str,
    upstream: &'a Upstream,
    cluster: String,
    /// Server routes: `<prefix>/.mcpgate/…` belongs to the token service.
    gateway_paths_below: bool,
}

fn proxied<'a>(
    routes: &'a [ServerRoute],
    client_routes: &'a [ClientRoute],
) -> impl Iterator<Item = Proxied<'a>> {
    routes
        .iter()
        .map(|r| Proxied {
            authority: &r.authority,
            port: r.port,
            prefix: &r.path_prefix,
            upstream: &r.upstream,
            cluster: route_cluster_name(r),
            gateway_paths_below: true,
        })
        .chain(client_routes.iter().map(|r| Proxied {
            authority: &r.authority,
            port: r.port,
            prefix: &r.path_prefix,
            upstream: &r.upstream,
            cluster: client_route_cluster_name(r.index),
            gateway_paths_below: false,
        }))
}

/// A plain-http upstream from `host:port` (the token service's listeners).
pub fn http_upstream(address: &str) -> Upstream {
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

fn reserved_routes(to_token_service: &Value) -> Vec<Value> {
    paths::RESERVED_PREFIXES
        .iter()
        .map(|prefix| {
            json!({
                "match": {"path_separated_prefix": prefix},
                "route": to_token_service,
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

/// A cluster of one upstream (`STATIC` for an IP, `STRICT_DNS` for a name; TLS for https).
pub fn cluster(name: &str, upstream: &Upstream, buffer_limit: usize) -> Value {
    cluster_of(name, std::slice::from_ref(upstream), buffer_limit)
}

/// A cluster of equivalent upstreams (`STATIC` when all are IPs, else `STRICT_DNS`; TLS for https,
/// as the first one says).
fn cluster_of(name: &str, upstreams: &[Upstream], buffer_limit: usize) -> Value {
    let all_ips = upstreams
        .iter()
        .all(|u| u.host.parse::<std::net::IpAddr>().is_ok());
    let lb_endpoints: Vec<Value> = upstreams
        .iter()
        .map(|u| {
            json!({"endpoint": {"address": {"socket_address": {
                "address": u.host, "port_value": u.port,
            }}}})
        })
        .collect();
    let mut cluster = json!({
        "name": name,
        "per_connection_buffer_limit_bytes": buffer_limit,
        "type": if all_ips { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": lb_endpoints}],
        },
    });
    let Some(upstream) = upstreams.first() else {
        return cluster;
    };
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
