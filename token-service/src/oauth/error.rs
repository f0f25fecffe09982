//! OAuth error responses (RFC 6749 §5.2, RFC 7591 §3.2.2, RFC 8707): JSON with `error` and
//! `error_description`, never cached. Descriptions name the parameter and the reason and never
//! echo a credential.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::params::RepeatedParam;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// Add `WWW-Authenticate: Basic` (a failed client_secret_basic authentication).
    pub basic_challenge: bool,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", d)
    }
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_target", d)
    }
    pub fn invalid_client_metadata(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_client_metadata", d)
    }
    pub fn invalid_redirect_uri(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_redirect_uri", d)
    }
    pub fn payload_too_large(d: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_client_metadata", d)
    }
    /// 503: a dependency (the database, the identity provider) cannot answer now; the grant stays
    /// usable.
    pub fn temporarily_unavailable(d: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            d,
        )
    }
    pub fn server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the token service hit an internal error",
        )
    }
    /// The database is unreachable for now (RFC 6749 §4.1.2.1 `temporarily_unavailable`).
    pub fn database_unavailable() -> Self {
        Self::temporarily_unavailable(
            "the token service cannot reach its database; try again shortly",
        )
    }
    pub fn with_basic_challenge(mut self) -> Self {
        self.basic_challenge = true;
        self
    }
}

impl From<RepeatedParam> for OAuthError {
    fn from(e: RepeatedParam) -> Self {
        Self::invalid_request(e.to_string())
    }
}

/// Internal failures (database, signing) become a generic `server_error`, an unreachable
/// database `temporarily_unavailable` (503); the cause is logged, not returned.
impl From<anyhow::Error> for OAuthError {
    fn from(e: anyhow::Error) -> Self {
        if crate::store::is_unavailable(&e) {
            tracing::warn!(error = %format!("{e:#}"), "database unavailable");
            return Self::database_unavailable();
        }
        tracing::error!(error = %format!("{e:#}"), "internal error");
        Self::server_error()
    }
}

/// A JSON answer that carries credentials or is about them: never cached (RFC 6749 §5.1).
pub fn no_store_json(status: StatusCode, body: impl serde::Serialize) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body =
            serde_json::json!({ "error": self.error, "error_description": self.description });
        let mut response = no_store_json(self.status, body);
        let headers = response.headers_mut();
        if self.basic_challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"mcpgate\""),
            );
        }
        response
    }
}
