//! The HTTP surface: the public router, the health check, the HTML pages and OAuth request
//! parameters, and the internal listener's operations endpoints (health, readiness, metrics).
//! The endpoints themselves live with their concepts (`oauth`, `clients`, `upstream`,
//! `internal_api`).

pub mod error;
pub mod health;
pub mod operations;
pub mod pages;
pub mod params;
pub mod router;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The request's host as the client addressed it (`Host`, or the URI authority for HTTP/2).
pub fn request_host(headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

/// A redirect to `location` that is never cached.
pub fn redirect(status: StatusCode, location: &str) -> Response {
    let mut response = status.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
