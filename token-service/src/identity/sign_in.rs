//! Signing a person in: the sign-in form and its POST, for an MCP client's pending authorization
//! (`?request=…`) or to come back to a client route or connect URL (`?return_to=…`). Both end in
//! [`start_session`], the seam where a signed-in user ([`UserClaims`]: username, email, name,
//! groups) becomes a browser session; another way of signing in (an OpenID Connect provider
//! under `identity/oidc/`) produces the same claims and calls it too.

use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use mcpgate_config::gateway::{ClientRoute, ServerRoute};
use mcpgate_config::paths;
use serde::Deserialize;

use crate::clients::Client;
use crate::clock::{now, secs};
use crate::http::error::PageError;
use crate::http::pages;
use crate::http::{redirect, request_host};
use crate::identity::oidc::sign_in_choices;
use crate::identity::session;
use crate::identity::users::{self, UserClaims};
use crate::oauth::authorize::{expired_request, redirect_host, RequestQuery};
use crate::oauth::opaque_token;
use crate::state::{AppState, SharedState};
use crate::store::{PendingAuthorization, Session};
use crate::telemetry::metrics::{Metrics, SignInResult, LOCAL_PROVIDER};

/// The sign-in page for a browser that should come back to `return_to` (a client route URL or
/// a server route's connect URL). Relative: the page is served on every gateway host.
pub fn sign_in_redirect(return_to: &str) -> String {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("return_to", return_to)
        .finish();
    format!("{}?{q}", paths::SIGN_IN)
}

/// (scheme, lower-case host without brackets, port) of an http(s) URL.
fn origin_of(url: &url::Url) -> Option<(String, String, u16)> {
    let scheme = url.scheme();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = match url.host()? {
        url::Host::Ipv6(ip) => ip.to_string(),
        h => h.to_string().to_ascii_lowercase(),
    };
    Some((scheme.to_string(), host, url.port_or_known_default()?))
}

/// Why a sign-in `return_to` was refused; the message is shown on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReturnToError {
    #[error("return_to is too long")]
    TooLong,
    #[error("return_to must not contain backslashes, spaces or control characters")]
    ForbiddenCharacters,
    #[error("return_to must be an absolute http(s) URL")]
    NotAbsoluteHttp,
    #[error("return_to must not contain '//' in its path")]
    DoubleSlash,
    #[error("return_to must not contain an encoded backslash, or an encoded slash in its path")]
    EncodedSeparator,
    #[error("return_to must not carry user information")]
    UserInformation,
    #[error("return_to is not a valid URL")]
    InvalidUrl,
    #[error("return_to is not under a client route of this gateway")]
    NotUnderClientRoute,
}

/// Checks a sign-in `return_to`: an absolute URL under a configured client route, or a server
/// route's connect URL (`<route>/.mcpgate/mcp/connect?…`), on that route's scheme, host and port;
/// no user information, no `//` before the query, no backslash, no control characters. Returns
/// the URL to redirect to (as parsed, so the browser goes exactly where was checked) and the
/// label to show on the page.
pub fn validate_return_to(
    return_to: &str,
    client_routes: &[ClientRoute],
    routes: &[ServerRoute],
) -> Result<(String, String), ReturnToError> {
    if return_to.len() > 4096 {
        return Err(ReturnToError::TooLong);
    }
    if return_to
        .chars()
        .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
    {
        return Err(ReturnToError::ForbiddenCharacters);
    }
    let lower = return_to.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return Err(ReturnToError::NotAbsoluteHttp);
    };
    let before_query = rest.split(['?', '#']).next().unwrap_or(rest);
    if before_query.contains("//") {
        return Err(ReturnToError::DoubleSlash);
    }
    if lower.contains("%5c") || before_query.contains("%2f") {
        return Err(ReturnToError::EncodedSeparator);
    }
    let authority = before_query.split('/').next().unwrap_or(before_query);
    if authority.contains('@') {
        return Err(ReturnToError::UserInformation);
    }
    let url = url::Url::parse(return_to).map_err(|_| ReturnToError::InvalidUrl)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ReturnToError::UserInformation);
    }
    let origin = origin_of(&url).ok_or(ReturnToError::NotAbsoluteHttp)?;
    let path = url.path();
    for route in routes {
        let Ok(connect) = url::Url::parse(&route.connect_url) else {
            continue;
        };
        if origin_of(&connect).as_ref() == Some(&origin) && connect.path() == path {
            return Ok((url.to_string(), route.name.clone()));
        }
    }
    for route in client_routes {
        let same_origin = (route.scheme.as_str(), route.host.as_str(), route.port)
            == (origin.0.as_str(), origin.1.as_str(), origin.2);
        if same_origin
            && paths::path_has_prefix(path, &route.path_prefix)
            && !paths::is_reserved(path)
            && !paths::is_gateway_path_under(path, &route.path_prefix)
        {
            return Ok((url.to_string(), route.name.clone()));
        }
    }
    Err(ReturnToError::NotUnderClientRoute)
}

impl From<ReturnToError> for PageError {
    fn from(reason: ReturnToError) -> Self {
        PageError::bad_request("This sign-in link is not valid", reason)
    }
}

/// A form POST must come from a page on the host it is posted to (login CSRF): a browser's
/// `Origin`, when sent, must name the request's host.
pub(crate) fn same_origin_post(headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = request_host(headers, uri);
    url::Url::parse(origin)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .is_some_and(|o| o.eq_ignore_ascii_case(&host))
}

/// GET /.mcpgate/sign_in?return_to=… — straight back when the browser is signed in already.
async fn sign_in_to_return_form(
    state: &SharedState,
    headers: &HeaderMap,
    return_to: &str,
) -> Result<Response, PageError> {
    let (target, label) = validate_return_to(return_to, &state.client_routes, &state.routes)?;
    if session::current(&state.store, headers, state.issuer_https, now())
        .await?
        .is_some()
    {
        return Ok(redirect(StatusCode::FOUND, &target));
    }
    Ok(pages::respond(
        StatusCode::OK,
        pages::sign_in_to_return(
            return_to,
            &label,
            "",
            false,
            &sign_in_choices(&state.config),
        ),
    ))
}

/// POST /.mcpgate/sign_in with `return_to`: sign in, then back to the client route.
async fn sign_in_to_return(
    state: &SharedState,
    headers: &HeaderMap,
    uri: &Uri,
    form: SignInForm,
) -> Result<Response, PageError> {
    let (target, label) = validate_return_to(&form.return_to, &state.client_routes, &state.routes)?;
    if !same_origin_post(headers, uri) {
        return Err(PageError::forbidden(
            "This sign-in form is not valid",
            "It was not sent from this gateway's sign-in page.",
        ));
    }
    let user = verify_user(
        &state.metrics,
        state.config.token_service.users_file.as_deref(),
        &form.username,
        form.password,
    )
    .await?;
    let Some(user) = user else {
        tracing::info!(target: "mcpgate::audit", event = "sign_in_failed", user = %form.username, route = %label);
        let page = pages::sign_in_to_return(
            &form.return_to,
            &label,
            &form.username,
            true,
            &sign_in_choices(&state.config),
        );
        return Ok(pages::respond(StatusCode::UNAUTHORIZED, page));
    };
    let t = now();
    let (cookie, session) = start_session(state, &user, t).await?;
    tracing::info!(target: "mcpgate::audit", event = "sign_in", user = %user.username, sid = %session.sid, route = %label);
    let mut response = redirect(StatusCode::SEE_OTHER, &target);
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Checks a username and password against the users file (off the async threads).
async fn verify_user(
    metrics: &Metrics,
    users_file: Option<&std::path::Path>,
    username: &str,
    password: String,
) -> Result<Option<UserClaims>, PageError> {
    // No users file: the built-in directory is off and nobody signs in with a password.
    let Some(users_file) = users_file.map(std::path::Path::to_path_buf) else {
        return Ok(None);
    };
    let username = username.to_string();
    let verified = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<UserClaims>> {
        let directory = users::load(&users_file)?;
        Ok(users::authenticate(&directory, &username, &password))
    })
    .await;
    metrics.sign_in(
        LOCAL_PROVIDER,
        match &verified {
            Ok(Ok(Some(_))) => SignInResult::Success,
            Ok(Ok(None)) => SignInResult::Failure,
            _ => SignInResult::Error,
        },
    );
    Ok(verified.map_err(anyhow::Error::from)??)
}

/// Creates a session for `user`; returns its `Set-Cookie` value and the record.
pub async fn start_session(
    state: &AppState,
    user: &UserClaims,
    t: i64,
) -> Result<(HeaderValue, Session), PageError> {
    let lifetime = secs(state.config.authorization_server.session_lifetime);
    let (secret, session) = session::create(&state.store, user, t, lifetime).await?;
    let cookie = HeaderValue::from_str(&session::set_cookie(&secret, state.issuer_https, lifetime))
        .map_err(anyhow::Error::from)?;
    Ok((cookie, session))
}

fn client_label(pending: &PendingAuthorization, client: Option<&Client>) -> String {
    client
        .and_then(|c| c.client_name.clone())
        .unwrap_or_else(|| redirect_host(&pending.redirect_uri))
}

/// GET /.mcpgate/sign_in?request=… (or ?return_to=…)
pub async fn sign_in_form_handler(
    State(state): State<SharedState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<RequestQuery>,
) -> Result<Response, PageError> {
    if q.request.is_empty() {
        if let Some(return_to) = q.return_to.as_deref().filter(|r| !r.is_empty()) {
            return sign_in_to_return_form(&state, &headers, return_to).await;
        }
    }
    let pending = state
        .store
        .pending(&opaque_token::hash(&q.request), now())
        .await?
        .ok_or_else(expired_request)?;
    let client = state.client(&pending.client_id).await.ok().flatten();
    Ok(pages::respond(
        StatusCode::OK,
        pages::sign_in(
            &q.request,
            &client_label(&pending, client.as_ref()),
            "",
            false,
            &sign_in_choices(&state.config),
        ),
    ))
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    pub request: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub return_to: String,
}

/// POST /.mcpgate/sign_in
pub async fn sign_in_handler(
    State(state): State<SharedState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<SignInForm>,
) -> Result<Response, PageError> {
    if form.request.is_empty() && !form.return_to.is_empty() {
        return sign_in_to_return(&state, &headers, &uri, form).await;
    }
    let t = now();
    let pending = state
        .store
        .pending(&opaque_token::hash(&form.request), t)
        .await?
        .ok_or_else(expired_request)?;
    let user = verify_user(
        &state.metrics,
        state.config.token_service.users_file.as_deref(),
        &form.username,
        form.password,
    )
    .await?;
    let Some(user) = user else {
        tracing::info!(target: "mcpgate::audit", event = "sign_in_failed", user = %form.username, client_id = %pending.client_id);
        let client = state.client(&pending.client_id).await.ok().flatten();
        let page = pages::sign_in(
            &form.request,
            &client_label(&pending, client.as_ref()),
            &form.username,
            true,
            &sign_in_choices(&state.config),
        );
        return Ok(pages::respond(StatusCode::UNAUTHORIZED, page));
    };
    let (cookie, session) = start_session(&state, &user, t).await?;
    tracing::info!(target: "mcpgate::audit", event = "sign_in", user = %user.username, sid = %session.sid, client_id = %pending.client_id);
    let mut response = redirect(
        StatusCode::SEE_OTHER,
        &format!("{}?request={}", paths::CONSENT, form.request),
    );
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}
