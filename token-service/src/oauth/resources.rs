//! Server routes as OAuth resources: finding a route by its canonical resource URL or by the
//! request's host, with the same host/port rules as `FilterConfig::match_route`.

use mcpgate_config::filter::{default_port, split_authority};
use mcpgate_config::gateway::{canonical_resource, ServerRoute};

/// Whether a request `Host` (`host[:port]`) is the route's host: case-insensitive, the scheme's
/// default port when none is given.
pub fn host_matches(route: &ServerRoute, authority: &str) -> bool {
    let (host, port) = split_authority(authority);
    route.host.eq_ignore_ascii_case(host)
        && port.unwrap_or(default_port(&route.scheme)) == route.port
}

/// The route whose canonical resource equals `resource` after canonicalisation.
pub fn by_resource<'a>(routes: &'a [ServerRoute], resource: &str) -> Option<&'a ServerRoute> {
    let canonical = canonical_resource(resource)?;
    routes.iter().find(|r| r.resource == canonical)
}

/// Why no route could be selected for an authorization request (an `invalid_target`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("resource must be an absolute http(s) URL without query or fragment")]
    NotAUrl,
    #[error("resource is not a server route of this gateway")]
    UnknownRoute,
    #[error("resource is required: name the MCP server URL (RFC 8707); this host has no default resource")]
    NoDefault,
}

/// The route an authorization request is for: the `resource` parameter when given, else the
/// default route of the request's host.
pub fn select<'a>(
    routes: &'a [ServerRoute],
    resource: Option<&str>,
    host: &str,
) -> Result<&'a ServerRoute, ResourceError> {
    match resource {
        Some(resource) => {
            if canonical_resource(resource).is_none() {
                return Err(ResourceError::NotAUrl);
            }
            by_resource(routes, resource).ok_or(ResourceError::UnknownRoute)
        }
        None => routes
            .iter()
            .find(|r| r.default_resource && host_matches(r, host))
            .ok_or(ResourceError::NoDefault),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mcpgate_config::GatewayConfig;

    pub(crate) const CONFIG: &str = r#"
authorization_server:
  issuer: http://localhost:18080
  signing_key_file: key.pem
token_service:
  listen: 127.0.0.1:18081
  database_url: sqlite://data/mcpgate.db?mode=rwc
  users_file: users.yaml
routes:
  - from: http://localhost:18080/everything
    to: http://127.0.0.1:3001/mcp
    name: Everything
    mcp:
      server:
        scopes: [mcp:tools, mcp:read]
        default_resource: true
  - from: http://localhost:18080/second
    to: http://127.0.0.1:3002/mcp
    mcp: {server: {}}
  - from: https://Solo.Example.com
    to: http://127.0.0.1:3003/mcp
    name: Solo
    mcp: {server: {}}
"#;

    pub(crate) fn routes() -> Vec<ServerRoute> {
        GatewayConfig::from_yaml(CONFIG)
            .expect("config")
            .server_routes()
            .expect("routes")
    }

    #[test]
    fn resources_are_canonicalised() {
        let routes = routes();
        assert_eq!(
            by_resource(&routes, "http://LOCALHOST:18080/everything/").map(|r| r.index),
            Some(0)
        );
        assert_eq!(
            by_resource(&routes, "https://solo.example.com:443/").map(|r| r.index),
            Some(2)
        );
        assert!(by_resource(&routes, "http://localhost:18080/everythin").is_none());
        assert!(by_resource(&routes, "http://localhost:18081/everything").is_none());
    }

    #[test]
    fn missing_resource_uses_the_hosts_default_or_fails() {
        let routes = routes();
        assert_eq!(
            select(&routes, None, "localhost:18080").map(|r| r.index),
            Ok(0)
        );
        assert_eq!(
            select(&routes, None, "LocalHost:18080").map(|r| r.index),
            Ok(0)
        );
        assert!(select(&routes, None, "solo.example.com")
            .unwrap_err()
            .to_string()
            .contains("resource is required"));
        assert!(select(&routes, None, "localhost:18081").is_err());
        assert_eq!(
            select(&routes, Some("http://localhost:18080/second"), "x").map(|r| r.index),
            Ok(1)
        );
        assert!(select(
            &routes,
            Some("http://localhost:18080/third"),
            "localhost:18080"
        )
        .unwrap_err()
        .to_string()
        .contains("not a server route"));
        assert!(select(&routes, Some("urn:mcp"), "localhost:18080")
            .unwrap_err()
            .to_string()
            .contains("absolute"));
        assert!(select(
            &routes,
            Some("http://localhost:18080/everything?x=1"),
            "localhost:18080"
        )
        .is_err());
    }

    #[test]
    fn host_matching_handles_default_ports() {
        let routes = routes();
        assert!(host_matches(&routes[2], "solo.example.com"));
        assert!(host_matches(&routes[2], "SOLO.example.com:443"));
        assert!(!host_matches(&routes[2], "solo.example.com:8443"));
        assert!(host_matches(&routes[0], "localhost:18080"));
        assert!(!host_matches(&routes[0], "localhost"));
    }
}
