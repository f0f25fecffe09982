//! The token endpoint: client authentication, the authorization_code grant (single-use codes
//! bound to client, redirect URI, PKCE verifier and resource) and the refresh_token grant
//! (rotation; reuse revokes the family).

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mcpgate_config::gateway::{canonical_resource, TokenEndpointAuthMethod};
use serde::Serialize;

use crate::clients::{self, Client};
use crate::clock::{now, secs};
use crate::http::params::Params;
use crate::identity::oidc::session::Standing;
use crate::identity::users::UserClaims;
use crate::oauth::access_token::{self, Grant};
use crate::oauth::error::OAuthError;
use crate::oauth::opaque_token;
use crate::oauth::pkce;
use crate::state::{AppState, SharedState};
use crate::store::{AuthorizationCode, RefreshToken};
use crate::telemetry::metrics::{GrantType, Outcome, Reuse};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

fn single<'a>(params: &'a Params, name: &str) -> Result<Option<&'a str>, OAuthError> {
    Ok(params.single(name)?)
}

/// Checks that the request may redeem `code` (everything except single use).
pub fn check_code_binding(
    code: &AuthorizationCode,
    client_id: &str,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
    resource: Option<&str>,
    t: i64,
) -> Result<(), OAuthError> {
    if t >= code.expires_at {
        return Err(OAuthError::invalid_grant(
            "the authorization code has expired",
        ));
    }
    if code.client_id != client_id {
        return Err(OAuthError::invalid_grant(
            "the authorization code was issued to another client",
        ));
    }
    if redirect_uri != Some(code.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri must equal the redirect_uri of the authorization request",
        ));
    }
    pkce::verify(code_verifier, &code.code_challenge)
        .map_err(|e| OAuthError::invalid_grant(e.to_string()))?;
    check_resource(resource, &code.resource)
}

/// A `resource` sent to the token endpoint must name the resource of the grant.
fn check_resource(resource: Option<&str>, granted: &str) -> Result<(), OAuthError> {
    match resource {
        None => Ok(()),
        Some(r) if canonical_resource(r).as_deref() == Some(granted) => Ok(()),
        Some(_) => Err(OAuthError::invalid_target(
            "resource must equal the resource of the authorization grant",
        )),
    }
}

/// The scope of a refreshed access token: the grant's, or a subset of it when requested.
pub fn refresh_scope(
    requested: Option<&str>,
    granted: Option<&str>,
) -> Result<Option<String>, OAuthError> {
    let Some(requested) = requested else {
        return Ok(granted.map(str::to_string));
    };
    let granted: Vec<&str> = granted.map(|g| g.split(' ').collect()).unwrap_or_default();
    if requested.split(' ').all(|s| granted.contains(&s)) {
        Ok(Some(requested.to_string()))
    } else {
        Err(OAuthError::invalid_scope(
            "scope must be a subset of the originally granted scope",
        ))
    }
}

/// Mints the access token (and a refresh token in `family_id` when the client may refresh).
#[allow(clippy::too_many_arguments)]
async fn issue(
    state: &AppState,
    client: &Client,
    family_id: &str,
    user: &UserClaims,
    sid: &str,
    resource: &str,
    grant_scope: Option<&str>,
    token_scope: Option<&str>,
    t: i64,
) -> Result<TokenResponse, OAuthError> {
    if !state.routes.iter().any(|r| r.resource == resource) {
        return Err(OAuthError::invalid_target(
            "the resource of this grant is no longer a server route",
        ));
    }
    let a = &state.config.authorization_server;
    let grant = Grant {
        issuer: &state.issuer,
        user,
        sid,
        client_id: &client.client_id,
        resource,
        scope: token_scope,
    };
    let lifetime = a.access_token_lifetime.as_secs();
    let minted = access_token::mint(&state.keys, &grant, t, lifetime)?;
    state
        .store
        .record_access_token(&minted.jti, family_id, minted.expires_at)
        .await?;
    let refresh_token = if client.may_refresh() {
        let token = opaque_token::generate();
        state
            .store
            .insert_refresh_token(&RefreshToken {
                token_hash: opaque_token::hash(&token),
                family_id: family_id.to_string(),
                client_id: client.client_id.clone(),
                resource: resource.to_string(),
                username: user.username.clone(),
                sid: sid.to_string(),
                claims: serde_json::to_string(user).map_err(anyhow::Error::from)?,
                scope: grant_scope.map(str::to_string),
                issued_at: t,
                expires_at: t + secs(a.refresh_token_lifetime),
                spent_at: None,
            })
            .await?;
        Some(token)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token: minted.token,
        token_type: "Bearer",
        expires_in: lifetime as i64,
        refresh_token,
        scope: token_scope.map(str::to_string),
    })
}

async fn revoke_family(
    state: &AppState,
    family_id: &str,
    reason: &str,
    t: i64,
) -> Result<(), OAuthError> {
    let keep_until = t + secs(state.config.authorization_server.refresh_token_lifetime);
    state
        .store
        .revoke_family(family_id, reason, t, keep_until)
        .await?;
    Ok(())
}

pub async fn exchange_code(
    state: &AppState,
    client: &Client,
    params: &Params,
    t: i64,
) -> Result<TokenResponse, OAuthError> {
    let code =
        single(params, "code")?.ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let code_hash = opaque_token::hash(code);
    let record = state
        .store
        .code(&code_hash)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the authorization code is not valid"))?;
    let replayed = || async {
        revoke_family(state, &record.family_id, "authorization code reused", t).await?;
        state.metrics.reuse_detected(Reuse::AuthorizationCode);
        tracing::warn!(target: "mcpgate::audit", event = "code_reuse", client_id = %record.client_id, user = %record.username, route = %record.resource);
        Err::<TokenResponse, _>(OAuthError::invalid_grant(
            "the authorization code was already used; tokens issued from it are revoked",
        ))
    };
    if record.used_at.is_some() {
        return replayed().await;
    }
    check_code_binding(
        &record,
        &client.client_id,
        single(params, "redirect_uri")?,
        single(params, "code_verifier")?,
        single(params, "resource")?,
        t,
    )?;
    if !state.store.consume_code(&code_hash, t).await? {
        return replayed().await;
    }
    let user: UserClaims = serde_json::from_str(&record.claims).map_err(anyhow::Error::from)?;
    let response = issue(
        state,
        client,
        &record.family_id,
        &user,
        &record.sid,
        &record.resource,
        record.scope.as_deref(),
        record.scope.as_deref(),
        t,
    )
    .await?;
    tracing::info!(target: "mcpgate::audit", event = "token_granted", grant_type = "authorization_code", client_id = %client.client_id, user = %user.username, route = %record.resource);
    Ok(response)
}

pub async fn refresh(
    state: &AppState,
    client: &Client,
    params: &Params,
    t: i64,
) -> Result<TokenResponse, OAuthError> {
    if !client.may_refresh() {
        return Err(OAuthError::unauthorized_client(
            "this client is not registered for the refresh_token grant",
        ));
    }
    let token = single(params, "refresh_token")?
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let token_hash = opaque_token::hash(token);
    let invalid = || OAuthError::invalid_grant("the refresh token is not valid");
    let (record, family_revoked) = state
        .store
        .refresh_token_for_grant(&token_hash)
        .await?
        .ok_or_else(invalid)?;
    if record.client_id != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if family_revoked {
        return Err(OAuthError::invalid_grant(
            "the refresh token has been revoked",
        ));
    }
    let reused = || async {
        revoke_family(state, &record.family_id, "refresh token reused", t).await?;
        state.metrics.reuse_detected(Reuse::RefreshToken);
        tracing::warn!(target: "mcpgate::audit", event = "refresh_reuse", client_id = %record.client_id, user = %record.username, route = %record.resource);
        Err::<TokenResponse, _>(OAuthError::invalid_grant(
            "the refresh token was already used; every token of its grant is now revoked",
        ))
    };
    if record.spent_at.is_some() {
        return reused().await;
    }
    if t >= record.expires_at {
        return Err(OAuthError::invalid_grant("the refresh token has expired"));
    }
    check_resource(single(params, "resource")?, &record.resource)?;
    let token_scope = refresh_scope(single(params, "scope")?, record.scope.as_deref())?;
    // Without the user's upstream token the MCP client must authorize again, which reconnects
    // the provider; its refresh token stays unspent.
    if let Some(route) = state
        .routes
        .iter()
        .find(|r| r.resource == record.resource && r.upstream_oauth2.is_some())
    {
        if crate::upstream::tokens::status(state, &record.username, route)
            .await?
            .is_none()
        {
            tracing::info!(target: "mcpgate::audit", event = "refresh_needs_upstream", client_id = %client.client_id, user = %record.username, route = %record.resource);
            return Err(OAuthError::invalid_grant("upstream authorization required"));
        }
    }
    // A session signed in through an OpenID Connect provider is checked there again first
    // (at most every recheck_interval); a user the provider refused loses the grant.
    match crate::identity::oidc::session::ensure_current(&state.oidc_check(t), &record.sid, t)
        .await?
    {
        Standing::NotProviderBacked | Standing::Current => {}
        Standing::Ended => {
            tracing::info!(target: "mcpgate::audit", event = "refresh_session_ended", client_id = %client.client_id, user = %record.username, route = %record.resource);
            return Err(OAuthError::invalid_grant(
                "the sign-in this grant came from has ended at the identity provider",
            ));
        }
        Standing::Unavailable(reason) => {
            tracing::warn!(client_id = %client.client_id, user = %record.username, reason = %reason, "refresh refused for now: the identity provider cannot be asked");
            return Err(OAuthError::temporarily_unavailable(
                "the identity provider cannot confirm the user right now; try again later",
            ));
        }
    }
    if !state.store.spend_refresh_token(&token_hash, t).await? {
        return reused().await;
    }
    let user: UserClaims = serde_json::from_str(&record.claims).map_err(anyhow::Error::from)?;
    let response = issue(
        state,
        client,
        &record.family_id,
        &user,
        &record.sid,
        &record.resource,
        record.scope.as_deref(),
        token_scope.as_deref(),
        t,
    )
    .await?;
    tracing::info!(target: "mcpgate::audit", event = "token_refreshed", client_id = %client.client_id, user = %user.username, route = %record.resource);
    Ok(response)
}

/// Authenticates the client of a token or revocation request.
pub async fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Client, OAuthError> {
    let presented = clients::presented_in_request(headers, params)?;
    let client = state
        .client_at_token_endpoint(&presented.client_id)
        .await?
        .ok_or_else(|| {
            let e = OAuthError::invalid_client("client authentication failed: unknown client_id");
            if presented.method == TokenEndpointAuthMethod::ClientSecretBasic {
                e.with_basic_challenge()
            } else {
                e
            }
        })?;
    if presented.method == TokenEndpointAuthMethod::PrivateKeyJwt
        && client.auth_method == TokenEndpointAuthMethod::PrivateKeyJwt
    {
        clients::assertion::verify(state, &client, &presented, now()).await?;
    } else {
        clients::authenticate(&client, &presented)?;
    }
    Ok(client)
}

/// Refuses bodies that are not form-encoded (RFC 6749 §3.2).
pub fn check_form_content_type(headers: &HeaderMap) -> Result<(), OAuthError> {
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        Some(ct)
            if ct
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded") =>
        {
            Ok(())
        }
        _ => Err(OAuthError::invalid_request(
            "the request body must be application/x-www-form-urlencoded",
        )),
    }
}

async fn token(
    state: &AppState,
    headers: &HeaderMap,
    body: &str,
) -> Result<TokenResponse, OAuthError> {
    check_form_content_type(headers)?;
    let params = Params::parse(body);
    let grant_type = single(&params, "grant_type")?
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    if grant_type == "client_credentials" {
        // Service accounts authenticate against their own table, not the OAuth clients.
        return crate::service_accounts::client_credentials(state, headers, &params, now()).await;
    }
    let client = authenticate_client(state, headers, &params).await?;
    let t = now();
    match grant_type {
        "authorization_code" => exchange_code(state, &client, &params, t).await,
        "refresh_token" => refresh(state, &client, &params, t).await,
        crate::clients::metadata::JWT_BEARER_GRANT => {
            crate::oauth::id_jag::grant(state, &client, &params, t).await
        }
        _ => Err(OAuthError::unsupported_grant_type(
            "grant_type must be authorization_code, refresh_token, client_credentials or urn:ietf:params:oauth:grant-type:jwt-bearer",
        )),
    }
}

/// POST /.mcpgate/oauth/token
pub async fn handler(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let result = token(&state, &headers, &body).await;
    let grant_type = Params::parse(&body)
        .single("grant_type")
        .ok()
        .flatten()
        .map(str::to_owned);
    state.metrics.grant(
        GrantType::from_param(grant_type.as_deref()),
        Outcome::of(&result),
    );
    match result {
        Ok(body) => crate::oauth::error::no_store_json(StatusCode::OK, body),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn code() -> AuthorizationCode {
        AuthorizationCode {
            code_hash: "h".into(),
            client_id: "cli".into(),
            redirect_uri: "http://127.0.0.1:3000/cb".into(),
            code_challenge: pkce::challenge_for(VERIFIER),
            resource: "http://localhost:18080/everything".into(),
            username: "alice".into(),
            sid: "sid".into(),
            claims: "{}".into(),
            scope: None,
            family_id: "f".into(),
            created_at: 100,
            expires_at: 160,
            used_at: None,
        }
    }

    #[test]
    fn code_is_bound_to_client_redirect_verifier_resource_and_time() {
        let c = code();
        let redirect = Some("http://127.0.0.1:3000/cb");
        assert!(check_code_binding(&c, "cli", redirect, Some(VERIFIER), None, 120).is_ok());
        assert!(check_code_binding(
            &c,
            "cli",
            redirect,
            Some(VERIFIER),
            Some("http://LOCALHOST:18080/everything/"),
            120
        )
        .is_ok());
        let err = |r: Result<(), OAuthError>| r.expect_err("rejected");
        assert!(err(check_code_binding(
            &c,
            "other",
            redirect,
            Some(VERIFIER),
            None,
            120
        ))
        .description
        .contains("another client"));
        assert!(err(check_code_binding(
            &c,
            "cli",
            Some("http://127.0.0.1:3001/cb"),
            Some(VERIFIER),
            None,
            120
        ))
        .description
        .contains("redirect_uri"));
        assert!(err(check_code_binding(
            &c,
            "cli",
            None,
            Some(VERIFIER),
            None,
            120
        ))
        .description
        .contains("redirect_uri"));
        let mut wrong = VERIFIER.to_string();
        wrong.replace_range(0..1, "e");
        assert_eq!(
            err(check_code_binding(
                &c,
                "cli",
                redirect,
                Some(&wrong),
                None,
                120
            ))
            .error,
            "invalid_grant"
        );
        assert_eq!(
            err(check_code_binding(&c, "cli", redirect, None, None, 120)).error,
            "invalid_grant"
        );
        assert_eq!(
            err(check_code_binding(
                &c,
                "cli",
                redirect,
                Some(VERIFIER),
                Some("http://localhost:18080/second"),
                120
            ))
            .error,
            "invalid_target"
        );
        assert!(err(check_code_binding(
            &c,
            "cli",
            redirect,
            Some(VERIFIER),
            None,
            160
        ))
        .description
        .contains("expired"));
    }

    #[test]
    fn refresh_scope_may_only_narrow() {
        assert_eq!(refresh_scope(None, Some("a b")), Ok(Some("a b".into())));
        assert_eq!(refresh_scope(Some("a"), Some("a b")), Ok(Some("a".into())));
        assert_eq!(
            refresh_scope(Some("c"), Some("a b")).unwrap_err().error,
            "invalid_scope"
        );
        assert_eq!(
            refresh_scope(Some("a"), None).unwrap_err().error,
            "invalid_scope"
        );
    }
}
