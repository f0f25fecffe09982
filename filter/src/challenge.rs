//! Local responses the filter answers itself: the 401 challenge (RFC 6750 + RFC 9728
//! `resource_metadata`), the CORS preflight and the fail-closed 503. No host calls.

use serde_json::json;

/// CORS: any origin may call an MCP route (the token, not the origin, is the credential) and read
/// the headers an MCP client needs.
pub const ALLOW_ORIGIN: &str = "*";
pub const EXPOSE_HEADERS: &str = "WWW-Authenticate, Mcp-Session-Id, Mcp-Protocol-Version";
pub const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
pub const ALLOW_HEADERS: &str =
    "Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID";
pub const MAX_AGE_SECONDS: &str = "86400";

/// Description used when a request carries no access token.
pub const MISSING_TOKEN: &str = "an access token is required";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl LocalResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Headers as the host call wants them.
    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
    }
}

/// The `WWW-Authenticate` value. `error` is `Some(description)` when a token was presented.
pub fn www_authenticate(
    resource_metadata_url: &str,
    scopes: &[String],
    error: Option<&str>,
) -> String {
    let mut value = format!(
        "Bearer resource_metadata=\"{}\"",
        quote(resource_metadata_url)
    );
    if !scopes.is_empty() {
        value.push_str(&format!(", scope=\"{}\"", quote(&scopes.join(" "))));
    }
    if let Some(description) = error {
        value.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{}\"",
            quote(description)
        ));
    }
    value
}

/// 401 for a missing (`error: None`) or rejected (`Some(description)`) access token.
pub fn unauthorized(
    resource_metadata_url: &str,
    scopes: &[String],
    error: Option<&str>,
) -> LocalResponse {
    let body = json!({
        "error": "invalid_token",
        "error_description": error.unwrap_or(MISSING_TOKEN),
    });
    LocalResponse {
        status: 401,
        headers: vec![
            (
                "www-authenticate",
                www_authenticate(resource_metadata_url, scopes, error),
            ),
            ("content-type", "application/json".into()),
            ("cache-control", "no-store".into()),
            ("access-control-allow-origin", ALLOW_ORIGIN.into()),
            ("access-control-expose-headers", EXPOSE_HEADERS.into()),
        ],
        body: body.to_string().into_bytes(),
    }
}

/// 204 answer to a CORS preflight on an MCP route.
pub fn preflight() -> LocalResponse {
    LocalResponse {
        status: 204,
        headers: vec![
            ("access-control-allow-origin", ALLOW_ORIGIN.into()),
            ("access-control-allow-methods", ALLOW_METHODS.into()),
            ("access-control-allow-headers", ALLOW_HEADERS.into()),
            ("access-control-expose-headers", EXPOSE_HEADERS.into()),
            ("access-control-max-age", MAX_AGE_SECONDS.into()),
        ],
        body: Vec::new(),
    }
}

/// Fail closed when the signing keys (or the clock) cannot be had: 503 with a JSON error.
pub fn unavailable(description: &str) -> LocalResponse {
    let body = json!({"error": "temporarily_unavailable", "error_description": description});
    LocalResponse {
        status: 503,
        headers: vec![
            ("content-type", "application/json".into()),
            ("cache-control", "no-store".into()),
            ("retry-after", "1".into()),
            ("access-control-allow-origin", ALLOW_ORIGIN.into()),
            ("access-control-expose-headers", EXPOSE_HEADERS.into()),
        ],
        body: body.to_string().into_bytes(),
    }
}

/// RFC 7230 quoted-string content: escape `\` and `"`, drop control characters.
pub(crate) fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = "http://localhost:18080/.well-known/oauth-protected-resource/everything";

    fn body(r: &LocalResponse) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn challenge_without_token_or_scopes() {
        let r = unauthorized(META, &[], None);
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("WWW-Authenticate"),
            Some("Bearer resource_metadata=\"http://localhost:18080/.well-known/oauth-protected-resource/everything\"")
        );
        assert_eq!(
            body(&r),
            json!({"error": "invalid_token", "error_description": MISSING_TOKEN})
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert_eq!(
            r.header("access-control-expose-headers"),
            Some("WWW-Authenticate, Mcp-Session-Id, Mcp-Protocol-Version")
        );
    }

    #[test]
    fn challenge_with_scopes() {
        let scopes = vec!["mcp:tools".to_string(), "files:read".to_string()];
        assert_eq!(
            www_authenticate(META, &scopes, None),
            format!("Bearer resource_metadata=\"{META}\", scope=\"mcp:tools files:read\"")
        );
    }

    #[test]
    fn challenge_with_error() {
        let scopes = vec!["mcp".to_string()];
        let r = unauthorized(META, &scopes, Some("the access token has expired"));
        assert_eq!(
            r.header("www-authenticate"),
            Some(
                format!(
                    "Bearer resource_metadata=\"{META}\", scope=\"mcp\", error=\"invalid_token\", \
                     error_description=\"the access token has expired\""
                )
                .as_str()
            )
        );
        assert_eq!(
            body(&r),
            json!({"error": "invalid_token", "error_description": "the access token has expired"})
        );
        let r = unauthorized(META, &[], Some("x"));
        assert_eq!(
            r.header("www-authenticate"),
            Some(format!("Bearer resource_metadata=\"{META}\", error=\"invalid_token\", error_description=\"x\"").as_str())
        );
    }

    #[test]
    fn quoted_values_are_escaped() {
        assert_eq!(
            www_authenticate("http://h/a\"b\\c\r\n", &[], Some("d\"")),
            "Bearer resource_metadata=\"http://h/a\\\"b\\\\c\", error=\"invalid_token\", error_description=\"d\\\"\""
        );
    }

    #[test]
    fn preflight_and_unavailable() {
        let p = preflight();
        assert_eq!(p.status, 204);
        assert!(p.body.is_empty());
        assert_eq!(
            p.header("access-control-allow-methods"),
            Some("GET, POST, DELETE, OPTIONS")
        );
        assert_eq!(
            p.header("access-control-allow-headers"),
            Some("Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID")
        );
        assert_eq!(p.header("access-control-max-age"), Some("86400"));
        assert_eq!(p.header("access-control-allow-origin"), Some("*"));
        let u = unavailable("signing keys are not available");
        assert_eq!(u.status, 503);
        assert_eq!(body(&u)["error"], "temporarily_unavailable");
        assert_eq!(u.header_pairs().len(), u.headers.len());
    }
}
