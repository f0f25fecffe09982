//! The `envoy` target: mcpgate's own Envoy, in two forms.
//!
//! - [`render_bootstrap`]: one static bootstrap (listener, routes, clusters, filter inline). A
//!   change of the gateway file needs a restart.
//! - [`dynamic_files`]: a bootstrap that reads everything else from xDS files Envoy watches, so a
//!   re-rendered gateway file reaches a running Envoy by itself. Each resource type has its own
//!   file in its own watched directory: a policy change rewrites only the filter's ECDS file, a
//!   new route only the RDS and CDS files, and the listener (whose change would drain
//!   connections and cut SSE streams) stays byte-identical.
//!
//! mcpgate's own Envoy sets `allow_on_headers_stop_iteration`, so the filter holds headers.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::xds::{self, WasmCode};
use super::RenderedFile;
use crate::{ConfigError, FilterConfig, GatewayConfig, HeaderMode};

pub use super::xds::{client_route_cluster_name, route_cluster_name};

/// The bootstrap file in the output directory of [`dynamic_files`].
pub const BOOTSTRAP_FILE: &str = "envoy.yaml";
/// The xDS files of [`dynamic_files`], each in its own watched directory, in the order they are
/// written: clusters before the filter and routes that use them, the listener last.
pub const CDS_FILE: &str = "cds/clusters.yaml";
pub const ECDS_FILE: &str = "ecds/mcpgate.yaml";
pub const RDS_FILE: &str = "rds/routes.yaml";
pub const LDS_FILE: &str = "lds/listeners.yaml";

/// The whole static bootstrap as YAML.
pub fn render_bootstrap(config: &GatewayConfig) -> Result<String, ConfigError> {
    to_yaml(&static_bootstrap(config)?)
}

fn static_bootstrap(config: &GatewayConfig) -> Result<Value, ConfigError> {
    let routes = config.server_routes()?;
    let hcm = xds::http_connection_manager(
        ("route_config", xds::route_configuration(config)?),
        json!({"name": xds::NAME, "typed_config": wasm_filter(config)?}),
        config.telemetry.tracing.as_ref().map(xds::tracing),
    );
    Ok(json!({
        "admin": {"address": xds::socket_address(config.envoy.admin)},
        "static_resources": {
            "listeners": [xds::listener(config.envoy.listen, xds::buffer_limit(&routes), hcm)],
            "clusters": xds::clusters(config)?,
        },
    }))
}

/// The bootstrap and the xDS files for an Envoy that follows the gateway file without a restart.
/// `dir` is where they will be written (the bootstrap names the xDS files by absolute path);
/// write them with [`super::write_changed`], which writes each file atomically and only when its
/// content changed, in the order returned.
pub fn dynamic_files(config: &GatewayConfig, dir: &Path) -> Result<Vec<RenderedFile>, ConfigError> {
    let dir = std::path::absolute(dir)
        .map_err(|e| ConfigError::new("", format!("cannot resolve {}: {e}", dir.display())))?;
    let source = |file: &str| path_config_source(&dir, file);
    let routes = config.server_routes()?;

    let ecds = xds::TYPED_EXTENSION_CONFIG_TYPE_URL;
    let filter = json!({"name": xds::NAME, "typed_config": wasm_filter(config)?});
    let mut route_table = xds::route_configuration(config)?;
    if let Some(obj) = route_table.as_object_mut() {
        obj.insert("@type".into(), xds::ROUTE_CONFIGURATION_TYPE_URL.into());
    }
    let clusters: Vec<Value> = xds::clusters(config)?
        .into_iter()
        .map(|mut c| {
            if let Some(obj) = c.as_object_mut() {
                obj.insert("@type".into(), xds::CLUSTER_TYPE_URL.into());
            }
            c
        })
        .collect();
    let hcm = xds::http_connection_manager(
        (
            "rds",
            json!({"route_config_name": xds::NAME, "config_source": source(RDS_FILE)}),
        ),
        json!({
            "name": xds::NAME,
            "config_discovery": {
                "config_source": source(ECDS_FILE),
                "type_urls": [xds::WASM_TYPE_URL],
            },
        }),
        config.telemetry.tracing.as_ref().map(xds::tracing),
    );
    let mut listener = xds::listener(config.envoy.listen, xds::buffer_limit(&routes), hcm);
    if let Some(obj) = listener.as_object_mut() {
        obj.insert("@type".into(), xds::LISTENER_TYPE_URL.into());
    }
    let mut extension = filter;
    if let Some(obj) = extension.as_object_mut() {
        obj.insert("@type".into(), ecds.into());
    }
    let bootstrap = json!({
        // Envoy needs a node identity for dynamic resources.
        "node": {"id": xds::NAME, "cluster": xds::NAME},
        "admin": {"address": xds::socket_address(config.envoy.admin)},
        "dynamic_resources": {
            "cds_config": source(CDS_FILE),
            "lds_config": source(LDS_FILE),
        },
    });
    Ok(vec![
        RenderedFile::new(CDS_FILE, discovery_response(clusters)?),
        RenderedFile::new(ECDS_FILE, discovery_response(vec![extension])?),
        RenderedFile::new(RDS_FILE, discovery_response(vec![route_table])?),
        RenderedFile::new(LDS_FILE, discovery_response(vec![listener])?),
        RenderedFile::new(BOOTSTRAP_FILE, to_yaml(&bootstrap)?),
    ])
}

/// mcpgate's filter as its own Envoy runs it: the module from `envoy.wasm_module`, headers held.
fn wasm_filter(config: &GatewayConfig) -> Result<Value, ConfigError> {
    let filter = FilterConfig {
        header_mode: HeaderMode::HoldHeaders,
        ..config.filter_config()?
    };
    let wasm = std::path::absolute(&config.envoy.wasm_module)
        .map_err(|e| ConfigError::new("envoy.wasm_module", e.to_string()))?;
    xds::wasm_filter(&filter, WasmCode::Local(&wasm))
}

/// A file Envoy reads and re-reads when a file is moved into its directory (the atomic rename
/// of the writer).
fn path_config_source(dir: &Path, file: &str) -> Value {
    let path: PathBuf = dir.join(file);
    let watched = path.parent().unwrap_or(dir);
    json!({
        "resource_api_version": "V3",
        "path_config_source": {
            "path": path.display().to_string(),
            "watched_directory": {"path": watched.display().to_string()},
        },
    })
}

/// The file form of an xDS answer. `version_info` is a digest of the resources, so Envoy's
/// config dump says which rendering it runs.
fn discovery_response(resources: Vec<Value>) -> Result<String, ConfigError> {
    let body = serde_json::to_vec(&resources)
        .map_err(|e| ConfigError::new("", format!("cannot encode xDS resources: {e}")))?;
    let version = super::sha256_hex(&body);
    to_yaml(&json!({"version_info": &version[..16], "resources": resources}))
}

fn to_yaml(value: &Value) -> Result<String, ConfigError> {
    serde_yaml_ng::to_string(value)
        .map_err(|e| ConfigError::new("", format!("cannot render Envoy configuration: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::MAX_LIST_RESPONSE_BYTES;
    use crate::gateway::{TOKEN_SERVICE_CLUSTER, TOKEN_SERVICE_INTERNAL_CLUSTER};
    use crate::paths;

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

    fn config() -> GatewayConfig {
        GatewayConfig::from_yaml(CONFIG).expect("valid")
    }

    fn rendered() -> Value {
        static_bootstrap(&config()).expect("renders")
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
        assert_eq!(wasm["allow_on_headers_stop_iteration"], true);
        let listener = &b["static_resources"]["listeners"][0];
        assert!(
            listener["per_connection_buffer_limit_bytes"].as_u64()
                > Some(MAX_LIST_RESPONSE_BYTES as u64)
        );
        let json = wasm["configuration"]["value"]
            .as_str()
            .expect("string value");
        let filter = crate::FilterConfig::from_json(json.as_bytes()).expect("valid projection");
        assert_eq!(filter.header_mode, HeaderMode::HoldHeaders);
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

    #[test]
    fn replicas_get_retries_health_checks_and_tracing() {
        // One token service: no retries, health checks or tracing, as before.
        let one = rendered();
        let one_json = one.to_string();
        for absent in [
            "retry_policy",
            "health_checks",
            "outlier_detection",
            "tracing",
        ] {
            assert!(!one_json.contains(absent), "{absent}");
        }
        let three = CONFIG
            .replace("sqlite://x.db", "postgres://db.internal/mcpgate")
            .replace(
                "routes:\n",
                "envoy:\n  token_service_endpoints:\n    - address: ts-a:8080\n    - address: ts-b:8080\n    - address: 10.0.0.3:8080\n      internal_address: 10.0.0.3:9000\ntelemetry:\n  tracing:\n    otlp_endpoint: http://collector:4318\n    sampling: 10%\nroutes:\n",
            );
        let config = GatewayConfig::from_yaml(&three).expect("valid");
        let b = static_bootstrap(&config).expect("renders");
        let route = &vhost(&b, "localhost:18080")["routes"][0]["route"];
        assert_eq!(route["cluster"], TOKEN_SERVICE_CLUSTER);
        assert_eq!(route["retry_policy"]["num_retries"], 2);
        assert_eq!(
            route["retry_policy"]["retry_on"],
            "connect-failure,refused-stream"
        );
        let clusters = b["static_resources"]["clusters"]
            .as_array()
            .expect("clusters");
        let internal = clusters
            .iter()
            .find(|c| c["name"] == TOKEN_SERVICE_INTERNAL_CLUSTER)
            .expect("internal cluster");
        assert_eq!(internal["type"], "STRICT_DNS");
        assert_eq!(
            internal["health_checks"][0]["http_health_check"]["path"],
            paths::INTERNAL_READYZ
        );
        let ports: Vec<&Value> = internal["load_assignment"]["endpoints"][0]["lb_endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .map(|e| &e["endpoint"]["address"]["socket_address"]["port_value"])
            .collect();
        assert_eq!(ports, [8081, 8081, 9000]);
        let otlp = clusters
            .iter()
            .find(|c| c["name"] == crate::telemetry::OTLP_CLUSTER)
            .expect("collector cluster");
        assert_eq!(otlp["type"], "STRICT_DNS");
        let hcm = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        assert_eq!(hcm["tracing"]["random_sampling"]["value"], 10.0);
        assert_eq!(
            hcm["tracing"]["provider"]["typed_config"]["http_service"]["http_uri"]["uri"],
            "http://collector:4318/v1/traces"
        );
        // The dynamic form carries the same tracing on its listener.
        let files = dynamic_files(&config, Path::new("/run/mcpgate/xds")).expect("renders");
        let lds: Value = serde_yaml_ng::from_str(file(&files, LDS_FILE)).expect("yaml");
        assert_eq!(
            lds["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]["tracing"],
            hcm["tracing"]
        );
    }

    fn file<'a>(files: &'a [RenderedFile], name: &str) -> &'a str {
        files
            .iter()
            .find(|f| f.path == Path::new(name))
            .map(|f| f.contents.as_str())
            .expect("file rendered")
    }

    #[test]
    fn a_policy_change_rewrites_only_the_filter_file() {
        let dir = Path::new("/run/mcpgate/xds");
        let before = dynamic_files(&config(), dir).expect("renders");
        let changed = CONFIG.replacen(
            "    mcp: {server: {}}",
            "    mcp: {server: {}}\n    policy: {allow: {and: [{domain: {is: company.com}}]}}",
            1,
        );
        let after =
            dynamic_files(&GatewayConfig::from_yaml(&changed).expect("valid"), dir).expect("ok");
        for name in [CDS_FILE, RDS_FILE, LDS_FILE, BOOTSTRAP_FILE] {
            assert_eq!(file(&before, name), file(&after, name), "{name}");
        }
        assert_ne!(file(&before, ECDS_FILE), file(&after, ECDS_FILE));
        // A new route changes the routes and clusters, never the listener.
        let more = format!(
            "{CONFIG}  - from: http://localhost:18080/new\n    to: http://127.0.0.1:3009/mcp\n    mcp: {{server: {{}}}}\n"
        );
        let grown =
            dynamic_files(&GatewayConfig::from_yaml(&more).expect("valid"), dir).expect("ok");
        assert_eq!(file(&before, LDS_FILE), file(&grown, LDS_FILE));
        assert_ne!(file(&before, RDS_FILE), file(&grown, RDS_FILE));
        assert_ne!(file(&before, CDS_FILE), file(&grown, CDS_FILE));
    }

    #[test]
    fn dynamic_files_point_at_their_watched_directories() {
        let files = dynamic_files(&config(), Path::new("/run/mcpgate/xds")).expect("renders");
        let bootstrap: Value = serde_yaml_ng::from_str(file(&files, BOOTSTRAP_FILE)).expect("yaml");
        let lds = &bootstrap["dynamic_resources"]["lds_config"]["path_config_source"];
        assert_eq!(lds["path"], "/run/mcpgate/xds/lds/listeners.yaml");
        assert_eq!(lds["watched_directory"]["path"], "/run/mcpgate/xds/lds");
        let listeners: Value = serde_yaml_ng::from_str(file(&files, LDS_FILE)).expect("yaml");
        let hcm = &listeners["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(
            hcm["http_filters"][0]["config_discovery"]["config_source"]["path_config_source"]
                ["watched_directory"]["path"],
            "/run/mcpgate/xds/ecds"
        );
        assert_eq!(
            hcm["rds"]["config_source"]["path_config_source"]["path"],
            "/run/mcpgate/xds/rds/routes.yaml"
        );
        let ecds: Value = serde_yaml_ng::from_str(file(&files, ECDS_FILE)).expect("yaml");
        assert_eq!(ecds["resources"][0]["name"], xds::NAME);
        assert_eq!(
            ecds["resources"][0]["typed_config"]["config"]["allow_on_headers_stop_iteration"],
            true
        );
    }
}
