//! The HTTP surface: OpenAI's paths under `/v1`, the API key check, the model list, and
//! OpenAI-style errors for unknown paths.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::api_error::ApiError;
use crate::ids::now;
use crate::mcp::McpClient;
use crate::responses::memory::Memory;

/// The one model the stand-in serves.
pub const MODEL_ID: &str = "standin-1";

/// Responses remembered for `previous_response_id`.
const REMEMBERED_RESPONSES: usize = 1000;

pub struct AppState<C> {
    pub client: C,
    /// When set, `Authorization: Bearer <key>` is required.
    pub api_key: Option<String>,
    /// Pause after each streamed piece of answer text.
    pub delta_delay: Duration,
    pub memory: Mutex<Memory>,
    started_at: u64,
}

impl<C> AppState<C> {
    pub fn new(client: C, api_key: Option<String>, delta_delay: Duration) -> Self {
        AppState {
            client,
            api_key,
            delta_delay,
            memory: Mutex::new(Memory::new(REMEMBERED_RESPONSES)),
            started_at: now(),
        }
    }
}

pub fn router<C: McpClient>(state: Arc<AppState<C>>) -> Router {
    Router::new()
        .route("/v1/models", get(models::<C>))
        .route("/v1/models/{id}", get(model::<C>))
        .route("/v1/responses", post(crate::responses::create::<C>))
        .route("/v1/chat/completions", post(crate::chat::create::<C>))
        .fallback(unknown)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_key::<C>,
        ))
        .with_state(state)
}

pub fn check_model(model: &str) -> Result<(), ApiError> {
    if model == MODEL_ID {
        Ok(())
    } else {
        Err(ApiError::model_not_found(model))
    }
}

async fn require_key<C>(
    State(state): State<Arc<AppState<C>>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(key) = &state.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim());
        match given {
            None | Some("") => return ApiError::missing_api_key().into_response(),
            Some(given) if given != key => return ApiError::invalid_api_key().into_response(),
            Some(_) => {}
        }
    }
    next.run(request).await
}

fn model_object(created: u64) -> serde_json::Value {
    json!({"id": MODEL_ID, "object": "model", "created": created, "owned_by": "mcpgate-standin"})
}

async fn models<C>(State(state): State<Arc<AppState<C>>>) -> Json<serde_json::Value> {
    Json(json!({"object": "list", "data": [model_object(state.started_at)]}))
}

async fn model<C>(
    State(state): State<Arc<AppState<C>>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_model(&id)?;
    Ok(Json(model_object(state.started_at)))
}

async fn unknown(method: Method, uri: Uri) -> ApiError {
    ApiError::unknown_url(method.as_str(), uri.path())
}
