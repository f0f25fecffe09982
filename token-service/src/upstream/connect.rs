//! The browser's trip through a route's upstream OAuth provider: started by
//! `GET <server route>/.mcpgate/mcp/connect?redirect_url=…` or by an MCP client's authorization
//! (before its code is issued), finished at `GET /.mcpgate/upstream/callback`.
//!
//! The `state` sent to the provider is single use, lives ten minutes and is bound to the browser
//! session that started the trip; the PKCE verifier is stored encrypted beside it.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use mcpgate_config::gateway::{ClientRoute, ServerRoute, UpstreamOAuth2};
use mcpgate_config::paths;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::clock::now;
use crate::http::error::PageError;
use crate::http::params::Params;
use crate::http::request_host;
use crate::identity::session;
use crate::identity::sign_in;
use crate::identity::users::UserClaims;
use crate::oauth::authorize;
use crate::oauth::opaque_token;
use crate::oauth::resources;
use crate::state::SharedState;
use crate::store::{PendingAuthorization, Session, UpstreamState};
use crate::upstream::provider::ProviderError;
use crate::upstream::tokens;

/// How long a trip through the provider may take.
pub const STATE_LIFETIME_SECS: i64 = 600;

/// The redirect URI registered with providers: `<issuer>/.mcpgate/upstream/callback`.
pub fn callback_url(issuer: &str) -> String {
    format!("{issuer}{}", paths::UPSTREAM_CALLBACK)
}

// --- redirect_url ----------------------------------------------------------------------------

fn origin_of(url: &Url) -> Option<(String, String, u16)> {
    let host = match url.host()? {
        url::Host::Ipv6(ip) => ip.to_string(),
        h => h.to_string().to_ascii_lowercase(),
    };
    Some((url.scheme().to_string(), host, url.port_or_known_default()?))
}

/// Why a connect `redirect_url` was refused; the message is shown on the page and audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUrlError {
    #[error("redirect_url is required")]
    Missing,
    #[error("redirect_url is too long")]
    TooLong,
    #[error("redirect_url must not contain backslashes, spaces or control characters")]
    ForbiddenCharacters,
    #[error("redirect_url must be an absolute http(s) URL")]
    NotAbsoluteHttp,
    #[error("redirect_url must not contain a fragment")]
    Fragment,
    #[error("redirect_url must not carry user information")]
    UserInformation,
    #[error("redirect_url must not contain '//' in its path")]
    DoubleSlash,
    #[error("redirect_url must not contain encoded dots, slashes or backslashes in its path")]
    EncodedSeparator,
    #[error("redirect_url is not a valid URL")]
    InvalidUrl,
    #[error("redirect_url must name a host")]
    NoHost,
    #[error("redirect_url must use https (http only on a loopback host)")]
    InsecureHttp,
    #[error("redirect_url is not under a client route of this gateway")]
    NotUnderClientRoute,
}

/// Checks a connect `redirect_url`: an absolute URL under a configured client route (same
/// scheme, host and port, path under its prefix), https or http on a loopback host, without
/// user information, fragment, backslashes, control characters or encoded separators. Returns
/// the URL as parsed, so the browser goes exactly where was checked.
pub fn validate_redirect_url(
    raw: &str,
    client_routes: &[ClientRoute],
) -> Result<String, RedirectUrlError> {
    if raw.is_empty() {
        return Err(RedirectUrlError::Missing);
    }
    if raw.len() > 4096 {
        return Err(RedirectUrlError::TooLong);
    }
    if raw
        .chars()
        .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
    {
        return Err(RedirectUrlError::ForbiddenCharacters);
    }
    let lower = raw.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return Err(RedirectUrlError::NotAbsoluteHttp);
    };
    if raw.contains('#') {
        return Err(RedirectUrlError::Fragment);
    }
    let before_query = rest.split('?').next().unwrap_or(rest);
    let (authority, path) = before_query.split_once('/').unwrap_or((before_query, ""));
    if authority.contains('@') {
        return Err(RedirectUrlError::UserInformation);
    }
    if path.contains("//") {
        return Err(RedirectUrlError::DoubleSlash);
    }
    if ["%2e", "%2f", "%5c"].iter().any(|e| path.contains(e)) || lower.contains("%5c") {
        return Err(RedirectUrlError::EncodedSeparator);
    }
    let url = Url::parse(raw).map_err(|_| RedirectUrlError::InvalidUrl)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectUrlError::UserInformation);
    }
    let (scheme, host, port) = origin_of(&url).ok_or(RedirectUrlError::NoHost)?;
    match scheme.as_str() {
        "https" => {}
        "http" if mcpgate_config::gateway::is_loopback_host(&host) => {}
        "http" => return Err(RedirectUrlError::InsecureHttp),
        _ => return Err(RedirectUrlError::NotAbsoluteHttp),
    }
    let path = url.path();
    let allowed = client_routes.iter().any(|r| {
        (r.scheme.as_str(), r.host.as_str(), r.port) == (scheme.as_str(), host.as_str(), port)
            && paths::path_has_prefix(path, &r.path_prefix)
            && !paths::is_reserved(path)
            && !paths::is_gateway_path_under(path, &r.path_prefix)
    });
    if !allowed {
        return Err(RedirectUrlError::NotUnderClientRoute);
    }
    Ok(url.to_string())
}

// --- state rows ------------------------------------------------------------------------------

/// The pending MCP client authorization carried through the provider (it was consumed before
/// the trip, so it cannot also be completed elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CarriedAuthorization {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    code_challenge: String,
    resource: String,
    scope: Option<String>,
    created_at: i64,
    expires_at: i64,
}

impl CarriedAuthorization {
    fn from_pending(p: &PendingAuthorization) -> Self {
        Self {
            client_id: p.client_id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            state: p.state.clone(),
            code_challenge: p.code_challenge.clone(),
            resource: p.resource.clone(),
            scope: p.scope.clone(),
            created_at: p.created_at,
            expires_at: p.expires_at,
        }
    }

    fn into_pending(self, sid: &str) -> PendingAuthorization {
        PendingAuthorization {
            id_hash: String::new(),
            client_id: self.client_id,
            redirect_uri: self.redirect_uri,
            state: self.state,
            code_challenge: self.code_challenge,
            resource: self.resource,
            scope: self.scope,
            sid: Some(sid.to_string()),
            csrf_hash: None,
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }
}

/// Where the browser goes once the provider is connected.
enum After {
    Redirect(String),
    Authorization(CarriedAuthorization),
}

fn verifier_aad(state_hash: &str) -> Vec<u8> {
    format!("mcpgate-upstream-pkce-v1|{state_hash}").into_bytes()
}

// --- responses -------------------------------------------------------------------------------

/// Unlike [`crate::http::redirect`], which drops a `Location` that is not a header value and
/// sends no `Referrer-Policy`: these redirects leave the connect URL (its `redirect_url`) and the
/// callback URL (its `code` and `state`), so the next site must not see them as the referrer,
/// and a destination that cannot be sent is an internal error rather than a bare 302.
fn redirect(status: StatusCode, location: &str) -> Result<Response, PageError> {
    let value = HeaderValue::from_str(location)
        .map_err(|_| anyhow::anyhow!("redirect location is not a header value"))?;
    let mut response = status.into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, value);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

impl From<RedirectUrlError> for PageError {
    fn from(reason: RedirectUrlError) -> Self {
        PageError::bad_request("This connect link is not valid", reason)
    }
}

fn provider_error_page(route: &ServerRoute, e: &ProviderError) -> PageError {
    let (status, title) = match e {
        ProviderError::Rejected(_) => (
            StatusCode::BAD_REQUEST,
            format!("{} did not accept the sign-in", route.name),
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            format!(
                "The sign-in provider of {} could not be reached",
                route.name
            ),
        ),
    };
    PageError::page(status, title, e)
}

// --- starting the trip -----------------------------------------------------------------------

/// Sends the browser to the provider: records the state and answers with the redirect (or an
/// error page when the provider cannot be found).
async fn begin(
    state: &SharedState,
    route: &ServerRoute,
    config: &UpstreamOAuth2,
    session: &Session,
    username: &str,
    after: After,
    status: StatusCode,
) -> Result<Response, PageError> {
    let oauth = &state.upstream.oauth;
    let endpoints = oauth.endpoints(route, config).await.map_err(|e| {
        tracing::warn!(route = %route.resource, error = %e, "upstream provider unavailable");
        provider_error_page(route, &e)
    })?;
    let cipher = state.upstream.cipher()?;
    let state_value = opaque_token::generate();
    let state_hash = opaque_token::hash(&state_value);
    let verifier = opaque_token::generate();
    let (verifier_ciphertext, verifier_nonce) =
        cipher.seal(&verifier_aad(&state_hash), verifier.as_bytes())?;
    let (redirect_url, pending) = match after {
        After::Redirect(url) => (Some(url), None),
        After::Authorization(p) => (
            None,
            Some(serde_json::to_string(&p).map_err(anyhow::Error::from)?),
        ),
    };
    let row = UpstreamState {
        sid: session.sid.clone(),
        username: username.to_string(),
        route: route.resource.clone(),
        verifier_ciphertext,
        verifier_nonce,
        redirect_url,
        pending,
    };
    let t = now();
    let expires_at = t + STATE_LIFETIME_SECS;
    state
        .store
        .insert_upstream_state(&state_hash, &row, t, expires_at)
        .await?;
    let url = oauth.authorization_url(
        config,
        &endpoints,
        &callback_url(&state.issuer),
        &state_value,
        &verifier,
    )?;
    tracing::info!(target: "mcpgate::audit", event = "upstream_connect_started", user = %username, route = %route.resource);
    redirect(status, &url)
}

/// During an MCP client's authorization, after sign-in and consent: the provider trip when the
/// route needs an upstream token the user does not have (`Some(response)`), else `None` and the
/// code is issued right away.
pub(crate) async fn upstream_hop(
    state: &SharedState,
    pending: &PendingAuthorization,
    session: &Session,
    user: &UserClaims,
    status: StatusCode,
) -> Option<Response> {
    let route = state
        .routes
        .iter()
        .find(|r| r.resource == pending.resource)?;
    let config = route.upstream_oauth2.as_ref()?;
    let answer = match tokens::status(state, &user.username, route).await {
        Ok(Some(_)) => return None,
        Ok(None) => {
            begin(
                state,
                route,
                config,
                session,
                &user.username,
                After::Authorization(CarriedAuthorization::from_pending(pending)),
                status,
            )
            .await
        }
        Err(e) => Err(e.into()),
    };
    Some(answer.unwrap_or_else(IntoResponse::into_response))
}

/// Any request no other route matched: `<server route>/.mcpgate/mcp/connect` (Envoy passes the
/// route's prefix through), or 404.
pub async fn fallback_handler(
    State(state): State<SharedState>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let Some(prefix) = uri.path().strip_suffix(paths::MCP_CONNECT_SUFFIX) else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let host = request_host(&headers, &uri);
    let Some(route) = state
        .routes
        .iter()
        .find(|r| r.path_prefix == prefix && resources::host_matches(r, &host))
    else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    if method != Method::GET {
        return Ok(StatusCode::METHOD_NOT_ALLOWED.into_response());
    }
    connect(&state, &headers, route, query.as_deref().unwrap_or("")).await
}

/// GET <server route>/.mcpgate/mcp/connect?redirect_url=…
async fn connect(
    state: &SharedState,
    headers: &HeaderMap,
    route: &ServerRoute,
    query: &str,
) -> Result<Response, PageError> {
    const INVALID: &str = "This connect link is not valid";
    let params = Params::parse(query);
    let raw = params
        .single("redirect_url")
        .map_err(|e| PageError::bad_request(INVALID, e))?
        .ok_or_else(|| PageError::bad_request(INVALID, "redirect_url is required."))?;
    let redirect_url = validate_redirect_url(raw, &state.client_routes).inspect_err(|reason| {
        tracing::info!(target: "mcpgate::audit", event = "upstream_connect_refused", route = %route.resource, reason = %reason);
    })?;
    let t = now();
    let (session, user) =
        match session::current(&state.store, headers, state.issuer_https, t).await? {
            Some(found) => found,
            None => {
                let back = format!(
                    "{}?{}",
                    route.connect_url,
                    url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("redirect_url", &redirect_url)
                        .finish()
                );
                return redirect(StatusCode::FOUND, &sign_in::sign_in_redirect(&back));
            }
        };
    // Only users the route's policy lets in may connect its provider.
    let identity = crate::internal_api::session_identity(state, &user, &session.sid);
    let allowed =
        crate::internal_api::allowed_routes(state, &identity).any(|r| r.resource == route.resource);
    if !allowed {
        tracing::info!(target: "mcpgate::audit", event = "upstream_connect_refused", user = %user.username, route = %route.resource, reason = "policy");
        return Err(PageError::forbidden(
            "You cannot use this MCP server",
            "The gateway's policy for this server does not include your account, so there is \
             nothing to connect.",
        ));
    }
    let Some(config) = &route.upstream_oauth2 else {
        return redirect(StatusCode::FOUND, &redirect_url);
    };
    begin(
        state,
        route,
        config,
        &session,
        &user.username,
        After::Redirect(redirect_url),
        StatusCode::FOUND,
    )
    .await
}

// --- the callback ----------------------------------------------------------------------------

/// A provider's `error` code or description, kept short and printable for the page.
fn provider_text(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// GET /.mcpgate/upstream/callback?code&state (or ?error&state)
pub async fn callback_handler(
    State(state): State<SharedState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let params = Params::parse(query.as_deref().unwrap_or(""));
    const INVALID: &str = "This sign-in response is not valid";
    let no_longer_valid = || {
        PageError::bad_request(
            "This sign-in is no longer valid",
            "It has expired or was already completed. Start again from your application.",
        )
    };
    let Ok(Some(state_value)) = params.single("state") else {
        return Err(PageError::bad_request(
            INVALID,
            "It carries no state (or more than one).",
        ));
    };
    let t = now();
    let state_hash = opaque_token::hash(state_value);
    let row = state
        .store
        .upstream_state(&state_hash, t)
        .await?
        .ok_or_else(no_longer_valid)?;
    let (session, user) = match session::current(&state.store, &headers, state.issuer_https, t)
        .await?
    {
        Some((session, user)) if session.sid == row.sid && user.username == row.username => {
            (session, user)
        }
        _ => {
            tracing::warn!(target: "mcpgate::audit", event = "upstream_callback_refused", user = %row.username, route = %row.route, reason = "session mismatch");
            return Err(PageError::bad_request(
                INVALID,
                "It was not started in this browser session. Start again from your application.",
            ));
        }
    };
    if !state
        .store
        .consume_upstream_state(&state_hash, &session.sid, t)
        .await?
    {
        return Err(no_longer_valid());
    }
    let Some(route) = state.routes.iter().find(|r| r.resource == row.route) else {
        return Err(PageError::bad_request(
            INVALID,
            "The MCP server it was for is no longer configured.",
        ));
    };
    let Some(config) = &route.upstream_oauth2 else {
        return Err(PageError::bad_request(
            INVALID,
            "The MCP server it was for no longer uses a sign-in provider.",
        ));
    };
    if let Ok(Some(error)) = params.single("error") {
        let error = provider_text(error, 64);
        let description = params
            .single("error_description")
            .ok()
            .flatten()
            .map(|d| provider_text(d, 300));
        tracing::info!(target: "mcpgate::audit", event = "upstream_connect_failed", user = %user.username, route = %route.resource, error = %error);
        let message = match description {
            Some(d) => format!("The provider answered {error}: {d}"),
            None => format!("The provider answered {error}."),
        };
        return Err(PageError::page(
            StatusCode::BAD_REQUEST,
            format!("{} was not connected", route.name),
            message,
        ));
    }
    let Ok(Some(code)) = params.single("code") else {
        return Err(PageError::bad_request(
            INVALID,
            "It carries no authorization code.",
        ));
    };
    let verifier = state.upstream.cipher()?.open(
        &verifier_aad(&state_hash),
        &row.verifier_ciphertext,
        &row.verifier_nonce,
    )?;
    let verifier = String::from_utf8_lossy(&verifier).into_owned();
    let oauth = &state.upstream.oauth;
    let exchanged = match oauth.endpoints(route, config).await {
        Ok(endpoints) => {
            oauth
                .exchange_code(
                    config,
                    &endpoints,
                    &callback_url(&state.issuer),
                    code,
                    &verifier,
                )
                .await
        }
        Err(e) => Err(e),
    };
    let tokens = exchanged.map_err(|e| {
        tracing::warn!(target: "mcpgate::audit", event = "upstream_connect_failed", user = %user.username, route = %route.resource, reason = %e);
        provider_error_page(route, &e)
    })?;
    let t = now();
    tokens::store(&state, &user.username, route, &tokens, t).await?;
    tracing::info!(target: "mcpgate::audit", event = "upstream_connect", user = %user.username, route = %route.resource, expires_in = ?tokens.expires_in, refreshable = tokens.refresh_token.is_some());
    match (row.pending, row.redirect_url) {
        (Some(pending), _) => {
            let carried = serde_json::from_str::<CarriedAuthorization>(&pending)
                .map_err(anyhow::Error::from)?;
            let pending = carried.into_pending(&session.sid);
            Ok(
                authorize::issue_code(&state, &pending, &session, &user, t, StatusCode::SEE_OTHER)
                    .await,
            )
        }
        (None, Some(url)) => redirect(StatusCode::SEE_OTHER, &url),
        (None, None) => Err(anyhow::anyhow!("upstream state has no destination").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Built by hand: the loader keeps client routes on the issuer's host, but the check must
    /// not rely on that.
    fn client_routes() -> Vec<ClientRoute> {
        let route = |index: usize, scheme: &str, host: &str, port: u16, prefix: &str| {
            let authority = if port == 80 || port == 443 {
                host.to_string()
            } else {
                format!("{host}:{port}")
            };
            ClientRoute {
                index,
                name: format!("app{index}"),
                description: None,
                scheme: scheme.into(),
                host: host.into(),
                port,
                url: format!("{scheme}://{authority}{prefix}"),
                authority,
                path_prefix: prefix.into(),
                upstream: mcpgate_config::gateway::Upstream {
                    scheme: "http".into(),
                    host: "127.0.0.1".into(),
                    port: 18110,
                    path: String::new(),
                },
            }
        };
        vec![
            route(1, "http", "localhost", 18080, "/app"),
            route(2, "https", "apps.example.com", 443, "/chat"),
            route(3, "http", "apps.example.com", 80, "/plain"),
        ]
    }

    #[test]
    fn redirect_urls_under_client_routes_are_accepted() {
        let routes = client_routes();
        for (ok, expected) in [
            ("http://localhost:18080/app", "http://localhost:18080/app"),
            ("http://localhost:18080/app/", "http://localhost:18080/app/"),
            (
                "http://localhost:18080/app/settings?tab=mcp&x=1",
                "http://localhost:18080/app/settings?tab=mcp&x=1",
            ),
            (
                "HTTP://LOCALHOST:18080/app/x",
                "http://localhost:18080/app/x",
            ),
            (
                "https://apps.example.com/chat/c/1",
                "https://apps.example.com/chat/c/1",
            ),
            (
                "https://apps.example.com:443/chat",
                "https://apps.example.com/chat",
            ),
        ] {
            assert_eq!(
                validate_redirect_url(ok, &routes).as_deref(),
                Ok(expected),
                "{ok}"
            );
        }
    }

    #[test]
    fn open_redirect_tricks_are_refused() {
        let routes = client_routes();
        for bad in [
            "",
            "//evil.example/app",
            "///evil.example/app",
            "/app",
            "javascript:alert(1)",
            "JavaScript://localhost:18080/app%0aalert(1)",
            "data:text/html,<script>alert(1)</script>",
            "http://localhost:18080@evil.example/app",
            "http://good@evil.example/app",
            "http://localhost:18080:x@evil.example/app",
            "http://user:pass@localhost:18080/app",
            "http://evil.example/app",
            "http://localhost:18081/app",
            "https://localhost:18080/app",
            "http://localhost:18080/apple",
            "http://localhost:18080/",
            "http://localhost:18080/everything",
            "http://localhost:18080/app/../everything",
            "http://localhost:18080/app/%2e%2e/everything",
            "http://localhost:18080/app/%2E%2E/everything",
            "http://localhost:18080/app%2f..%2feverything",
            "http://localhost:18080/app/.mcpgate/mcp/connect",
            "http://localhost:18080//evil.example/app",
            "http://localhost:18080/app//evil.example",
            "http://localhost:18080\\@evil.example/app",
            "http:\\\\evil.example\\app",
            "http:/\\evil.example/app",
            "http://localhost:18080/app\\..\\x",
            "http://localhost:18080/app%5c..",
            "http://localhost:18080/app#@evil.example",
            "http://localhost:18080/app#",
            " http://localhost:18080/app",
            "http://localhost:18080/app\n",
            "http://localhost:18080/app\t",
            "http://localhost:18080/app x",
            "http://apps.example.com/plain",
            "http://apps.example.com/chat",
            "https://apps.example.com.evil.example/chat",
            "https://apps.example.com./chat",
            "ftp://localhost:18080/app",
        ] {
            assert!(
                validate_redirect_url(bad, &routes).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn carried_authorization_round_trips() {
        let pending = PendingAuthorization {
            id_hash: "h".into(),
            client_id: "c".into(),
            redirect_uri: "http://127.0.0.1:9/cb".into(),
            state: Some("s".into()),
            code_challenge: "ch".into(),
            resource: "http://localhost:18080/github".into(),
            scope: None,
            sid: Some("sid".into()),
            csrf_hash: Some("x".into()),
            created_at: 1,
            expires_at: 2,
        };
        let json =
            serde_json::to_string(&CarriedAuthorization::from_pending(&pending)).expect("json");
        let back: CarriedAuthorization = serde_json::from_str(&json).expect("parse");
        let restored = back.into_pending("sid");
        assert_eq!(restored.client_id, "c");
        assert_eq!(restored.state.as_deref(), Some("s"));
        assert_eq!(restored.resource, pending.resource);
        assert_eq!(restored.csrf_hash, None);
    }
}
