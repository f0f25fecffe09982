//! The operations endpoints of the internal listener: `/healthz` (the process answers),
//! `/readyz` (it can serve: the database answers and the signing keys are loaded) and
//! `/metrics` (Prometheus, when `telemetry.metrics`). None of them needs the internal API secret:
//! they carry no secrets. The internal listener is never routed from the public one.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mcpgate_config::paths;
use serde_json::json;

use crate::state::SharedState;
use crate::telemetry::metrics;

/// How long `/readyz` waits for the database.
pub const READY_DB_TIMEOUT: Duration = Duration::from_secs(2);

/// The operations routes, to merge into the internal router outside its secret check.
pub fn routes(state: &SharedState) -> Router<SharedState> {
    let router = Router::new()
        .route(paths::INTERNAL_HEALTHZ, get(healthz))
        .route(paths::INTERNAL_READYZ, get(readyz));
    if state.config.telemetry.metrics {
        router.route(paths::INTERNAL_METRICS, get(metrics_handler))
    } else {
        router
    }
}

/// GET /healthz: 200 while the process serves.
async fn healthz() -> Response {
    no_cache(StatusCode::OK, json!({"status": "ok"}))
}

/// GET /readyz: 200 when the database answers within [`READY_DB_TIMEOUT`] and signing keys are
/// loaded; 503 with the reason otherwise.
async fn readyz(State(state): State<SharedState>) -> Response {
    if state.keys.kid().is_empty() {
        return not_ready("signing keys not loaded");
    }
    match tokio::time::timeout(READY_DB_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => no_cache(StatusCode::OK, json!({"status": "ready"})),
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "readiness: the database does not answer");
            not_ready("database unavailable")
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = READY_DB_TIMEOUT.as_millis(),
                "readiness: the database did not answer in time"
            );
            not_ready("database timeout")
        }
    }
}

fn not_ready(reason: &str) -> Response {
    no_cache(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"status": "not ready", "reason": reason}),
    )
}

fn no_cache(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// GET /metrics: the OpenMetrics text.
async fn metrics_handler(State(state): State<SharedState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => {
            let mut response = (StatusCode::OK, text).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            response
        }
        Err(_) => {
            tracing::error!("encoding the metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
