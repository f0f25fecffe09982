//! The HTTP surface: the public router, the health check, the HTML pages and OAuth request
//! parameters. The endpoints themselves live with their concepts (`oauth`, `clients`,
//! `upstream`, `internal_api`).

pub mod health;
pub mod pages;
pub mod params;
pub mod router;

use axum::http::{header, HeaderMap};

/// The request's host as the client addressed it (`Host`, or the URI authority for HTTP/2).
pub fn request_host(headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default()
}
