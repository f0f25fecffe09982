//! URL paths the gateway reserves on every host. Envoy routes them to the token service, the
//! filter never treats them as MCP traffic, and no route may claim them.

/// RFC 8414 authorization-server metadata (the issuer has no path, so no path insertion).
pub const AUTHORIZATION_SERVER_METADATA: &str = "/.well-known/oauth-authorization-server";
/// OpenID Connect discovery, which some MCP clients try first.
pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
/// RFC 9728 protected-resource metadata; a route's document lives at this path plus the route's path.
pub const PROTECTED_RESOURCE_METADATA: &str = "/.well-known/oauth-protected-resource";
/// The token service's signing keys.
pub const JWKS: &str = "/.well-known/jwks.json";

/// Prefix of every endpoint the token service serves besides the well-known documents.
pub const GATEWAY_PREFIX: &str = "/.mcpgate";
pub const AUTHORIZE: &str = "/.mcpgate/oauth/authorize";
pub const TOKEN: &str = "/.mcpgate/oauth/token";
pub const REGISTER: &str = "/.mcpgate/oauth/register";
pub const REVOKE: &str = "/.mcpgate/oauth/revoke";
pub const SIGN_IN: &str = "/.mcpgate/sign_in";
pub const CONSENT: &str = "/.mcpgate/consent";
pub const HEALTH: &str = "/.mcpgate/healthz";
/// Where upstream OAuth providers send the browser back (register `<issuer>` + this).
pub const UPSTREAM_CALLBACK: &str = "/.mcpgate/upstream/callback";
/// Signs the browser out (ends its session; RP-initiated logout at an OpenID Connect provider).
pub const SIGN_OUT: &str = "/.mcpgate/sign_out";
/// OpenID Connect sign-in: `/.mcpgate/oidc/<provider id>/start` (the sign-in page's button posts
/// there) and `/.mcpgate/oidc/<provider id>/callback` (register `<issuer>` + this at the provider).
pub const OIDC_PREFIX: &str = "/.mcpgate/oidc";
pub const OIDC_START_SUFFIX: &str = "/start";
pub const OIDC_CALLBACK_SUFFIX: &str = "/callback";
/// Where the browser lands after signing out at an OpenID Connect provider.
pub const SIGNED_OUT: &str = "/.mcpgate/signed_out";

/// `/.mcpgate/oidc/<id>/start`.
pub fn oidc_start(provider_id: &str) -> String {
    format!("{OIDC_PREFIX}/{provider_id}{OIDC_START_SUFFIX}")
}

/// `/.mcpgate/oidc/<id>/callback`.
pub fn oidc_callback(provider_id: &str) -> String {
    format!("{OIDC_PREFIX}/{provider_id}{OIDC_CALLBACK_SUFFIX}")
}

/// The MCP servers a user may reach (with a TE).
pub const MCP_ROUTES: &str = "/.mcpgate/mcp/routes";
pub const MCP_ROUTES_DISCONNECT: &str = "/.mcpgate/mcp/routes/disconnect";
/// Appended to a server route's URL: runs that route's upstream consent.
pub const MCP_CONNECT_SUFFIX: &str = "/.mcpgate/mcp/connect";

/// The internal API, served only on the token service's internal listener.
pub const INTERNAL_CREDENTIALS: &str = "/internal/v1/credentials";
pub const INTERNAL_SESSION: &str = "/internal/v1/session";
pub const INTERNAL_UPSTREAM_REJECTED: &str = "/internal/v1/upstream_rejected";
pub const INTERNAL_REVOCATIONS: &str = "/internal/v1/revocations";
/// Liveness of the token service: the process answers. Internal listener, no secret.
pub const INTERNAL_HEALTHZ: &str = "/healthz";
/// Readiness of the token service: its database answers and its signing keys are loaded. Envoy's
/// active health check of the internal cluster asks this. Internal listener, no secret.
pub const INTERNAL_READYZ: &str = "/readyz";
/// Prometheus metrics of the token service (`telemetry.metrics`). Internal listener, no secret.
pub const INTERNAL_METRICS: &str = "/metrics";
/// Environment variable holding the internal API's shared secret (token service and Envoy).
pub const INTERNAL_SECRET_ENV: &str = "MCPGATE_INTERNAL_API_SECRET";
/// Shortest internal API secret accepted.
pub const INTERNAL_SECRET_MIN_LEN: usize = 32;

/// Request header carrying the signed user assertion to upstreams.
pub const ASSERTION_HEADER: &str = "x-mcpgate-assertion";
/// Prefix of every header the gateway sets; clients' copies are removed.
pub const GATEWAY_HEADER_PREFIX: &str = "x-mcpgate-";
/// The browser session cookie (http issuers) and its `__Host-` form (https issuers).
pub const SESSION_COOKIE: &str = "mcpgate_session";
pub const SESSION_COOKIE_SECURE: &str = "__Host-mcpgate_session";

/// Prefixes that belong to the gateway on every host.
pub const RESERVED_PREFIXES: [&str; 2] = ["/.well-known", GATEWAY_PREFIX];

/// True when `path` (without query) is under one of the reserved prefixes, segment-wise.
pub fn is_reserved(path: &str) -> bool {
    RESERVED_PREFIXES
        .iter()
        .any(|prefix| path_has_prefix(path, prefix))
}

/// True when `path` addresses the gateway below a route (`/github/.mcpgate/mcp/connect`): Envoy
/// sends those to the token service, and the filter leaves them alone.
pub fn is_gateway_path_under(path: &str, prefix: &str) -> bool {
    let Some(rest) = path.strip_prefix(prefix) else {
        return false;
    };
    path_has_prefix(rest, GATEWAY_PREFIX)
}

/// Segment-aware prefix test: `/a` matches `/a` and `/a/b`, not `/ab`. An empty prefix matches all.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    if prefix.is_empty() || prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_segment_aware() {
        assert!(path_has_prefix("/everything", "/everything"));
        assert!(path_has_prefix("/everything/x", "/everything"));
        assert!(!path_has_prefix("/everythingelse", "/everything"));
        assert!(path_has_prefix("/anything", ""));
    }

    #[test]
    fn reserved_paths() {
        assert!(is_reserved("/.well-known/oauth-protected-resource/x"));
        assert!(is_reserved("/.mcpgate/oauth/token"));
        assert!(!is_reserved("/.mcpgatex"));
        assert!(!is_reserved("/mcp"));
        assert!(is_reserved(&oidc_callback("corp")));
        assert_eq!(oidc_start("corp"), "/.mcpgate/oidc/corp/start");
    }
}
