//! Browser sessions: a random secret in an HttpOnly cookie, stored only as its hash, plus an
//! opaque `sid` that tokens carry (never the cookie secret).

use axum::http::{header, HeaderMap};
use cookie::{Cookie, SameSite};

use crate::identity::users::UserClaims;
use crate::oauth::opaque_token;
use crate::store::{Session, Store};

pub const COOKIE: &str = "mcpgate_session";
/// With an https issuer the cookie gets the `__Host-` prefix: Secure, host-only, Path=/.
pub const SECURE_COOKIE: &str = "__Host-mcpgate_session";

pub fn cookie_name(issuer_https: bool) -> &'static str {
    if issuer_https {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}

/// The `Set-Cookie` value for a new session.
pub fn set_cookie(secret: &str, issuer_https: bool, max_age_secs: i64) -> String {
    Cookie::build((cookie_name(issuer_https), secret))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(issuer_https)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build()
        .to_string()
}

/// The session secret from the request's `Cookie` headers, if present.
pub fn cookie_secret(headers: &HeaderMap, issuer_https: bool) -> Option<String> {
    let name = cookie_name(issuer_https);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| Cookie::split_parse(v.to_string()))
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// Creates a session; returns the cookie secret and the stored record.
pub async fn create(
    store: &Store,
    user: &UserClaims,
    now: i64,
    lifetime_secs: i64,
) -> anyhow::Result<(String, Session)> {
    let secret = opaque_token::generate();
    let session = Session {
        secret_hash: opaque_token::hash(&secret),
        sid: opaque_token::generate(),
        username: user.username.clone(),
        claims: serde_json::to_string(user)?,
        created_at: now,
        expires_at: now + lifetime_secs,
    };
    store.insert_session(&session).await?;
    Ok((secret, session))
}

/// The live session the request's cookie names, with its user claims.
pub async fn current(
    store: &Store,
    headers: &HeaderMap,
    issuer_https: bool,
    now: i64,
) -> anyhow::Result<Option<(Session, UserClaims)>> {
    let Some(secret) = cookie_secret(headers, issuer_https) else {
        return Ok(None);
    };
    let Some(session) = store.session(&opaque_token::hash(&secret), now).await? else {
        return Ok(None);
    };
    let claims: UserClaims = serde_json::from_str(&session.claims)?;
    Ok(Some((session, claims)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn http_issuer_cookie() {
        let c = set_cookie("s3cret", false, 3600);
        assert!(c.starts_with("mcpgate_session=s3cret"), "{c}");
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.contains("Path=/"),
            "{c}"
        );
        assert!(!c.contains("Secure"), "{c}");
        assert!(c.contains("Max-Age=3600"), "{c}");
        assert!(!c.contains("Domain"), "{c}");
    }

    #[test]
    fn https_issuer_cookie_is_host_prefixed_and_secure() {
        let c = set_cookie("s3cret", true, 60);
        assert!(c.starts_with("__Host-mcpgate_session=s3cret"), "{c}");
        assert!(
            c.contains("Secure") && c.contains("HttpOnly") && c.contains("Path=/"),
            "{c}"
        );
        assert!(!c.contains("Domain"), "{c}");
    }

    #[test]
    fn cookie_is_found_by_the_right_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; mcpgate_session=abc"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-mcpgate_session=def"),
        );
        assert_eq!(cookie_secret(&h, false).as_deref(), Some("abc"));
        assert_eq!(cookie_secret(&h, true).as_deref(), Some("def"));
        assert_eq!(cookie_secret(&HeaderMap::new(), false), None);
    }
}
