//! What the proxy-wasm filter is told: the projection of the gateway file that the data path needs.
//!
//! The Envoy renderer builds it with [`crate::GatewayConfig::filter_config`] and passes it as the
//! plugin configuration (JSON). It carries no secrets. The filter validates it again on load,
//! because a host may be handed a hand-edited copy.

use serde::{Deserialize, Serialize};

use crate::paths;
use crate::ConfigError;

/// The JWS algorithm the token service signs access tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlgorithm {
    /// Ed25519 (RFC 8037): the cheapest public-key check inside a Wasm VM.
    EdDSA,
}

impl SigningAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::EdDSA => "EdDSA",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Exact `iss` every access token must carry.
    pub issuer: String,
    /// The only `alg` accepted in a token header.
    pub algorithm: SigningAlgorithm,
    /// Envoy cluster that reaches the token service (for the JWKS).
    pub token_service_cluster: String,
    /// `:authority` sent on call-outs to the token service.
    pub token_service_authority: String,
    /// How often the filter refreshes the JWKS, in seconds.
    pub jwks_refresh_seconds: u64,
    /// Clock skew tolerated on `exp`/`iat`, in seconds.
    pub leeway_seconds: u64,
    /// Server routes, in any order; the longest matching path prefix wins.
    pub routes: Vec<FilterRoute>,
    /// Envoy cluster in front of the token service's internal API (credentials, sessions,
    /// revocations). The shared secret is not here: it comes from the VM's environment.
    #[serde(default)]
    pub internal_cluster: String,
    /// `:authority` sent on internal API call-outs.
    #[serde(default)]
    pub internal_authority: String,
    /// How often the filter fetches the revocation list, in seconds.
    #[serde(default = "default_revocations_refresh_seconds")]
    pub revocations_refresh_seconds: u64,
    /// Browser sign-in page for client routes (`return_to` is appended).
    #[serde(default)]
    pub sign_in_url: String,
    /// Client routes: apps that get a TE for their signed-in user.
    #[serde(default)]
    pub client_routes: Vec<FilterClientRoute>,
    /// How the host lets the filter hold a request while its body is decided.
    #[serde(default)]
    pub header_mode: HeaderMode,
    /// In [`HeaderMode::HoldHeaders`]: a request whose headers are held and whose body has not
    /// reached the filter after this many seconds is answered with an error naming the host
    /// setting (a host that ignores `allow_on_headers_stop_iteration` never delivers the body).
    #[serde(default = "default_body_arrival_timeout_seconds")]
    pub body_arrival_timeout_seconds: u64,
}

/// How a request with a body is held while the filter reads and decides it.
///
/// Envoy (1.35 and later) lets a Wasm filter stop in the header phase and still receive the body
/// only when the plugin sets `allow_on_headers_stop_iteration`; Istio's `WasmPlugin` and Envoy
/// Gateway's `EnvoyExtensionPolicy` cannot set it. Each rendered target sets the mode that matches
/// what it configures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderMode {
    /// The host honours `allow_on_headers_stop_iteration: true`: the headers are held until the
    /// body is decided, so a denied request never opens an upstream request.
    HoldHeaders,
    /// The host does not hold headers past the header phase (the default, safe on every host):
    /// the headers go on once the token is checked and the upstream credentials are set; the
    /// body is held until it is decided, and a denied request's upstream stream is reset before
    /// any body byte reaches the MCP server (which may see its headers).
    #[default]
    HoldBody,
}

impl HeaderMode {
    /// The Envoy Wasm `PluginConfig.allow_on_headers_stop_iteration` value this mode needs.
    pub fn allow_on_headers_stop_iteration(self) -> bool {
        matches!(self, HeaderMode::HoldHeaders)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterClientRoute {
    pub name: String,
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash; empty for the whole host.
    pub path_prefix: String,
    /// Canonical URL (origin plus prefix), sent when asking for the user's TE.
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRoute {
    pub name: String,
    /// `http` or `https`, from the route's `from` URL.
    pub scheme: String,
    /// Lower-case host name, without port.
    pub host: String,
    /// The public port (explicit, or the scheme's default).
    pub port: u16,
    /// Path prefix without a trailing slash; empty for a route on the whole host.
    pub path_prefix: String,
    /// Canonical resource URL: the `aud` a token for this route carries.
    pub resource: String,
    /// RFC 9728 document URL advertised in `WWW-Authenticate`.
    pub resource_metadata_url: String,
    /// Scopes advertised in the challenge; empty means none.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The route's access policy (compiled by the filter at configure time).
    #[serde(default)]
    pub policy: Option<serde_json::Value>,
    /// Largest request body the filter buffers and parses; larger bodies get 413.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Argument keys or JSON paths (`$.a.b`) replaced by `"[redacted]"` in audit records.
    #[serde(default)]
    pub audit_redact: Vec<String>,
    /// Audit records cut the serialized arguments at this many bytes.
    #[serde(default = "default_audit_max_argument_bytes")]
    pub audit_max_argument_bytes: usize,
    /// The MCP server gets the user's upstream OAuth token instead of no `Authorization`.
    #[serde(default)]
    pub upstream_oauth: bool,
    /// Where a browser (re)connects the upstream provider; told to clients that must reconnect.
    #[serde(default)]
    pub connect_url: String,
}

pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1024 * 1024;
pub const DEFAULT_AUDIT_MAX_ARGUMENT_BYTES: usize = 2048;
/// Largest list answer (JSON body or single SSE event) the filter reads to filter it.
pub const MAX_LIST_RESPONSE_BYTES: usize = 8 << 20;

fn default_max_request_bytes() -> usize {
    DEFAULT_MAX_REQUEST_BYTES
}

/// Revocations poll: every 2 s keeps a revocation's effect well within 10 s.
pub const DEFAULT_REVOCATIONS_REFRESH_SECONDS: u64 = 2;

fn default_revocations_refresh_seconds() -> u64 {
    DEFAULT_REVOCATIONS_REFRESH_SECONDS
}

fn default_audit_max_argument_bytes() -> usize {
    DEFAULT_AUDIT_MAX_ARGUMENT_BYTES
}

/// Long enough for a slow client's first body bytes, short enough that a misconfigured host
/// answers before MCP clients time out (usually 60 s).
pub const DEFAULT_BODY_ARRIVAL_TIMEOUT_SECONDS: u64 = 10;

fn default_body_arrival_timeout_seconds() -> u64 {
    DEFAULT_BODY_ARRIVAL_TIMEOUT_SECONDS
}

impl FilterConfig {
    /// Parse and validate the plugin configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let config: FilterConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            ConfigError::new(
                e.path().to_string(),
                format!("filter configuration is not valid: {}", e.inner()),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.issuer.is_empty() {
            return Err(ConfigError::new("issuer", "must not be empty"));
        }
        if self.token_service_cluster.is_empty() {
            return Err(ConfigError::new(
                "token_service_cluster",
                "must not be empty",
            ));
        }
        if self.jwks_refresh_seconds == 0 {
            return Err(ConfigError::new(
                "jwks_refresh_seconds",
                "must be at least 1",
            ));
        }
        if self.revocations_refresh_seconds == 0 {
            return Err(ConfigError::new(
                "revocations_refresh_seconds",
                "must be at least 1",
            ));
        }
        if self.body_arrival_timeout_seconds == 0 {
            return Err(ConfigError::new(
                "body_arrival_timeout_seconds",
                "must be at least 1",
            ));
        }
        let needs_internal =
            !self.client_routes.is_empty() || self.routes.iter().any(|r| r.upstream_oauth);
        if needs_internal && self.internal_cluster.is_empty() {
            return Err(ConfigError::new(
                "internal_cluster",
                "is required with client routes or upstream_oauth routes",
            ));
        }
        if !self.client_routes.is_empty() && self.sign_in_url.is_empty() {
            return Err(ConfigError::new(
                "sign_in_url",
                "is required with client routes",
            ));
        }
        for (i, route) in self.client_routes.iter().enumerate() {
            let field = |f: &str| format!("client_routes[{i}].{f}");
            validate_location(&route.scheme, &route.host, &route.path_prefix, field)?;
            if route.url.is_empty() {
                return Err(ConfigError::new(field("url"), "must not be empty"));
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            let field = |f: &str| format!("routes[{i}].{f}");
            validate_location(&route.scheme, &route.host, &route.path_prefix, field)?;
            if route.resource.is_empty() {
                return Err(ConfigError::new(field("resource"), "must not be empty"));
            }
            if route.max_request_bytes == 0 {
                return Err(ConfigError::new(
                    field("max_request_bytes"),
                    "must be at least 1",
                ));
            }
            compile_policy(route.policy.as_ref(), &field("policy"))?;
        }
        Ok(())
    }

    /// The server route a request belongs to, if any. `authority` is the request's `:authority`
    /// (host with optional port), `path` its `:path` (query allowed). Reserved gateway paths never
    /// match: they belong to the token service.
    pub fn match_route(&self, authority: &str, path: &str) -> Option<&FilterRoute> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        if paths::is_reserved(path) {
            return None;
        }
        longest_match(&self.routes, authority, path, |r| {
            (&r.scheme, &r.host, r.port, &r.path_prefix)
        })
        // `<prefix>/.mcpgate/…` (connect) belongs to the token service.
        .filter(|r| !paths::is_gateway_path_under(path, &r.path_prefix))
    }

    /// The client route a request belongs to, if any; a server route under the same prefix
    /// takes precedence (the caller asks `match_route` first).
    pub fn match_client_route(&self, authority: &str, path: &str) -> Option<&FilterClientRoute> {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        if paths::is_reserved(path) {
            return None;
        }
        longest_match(&self.client_routes, authority, path, |r| {
            (&r.scheme, &r.host, r.port, &r.path_prefix)
        })
    }
}

/// The route on `authority` whose path prefix is the longest segment-wise prefix of `path`.
fn longest_match<'a, R>(
    routes: &'a [R],
    authority: &str,
    path: &str,
    location: impl Fn(&R) -> (&String, &String, u16, &String),
) -> Option<&'a R> {
    let (host, port) = split_authority(authority);
    routes
        .iter()
        .filter(|r| {
            let (scheme, route_host, route_port, prefix) = location(r);
            route_host.eq_ignore_ascii_case(host)
                && port.unwrap_or(default_port(scheme)) == route_port
                && paths::path_has_prefix(path, prefix)
        })
        .max_by_key(|r| location(r).3.len())
}

/// Scheme, host and path prefix as every route in the projection must carry them.
fn validate_location(
    scheme: &str,
    host: &str,
    path_prefix: &str,
    field: impl Fn(&str) -> String,
) -> Result<(), ConfigError> {
    if scheme != "http" && scheme != "https" {
        return Err(ConfigError::new(field("scheme"), "must be http or https"));
    }
    if host.is_empty() || host != host.to_ascii_lowercase() {
        return Err(ConfigError::new(
            field("host"),
            "must be a non-empty lower-case host name",
        ));
    }
    if !path_prefix.is_empty() && (!path_prefix.starts_with('/') || path_prefix.ends_with('/')) {
        return Err(ConfigError::new(
            field("path_prefix"),
            "must be empty or start with '/' and not end with '/'",
        ));
    }
    Ok(())
}

/// Compile a route policy, naming the failing field under `field` (`routes[0].policy`).
pub fn compile_policy(
    policy: Option<&serde_json::Value>,
    field: &str,
) -> Result<mcpgate_policy::Policy, ConfigError> {
    mcpgate_policy::Policy::compile_optional(policy).map_err(|e| {
        let path = if e.field.is_empty() {
            field.to_string()
        } else {
            format!("{field}.{}", e.field)
        };
        ConfigError::new(path, e.reason)
    })
}

/// Split `host[:port]`, handling bracketed IPv6 literals. A malformed port yields `Some(0)`,
/// which matches no route.
pub fn split_authority(authority: &str) -> (&str, Option<u16>) {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (authority, None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    (host, port.map(|p| p.parse().unwrap_or(0)))
}

pub fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: &str, port: u16, prefix: &str) -> FilterRoute {
        FilterRoute {
            name: name.into(),
            scheme: "http".into(),
            host: host.into(),
            port,
            path_prefix: prefix.into(),
            resource: format!("http://{host}:{port}{prefix}"),
            resource_metadata_url: String::new(),
            scopes: vec![],
            policy: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            audit_redact: vec![],
            audit_max_argument_bytes: DEFAULT_AUDIT_MAX_ARGUMENT_BYTES,
            upstream_oauth: false,
            connect_url: String::new(),
        }
    }

    fn config(routes: Vec<FilterRoute>) -> FilterConfig {
        FilterConfig {
            issuer: "http://localhost:18080".into(),
            algorithm: SigningAlgorithm::EdDSA,
            token_service_cluster: "ts".into(),
            token_service_authority: "ts".into(),
            jwks_refresh_seconds: 60,
            leeway_seconds: 5,
            routes,
            internal_cluster: String::new(),
            internal_authority: String::new(),
            revocations_refresh_seconds: DEFAULT_REVOCATIONS_REFRESH_SECONDS,
            sign_in_url: String::new(),
            client_routes: vec![],
            header_mode: HeaderMode::HoldBody,
            body_arrival_timeout_seconds: DEFAULT_BODY_ARRIVAL_TIMEOUT_SECONDS,
        }
    }

    #[test]
    fn gateway_paths_under_a_route_and_client_routes() {
        let mut c = config(vec![route("a", "localhost", 18080, "/a")]);
        c.client_routes.push(FilterClientRoute {
            name: "app".into(),
            scheme: "http".into(),
            host: "localhost".into(),
            port: 18080,
            path_prefix: "/app".into(),
            url: "http://localhost:18080/app".into(),
        });
        assert!(c.match_route("localhost:18080", "/a/mcp").is_some());
        assert!(c
            .match_route("localhost:18080", "/a/.mcpgate/mcp/connect?x")
            .is_none());
        assert!(c.match_route("localhost:18080", "/a/.mcpgatex").is_some());
        assert_eq!(
            c.match_client_route("localhost:18080", "/app/page?q")
                .map(|r| r.name.as_str()),
            Some("app")
        );
        assert!(c.match_client_route("localhost:18080", "/apple").is_none());
        assert!(c
            .match_client_route("localhost:18080", "/.mcpgate/mcp/routes")
            .is_none());
        assert_eq!(
            c.validate().map_err(|e| e.field),
            Err("internal_cluster".into())
        );
    }

    #[test]
    fn longest_prefix_wins_and_segments_matter() {
        let c = config(vec![
            route("root", "localhost", 18080, ""),
            route("a", "localhost", 18080, "/a"),
            route("ab", "localhost", 18080, "/a/b"),
        ]);
        assert_eq!(
            c.match_route("localhost:18080", "/a/b/c")
                .map(|r| r.name.as_str()),
            Some("ab")
        );
        assert_eq!(
            c.match_route("localhost:18080", "/a?x=1")
                .map(|r| r.name.as_str()),
            Some("a")
        );
        assert_eq!(
            c.match_route("LOCALHOST:18080", "/ab")
                .map(|r| r.name.as_str()),
            Some("root")
        );
        assert_eq!(c.match_route("localhost:18081", "/a"), None);
        assert_eq!(
            c.match_route("localhost:18080", "/.well-known/oauth-protected-resource/a"),
            None
        );
        assert_eq!(
            c.match_route("localhost:18080", "/.mcpgate/oauth/token"),
            None
        );
    }

    #[test]
    fn default_ports_and_ipv6() {
        let c = config(vec![
            route("a", "example.com", 80, "/a"),
            route("v6", "::1", 8080, ""),
        ]);
        assert!(c.match_route("example.com", "/a").is_some());
        assert!(c.match_route("example.com:80", "/a").is_some());
        assert!(c.match_route("example.com:x", "/a").is_none());
        assert!(c.match_route("[::1]:8080", "/").is_some());
    }

    #[test]
    fn json_round_trip_and_validation() {
        let c = config(vec![route("a", "localhost", 18080, "/a")]);
        let json = serde_json::to_vec(&c).expect("serializes");
        assert_eq!(FilterConfig::from_json(&json), Ok(c));
        let mut bad = config(vec![route("a", "localhost", 18080, "/a/")]);
        assert_eq!(
            bad.validate().map_err(|e| e.field),
            Err("routes[0].path_prefix".into())
        );
        bad.routes[0].path_prefix = "/a".into();
        bad.routes[0].policy =
            Some(serde_json::json!({"allow": {"and": [{"no_such_criterion": 1}]}}));
        let err = bad.validate().expect_err("bad policy");
        assert!(err.field.starts_with("routes[0].policy.allow"), "{err}");
        bad.routes.clear();
        bad.jwks_refresh_seconds = 0;
        assert_eq!(
            bad.validate().map_err(|e| e.field),
            Err("jwks_refresh_seconds".into())
        );
        let err = FilterConfig::from_json(b"{\"issuer\": 1}").expect_err("rejects");
        assert_eq!(err.field, "issuer");
    }
}
