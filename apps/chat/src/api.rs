//! The HTTP surface: the page, its files and the JSON API the frontend calls (relative URLs under
//! the client route). Handlers are thin: check the caller, call the module that knows, answer.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mcpgate_assertion::Verifier;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::assets;
use crate::caller::{authenticate, Caller, CallerError};
use crate::chat::Turn;
use crate::conversation::{check_messages, ChatRequest};
use crate::events::ChatEvent;
use crate::gateway::{Gateway, GatewayError, RouteEntry};
use crate::mcp::{dial_url, list_tools_of, McpError, ToolInfo};
use crate::models::Model;

pub struct AppState {
    pub verifier: Verifier,
    pub gateway: Gateway,
    pub http: reqwest::Client,
    pub models: Vec<Model>,
    /// The client route's public URL, without a trailing slash.
    pub app_url: String,
    /// The client route's path, ending in `/`.
    pub base_path: String,
    pub mcp_base: Option<String>,
}

/// The app's routes, at the root and, in case the gateway forwards the path unchanged, under the
/// client route's path too.
pub fn router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/", get(page))
        .route("/static/{file}", get(static_file))
        .route("/api/me", get(me))
        .route("/api/servers", get(servers))
        .route("/api/servers/disconnect", post(disconnect))
        .route("/api/chat", post(chat));
    let prefix = state.base_path.trim_end_matches('/').to_string();
    let mut app = Router::new().merge(routes.clone());
    if !prefix.is_empty() {
        app = app
            .nest(&prefix, routes)
            .route(&format!("{prefix}/"), get(page));
    }
    app.layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(assets::CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// An error the frontend shows as it is.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(json!({"error": self.1}))).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        let status = match e {
            GatewayError::SessionExpired => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError(status, e.to_string())
    }
}

impl From<CallerError> for ApiError {
    fn from(e: CallerError) -> Self {
        ApiError(e.status(), e.to_string())
    }
}

async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    authenticate(&state.verifier, headers).await.map_err(|e| {
        tracing::info!(error = %e, "request refused");
        ApiError::from(e)
    })
}

async fn page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match authenticate(&state.verifier, &headers).await {
        Ok(_) => assets::index(&state.base_path),
        Err(e) => {
            tracing::info!(error = %e, "page refused");
            let title = match e {
                CallerError::KeysUnavailable(_) => "mcpgate chat cannot check who you are",
                _ => "Open mcpgate chat through the gateway",
            };
            assets::unavailable(e.status(), &state.base_path, title, &e.to_string())
        }
    }
}

async fn static_file(Path(file): Path<String>) -> Response {
    assets::file(&file)
}

#[derive(Serialize)]
struct Me<'a> {
    sub: &'a str,
    email: &'a str,
    name: Option<&'a str>,
    groups: &'a [String],
    models: &'a [Model],
}

async fn me(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers).await?;
    let identity = &caller.identity;
    Ok(no_store(Json(Me {
        sub: &identity.sub,
        email: &identity.email,
        name: identity.name.as_deref(),
        groups: &identity.groups,
        models: &state.models,
    })))
}

/// A server as the sidebar shows it.
#[derive(Serialize)]
struct ServerView {
    name: String,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// `connected` | `needs_connect` | `unavailable`
    status: &'static str,
    needs_oauth: bool,
    connect_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    tools: Vec<ToolInfo>,
}

/// `<server url>/.mcpgate/mcp/connect?redirect_url=<app url>/`
pub fn connect_url(server_url: &str, app_url: &str) -> String {
    let back = format!("{}/", app_url.trim_end_matches('/'));
    format!(
        "{}/.mcpgate/mcp/connect?redirect_url={}",
        server_url.trim_end_matches('/'),
        utf8_percent_encode(&back, NON_ALPHANUMERIC)
    )
}

fn server_view(
    route: RouteEntry,
    tools: Option<Result<Vec<ToolInfo>, McpError>>,
    app_url: &str,
) -> ServerView {
    let (status, reason, tools) = match tools {
        None => ("needs_connect", None, vec![]),
        Some(Ok(tools)) => ("connected", None, tools),
        Some(Err(McpError::NeedsConnect)) => ("needs_connect", None, vec![]),
        Some(Err(e)) => ("unavailable", Some(format!("The server {e}.")), vec![]),
    };
    ServerView {
        connect_url: connect_url(&route.url, app_url),
        name: route.name,
        url: route.url,
        description: route.description.filter(|d| !d.is_empty()),
        status,
        needs_oauth: route.needs_oauth,
        reason,
        tools,
    }
}

async fn servers(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers).await?;
    let routes = state.gateway.routes(&caller.token).await?;
    let usable: Vec<(String, String)> = routes
        .iter()
        .filter(|r| !r.needs_connect())
        .map(|r| {
            let dial = dial_url(&r.url, state.gateway.origin(), state.mcp_base.as_deref());
            (r.url.clone(), dial)
        })
        .collect();
    let mut tools = list_tools_of(usable, &caller.token).await;
    let views: Vec<ServerView> = routes
        .into_iter()
        .map(|r| {
            let listed = tools.remove(&r.url);
            server_view(r, listed, &state.app_url)
        })
        .collect();
    Ok(no_store(Json(json!({ "servers": views }))))
}

#[derive(Deserialize)]
struct DisconnectRequest {
    url: String,
}

async fn disconnect(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(request): Json<DisconnectRequest>,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers).await?;
    state
        .gateway
        .disconnect(&caller.token, &request.url)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Aborts the turn when the browser goes away (Stop, or a closed tab): the response stream owns it.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn chat(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let caller = caller(&state, &headers).await?;
    let request: ChatRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("The request is not valid: {e}"),
        )
    })?;
    check_messages(&request.messages)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let model_index = state
        .models
        .iter()
        .position(|m| m.key == request.model)
        .ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("model: `{}` is not one of this app's models", request.model),
            )
        })?;
    tracing::info!(user = %caller.identity.sub, model = %request.model, servers = request.servers.len(), "chat turn");

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<ChatEvent>();
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let turn = Turn {
            http: &task_state.http,
            gateway: &task_state.gateway,
            mcp_base: task_state.mcp_base.as_deref(),
            model: &task_state.models[model_index],
            token: &caller.token,
        };
        turn.run(&request.messages, &request.servers, &mut |event| {
            let _ = tx.send(event);
        })
        .await;
    });
    let guard = AbortOnDrop(task.abort_handle());
    let stream = futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(sse_event(&event)), (rx, guard)))
    });
    Ok(no_store(Sse::new(stream).keep_alive(KeepAlive::default())))
}

fn sse_event(event: &ChatEvent) -> Event {
    Event::default()
        .event(event.name())
        .data(serde_json::to_string(event).unwrap_or_else(|_| "{}".into()))
}

fn no_store(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_urls() {
        assert_eq!(
            connect_url("http://localhost:18080/notes", "http://localhost:18080/chat"),
            "http://localhost:18080/notes/.mcpgate/mcp/connect?redirect_url=http%3A%2F%2Flocalhost%3A18080%2Fchat%2F"
        );
    }

    #[test]
    fn server_statuses() {
        let route = RouteEntry {
            name: "Notes".into(),
            url: "http://gw/notes".into(),
            description: Some(String::new()),
            connected: false,
            needs_oauth: true,
            expires_at: None,
        };
        let view = server_view(route.clone(), None, "http://gw/chat");
        assert_eq!((view.status, view.description), ("needs_connect", None));
        let view = server_view(
            route.clone(),
            Some(Err(McpError::Timeout)),
            "http://gw/chat",
        );
        assert_eq!(view.status, "unavailable");
        assert_eq!(
            view.reason.as_deref(),
            Some("The server did not answer within 15 seconds.")
        );
        let view = server_view(route, Some(Ok(vec![])), "http://gw/chat");
        assert_eq!(view.status, "connected");
    }
}
