//! The HTTP side of OpenID Connect sign-in: thin handlers over `sign_in` and `session`.
//!
//! - `POST /.mcpgate/oidc/<id>/start` (the sign-in page's button): stores the sign-in, sets the
//!   browser-binding cookie and sends the browser to the provider.
//! - `GET /.mcpgate/oidc/<id>/callback`: finishes it, creates the mcpgate session and continues
//!   the pending authorization exactly as the built-in sign-in does (consent, code).
//! - `GET /.mcpgate/sign_out`: a confirm page (a link from another site must not sign anyone out);
//!   `POST /.mcpgate/sign_out` (its button, same origin only): ends the session (revoking its
//!   tokens) and, for a provider session, continues to the provider's `end_session_endpoint`
//!   (RP-initiated logout).
//! - `GET /.mcpgate/signed_out`: where the provider sends the browser back.

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use mcpgate_config::identity::OidcProvider;
use mcpgate_config::paths;
use serde::Deserialize;

use super::session::{self as provider_session, StoredTokens};
use super::sign_in::{self, Callback, Continuation, SignInError, SIGN_IN_LIFETIME_SECS};
use crate::clock::{now, secs};
use crate::http::pages;
use crate::http::redirect;
use crate::identity::session;
use crate::identity::sign_in::{same_origin_post, start_session, validate_return_to};
use crate::oauth::opaque_token;
use crate::state::{AppState, SharedState};
use crate::telemetry::metrics::{Metrics, SignInResult};

/// The browser-binding cookie of a sign-in in flight (`__Host-` with an https issuer).
pub const COOKIE: &str = "mcpgate_oidc";
pub const SECURE_COOKIE: &str = "__Host-mcpgate_oidc";

fn cookie_name(https: bool) -> &'static str {
    if https {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}

fn binding_cookie(value: &str, https: bool, max_age: i64) -> Option<HeaderValue> {
    let c = Cookie::build((cookie_name(https), value))
        .http_only(true)
        // Lax: the provider's redirect back is a top-level GET, which carries it.
        .same_site(SameSite::Lax)
        .path("/")
        .secure(https)
        .max_age(cookie::time::Duration::seconds(max_age))
        .build();
    HeaderValue::from_str(&c.to_string()).ok()
}

fn binding_value(headers: &HeaderMap, https: bool) -> Option<String> {
    let name = cookie_name(https);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| Cookie::split_parse(v.to_string()))
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
        .filter(|v| v.len() >= 32 && v.len() <= 128)
}

fn provider<'a>(state: &'a AppState, id: &str) -> Option<&'a OidcProvider> {
    state.config.identity.oidc.iter().find(|p| p.id == id)
}

fn callback_url(state: &AppState, p: &OidcProvider) -> String {
    format!("{}{}", state.issuer, paths::oidc_callback(&p.id))
}

fn unknown_provider() -> Response {
    pages::error(
        StatusCode::NOT_FOUND,
        "Unknown sign-in provider",
        "This gateway has no sign-in provider by that name.",
    )
}

/// The sign-in page to go back to for a continuation.
fn retry_url(continuation: Option<&Continuation>) -> Option<String> {
    let q = match continuation? {
        Continuation::Authorization { request } => ("request", request),
        Continuation::ReturnTo { url } => ("return_to", url),
    };
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair(q.0, q.1)
        .finish();
    Some(format!("{}?{query}", paths::SIGN_IN))
}

/// The page for a failed sign-in, and its one log line (provider id and reason, no token).
fn failure_page(
    metrics: &Metrics,
    p: &OidcProvider,
    e: &SignInError,
    continuation: Option<&Continuation>,
) -> Response {
    use super::provider::ProviderError as P;
    let (status, what) = match e {
        SignInError::Provider(P::Discovery(_)) => (
            StatusCode::BAD_GATEWAY,
            format!("The gateway could not reach {} to start signing in ({e}). The provider may be down or misconfigured; try again in a moment.", p.display_name),
        ),
        SignInError::Provider(P::TokenUnavailable(_) | P::Userinfo(_)) => (
            StatusCode::BAD_GATEWAY,
            format!("{} did not complete the sign-in ({e}). Try again in a moment.", p.display_name),
        ),
        SignInError::Provider(P::Refused(_)) => (
            StatusCode::BAD_GATEWAY,
            format!("{} refused to complete the sign-in ({e}). Try again.", p.display_name),
        ),
        SignInError::Provider(P::InvalidIdToken(_)) => (
            StatusCode::BAD_GATEWAY,
            format!("{} sent a sign-in the gateway cannot trust: {e}. You have not been signed in.", p.display_name),
        ),
        SignInError::ProviderDenied(_) => (
            StatusCode::BAD_REQUEST,
            format!("{} did not sign you in ({e}).", p.display_name),
        ),
        SignInError::NotThisBrowser => (
            StatusCode::BAD_REQUEST,
            "This sign-in response does not belong to a sign-in started in this browser, or it has expired. Start again.".to_string(),
        ),
        // The provider contradicting itself is its fault, not the person's: not "you cannot".
        SignInError::Refused(
            r @ (super::claims::Refusal::UserinfoSubjectMismatch
            | super::claims::Refusal::NoSubject),
        ) => (
            StatusCode::BAD_GATEWAY,
            format!("{} sent a sign-in the gateway cannot trust: {r}. You have not been signed in.", p.display_name),
        ),
        SignInError::Refused(r) => (StatusCode::FORBIDDEN, format!("You cannot sign in here: {r}.")),
        SignInError::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "The gateway hit an internal error. Try again.".to_string(),
        ),
    };
    let result = match e {
        SignInError::Internal(_)
        | SignInError::Provider(P::Discovery(_) | P::TokenUnavailable(_) | P::Userinfo(_)) => {
            SignInResult::Error
        }
        _ => SignInResult::Failure,
    };
    metrics.sign_in(&p.id, result);
    match e {
        SignInError::Internal(inner) => {
            tracing::error!(provider = %p.id, kind = e.kind(), error = %format!("{inner:#}"), "OpenID Connect sign-in failed")
        }
        _ => {
            tracing::warn!(provider = %p.id, kind = e.kind(), reason = %e, "OpenID Connect sign-in failed")
        }
    }
    pages::provider_sign_in_failed(
        status,
        &p.display_name,
        &what,
        retry_url(continuation).as_deref(),
    )
}

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    pub request: String,
    #[serde(default)]
    pub return_to: String,
}

/// POST /.mcpgate/oidc/<id>/start
pub async fn start_handler(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<StartForm>,
) -> Response {
    let Some(p) = provider(&state, &id) else {
        return unknown_provider();
    };
    if !same_origin_post(&headers, &uri) {
        return pages::error(
            StatusCode::FORBIDDEN,
            "This sign-in form is not valid",
            "It was not sent from this gateway's sign-in page.",
        );
    }
    let t = now();
    let continuation = if !form.request.is_empty() {
        match state
            .store
            .pending(&opaque_token::hash(&form.request), t)
            .await
        {
            Ok(Some(_)) => Continuation::Authorization {
                request: form.request,
            },
            Ok(None) => {
                return pages::error(
                    StatusCode::BAD_REQUEST,
                    "This sign-in request is no longer valid",
                    "It has expired or was already completed.",
                )
            }
            Err(e) => return failure_page(&state.metrics, p, &SignInError::Internal(e), None),
        }
    } else {
        match validate_return_to(&form.return_to, &state.client_routes, &state.routes) {
            Ok((url, _)) => Continuation::ReturnTo { url },
            Err(reason) => {
                return pages::error(
                    StatusCode::BAD_REQUEST,
                    "This sign-in link is not valid",
                    &reason.to_string(),
                )
            }
        }
    };
    let cipher = match state.upstream.cipher() {
        Ok(c) => c,
        Err(e) => {
            return failure_page(
                &state.metrics,
                p,
                &SignInError::Internal(e),
                Some(&continuation),
            )
        }
    };
    // One value per browser: two sign-ins started in two tabs both stay bound to it.
    let browser =
        binding_value(&headers, state.issuer_https).unwrap_or_else(opaque_token::generate);
    match sign_in::start(
        &state.oidc,
        &state.store,
        cipher,
        p,
        &callback_url(&state, p),
        &browser,
        continuation.clone(),
        t,
    )
    .await
    {
        Ok(url) => {
            tracing::info!(target: "mcpgate::audit", event = "oidc_sign_in_started", provider = %p.id);
            let mut response = redirect(StatusCode::SEE_OTHER, &url);
            if let Some(c) = binding_cookie(&browser, state.issuer_https, SIGN_IN_LIFETIME_SECS) {
                response.headers_mut().insert(header::SET_COOKIE, c);
            }
            response
        }
        Err(e) => failure_page(&state.metrics, p, &e, Some(&continuation)),
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
}

/// GET /.mcpgate/oidc/<id>/callback
pub async fn callback_handler(
    State(state): State<SharedState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(p) = provider(&state, &id) else {
        return unknown_provider();
    };
    let cipher = match state.upstream.cipher() {
        Ok(c) => c,
        Err(e) => return failure_page(&state.metrics, p, &SignInError::Internal(e), None),
    };
    let t = now();
    let browser = binding_value(&headers, state.issuer_https);
    let callback = Callback {
        state: q.state.as_deref(),
        code: q.code.as_deref(),
        error: q.error.as_deref(),
        browser_value: browser.as_deref(),
    };
    let leeway = secs(state.config.authorization_server.leeway);
    let signed_in = match sign_in::finish(
        &state.oidc,
        &state.store,
        cipher,
        p,
        &callback_url(&state, p),
        &callback,
        t,
        leeway,
    )
    .await
    {
        Ok(s) => s,
        Err((e, continuation)) => {
            return failure_page(&state.metrics, p, &e, continuation.as_ref())
        }
    };
    let (cookie, session) = match start_session(&state, &signed_in.user, t).await {
        Ok(found) => found,
        Err(page) => return page.into_response(),
    };
    let keep_until = t + secs(state.config.authorization_server.refresh_token_lifetime)
        .max(secs(state.config.authorization_server.session_lifetime));
    let stored = StoredTokens {
        access_token: signed_in.tokens.access_token.clone(),
        refresh_token: signed_in.tokens.refresh_token.clone(),
        id_token: signed_in.tokens.id_token.clone(),
        access_token_expires_at: signed_in
            .tokens
            .expires_in
            .map(|s| t.saturating_add(i64::try_from(s).unwrap_or(i64::MAX / 2))),
    };
    if let Err(e) = provider_session::record(
        &state.store,
        cipher,
        &session.sid,
        p,
        &signed_in.subject,
        &stored,
        signed_in.id_token_expires_at,
        t,
        keep_until,
    )
    .await
    {
        return failure_page(
            &state.metrics,
            p,
            &SignInError::Internal(e),
            Some(&signed_in.continuation),
        );
    }
    state.metrics.sign_in(&p.id, SignInResult::Success);
    tracing::info!(
        target: "mcpgate::audit",
        event = "sign_in",
        provider = %p.id,
        user = %signed_in.user.username,
        sid = %session.sid,
        refresh_token = signed_in.tokens.refresh_token.is_some(),
    );
    let location = match &signed_in.continuation {
        Continuation::Authorization { request } => {
            format!("{}?request={request}", paths::CONSENT)
        }
        Continuation::ReturnTo { url } => url.clone(),
    };
    let mut response = redirect(StatusCode::SEE_OTHER, &location);
    response.headers_mut().append(header::SET_COOKIE, cookie);
    if let Some(clear) = binding_cookie("", state.issuer_https, 0) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}

fn sign_out_internal_error() -> Response {
    pages::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The gateway hit an internal error.",
    )
}

/// GET /.mcpgate/sign_out: asks first. Top-level GETs from other sites carry the (SameSite=Lax)
/// session cookie, so a GET only shows the question; the page's button posts it.
pub async fn sign_out_page_handler(
    State(state): State<SharedState>,
    headers: HeaderMap,
) -> Response {
    match session::current(&state.store, &headers, state.issuer_https, now()).await {
        Ok(Some((_, user))) => pages::sign_out_confirm(&user.username),
        Ok(None) => pages::signed_out(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "sign-out: cannot read the session");
            sign_out_internal_error()
        }
    }
}

/// POST /.mcpgate/sign_out (from the confirm page only: a post from another origin is refused)
pub async fn sign_out_handler(
    State(state): State<SharedState>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if !same_origin_post(&headers, &uri) {
        tracing::warn!("sign-out refused: the form was posted from another origin");
        return pages::error(
            StatusCode::FORBIDDEN,
            "This sign-out form is not valid",
            "It was not sent from this gateway's sign-out page. You are still signed in; to sign out, open the gateway's sign-out page yourself.",
        );
    }
    let t = now();
    let keep_until = t + secs(state.config.authorization_server.refresh_token_lifetime);
    let current = match session::current(&state.store, &headers, state.issuer_https, t).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "sign-out: cannot read the session");
            return sign_out_internal_error();
        }
    };
    let mut location = None;
    if let Some((s, user)) = current {
        // The provider's ID token (the logout hint) before the session's row is ended.
        let provider_side = state.store.oidc_session(&s.sid).await.ok().flatten();
        let hint = provider_side.as_ref().and_then(|row| {
            let cipher = state.upstream.cipher().ok()?;
            provider_session::open(cipher, row).ok()?.id_token
        });
        if let Err(e) =
            provider_session::end_session(&state.store, &s.sid, "signed out", t, keep_until).await
        {
            tracing::error!(error = %format!("{e:#}"), "sign-out: cannot end the session");
            return sign_out_internal_error();
        }
        tracing::info!(target: "mcpgate::audit", event = "sign_out", user = %user.username, sid = %s.sid);
        if let Some(p) = provider_side.and_then(|row| provider(&state, &row.provider).cloned()) {
            let back = format!("{}{}", state.issuer, paths::SIGNED_OUT);
            location = state.oidc.end_session_url(&p, hint.as_deref(), &back).await;
        }
    }
    let mut response = match location {
        Some(url) => redirect(StatusCode::SEE_OTHER, &url),
        None => pages::signed_out(),
    };
    if let Ok(clear) = HeaderValue::from_str(&session::set_cookie("", state.issuer_https, 0)) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}

/// GET /.mcpgate/signed_out
pub async fn signed_out_handler() -> Response {
    pages::signed_out()
}
