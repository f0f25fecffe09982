//! An axum middleware for upstreams behind the gateway: a request passes only with a valid
//! assertion for this upstream, and the handlers find the verified [`Identity`] in the request's
//! extensions.
//!
//! ```ignore
//! let verifier = Arc::new(Verifier::new(issuer, route_url, jwks_url));
//! let app = router.layer(axum::middleware::from_fn_with_state(verifier, require_assertion));
//! ```

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::{Identity, Verifier, VerifyError, HEADER};

/// Verifies the request's assertion; on success the [`Identity`] goes into the request's
/// extensions, otherwise the answer is `403 {"error": "invalid_assertion", "reason": "…"}`
/// (`503` when the gateway's key set cannot be fetched, which is not the caller's fault). The
/// reason is logged, the token never.
///
/// 403, not 401: the assertion is not the request's credential (on routes with upstream OAuth the
/// `Authorization` header is the user's provider token), and the gateway reads a 401 from an MCP
/// server as "the provider token was refused" and forgets it.
pub async fn require_assertion(
    State(verifier): State<Arc<Verifier>>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = match request.headers().get(HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(value)) => Some(value),
        Some(Err(_)) => return refuse(&request, VerifyError::Malformed),
    };
    match verifier.verify(header).await {
        Ok(identity) => {
            request.extensions_mut().insert::<Identity>(identity);
            next.run(request).await
        }
        Err(error) => refuse(&request, error),
    }
}

fn refuse(request: &Request, error: VerifyError) -> Response {
    let status = match error {
        VerifyError::Jwks { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::FORBIDDEN,
    };
    tracing::warn!(
        method = %request.method(),
        path = %request.uri().path(),
        status = status.as_u16(),
        reason = %error,
        "refused a request without a valid assertion"
    );
    let body = serde_json::json!({ "error": "invalid_assertion", "reason": error.to_string() });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_request_without_an_assertion_gets_403_with_the_reason() {
        // The JWKS URL is never fetched: a missing header is refused first.
        let verifier = Arc::new(Verifier::new(
            "http://localhost:18080",
            "http://localhost:18080/whoami",
            "http://127.0.0.1:9/.well-known/jwks.json",
        ));
        let app = Router::new().route("/", get(|| async { "hello" })).layer(
            axum::middleware::from_fn_with_state(verifier, require_assertion),
        );
        let response = app
            .oneshot(Request::get("/").body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"], "invalid_assertion");
        assert!(body["reason"]
            .as_str()
            .expect("reason")
            .contains("x-mcpgate-assertion"));
    }
}
