//! Admits a request to `/mcp` only with a valid `x-mcpgate-assertion` for this route, and hands
//! the verified [`Identity`] to the tools (through the request's extensions).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mcpgate_assertion::{Identity, Verifier, VerifyError, HEADER};

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

/// 401 with the reason (503 when the gateway's key set cannot be fetched: not the caller's fault).
fn refuse(request: &Request, error: VerifyError) -> Response {
    let status = match error {
        VerifyError::Jwks { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    tracing::warn!(
        method = %request.method(),
        path = %request.uri().path(),
        status = status.as_u16(),
        reason = %error,
        "refused a request without a valid assertion"
    );
    (
        status,
        Json(serde_json::json!({"error": "invalid_assertion", "reason": error.to_string()})),
    )
        .into_response()
}
