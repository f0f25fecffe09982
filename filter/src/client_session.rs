//! Client routes: apps behind the gateway that get a TE for their signed-in user. Pure: the
//! session cookie in the request's `Cookie` headers, the forwarded `Cookie` header without it,
//! the call-out (`POST /internal/v1/session`) and its answer, the cache entry, and the answer for
//! a request without a usable session (a browser is sent to sign in, anything else gets 401).

use mcpgate_config::paths::{SESSION_COOKIE, SESSION_COOKIE_SECURE};
use serde_json::json;

use crate::access_token;
use crate::challenge::LocalResponse;
use crate::credentials::{
    decode_entry, encode_entry, is_header_safe, json_object, text, unexpected_status, CacheKey,
    MAX_ANSWER_BYTES,
};
use crate::revocation::Revocations;

/// Longest session cookie value looked at (the token service's are short).
pub const MAX_SESSION_BYTES: usize = 4096;

/// One `name=value` pair of a `Cookie` header (RFC 6265 §4.2.1: pairs separated by `;`, optional
/// whitespace around them).
fn pairs(header: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    header.split(|b| *b == b';').filter_map(|pair| {
        let pair = pair.trim_ascii();
        if pair.is_empty() {
            return None;
        }
        let eq = pair.iter().position(|b| *b == b'=')?;
        let (name, value) = pair.split_at(eq);
        Some((name.trim_ascii(), value.get(1..)?.trim_ascii()))
    })
}

fn is_session_name(name: &[u8]) -> bool {
    name == SESSION_COOKIE.as_bytes() || name == SESSION_COOKIE_SECURE.as_bytes()
}

/// The session cookie's value from the request's `Cookie` headers: `__Host-mcpgate_session`
/// (https issuers) before `mcpgate_session`, the first of a name if it repeats. `None` when
/// absent, empty, too long or not a plain cookie value.
pub fn find_session<'a>(cookie_headers: &[&'a [u8]]) -> Option<&'a str> {
    let mut plain = None;
    for header in cookie_headers {
        for (name, value) in pairs(header) {
            if name == SESSION_COOKIE_SECURE.as_bytes() {
                return usable(value);
            }
            if name == SESSION_COOKIE.as_bytes() && plain.is_none() {
                plain = Some(value);
            }
        }
    }
    plain.and_then(usable)
}

fn usable(value: &[u8]) -> Option<&str> {
    let value = value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(value);
    if value.is_empty() || value.len() > MAX_SESSION_BYTES {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    is_header_safe(text).then_some(text)
}

/// The `Cookie` header to forward: every cookie but the session cookies, in order, joined with
/// `; `. `None` when nothing is left (the header is then removed).
pub fn strip_session(cookie_headers: &[&[u8]]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for header in cookie_headers {
        for pair in header.split(|b| *b == b';') {
            let pair = pair.trim_ascii();
            if pair.is_empty() {
                continue;
            }
            let name = pair
                .iter()
                .position(|b| *b == b'=')
                .and_then(|eq| pair.get(..eq))
                .unwrap_or(pair)
                .trim_ascii();
            if is_session_name(name) {
                continue;
            }
            if !out.is_empty() {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(pair);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A browser navigating (`GET`/`HEAD` asking for HTML) is redirected to sign in; anything else
/// (an app's `fetch`, an API client) gets a 401 it can act on.
pub fn wants_redirect(method: &str, accept: Option<&str>) -> bool {
    (method == "GET" || method == "HEAD")
        && accept.is_some_and(|a| a.to_ascii_lowercase().contains("text/html"))
}

/// The full URL of the request: the route's scheme, the request's `:authority` and `:path`.
pub fn request_url(scheme: &str, authority: &str, path: &str) -> String {
    format!("{scheme}://{authority}{path}")
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
pub fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 0x0f] {
                out.push(char::from(
                    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
    }
    out
}

/// `sign_in_url?return_to=<url>` (or `&return_to=` if the sign-in URL has a query already).
pub fn sign_in_location(sign_in_url: &str, return_to: &str) -> String {
    let separator = if sign_in_url.contains('?') { '&' } else { '?' };
    format!(
        "{sign_in_url}{separator}return_to={}",
        percent_encode(return_to)
    )
}

fn no_store_headers(content_type: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![("cache-control", "no-store".to_owned())];
    if let Some(content_type) = content_type {
        headers.push(("content-type", content_type.to_owned()));
    }
    headers
}

/// The answer to a client-route request without a usable session.
pub fn sign_in(
    sign_in_url: &str,
    method: &str,
    accept: Option<&str>,
    return_to: &str,
) -> LocalResponse {
    if wants_redirect(method, accept) {
        let mut headers = no_store_headers(None);
        headers.push(("location", sign_in_location(sign_in_url, return_to)));
        return LocalResponse {
            status: 302,
            headers,
            body: Vec::new(),
        };
    }
    let body = json!({"error": "sign_in_required", "sign_in_url": sign_in_url});
    LocalResponse {
        status: 401,
        headers: no_store_headers(Some("application/json")),
        body: body.to_string().into_bytes(),
    }
}

/// The call-out's JSON body: `{"session": <cookie>, "route": <client route URL>}`.
pub fn request_body(session: &str, route_url: &str) -> Vec<u8> {
    json!({"session": session, "route": route_url})
        .to_string()
        .into_bytes()
}

/// What the token service gave for a session on a client route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The TE the app gets as `Authorization: Bearer`.
    pub token: String,
    pub assertion: String,
    pub cache_until: u64,
}

impl Session {
    pub fn encode(&self, key: &CacheKey) -> Option<Vec<u8>> {
        encode_entry(
            key,
            self.cache_until,
            &[self.token.as_str(), self.assertion.as_str()],
        )
    }

    pub fn decode(value: &[u8], key: &CacheKey, now: u64) -> Option<Self> {
        let fields = decode_entry(value, key, now)?;
        let [token, assertion] = fields.as_slice() else {
            return None;
        };
        let session = Session {
            token: (*token).to_owned(),
            assertion: (*assertion).to_owned(),
            cache_until: 0,
        };
        session.is_valid().then_some(session)
    }

    fn is_valid(&self) -> bool {
        is_header_safe(&self.token) && is_header_safe(&self.assertion)
    }

    /// The TE's `jti` or subject has been revoked since the session was cached: the cached copy
    /// is not used (the token service decides). The TE came from the token service, so its claims
    /// are read without verifying it again.
    pub fn is_revoked(&self, revocations: &Revocations) -> bool {
        if revocations.is_empty() {
            return false;
        }
        let claims = access_token::claims_json(&self.token);
        let text = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
        revocations.is_revoked(text("jti"), text("sub").unwrap_or_default())
    }
}

/// The outcome of `POST /internal/v1/session`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionAnswer {
    Granted(Session),
    /// 401 `invalid_session`: sign in again.
    Invalid,
    /// Anything else: 503.
    Failed(String),
}

pub fn parse_session_answer(status: Option<&str>, body: &[u8]) -> SessionAnswer {
    if body.len() > MAX_ANSWER_BYTES {
        return SessionAnswer::Failed("the token service answer is too large".into());
    }
    let object = json_object(body);
    let error = text(&object, "error").unwrap_or_default();
    match status {
        Some("200") => {
            let granted = (|| {
                Some(Session {
                    token: text(&object, "token")?.to_owned(),
                    assertion: text(&object, "assertion")?.to_owned(),
                    cache_until: object.get("cache_until")?.as_u64()?,
                })
            })();
            match granted {
                Some(session) if session.is_valid() => SessionAnswer::Granted(session),
                Some(_) => SessionAnswer::Failed(
                    "the token service answered a session that cannot go into a header".into(),
                ),
                None => SessionAnswer::Failed(
                    "the token service answered 200 without a usable session".into(),
                ),
            }
        }
        Some("401") if error == "invalid_session" => SessionAnswer::Invalid,
        _ => SessionAnswer::Failed(unexpected_status(status, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::cache_key;
    use serde_json::Value;

    #[test]
    fn finds_the_session_cookie() {
        assert_eq!(find_session(&[b"mcpgate_session=abc"]), Some("abc"));
        assert_eq!(
            find_session(&[b"a=1; mcpgate_session=abc; b=2"]),
            Some("abc")
        );
        assert_eq!(find_session(&[b"a=1;mcpgate_session=abc"]), Some("abc"));
        // Split over several Cookie headers (HTTP/2 may send one per cookie).
        assert_eq!(
            find_session(&[b"a=1", b"b=2", b"mcpgate_session=abc"]),
            Some("abc")
        );
        // The __Host- form wins wherever it is.
        assert_eq!(
            find_session(&[b"mcpgate_session=plain", b"__Host-mcpgate_session=secure"]),
            Some("secure")
        );
        assert_eq!(
            find_session(&[b"mcpgate_session=first; mcpgate_session=second"]),
            Some("first")
        );
        assert_eq!(find_session(&[b"mcpgate_session=\"q\""]), Some("q"));
        // Names are exact; other cookies, missing, empty or odd values are no session.
        for none in [
            &b"Mcpgate_session=abc"[..],
            b"xmcpgate_session=abc",
            b"mcpgate_sessionx=abc",
            b"mcpgate_session",
            b"mcpgate_session=",
            b"mcpgate_session=\"\"",
            b"mcpgate_session=a b",
            b"mcpgate_session=\xff",
            b"",
            b";;",
        ] {
            assert_eq!(
                find_session(&[none]),
                None,
                "{}",
                String::from_utf8_lossy(none)
            );
        }
        assert_eq!(find_session(&[]), None);
        let long = format!("mcpgate_session={}", "a".repeat(MAX_SESSION_BYTES + 1));
        assert_eq!(find_session(&[long.as_bytes()]), None);
    }

    #[test]
    fn strips_only_the_session_cookies() {
        assert_eq!(
            strip_session(&[b"a=1; mcpgate_session=abc; b=2"]),
            Some(b"a=1; b=2".to_vec())
        );
        assert_eq!(
            strip_session(&[
                b"mcpgate_session=abc",
                b"theme=dark",
                b"__Host-mcpgate_session=x"
            ]),
            Some(b"theme=dark".to_vec())
        );
        assert_eq!(strip_session(&[b"mcpgate_session=abc"]), None);
        assert_eq!(strip_session(&[b" mcpgate_session = abc ;"]), None);
        // Look-alikes stay; odd pairs are passed on as they were.
        assert_eq!(
            strip_session(&[b"mcpgate_sessionx=1;flag;mcpgate_session"]),
            Some(b"mcpgate_sessionx=1; flag".to_vec())
        );
        assert_eq!(strip_session(&[]), None);
    }

    #[test]
    fn sign_in_answers() {
        let url = "http://localhost:18080/.mcpgate/sign_in";
        let back = request_url("http", "localhost:18080", "/app/page?x=1&y=é");
        assert_eq!(back, "http://localhost:18080/app/page?x=1&y=é");
        let r = sign_in(url, "GET", Some("text/html,application/xhtml+xml"), &back);
        assert_eq!(r.status, 302);
        assert_eq!(
            r.header("location"),
            Some(
                "http://localhost:18080/.mcpgate/sign_in?return_to=http%3A%2F%2Flocalhost%3A18080%2Fapp%2Fpage%3Fx%3D1%26y%3D%C3%A9"
            )
        );
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(sign_in(url, "HEAD", Some("TEXT/HTML"), &back).status, 302);
        for (method, accept) in [
            ("GET", None),
            ("GET", Some("application/json")),
            ("POST", Some("text/html")),
            ("DELETE", Some("*/*")),
        ] {
            let r = sign_in(url, method, accept, &back);
            assert_eq!(r.status, 401, "{method} {accept:?}");
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(
                body,
                json!({"error": "sign_in_required", "sign_in_url": url})
            );
        }
        assert_eq!(
            sign_in_location("http://h/s?a=1", "x y"),
            "http://h/s?a=1&return_to=x%20y"
        );
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(
            percent_encode("/?#[]@!$&'()*+,;=% "),
            "%2F%3F%23%5B%5D%40%21%24%26%27%28%29%2A%2B%2C%3B%3D%25%20"
        );
    }

    #[test]
    fn session_answers() {
        let ok = br#"{"token":"t.e.x","assertion":"a.b.c","cache_until":50}"#;
        assert_eq!(
            parse_session_answer(Some("200"), ok),
            SessionAnswer::Granted(Session {
                token: "t.e.x".into(),
                assertion: "a.b.c".into(),
                cache_until: 50
            })
        );
        assert_eq!(
            parse_session_answer(Some("401"), br#"{"error":"invalid_session"}"#),
            SessionAnswer::Invalid
        );
        assert!(matches!(
            parse_session_answer(Some("401"), b""),
            SessionAnswer::Failed(m) if m.contains("secret")
        ));
        for bad in [
            &br#"{"token":"t e","assertion":"a","cache_until":1}"#[..],
            br#"{"token":"t","cache_until":1}"#,
            b"[]",
        ] {
            assert!(matches!(
                parse_session_answer(Some("200"), bad),
                SessionAnswer::Failed(_)
            ));
        }
        assert!(matches!(
            parse_session_answer(Some("500"), b""),
            SessionAnswer::Failed(_)
        ));
        assert!(
            matches!(parse_session_answer(None, b""), SessionAnswer::Failed(m) if m.contains("timeout"))
        );
        let v: Value = serde_json::from_slice(&request_body("s\"", "http://h/app")).unwrap();
        assert_eq!(v, json!({"session": "s\"", "route": "http://h/app"}));
    }

    #[test]
    fn cache_entries() {
        let key = cache_key(
            "scope",
            "http://h/app",
            &crate::token_cache::hash_token("cookie"),
        );
        let s = Session {
            token: "t.e.x".into(),
            assertion: "a.b.c".into(),
            cache_until: 100,
        };
        let v = s.encode(&key).unwrap();
        let got = Session::decode(&v, &key, 99).unwrap();
        assert_eq!(
            (got.token.as_str(), got.assertion.as_str()),
            ("t.e.x", "a.b.c")
        );
        assert!(Session::decode(&v, &key, 100).is_none());
        assert!(Session::decode(
            &v,
            &cache_key(
                "scope",
                "http://h/other",
                &crate::token_cache::hash_token("cookie")
            ),
            1
        )
        .is_none());
    }

    #[test]
    fn revoked_sessions() {
        use crate::test_support::{claims, test_key, token, ROUTE_A};
        let (pair, _) = test_key("k1");
        let session = |token: String| Session {
            token,
            assertion: "a.b.c".into(),
            cache_until: 100,
        };
        let s = session(token(&pair, &claims(ROUTE_A)));
        let list = |json: &str| Revocations::parse(json.as_bytes()).unwrap();
        assert!(!s.is_revoked(&Revocations::default()));
        assert!(s.is_revoked(&list(r#"{"jtis":["jti-1"]}"#)));
        assert!(s.is_revoked(&list(r#"{"subjects":["user-1"]}"#)));
        assert!(!s.is_revoked(&list(r#"{"jtis":["jti-2"],"subjects":["user-2"]}"#)));
        // Disconnects revoke no token.
        assert!(!s.is_revoked(&list(
            r#"{"disconnected":[{"sub":"user-1","route":"http://h/r","at":1}]}"#
        )));
        // A TE whose claims cannot be read has no jti and an empty subject.
        let unreadable = session("t.e.x".into());
        assert!(!unreadable.is_revoked(&list(r#"{"jtis":["jti-1"]}"#)));
        assert!(!unreadable.is_revoked(&list(r#"{"subjects":["user-1"]}"#)));
    }
}
