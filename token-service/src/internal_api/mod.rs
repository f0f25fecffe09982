//! The internal API the filter calls (docs/delegation.md, "Internal API"). Served only on
//! `token_service.internal_listen`, never on the public listener, and every request must carry
//! `Authorization: Bearer <MCPGATE_INTERNAL_API_SECRET>`. Bodies are small JSON documents; errors
//! are JSON with `error` and never echo a token.

pub mod assertion;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::{Audiences, JWTClaims};
use mcpgate_config::gateway::{canonical_resource, ClientRoute, ServerRoute};
use mcpgate_config::paths;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::now;
use crate::identity::users::UserClaims;
use crate::internal_api::assertion::Subject;
use crate::oauth::access_token::{self, Grant, TokenClaims};
use crate::oauth::opaque_token;
use crate::service_accounts;
use crate::state::{AppState, SharedState};
use crate::store::UPSTREAM_DISCONNECT_LISTED_SECS;
use crate::upstream;
use crate::upstream::tokens::Fresh;

/// Largest request body the internal API reads.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Longest bearer token considered at all.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// `cache_until` stays this far ahead of the assertion's expiry and the upstream token's expiry.
pub const CACHE_MARGIN_SECS: i64 = 60;
/// `client_id` of the TEs minted for client routes.
pub const CLIENT_ROUTE_CLIENT_ID: &str = "mcpgate:client-route";

/// The shared secret of the internal API.
pub struct InternalSecret {
    /// SHA-256 of the secret, so comparisons take the same time whatever the presented length.
    digest: [u8; 32],
}

impl std::fmt::Debug for InternalSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalSecret(..)")
    }
}

impl InternalSecret {
    pub fn new(secret: &str) -> anyhow::Result<Self> {
        if secret.chars().count() < paths::INTERNAL_SECRET_MIN_LEN {
            anyhow::bail!(
                "{} must be at least {} characters",
                paths::INTERNAL_SECRET_ENV,
                paths::INTERNAL_SECRET_MIN_LEN
            );
        }
        Ok(Self {
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    /// Reads the secret from `MCPGATE_INTERNAL_API_SECRET`; the error names the variable.
    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var(paths::INTERNAL_SECRET_ENV) {
            Ok(v) if !v.is_empty() => Self::new(&v),
            _ => anyhow::bail!(
                "the environment variable {} is not set: the internal API (token_service.internal_listen) \
                 needs a shared secret of at least {} characters, the same one Envoy gets",
                paths::INTERNAL_SECRET_ENV,
                paths::INTERNAL_SECRET_MIN_LEN
            ),
        }
    }

    /// Whether an `Authorization` header value is `Bearer <secret>`, compared in constant time.
    pub fn authorizes(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(presented) = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }
}

/// A JSON error answer: `{"error": code, "error_description"?: …}`, never cached.
pub fn error(status: StatusCode, code: &str, description: Option<&str>) -> Response {
    let mut body = json!({ "error": code });
    if let Some(d) = description {
        body["error_description"] = json!(d);
    }
    crate::oauth::error::no_store_json(status, body)
}

/// Why an internal API request was not served, answered as JSON by [`error`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is too large")]
    BodyTooLarge,
    #[error("the body must be the JSON object this endpoint documents")]
    MalformedBody,
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::BodyTooLarge => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                Some(&self.to_string()),
            ),
            Self::MalformedBody => error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                Some(&self.to_string()),
            ),
            Self::Internal(e) => internal(e),
        }
    }
}

fn internal(e: anyhow::Error) -> Response {
    failure(e, "internal API")
}

/// A failed request's JSON answer: 503 `temporarily_unavailable` when the database is
/// unreachable (see `store::is_unavailable`), otherwise 500 `server_error`. The cause is logged
/// under `what`, never returned.
pub fn failure(e: anyhow::Error, what: &str) -> Response {
    if crate::store::is_unavailable(&e) {
        tracing::warn!(error = %format!("{e:#}"), "{what}: database unavailable");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            None,
        );
    }
    tracing::error!(error = %format!("{e:#}"), "{what}: internal error");
    error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None)
}

async fn require_secret(
    State(secret): State<Arc<InternalSecret>>,
    request: Request,
    next: Next,
) -> Response {
    if !secret.authorizes(request.headers().get(header::AUTHORIZATION)) {
        tracing::warn!(path = %request.uri().path(), "internal API: request without the internal secret");
        return error(StatusCode::UNAUTHORIZED, "unauthorized", None);
    }
    next.run(request).await
}

/// The internal router. Mount it only on the internal listener.
pub fn router(state: SharedState, secret: Arc<InternalSecret>) -> Router {
    Router::new()
        .route(paths::INTERNAL_CREDENTIALS, post(credentials_handler))
        .route(paths::INTERNAL_SESSION, post(session_handler))
        .route(
            paths::INTERNAL_UPSTREAM_REJECTED,
            post(upstream_rejected_handler),
        )
        .route(paths::INTERNAL_REVOCATIONS, get(revocations_handler))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", None) })
        .layer(middleware::from_fn_with_state(secret, require_secret))
        // Health, readiness and metrics carry no secrets: outside the secret check.
        .merge(crate::http::operations::routes(&state))
        .layer(middleware::from_fn_with_state(
            crate::telemetry::Observed {
                listener: crate::telemetry::Listener::Internal,
                metrics: state.metrics.clone(),
            },
            crate::telemetry::observe,
        ))
        .with_state(state)
}

async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::BodyTooLarge)?;
    serde_json::from_slice(&bytes).map_err(|_| ApiError::MalformedBody)
}

// --- TE verification shared with the public routes listing --------------------------------------

/// A TE that verified and is not revoked.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub claims: JWTClaims<TokenClaims>,
    pub sub: String,
    pub jti: String,
    pub exp: i64,
    pub audiences: Vec<String>,
    /// Every claim of the token (for policy `claim` criteria), as the filter sees them.
    pub payload: Value,
}

impl VerifiedToken {
    pub fn has_audience(&self, resource: &str) -> bool {
        self.audiences.iter().any(|a| a == resource)
    }

    /// The policy identity, built the way the filter builds it.
    pub fn identity(&self) -> mcpgate_policy::Identity {
        mcpgate_policy::Identity {
            user: self.sub.clone(),
            email: Some(self.claims.custom.email.clone()),
            groups: self.claims.custom.groups.clone(),
            claims: self.payload.clone(),
        }
    }

    pub fn subject(&self) -> Subject<'_> {
        Subject {
            sub: &self.sub,
            email: &self.claims.custom.email,
            groups: &self.claims.custom.groups,
            name: self.claims.custom.name.as_deref(),
        }
    }
}

fn payload_of(token: &str) -> Value {
    token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// Verifies a TE: signature, `typ`, issuer, expiry, and that neither its `jti` nor (for a service
/// account) its subject is revoked. `None` for anything else.
pub async fn verify_token(
    state: &AppState,
    token: &str,
    t: i64,
) -> anyhow::Result<Option<VerifiedToken>> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Ok(None);
    }
    let leeway = state.config.authorization_server.leeway.as_secs();
    let Some(claims) = access_token::verify(&state.keys, &state.issuer, token, leeway) else {
        return Ok(None);
    };
    let (Some(sub), Some(jti), Some(exp)) = (
        claims.subject.clone().filter(|s| !s.is_empty()),
        claims.jwt_id.clone(),
        claims.expires_at.map(|e| e.as_secs() as i64),
    ) else {
        return Ok(None);
    };
    let audiences = match &claims.audiences {
        Some(Audiences::AsString(a)) => vec![a.clone()],
        Some(Audiences::AsSet(set)) => set.iter().cloned().collect(),
        None => return Ok(None),
    };
    if state.store.is_access_token_revoked(&jti).await?
        || !service_accounts::subject_active(&state.store, &sub, t).await?
    {
        return Ok(None);
    }
    Ok(Some(VerifiedToken {
        claims,
        sub,
        jti,
        exp,
        audiences,
        payload: payload_of(token),
    }))
}

fn server_route<'a>(state: &'a AppState, route: &str) -> Option<&'a ServerRoute> {
    let canonical = canonical_resource(route)?;
    state.routes.iter().find(|r| r.resource == canonical)
}

fn client_route<'a>(state: &'a AppState, route: &str) -> Option<&'a ClientRoute> {
    let canonical = canonical_resource(route)?;
    state.client_routes.iter().find(|r| r.url == canonical)
}

fn unknown_route(kind: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some(&format!("route is not a {kind} route of this gateway")),
    )
}

fn invalid_token() -> Response {
    error(StatusCode::UNAUTHORIZED, "invalid_token", None)
}

/// Server routes whose policy lets `identity` in at all.
pub fn allowed_routes<'a>(
    state: &'a AppState,
    identity: &'a mcpgate_policy::Identity,
) -> impl Iterator<Item = &'a ServerRoute> + 'a {
    state
        .routes
        .iter()
        .zip(&state.route_policies)
        .filter(|(_, policy)| policy.allows_identity(identity))
        .map(|(route, _)| route)
}

// --- POST /internal/v1/credentials ---------------------------------------------------------------

#[derive(Deserialize)]
struct CredentialsRequest {
    route: String,
    token: String,
}

/// The credentials the filter attaches for one server route and TE.
#[derive(Debug)]
pub enum Credentials {
    Ok {
        assertion: String,
        upstream_token: Option<String>,
        cache_until: i64,
    },
    InvalidToken,
    UpstreamAuthorizationRequired {
        connect_url: String,
    },
    UpstreamUnavailable(String),
}

/// `cache_until`: the earliest of the assertion's expiry, the upstream token's refresh moment
/// (or its expiry), and the TE's expiry, each less the margin where it is an expiry.
pub fn cache_until(
    assertion_exp: i64,
    refresh_at: Option<i64>,
    upstream_exp: Option<i64>,
    token_exp: i64,
) -> i64 {
    let mut until = (assertion_exp - CACHE_MARGIN_SECS).min(token_exp);
    match (refresh_at, upstream_exp) {
        (Some(r), _) => until = until.min(r),
        (None, Some(e)) => until = until.min(e - CACHE_MARGIN_SECS),
        (None, None) => {}
    }
    until
}

pub async fn credentials(
    state: &AppState,
    route: &ServerRoute,
    token: &str,
    t: i64,
) -> anyhow::Result<Credentials> {
    let Some(te) = verify_token(state, token, t).await? else {
        return Ok(Credentials::InvalidToken);
    };
    if !te.has_audience(&route.resource) {
        return Ok(Credentials::InvalidToken);
    }
    let (upstream_token, refresh_at, upstream_exp) = if route.upstream_oauth2.is_some() {
        match upstream::tokens::fresh_token(state, &te.sub, route).await? {
            Fresh::Token {
                access_token,
                expires_at,
                refresh_at,
            } => (Some(access_token), refresh_at, expires_at),
            Fresh::NotConnected => {
                return Ok(Credentials::UpstreamAuthorizationRequired {
                    connect_url: route.connect_url.clone(),
                })
            }
            Fresh::Unavailable(reason) => return Ok(Credentials::UpstreamUnavailable(reason)),
        }
    } else {
        (None, None, None)
    };
    let assertion = assertion::mint(
        &state.keys,
        &state.issuer,
        &route.resource,
        &te.subject(),
        t,
    )?;
    Ok(Credentials::Ok {
        cache_until: cache_until(assertion.expires_at, refresh_at, upstream_exp, te.exp),
        assertion: assertion.token,
        upstream_token,
    })
}

async fn credentials_handler(State(state): State<SharedState>, body: Body) -> Response {
    let req: CredentialsRequest = match read_json(body).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Some(route) = server_route(&state, &req.route) else {
        return unknown_route("server");
    };
    match credentials(&state, route, &req.token, now()).await {
        Ok(Credentials::Ok {
            assertion,
            upstream_token,
            cache_until,
        }) => crate::oauth::error::no_store_json(
            StatusCode::OK,
            json!({
                "assertion": assertion,
                "upstream_token": upstream_token,
                "cache_until": cache_until,
            }),
        ),
        Ok(Credentials::InvalidToken) => invalid_token(),
        Ok(Credentials::UpstreamAuthorizationRequired { connect_url }) => {
            crate::oauth::error::no_store_json(
                StatusCode::FORBIDDEN,
                json!({"error": "upstream_authorization_required", "connect_url": connect_url}),
            )
        }
        Ok(Credentials::UpstreamUnavailable(reason)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_unavailable",
            Some(&reason),
        ),
        Err(e) => internal(e),
    }
}

// --- POST /internal/v1/session ------------------------------------------------------------------

#[derive(Deserialize)]
struct SessionRequest {
    session: String,
    route: String,
}

/// What a client route's app receives for a signed-in browser.
#[derive(Debug)]
pub struct SessionCredentials {
    pub token: String,
    pub assertion: String,
    pub cache_until: i64,
    pub audiences: Vec<String>,
}

/// The claims a client-route TE for `user` will carry (for policy `claim` criteria).
fn session_claims(state: &AppState, user: &UserClaims, sid: &str) -> Value {
    let mut claims = json!({
        "iss": state.issuer,
        "sub": user.username,
        "sid": sid,
        "client_id": CLIENT_ROUTE_CLIENT_ID,
        "email": user.email,
        "groups": user.groups,
    });
    if let Some(name) = &user.name {
        claims["name"] = json!(name);
    }
    claims
}

/// A signed-in browser user as route policies see them (the claims of a client-route TE).
pub fn session_identity(
    state: &AppState,
    user: &UserClaims,
    sid: &str,
) -> mcpgate_policy::Identity {
    mcpgate_policy::Identity {
        user: user.username.clone(),
        email: Some(user.email.clone()),
        groups: user.groups.clone(),
        claims: session_claims(state, user, sid),
    }
}

/// A TE and assertion for the browser session whose cookie value is `secret`; `None` when the
/// session does not exist or has expired.
pub async fn session_credentials(
    state: &AppState,
    client_route: &ClientRoute,
    secret: &str,
    t: i64,
) -> anyhow::Result<Option<SessionCredentials>> {
    if secret.is_empty() || secret.len() > MAX_TOKEN_BYTES {
        return Ok(None);
    }
    let Some(session) = state.store.session(&opaque_token::hash(secret), t).await? else {
        return Ok(None);
    };
    // A provider-backed session is checked at its provider first (at most every
    // recheck_interval); once the provider refused the user, no more tokens are minted for it.
    use crate::identity::oidc::session::{ensure_current, Standing};
    match ensure_current(&state.oidc_check(t), &session.sid, t).await? {
        Standing::NotProviderBacked | Standing::Current => {}
        Standing::Ended => return Ok(None),
        Standing::Unavailable(reason) => {
            anyhow::bail!("the identity provider cannot confirm the user right now: {reason}")
        }
    }
    let user: UserClaims = serde_json::from_str(&session.claims)?;
    let identity = session_identity(state, &user, &session.sid);
    let mut audiences: Vec<String> = allowed_routes(state, &identity)
        .map(|r| r.resource.clone())
        .collect();
    audiences.push(client_route.url.clone());
    let grant = Grant {
        issuer: &state.issuer,
        user: &user,
        sid: &session.sid,
        client_id: CLIENT_ROUTE_CLIENT_ID,
        resource: &client_route.url,
        scope: None,
    };
    // The token never outlives the session it was minted from.
    let lifetime = state
        .config
        .authorization_server
        .access_token_lifetime
        .as_secs()
        .min(u64::try_from(session.expires_at - t).unwrap_or(0));
    let minted = access_token::mint_for_audiences(&state.keys, &grant, &audiences, t, lifetime)?;
    // Recorded in the session's family, so signing the session out can revoke its tokens.
    state
        .store
        .record_access_token(&minted.jti, &session.sid, minted.expires_at)
        .await?;
    let subject = Subject {
        sub: &user.username,
        email: &user.email,
        groups: &user.groups,
        name: user.name.as_deref(),
    };
    let assertion = assertion::mint(&state.keys, &state.issuer, &client_route.url, &subject, t)?;
    tracing::info!(
        target: "mcpgate::audit",
        event = "client_route_token",
        user = %user.username,
        sid = %session.sid,
        route = %client_route.url,
        audiences = audiences.len(),
    );
    Ok(Some(SessionCredentials {
        token: minted.token,
        assertion: assertion.token,
        cache_until: cache_until(assertion.expires_at, None, None, minted.expires_at),
        audiences,
    }))
}

async fn session_handler(State(state): State<SharedState>, body: Body) -> Response {
    let req: SessionRequest = match read_json(body).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Some(route) = client_route(&state, &req.route) else {
        return unknown_route("client");
    };
    match session_credentials(&state, route, &req.session, now()).await {
        Ok(Some(c)) => crate::oauth::error::no_store_json(
            StatusCode::OK,
            json!({"token": c.token, "assertion": c.assertion, "cache_until": c.cache_until}),
        ),
        Ok(None) => error(StatusCode::UNAUTHORIZED, "invalid_session", None),
        Err(e) => internal(e),
    }
}

// --- POST /internal/v1/upstream_rejected --------------------------------------------------------

async fn upstream_rejected_handler(State(state): State<SharedState>, body: Body) -> Response {
    let req: CredentialsRequest = match read_json(body).await {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let Some(route) = server_route(&state, &req.route) else {
        return unknown_route("server");
    };
    let te = match verify_token(&state, &req.token, now()).await {
        Ok(Some(te)) if te.has_audience(&route.resource) => te,
        Ok(_) => return invalid_token(),
        Err(e) => return internal(e),
    };
    if let Err(e) = upstream::tokens::forget(&state, &te.sub, Some(route)).await {
        return internal(e);
    }
    tracing::info!(
        target: "mcpgate::audit",
        event = "upstream_token_rejected",
        user = %te.sub,
        route = %route.resource,
    );
    StatusCode::NO_CONTENT.into_response()
}

// --- GET /internal/v1/revocations ---------------------------------------------------------------

/// The revocation list: revoked, unexpired access-token ids, revoked service-account subjects,
/// and the upstream tokens deleted within the last hour (`disconnected`: the filter drops any
/// copy of the user's upstream token for that route it cached at or before `at`).
pub async fn revocations(state: &AppState, t: i64) -> anyhow::Result<Value> {
    let jtis = state.store.revoked_access_token_ids(t).await?;
    let a = &state.config.authorization_server;
    let accounts = state.store.revoked_service_accounts().await?;
    let subjects = service_accounts::revoked_subjects(
        &accounts,
        t,
        crate::clock::secs(a.access_token_lifetime),
        crate::clock::secs(a.leeway),
    );
    let disconnected: Vec<Value> = state
        .store
        .upstream_disconnects(t - UPSTREAM_DISCONNECT_LISTED_SECS)
        .await?
        .into_iter()
        .map(|(sub, route, at)| json!({"sub": sub, "route": route, "at": at}))
        .collect();
    Ok(json!({"jtis": jtis, "subjects": subjects, "disconnected": disconnected}))
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|candidate| {
            let c = candidate.trim();
            c == "*" || c.trim_start_matches("W/") == etag
        })
}

async fn revocations_handler(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let list = match revocations(&state, now()).await {
        Ok(list) => list,
        Err(e) => return internal(e),
    };
    let body = list.to_string();
    let etag = format!(
        "\"{}\"",
        URL_SAFE_NO_PAD.encode(&Sha256::digest(body.as_bytes())[..16])
    );
    let mut response = if etag_matches(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_needs_32_characters_and_is_compared_exactly() {
        let short = InternalSecret::new("too-short").unwrap_err().to_string();
        assert!(short.contains("MCPGATE_INTERNAL_API_SECRET"), "{short}");
        let secret = "0123456789abcdef0123456789abcdef";
        let s = InternalSecret::new(secret).expect("long enough");
        let header = |v: &str| HeaderValue::from_str(v).expect("header");
        assert!(s.authorizes(Some(&header(&format!("Bearer {secret}")))));
        assert!(!s.authorizes(Some(&header(&format!("Bearer {secret}x")))));
        assert!(!s.authorizes(Some(&header(&format!("Basic {secret}")))));
        assert!(!s.authorizes(Some(&header("Bearer "))));
        assert!(!s.authorizes(None));
        assert_eq!(format!("{s:?}"), "InternalSecret(..)");
    }

    #[test]
    fn cache_until_is_the_earliest_bound() {
        // assertion exp 1300 → 1240; TE exp 2000
        assert_eq!(cache_until(1300, None, None, 2000), 1240);
        assert_eq!(cache_until(1300, Some(1100), Some(1200), 2000), 1100);
        assert_eq!(cache_until(1300, None, Some(1200), 2000), 1140);
        assert_eq!(cache_until(1300, None, None, 1200), 1200);
    }

    #[test]
    fn etags_match_strong_weak_and_star() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(etag_matches(&h, "\"b\""));
        assert!(etag_matches(&h, "\"a\""));
        assert!(!etag_matches(&h, "\"c\""));
        assert!(!etag_matches(&HeaderMap::new(), "\"a\""));
    }
}
