//! Discovery documents: RFC 8414 authorization-server metadata, OIDC discovery, RFC 9728
//! protected-resource metadata (path-based and root), and the JWKS.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use mcpgate_config::gateway::{GatewayConfig, ServerRoute};
use mcpgate_config::paths;
use serde_json::{json, Value};

use crate::http::request_host;
use crate::oauth::resources::host_matches;
use crate::state::SharedState;

/// Union of every route's scopes, in first-seen order.
fn all_scopes(routes: &[ServerRoute]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in routes.iter().flat_map(|r| r.scopes.iter()) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

/// RFC 8414 metadata; `oidc` adds the fields OpenID Connect discovery requires.
pub fn authorization_server(config: &GatewayConfig, routes: &[ServerRoute], oidc: bool) -> Value {
    let a = &config.authorization_server;
    let issuer = a.issuer.as_str();
    let auth_methods = [
        "none",
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ];
    let mut grant_types = vec!["authorization_code", "refresh_token", "client_credentials"];
    if !config.identity.enterprise.is_empty() {
        grant_types.push(crate::clients::metadata::JWT_BEARER_GRANT);
    }
    let mut doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}{}", paths::AUTHORIZE),
        "token_endpoint": format!("{issuer}{}", paths::TOKEN),
        "revocation_endpoint": format!("{issuer}{}", paths::REVOKE),
        "jwks_uri": format!("{issuer}{}", paths::JWKS),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grant_types,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "authorization_response_iss_parameter_supported": true,
        "token_endpoint_auth_signing_alg_values_supported": mcpgate_config::identity::ASSERTION_ALGORITHMS,
    });
    if a.dynamic_registration.enabled {
        doc["registration_endpoint"] = json!(format!("{issuer}{}", paths::REGISTER));
    }
    if a.client_id_metadata_documents.enabled {
        doc["client_id_metadata_document_supported"] = json!(true);
    }
    let scopes = all_scopes(routes);
    if !scopes.is_empty() {
        doc["scopes_supported"] = json!(scopes);
    }
    if oidc {
        doc["subject_types_supported"] = json!(["public"]);
        doc["id_token_signing_alg_values_supported"] = json!(["EdDSA"]);
    }
    doc
}

/// RFC 9728 metadata of one server route.
pub fn protected_resource(route: &ServerRoute, issuer: &str) -> Value {
    let mut doc = json!({
        "resource": route.resource,
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": route.name,
    });
    if !route.scopes.is_empty() {
        doc["scopes_supported"] = json!(route.scopes);
    }
    doc
}

/// The route for `/.well-known/oauth-protected-resource<path>` on `host`.
pub fn route_for_path<'a>(
    routes: &'a [ServerRoute],
    host: &str,
    path: &str,
) -> Option<&'a ServerRoute> {
    let path = path.trim_end_matches('/');
    routes
        .iter()
        .find(|r| host_matches(r, host) && r.path_prefix == path)
}

/// The route for the root document: the host's only server route, or its route on the whole
/// host. `Err` lists the path-based document URLs of the host's routes.
pub fn route_for_root<'a>(
    routes: &'a [ServerRoute],
    host: &str,
) -> Result<&'a ServerRoute, Vec<String>> {
    let on_host: Vec<&ServerRoute> = routes.iter().filter(|r| host_matches(r, host)).collect();
    if let Some(whole_host) = on_host.iter().find(|r| r.path_prefix.is_empty()) {
        return Ok(whole_host);
    }
    match on_host.as_slice() {
        [only] => Ok(only),
        _ => Err(on_host
            .iter()
            .map(|r| r.resource_metadata_url.clone())
            .collect()),
    }
}

fn json_response(value: Value) -> Response {
    ([(header::CACHE_CONTROL, "public, max-age=60")], Json(value)).into_response()
}

fn not_found(description: String, urls: Vec<String>) -> Response {
    let mut body = json!({"error": "not_found", "error_description": description});
    if !urls.is_empty() {
        body["resource_metadata_urls"] = json!(urls);
    }
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

pub async fn authorization_server_handler(State(state): State<SharedState>) -> Response {
    json_response(authorization_server(&state.config, &state.routes, false))
}

pub async fn openid_configuration_handler(State(state): State<SharedState>) -> Response {
    json_response(authorization_server(&state.config, &state.routes, true))
}

pub async fn protected_resource_handler(
    State(state): State<SharedState>,
    headers: HeaderMap,
    uri: Uri,
    Path(path): Path<String>,
) -> Response {
    let host = request_host(&headers, &uri);
    match route_for_path(&state.routes, &host, &format!("/{path}")) {
        Some(route) => json_response(protected_resource(route, &state.issuer)),
        None => not_found(
            format!("no MCP server route at /{path} on host {host}"),
            vec![],
        ),
    }
}

pub async fn protected_resource_root_handler(
    State(state): State<SharedState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let host = request_host(&headers, &uri);
    match route_for_root(&state.routes, &host) {
        Ok(route) => json_response(protected_resource(route, &state.issuer)),
        Err(urls) if urls.is_empty() => not_found(format!("host {host} has no MCP server route"), urls),
        Err(urls) => not_found(
            format!("host {host} has several MCP server routes; use the path-based metadata URL of the one you want"),
            urls,
        ),
    }
}

pub async fn jwks_handler(State(state): State<SharedState>) -> Response {
    json_response(state.keys.jwks())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::resources::tests::{routes, CONFIG};

    #[test]
    fn as_metadata_lists_only_served_endpoints() {
        let config = GatewayConfig::from_yaml(CONFIG).expect("config");
        let doc = authorization_server(&config, &routes(), false);
        assert_eq!(doc["issuer"], "http://localhost:18080");
        assert_eq!(
            doc["token_endpoint"],
            "http://localhost:18080/.mcpgate/oauth/token"
        );
        assert_eq!(
            doc["registration_endpoint"],
            "http://localhost:18080/.mcpgate/oauth/register"
        );
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["scopes_supported"], json!(["mcp:tools", "mcp:read"]));
        assert_eq!(doc["client_id_metadata_document_supported"], true);
        assert!(doc.get("subject_types_supported").is_none());
        let oidc = authorization_server(&config, &routes(), true);
        assert_eq!(
            oidc["id_token_signing_alg_values_supported"],
            json!(["EdDSA"])
        );
        let mut off = config.clone();
        off.authorization_server.dynamic_registration.enabled = false;
        off.authorization_server
            .client_id_metadata_documents
            .enabled = false;
        let doc = authorization_server(&off, &routes(), false);
        assert!(doc.get("registration_endpoint").is_none());
        assert!(doc.get("client_id_metadata_document_supported").is_none());
    }

    #[test]
    fn protected_resource_lookup() {
        let routes = routes();
        assert_eq!(
            route_for_path(&routes, "LOCALHOST:18080", "/everything").map(|r| r.index),
            Some(0)
        );
        assert_eq!(
            route_for_path(&routes, "localhost:18080", "/everything/").map(|r| r.index),
            Some(0)
        );
        assert!(route_for_path(&routes, "localhost:18080", "/everything/x").is_none());
        assert!(route_for_path(&routes, "other:18080", "/everything").is_none());
        assert_eq!(
            route_for_root(&routes, "solo.example.com").map(|r| r.index),
            Ok(2)
        );
        let several = route_for_root(&routes, "localhost:18080").expect_err("two routes");
        assert_eq!(several.len(), 2);
        let doc = protected_resource(&routes[0], "http://localhost:18080");
        assert_eq!(doc["resource"], "http://localhost:18080/everything");
        assert_eq!(
            doc["authorization_servers"],
            json!(["http://localhost:18080"])
        );
        assert_eq!(doc["resource_name"], "Everything");
        assert_eq!(doc["scopes_supported"], json!(["mcp:tools", "mcp:read"]));
        assert!(protected_resource(&routes[1], "x")
            .get("scopes_supported")
            .is_none());
    }
}
