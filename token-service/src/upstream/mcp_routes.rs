//! The MCP servers a TE holder may reach (`GET /.mcpgate/mcp/routes`) and forgetting the user's
//! upstream tokens (`POST /.mcpgate/mcp/routes/disconnect`). Public, through Envoy; a client-route
//! app calls them with the TE the gateway gave it.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mcpgate_config::gateway::{canonical_resource, ServerRoute};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::now;
use crate::internal_api::{
    self, allowed_routes, verify_token, VerifiedToken, CLIENT_ROUTE_CLIENT_ID,
};
use crate::state::{AppState, SharedState};
use crate::upstream::tokens;

/// Largest disconnect body read.
const MAX_BODY_BYTES: usize = 4 * 1024;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServerEntry {
    pub name: String,
    pub url: String,
    pub description: Option<String>,
    pub connected: bool,
    pub needs_oauth: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// Why the request's bearer token was not accepted.
#[derive(Debug, thiserror::Error)]
enum BearerError {
    #[error("send the access token as Authorization: Bearer")]
    Missing,
    #[error("the access token is not valid")]
    Invalid,
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        if let Self::Internal(e) = self {
            return internal_api::failure(e, "routes listing");
        }
        let mut response = internal_api::error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            Some(&self.to_string()),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        response
    }
}

/// The verified, unrevoked TE of the request's `Authorization: Bearer` header.
async fn bearer(state: &AppState, headers: &HeaderMap) -> Result<VerifiedToken, BearerError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let token = token.ok_or(BearerError::Missing)?;
    verify_token(state, token, now())
        .await?
        .ok_or(BearerError::Invalid)
}

/// The server routes the token's identity may use, with the user's upstream connection state.
pub async fn list(state: &AppState, te: &VerifiedToken) -> anyhow::Result<Vec<ServerEntry>> {
    let identity = te.identity();
    let mut out = Vec::new();
    for route in allowed_routes(state, &identity) {
        let needs_oauth = route.upstream_oauth2.is_some();
        let (connected, expires_at) = if needs_oauth {
            match tokens::status(state, &te.sub, route).await? {
                Some(expiry) => (true, expiry),
                None => (false, None),
            }
        } else {
            (true, None)
        };
        out.push(ServerEntry {
            name: route.name.clone(),
            url: route.resource.clone(),
            description: route.description.clone(),
            connected,
            needs_oauth,
            expires_at,
        });
    }
    Ok(out)
}

/// GET /.mcpgate/mcp/routes
pub async fn list_handler(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let te = match bearer(&state, &headers).await {
        Ok(te) => te,
        Err(e) => return e.into_response(),
    };
    match list(&state, &te).await {
        Ok(servers) => {
            crate::oauth::error::no_store_json(StatusCode::OK, json!({ "servers": servers }))
        }
        Err(e) => internal_api::failure(e, "routes listing"),
    }
}

#[derive(Debug, Default, Deserialize)]
struct DisconnectRequest {
    #[serde(default)]
    url: Option<String>,
}

/// Why a disconnect request names no route it may touch (a 400 `invalid_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum DisconnectError {
    #[error("url must be a server route URL")]
    NotARouteUrl,
    #[error("url is not a server route of this gateway")]
    UnknownRoute,
    #[error("this access token is not for that server route")]
    NotInAudience,
}

/// Which routes a disconnect may touch. A client-route TE speaks for the signed-in user, so it
/// may forget everything; any other TE only the routes in its audience.
fn disconnect_targets<'a>(
    state: &'a AppState,
    te: &VerifiedToken,
    url: Option<&str>,
) -> Result<Option<Vec<&'a ServerRoute>>, DisconnectError> {
    let client_route_token = te.claims.custom.client_id == CLIENT_ROUTE_CLIENT_ID;
    match url {
        Some(url) => {
            let canonical = canonical_resource(url).ok_or(DisconnectError::NotARouteUrl)?;
            let route = state
                .routes
                .iter()
                .find(|r| r.resource == canonical)
                .ok_or(DisconnectError::UnknownRoute)?;
            if !client_route_token && !te.has_audience(&route.resource) {
                return Err(DisconnectError::NotInAudience);
            }
            Ok(Some(vec![route]))
        }
        None if client_route_token => Ok(None),
        None => Ok(Some(
            state
                .routes
                .iter()
                .filter(|r| te.has_audience(&r.resource))
                .collect(),
        )),
    }
}

/// POST /.mcpgate/mcp/routes/disconnect
pub async fn disconnect_handler(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let te = match bearer(&state, &headers).await {
        Ok(te) => te,
        Err(e) => return e.into_response(),
    };
    let bad = |d: &str| internal_api::error(StatusCode::BAD_REQUEST, "invalid_request", Some(d));
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return bad("the request body is too large");
    };
    let req: DisconnectRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        DisconnectRequest::default()
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(_) => return bad("the body must be empty or {\"url\": \"<server route URL>\"}"),
        }
    };
    let targets = match disconnect_targets(&state, &te, req.url.as_deref()) {
        Ok(t) => t,
        Err(e) => return bad(&e.to_string()),
    };
    let result = match &targets {
        None => tokens::forget(&state, &te.sub, None).await,
        Some(routes) => {
            let mut result = Ok(());
            for route in routes {
                result = tokens::forget(&state, &te.sub, Some(route)).await;
                if result.is_err() {
                    break;
                }
            }
            result
        }
    };
    if let Err(e) = result {
        return internal_api::failure(e, "disconnect");
    }
    let routes = match &targets {
        None => "all".to_string(),
        Some(routes) => routes
            .iter()
            .map(|r| r.resource.as_str())
            .collect::<Vec<_>>()
            .join(" "),
    };
    state
        .metrics
        .revocation(crate::telemetry::metrics::RevocationKind::UpstreamDisconnect);
    tracing::info!(target: "mcpgate::audit", event = "upstream_disconnected", user = %te.sub, client_id = %te.claims.custom.client_id, route = %routes);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
