//! RFC 7009 token revocation: refresh tokens revoke their whole family; access tokens (JWTs)
//! have their `jti` recorded as revoked; unknown tokens are answered 200 like revoked ones.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::clients::Client;
use crate::clock::{now, secs};
use crate::http::params::Params;
use crate::oauth::access_token;
use crate::oauth::error::OAuthError;
use crate::oauth::opaque_token;
use crate::oauth::token_endpoint::{authenticate_client, check_form_content_type};
use crate::state::{AppState, SharedState};
use crate::telemetry::metrics::RevocationKind;

/// Revokes `token` if this client holds it. Tokens of other clients are left alone (and the
/// answer is the same, so it reveals nothing).
pub async fn revoke(
    state: &AppState,
    client: &Client,
    token: &str,
    t: i64,
) -> Result<(), OAuthError> {
    if token.split('.').count() == 3 {
        let leeway = state.config.authorization_server.leeway.as_secs();
        if let Some(claims) = access_token::verify(&state.keys, &state.issuer, token, leeway) {
            if claims.custom.client_id == client.client_id {
                if let Some(jti) = &claims.jwt_id {
                    let exp = claims.expires_at.map(|e| e.as_secs() as i64).unwrap_or(t);
                    state.store.revoke_access_token(jti, t, exp).await?;
                    state.metrics.revocation(RevocationKind::AccessToken);
                    tracing::info!(target: "mcpgate::audit", event = "access_token_revoked", client_id = %client.client_id, user = claims.subject.as_deref().unwrap_or(""));
                }
            }
        }
        return Ok(());
    }
    if let Some(record) = state
        .store
        .refresh_token(&opaque_token::hash(token))
        .await?
    {
        if record.client_id == client.client_id {
            let keep_until = t + secs(state.config.authorization_server.refresh_token_lifetime);
            state
                .store
                .revoke_family(&record.family_id, "revoked by the client", t, keep_until)
                .await?;
            state.metrics.revocation(RevocationKind::RefreshToken);
            tracing::info!(target: "mcpgate::audit", event = "refresh_token_revoked", client_id = %client.client_id, user = %record.username, route = %record.resource);
        }
    }
    Ok(())
}

async fn revocation(state: &AppState, headers: &HeaderMap, body: &str) -> Result<(), OAuthError> {
    check_form_content_type(headers)?;
    let params = Params::parse(body);
    let client = authenticate_client(state, headers, &params).await?;
    let token = params
        .single("token")?
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    revoke(state, &client, token, now()).await
}

/// POST /.mcpgate/oauth/revoke
pub async fn handler(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    match revocation(&state, &headers, &body).await {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => e.into_response(),
    }
}
