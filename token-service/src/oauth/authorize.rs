//! The authorization endpoint and the browser steps behind it: validating the request (plain
//! functions), consent, and issuing the authorization code. Signing in is
//! `crate::identity::sign_in`.

use axum::extract::{Form, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use mcpgate_config::gateway::ServerRoute;
use mcpgate_config::paths;
use serde::Deserialize;

use crate::clients::metadata::valid_scope;
use crate::clients::ClientLookupError;
use crate::clients::{Client, ClientKind};
use crate::clock::{now, secs};
use crate::http::error::{internal_error_page, PageError};
use crate::http::pages;
use crate::http::params::{Params, RepeatedParam};
use crate::http::{redirect, request_host};
use crate::identity::session;
use crate::identity::users::UserClaims;
use crate::oauth::opaque_token;
use crate::oauth::pkce;
use crate::oauth::resources;
use crate::state::{AppState, SharedState};
use crate::store::{AuthorizationCode, PendingAuthorization, Session};

/// How long a started authorization may wait for sign-in and consent.
pub const PENDING_LIFETIME_SECS: i64 = 600;

/// A validated authorization request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub state: Option<String>,
    pub code_challenge: String,
    pub resource: String,
    pub scope: Option<String>,
}

/// An error reported to the client at its (verified) redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectError {
    pub error: &'static str,
    pub description: String,
    pub state: Option<String>,
}

/// What makes an authorization request unusable before its redirect URI is trusted: shown on a
/// page, never sent to the redirect URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Repeated(#[from] RepeatedParam),
    #[error("client_id is required")]
    ClientIdMissing,
    #[error("redirect_uri is required")]
    RedirectUriMissing,
}

/// Why a requested scope is refused (an `invalid_scope`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope must be space-separated printable ASCII scope tokens")]
pub struct ScopeError;

/// Step one: `client_id` and `redirect_uri`, which must be trustworthy before anything is
/// reported by redirect. Errors are shown on a page.
pub fn client_and_redirect_uri(params: &Params) -> Result<(&str, &str), RequestError> {
    let client_id = params
        .single("client_id")?
        .ok_or(RequestError::ClientIdMissing)?;
    let redirect_uri = params
        .single("redirect_uri")?
        .ok_or(RequestError::RedirectUriMissing)?;
    Ok((client_id, redirect_uri))
}

/// Step two: the rest of the request, once client and redirect URI are verified.
pub fn validate(
    params: &Params,
    routes: &[ServerRoute],
    host: &str,
) -> Result<AuthorizationRequest, RedirectError> {
    let state = params.single("state").ok().flatten().map(str::to_string);
    let fail = |error: &'static str, description: &dyn std::fmt::Display| RedirectError {
        error,
        description: description.to_string(),
        state: state.clone(),
    };
    let single = |name: &str| params.single(name).map_err(|e| fail("invalid_request", &e));
    match single("response_type")? {
        Some("code") => {}
        None => {
            return Err(fail(
                "invalid_request",
                &"response_type is required and must be code",
            ))
        }
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                &"response_type must be code",
            ))
        }
    }
    single("state")?;
    let code_challenge =
        pkce::validate_challenge(single("code_challenge")?, single("code_challenge_method")?)
            .map_err(|e| fail("invalid_request", &e))?;
    let resources = params.all("resource");
    if resources.len() > 1 {
        return Err(fail(
            "invalid_target",
            &"only one resource per authorization request is supported",
        ));
    }
    let route = resources::select(routes, resources.first().copied(), host)
        .map_err(|e| fail("invalid_target", &e))?;
    let scope = grant_scope(single("scope")?, route).map_err(|e| fail("invalid_scope", &e))?;
    Ok(AuthorizationRequest {
        state: state.clone(),
        code_challenge,
        resource: route.resource.clone(),
        scope,
    })
}

/// The scope granted for a route: the requested scopes the route offers (all of them when none
/// were requested). Scopes a route does not define are dropped, never granted.
pub fn grant_scope(
    requested: Option<&str>,
    route: &ServerRoute,
) -> Result<Option<String>, ScopeError> {
    if let Some(requested) = requested {
        if !valid_scope(requested) {
            return Err(ScopeError);
        }
    }
    let granted: Vec<&str> = match requested {
        None => route.scopes.iter().map(String::as_str).collect(),
        Some(requested) => {
            let asked: Vec<&str> = requested.split(' ').collect();
            route
                .scopes
                .iter()
                .map(String::as_str)
                .filter(|s| asked.contains(s))
                .collect()
        }
    };
    Ok((!granted.is_empty()).then(|| granted.join(" ")))
}

/// The redirect URI with parameters appended to its query. Textual: the URI must reach the
/// client exactly as registered (it has no fragment; registration refused those).
pub fn redirect_url(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{sep}{}", query.finish())
}

/// The host part of a redirect URI, shown prominently on the consent page.
pub fn redirect_host(redirect_uri: &str) -> String {
    url::Url::parse(redirect_uri)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_else(|| redirect_uri.to_string())
}

fn error_redirect(
    state: &SharedState,
    redirect_uri: &str,
    e: &RedirectError,
    status: StatusCode,
) -> Response {
    let mut params = vec![
        ("error", e.error),
        ("error_description", e.description.as_str()),
    ];
    if let Some(s) = &e.state {
        params.push(("state", s));
    }
    params.push(("iss", &state.issuer));
    redirect(status, &redirect_url(redirect_uri, &params))
}

pub(crate) fn expired_request() -> PageError {
    PageError::bad_request(
        "This sign-in request is no longer valid",
        "It has expired or was already completed.",
    )
}

async fn client_for_page(state: &AppState, client_id: &str) -> Result<Client, PageError> {
    match state.client(client_id).await {
        Ok(Some(client)) => Ok(client),
        Ok(None) => Err(PageError::bad_request(
            "Unknown application",
            "client_id is not registered with this gateway.",
        )),
        Err(ClientLookupError::Document(e)) => {
            tracing::info!(target: "mcpgate::audit", event = "client_metadata_document_rejected", client_id, reason = %e);
            Err(PageError::bad_request(
                "The application could not be verified",
                e,
            ))
        }
        Err(ClientLookupError::Internal(e)) => Err(PageError::Internal(e)),
    }
}

/// GET /.mcpgate/oauth/authorize
pub async fn authorize_handler(
    State(state): State<SharedState>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let params = Params::parse(query.as_deref().unwrap_or(""));
    let (client_id, redirect_uri) = client_and_redirect_uri(&params)
        .map_err(|e| PageError::bad_request("Invalid authorization request", e))?;
    let client = client_for_page(&state, client_id).await?;
    if !client.redirect_uri_allowed(redirect_uri) {
        return Err(PageError::bad_request(
            "Invalid authorization request",
            "redirect_uri is not registered for this client (it must match a registered URI exactly).",
        ));
    }
    let request = match validate(&params, &state.routes, &request_host(&headers, &uri)) {
        Ok(request) => request,
        Err(e) => return Ok(error_redirect(&state, redirect_uri, &e, StatusCode::FOUND)),
    };
    let id = opaque_token::generate();
    let t = now();
    let pending = PendingAuthorization {
        id_hash: opaque_token::hash(&id),
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        state: request.state,
        code_challenge: request.code_challenge,
        resource: request.resource,
        scope: request.scope,
        sid: None,
        csrf_hash: None,
        created_at: t,
        expires_at: t + PENDING_LIFETIME_SECS,
    };
    state.store.insert_pending(&pending).await?;
    let signed_in = session::current(&state.store, &headers, state.issuer_https, t)
        .await?
        .is_some();
    let next = if signed_in {
        paths::CONSENT
    } else {
        paths::SIGN_IN
    };
    Ok(redirect(StatusCode::FOUND, &format!("{next}?request={id}")))
}

#[derive(Debug, Deserialize)]
pub struct RequestQuery {
    #[serde(default)]
    pub request: String,
    /// Sign-in without an authorization request: where to send the browser afterwards.
    #[serde(default)]
    pub return_to: Option<String>,
}

/// GET /.mcpgate/consent?request=… — the consent page, or straight to the code for
/// pre-registered clients.
pub async fn consent_page_handler(
    State(state): State<SharedState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<RequestQuery>,
) -> Result<Response, PageError> {
    let t = now();
    let id_hash = opaque_token::hash(&q.request);
    let (pending, session, user) = pending_with_session(&state, &headers, &q.request, t).await?;
    let client = client_for_page(&state, &pending.client_id).await?;
    if !client.needs_consent() {
        if !state.store.take_pending(&id_hash, t).await? {
            return Err(expired_request());
        }
        return Ok(approve(&state, &pending, &session, &user, t, StatusCode::FOUND).await);
    }
    let csrf = opaque_token::generate();
    state
        .store
        .bind_pending_to_consent(&id_hash, &session.sid, &opaque_token::hash(&csrf))
        .await?;
    let route_name = state
        .routes
        .iter()
        .find(|r| r.resource == pending.resource)
        .map_or(pending.resource.as_str(), |r| r.name.as_str());
    let view = pages::ConsentView {
        request: &q.request,
        csrf: &csrf,
        client_name: client.client_name.as_deref(),
        client_id: &client.client_id,
        metadata_document: client.kind == ClientKind::MetadataDocument,
        redirect_host: &redirect_host(&pending.redirect_uri),
        redirect_uri: &pending.redirect_uri,
        route_name,
        resource: &pending.resource,
        scope: pending.scope.as_deref(),
        username: &user.username,
    };
    Ok(pages::respond(StatusCode::OK, pages::consent(&view)))
}

/// The pending authorization named by a sign-in/consent page and the browser's session; without
/// a session the browser is sent to sign in first.
async fn pending_with_session(
    state: &AppState,
    headers: &HeaderMap,
    request: &str,
    t: i64,
) -> Result<(PendingAuthorization, Session, UserClaims), PageError> {
    let Some(pending) = state.store.pending(&opaque_token::hash(request), t).await? else {
        return Err(expired_request());
    };
    match session::current(&state.store, headers, state.issuer_https, t).await? {
        Some((session, user)) => Ok((pending, session, user)),
        None => Err(PageError::Redirect {
            status: StatusCode::SEE_OTHER,
            location: format!("{}?request={}", paths::SIGN_IN, request),
        }),
    }
}

#[derive(Deserialize)]
pub struct ConsentForm {
    #[serde(default)]
    pub request: String,
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub decision: String,
}

/// POST /.mcpgate/consent
pub async fn consent_handler(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Form(form): Form<ConsentForm>,
) -> Result<Response, PageError> {
    let t = now();
    let id_hash = opaque_token::hash(&form.request);
    let (pending, session, user) = pending_with_session(&state, &headers, &form.request, t).await?;
    let bound = pending.sid.as_deref() == Some(session.sid.as_str())
        && pending
            .csrf_hash
            .as_deref()
            .is_some_and(|h| opaque_token::matches(&form.csrf, h));
    if !bound {
        return Err(PageError::forbidden(
            "This consent form is not valid",
            "It was not issued to this browser session. Start again from your application.",
        ));
    }
    if !state.store.take_pending(&id_hash, t).await? {
        return Err(expired_request());
    }
    match form.decision.as_str() {
        "approve" => {
            state
                .store
                .record_consent(
                    &user.username,
                    &pending.client_id,
                    &pending.resource,
                    pending.scope.as_deref(),
                    t,
                )
                .await?;
            Ok(approve(&state, &pending, &session, &user, t, StatusCode::SEE_OTHER).await)
        }
        _ => {
            tracing::info!(target: "mcpgate::audit", event = "consent_denied", user = %user.username, client_id = %pending.client_id, route = %pending.resource);
            let e = RedirectError {
                error: "access_denied",
                description: "the user denied access".into(),
                state: pending.state.clone(),
            };
            Ok(error_redirect(
                &state,
                &pending.redirect_uri,
                &e,
                StatusCode::SEE_OTHER,
            ))
        }
    }
}

/// Completes a consumed, approved pending request: through the route's upstream provider first
/// when the user has no upstream token for it (the callback then issues the code), else the code.
async fn approve(
    state: &SharedState,
    pending: &PendingAuthorization,
    session: &Session,
    user: &UserClaims,
    t: i64,
    status: StatusCode,
) -> Response {
    if let Some(to_provider) =
        crate::upstream::connect::upstream_hop(state, pending, session, user, status).await
    {
        return to_provider;
    }
    issue_code(state, pending, session, user, t, status).await
}

/// Issues the authorization code for a consumed pending request and redirects to the client.
pub(crate) async fn issue_code(
    state: &SharedState,
    pending: &PendingAuthorization,
    session: &Session,
    user: &UserClaims,
    t: i64,
    status: StatusCode,
) -> Response {
    let code = opaque_token::generate();
    let claims = match serde_json::to_string(user) {
        Ok(c) => c,
        Err(e) => return internal_error_page(&e.into()),
    };
    let record = AuthorizationCode {
        code_hash: opaque_token::hash(&code),
        client_id: pending.client_id.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        code_challenge: pending.code_challenge.clone(),
        resource: pending.resource.clone(),
        username: user.username.clone(),
        sid: session.sid.clone(),
        claims,
        scope: pending.scope.clone(),
        family_id: opaque_token::generate(),
        created_at: t,
        expires_at: t + secs(
            state
                .config
                .authorization_server
                .authorization_code_lifetime,
        ),
        used_at: None,
    };
    if let Err(e) = state.store.insert_code(&record).await {
        return internal_error_page(&e);
    }
    tracing::info!(target: "mcpgate::audit", event = "code_issued", user = %user.username, client_id = %pending.client_id, route = %pending.resource);
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = &pending.state {
        params.push(("state", s));
    }
    params.push(("iss", &state.issuer));
    redirect(status, &redirect_url(&pending.redirect_uri, &params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::resources::tests::routes;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn params(extra: &str) -> Params {
        Params::parse(&format!(
            "client_id=c&redirect_uri=https%3A%2F%2Fa.example%2Fcb&response_type=code&code_challenge={CHALLENGE}&code_challenge_method=S256&state=xyz{extra}"
        ))
    }

    #[test]
    fn valid_request_with_resource() {
        let r = validate(
            &params("&resource=http%3A%2F%2FLocalhost%3A18080%2Feverything%2F"),
            &routes(),
            "localhost:18080",
        )
        .expect("valid");
        assert_eq!(r.resource, "http://localhost:18080/everything");
        assert_eq!(r.scope.as_deref(), Some("mcp:tools mcp:read"));
        assert_eq!(r.state.as_deref(), Some("xyz"));
    }

    #[test]
    fn pkce_is_required_and_s256_only() {
        let no_challenge =
            Params::parse("response_type=code&state=s&resource=http://localhost:18080/everything");
        let e = validate(&no_challenge, &routes(), "localhost:18080").unwrap_err();
        assert_eq!(
            (e.error, e.state.as_deref()),
            ("invalid_request", Some("s"))
        );
        let plain = Params::parse(&format!(
            "response_type=code&code_challenge={CHALLENGE}&code_challenge_method=plain"
        ));
        let e = validate(&plain, &routes(), "localhost:18080").unwrap_err();
        assert_eq!(e.error, "invalid_request");
        assert!(e.description.contains("plain"));
        let missing_method =
            Params::parse(&format!("response_type=code&code_challenge={CHALLENGE}"));
        assert_eq!(
            validate(&missing_method, &routes(), "localhost:18080")
                .unwrap_err()
                .error,
            "invalid_request"
        );
    }

    #[test]
    fn response_type_and_resource_rules() {
        let p = Params::parse(&format!(
            "response_type=token&code_challenge={CHALLENGE}&code_challenge_method=S256"
        ));
        assert_eq!(
            validate(&p, &routes(), "localhost:18080")
                .unwrap_err()
                .error,
            "unsupported_response_type"
        );
        let e = validate(
            &params("&resource=http://localhost:18080/nope"),
            &routes(),
            "localhost:18080",
        )
        .unwrap_err();
        assert_eq!(e.error, "invalid_target");
        let e = validate(&params(""), &routes(), "solo.example.com").unwrap_err();
        assert_eq!(e.error, "invalid_target");
        assert!(e.description.contains("resource is required"));
        let r = validate(&params(""), &routes(), "localhost:18080").expect("default resource");
        assert_eq!(r.resource, "http://localhost:18080/everything");
        let two = params(
            "&resource=http://localhost:18080/everything&resource=http://localhost:18080/second",
        );
        assert_eq!(
            validate(&two, &routes(), "localhost:18080")
                .unwrap_err()
                .error,
            "invalid_target"
        );
        let dup_state = params("&state=again");
        let e = validate(&dup_state, &routes(), "localhost:18080").unwrap_err();
        assert_eq!((e.error, e.state), ("invalid_request", None));
    }

    #[test]
    fn scopes_are_narrowed_to_the_route() {
        let routes = routes();
        assert_eq!(
            grant_scope(Some("mcp:tools offline_access"), &routes[0]),
            Ok(Some("mcp:tools".into()))
        );
        assert_eq!(grant_scope(Some("other"), &routes[0]), Ok(None));
        assert_eq!(grant_scope(None, &routes[1]), Ok(None));
        assert!(grant_scope(Some("a\"b"), &routes[0]).is_err());
    }

    #[test]
    fn client_and_redirect_are_checked_first() {
        assert!(client_and_redirect_uri(&Params::parse("redirect_uri=x"))
            .unwrap_err()
            .to_string()
            .contains("client_id"));
        assert!(client_and_redirect_uri(&Params::parse("client_id=a"))
            .unwrap_err()
            .to_string()
            .contains("redirect_uri"));
        assert!(
            client_and_redirect_uri(&Params::parse("client_id=a&client_id=b&redirect_uri=x"))
                .is_err()
        );
    }

    #[test]
    fn redirect_urls_keep_the_registered_uri() {
        assert_eq!(
            redirect_url(
                "https://a.example/cb",
                &[("code", "x y"), ("iss", "http://i")]
            ),
            "https://a.example/cb?code=x+y&iss=http%3A%2F%2Fi"
        );
        assert_eq!(
            redirect_url("https://a.example/cb?k=1", &[("code", "c")]),
            "https://a.example/cb?k=1&code=c"
        );
        assert_eq!(redirect_host("http://127.0.0.1:5555/cb"), "127.0.0.1:5555");
    }
}
