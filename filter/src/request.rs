//! Reading the parts of a request the filter decides on. No host calls.

use mcpgate_config::paths;

/// Why a request carries no usable bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No `Authorization` header: the challenge carries no `error`.
    Missing,
    Multiple,
    NotBearer,
    Malformed,
}

impl BearerError {
    /// `None` when no credentials were presented (RFC 6750 §3.1: no error code then).
    pub fn description(&self) -> Option<&'static str> {
        match self {
            BearerError::Missing => None,
            BearerError::Multiple => Some("more than one Authorization header"),
            BearerError::NotBearer => Some("the Authorization header must use the Bearer scheme"),
            BearerError::Malformed => Some("the access token is malformed"),
        }
    }
}

/// The token from the request's `Authorization` header values: exactly one header, scheme
/// `Bearer` in any case, one space-separated token of RFC 6750 `b64token` characters.
pub fn bearer_token<'a>(values: &[&'a [u8]]) -> Result<&'a str, BearerError> {
    let value = match values {
        [] => return Err(BearerError::Missing),
        [one] => *one,
        _ => return Err(BearerError::Multiple),
    };
    let value = std::str::from_utf8(value)
        .map_err(|_| BearerError::Malformed)?
        .trim_matches([' ', '\t']);
    let Some((scheme, token)) = value.split_once([' ', '\t']) else {
        return Err(if value.eq_ignore_ascii_case("bearer") {
            BearerError::Malformed
        } else {
            BearerError::NotBearer
        });
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::NotBearer);
    }
    let token = token.trim_start_matches([' ', '\t']);
    if token.is_empty() || !is_b64token(token) {
        return Err(BearerError::Malformed);
    }
    Ok(token)
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// A CORS preflight: `OPTIONS` with `Access-Control-Request-Method`.
pub fn is_preflight(method: &str, has_request_method: bool) -> bool {
    method == "OPTIONS" && has_request_method
}

/// A header only the filter sets (`x-mcpgate-*`, in any case): a client's copy is removed.
pub fn is_gateway_header(name: &str) -> bool {
    name.get(..paths::GATEWAY_HEADER_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(paths::GATEWAY_HEADER_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> Result<&str, BearerError> {
        bearer_token(&[v.as_bytes()])
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(one("Bearer abc.def.ghi"), Ok("abc.def.ghi"));
        assert_eq!(one("bearer abc"), Ok("abc"));
        assert_eq!(one("BEARER  abc  "), Ok("abc"));
        assert_eq!(one("Bearer a-b_c~d+e/f=="), Ok("a-b_c~d+e/f=="));
    }

    #[test]
    fn rejects_missing_multiple_and_malformed() {
        assert_eq!(bearer_token(&[]), Err(BearerError::Missing));
        assert_eq!(
            bearer_token(&[b"Bearer a", b"Bearer b"]),
            Err(BearerError::Multiple)
        );
        assert_eq!(one("Basic dXNlcjpwYXNz"), Err(BearerError::NotBearer));
        assert_eq!(one("abc.def.ghi"), Err(BearerError::NotBearer));
        assert_eq!(one("Bearer"), Err(BearerError::Malformed));
        assert_eq!(one("Bearer "), Err(BearerError::Malformed));
        assert_eq!(one(""), Err(BearerError::NotBearer));
        assert_eq!(one("Bearer a b"), Err(BearerError::Malformed));
        assert_eq!(one("Bearer a,Bearer b"), Err(BearerError::Malformed));
        assert_eq!(one("Bearer ==="), Err(BearerError::Malformed));
        assert_eq!(one("Bearer a=b"), Err(BearerError::Malformed));
        assert_eq!(bearer_token(&[b"Bearer \xff"]), Err(BearerError::Malformed));
        assert_eq!(BearerError::Missing.description(), None);
        assert!(BearerError::Multiple.description().is_some());
    }

    #[test]
    fn preflight() {
        assert!(is_preflight("OPTIONS", true));
        assert!(!is_preflight("OPTIONS", false));
        assert!(!is_preflight("POST", true));
    }

    #[test]
    fn gateway_headers() {
        for name in ["x-mcpgate-assertion", "X-MCPGate-Anything", "x-mcpgate-"] {
            assert!(is_gateway_header(name), "{name}");
        }
        // The last one has a multi-byte character across the prefix length: no prefix, no panic.
        for name in [
            "x-mcpgate",
            "x-request-id",
            "authorization",
            "x-mcpgate\u{e9}",
        ] {
            assert!(!is_gateway_header(name), "{name}");
        }
    }
}
