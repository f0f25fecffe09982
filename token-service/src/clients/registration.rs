//! RFC 7591 dynamic client registration.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mcpgate_config::gateway::TokenEndpointAuthMethod;
use serde_json::{json, Value};

use crate::clients::metadata::ClientMetadata;
use crate::clock::now;
use crate::oauth::error::OAuthError;
use crate::oauth::opaque_token;
use crate::state::SharedState;
use crate::store::{Store, StoredClient};
use crate::telemetry::metrics::{Outcome, RegistrationKind};

fn too_large(max: usize) -> OAuthError {
    OAuthError::payload_too_large(format!(
        "the registration request is larger than {max} bytes (dynamic_registration.max_metadata_bytes)"
    ))
}

/// Validates the metadata, stores the client and returns the RFC 7591 §3.2.1 response body.
pub async fn register(store: &Store, body: &[u8], t: i64) -> Result<Value, OAuthError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        OAuthError::invalid_client_metadata(format!("the request body must be a JSON object: {e}"))
    })?;
    let metadata = ClientMetadata::from_json(&value).map_err(|e| match e.error {
        "invalid_redirect_uri" => OAuthError::invalid_redirect_uri(e.to_string()),
        _ => OAuthError::invalid_client_metadata(e.to_string()),
    })?;
    let client_id = opaque_token::generate();
    let secret = matches!(
        metadata.token_endpoint_auth_method,
        TokenEndpointAuthMethod::ClientSecretBasic | TokenEndpointAuthMethod::ClientSecretPost
    )
    .then(opaque_token::generate);
    let stored = StoredClient {
        client_id: client_id.clone(),
        secret_hash: secret.as_deref().map(opaque_token::hash),
        token_endpoint_auth_method: metadata.token_endpoint_auth_method.as_str().to_string(),
        metadata: serde_json::to_string(&metadata).map_err(anyhow::Error::from)?,
        created_at: t,
    };
    store.insert_client(&stored).await?;
    tracing::info!(
        target: "mcpgate::audit",
        event = "client_registered",
        client_id = %client_id,
        client_name = metadata.client_name.as_deref().unwrap_or(""),
        auth_method = metadata.token_endpoint_auth_method.as_str(),
    );
    let mut response = serde_json::to_value(&metadata).map_err(anyhow::Error::from)?;
    response["client_id"] = json!(client_id);
    response["client_id_issued_at"] = json!(t);
    if let Some(secret) = secret {
        response["client_secret"] = json!(secret);
        response["client_secret_expires_at"] = json!(0);
    }
    Ok(response)
}

/// POST /.mcpgate/oauth/register
pub async fn handler(State(state): State<SharedState>, headers: HeaderMap, body: Body) -> Response {
    let max = state
        .config
        .authorization_server
        .dynamic_registration
        .max_metadata_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let result = if declared.is_some_and(|len| len > max as u64) {
        Err(too_large(max))
    } else {
        match axum::body::to_bytes(body, max).await {
            Ok(bytes) => register(&state.store, &bytes, now()).await,
            Err(_) => Err(too_large(max)),
        }
    };
    state
        .metrics
        .registration(RegistrationKind::Dynamic, Outcome::of(&result));
    match result {
        Ok(body) => crate::oauth::error::no_store_json(StatusCode::CREATED, body),
        Err(e) => e.into_response(),
    }
}
