//! Upstream OAuth 2.0 providers: where a route's provider lives (configured, or discovered from
//! the MCP server's RFC 9728 and the provider's RFC 8414 metadata), the authorization URL (PKCE
//! S256 always), the code exchange and the refresh grant, through the `oauth2` crate over the
//! service's reqwest client.
//!
//! Errors are split the way callers act on them: the provider refused (`Rejected`, a 4xx: the
//! grant is dead) or could not answer (`Unavailable`: 5xx, timeout, connection; try later).
//! Neither message ever carries a token, a code or a secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcpgate_config::gateway::{AuthStyle, ServerRoute, UpstreamOAuth2};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use url::Url;

/// Discovered endpoints are reused this long.
const DISCOVERY_CACHE: Duration = Duration::from_secs(3600);
/// Metadata documents and token responses larger than this are refused.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// Where a route's provider lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEndpoints {
    pub auth_url: String,
    pub token_url: String,
    pub auth_style: AuthStyle,
    /// The RFC 8707 `resource` to ask for: the MCP server's URL, for discovered providers.
    pub resource: Option<String>,
}

/// What a successful token request returned.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSet {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused (HTTP 4xx, or an `error` in a 200 body): the grant is not usable.
    #[error("the provider refused the request: {0}")]
    Rejected(String),
    /// The provider could not answer: 5xx, timeout, connection failure, a malformed answer.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider's endpoints could not be discovered.
    #[error("the provider could not be discovered: {0}")]
    Discovery(String),
}

/// Why a provider's metadata URLs could not be built or its metadata documents were refused.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("the MCP server URL is invalid: {0}")]
    InvalidMcpServerUrl(url::ParseError),
    #[error("the issuer is not a URL: {0}")]
    InvalidIssuer(url::ParseError),
    #[error("protected-resource metadata is not JSON: {0}")]
    ProtectedResourceNotJson(serde_json::Error),
    #[error("protected-resource metadata must be a JSON object")]
    ProtectedResourceNotObject,
    #[error("protected-resource metadata: resource must be an absolute URL")]
    ResourceNotAbsolute,
    #[error("protected-resource metadata: resource must be an http(s) URL")]
    ResourceNotHttp,
    #[error("protected-resource metadata: resource must be a string")]
    ResourceNotString,
    #[error("protected-resource metadata names no authorization_servers")]
    NoAuthorizationServers,
    #[error("protected-resource metadata: authorization_servers[0] is not a URL")]
    AuthorizationServerNotUrl,
    #[error(
        "protected-resource metadata: authorization_servers[0] must be an https URL without query"
    )]
    AuthorizationServerNotAllowed,
    #[error("authorization-server metadata is not JSON: {0}")]
    AuthorizationServerNotJson(serde_json::Error),
    #[error("authorization-server metadata must be a JSON object")]
    AuthorizationServerNotObject,
    #[error("authorization-server metadata: issuer {found:?} is not the expected {expected:?}")]
    IssuerMismatch { found: String, expected: String },
    #[error("authorization-server metadata has no {0}")]
    MissingEndpoint(String),
    #[error("authorization-server metadata: {0} is not a URL")]
    EndpointNotUrl(String),
    #[error("authorization-server metadata: {0} must be https (http for loopback only)")]
    EndpointNotAllowed(String),
    #[error("the provider does not support PKCE S256 (code_challenge_methods_supported)")]
    NoS256,
}

/// Discovery errors reach pages and logs as text inside [`ProviderError::Discovery`] (which is
/// cached with the endpoints, so it stays `Clone + Eq`).
impl From<DiscoveryError> for ProviderError {
    fn from(e: DiscoveryError) -> Self {
        Self::Discovery(e.to_string())
    }
}

/// Why a provider's answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the answer is too large")]
    TooLarge,
    /// The transport failed ([`describe`]d: no URL).
    #[error("{0}")]
    Transport(String),
}

/// The RFC 9728 document's part that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResource {
    pub resource: Option<String>,
    pub authorization_server: String,
}

/// The MCP server's own URL (the route's `to`).
pub fn upstream_url(route: &ServerRoute) -> String {
    let u = &route.upstream;
    let host = if u.host.contains(':') {
        format!("[{}]", u.host)
    } else {
        u.host.clone()
    };
    let default = if u.scheme == "https" { 443 } else { 80 };
    if u.port == default {
        format!("{}://{host}{}", u.scheme, u.path)
    } else {
        format!("{}://{host}:{}{}", u.scheme, u.port, u.path)
    }
}

/// Endpoints may be https, or http on a loopback host (a local provider).
pub fn provider_url_allowed(url: &Url) -> bool {
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => url.host_str().is_some_and(|h| {
            mcpgate_config::gateway::is_loopback_host(
                h.trim_start_matches('[').trim_end_matches(']'),
            )
        }),
        _ => false,
    }
}

/// RFC 9728 §3.1: the path-inserted document of the MCP server's URL, then the root document.
pub fn protected_resource_metadata_urls(resource: &str) -> Result<Vec<Url>, DiscoveryError> {
    let url = Url::parse(resource).map_err(DiscoveryError::InvalidMcpServerUrl)?;
    let path = url.path().trim_end_matches('/').to_string();
    let mut out = Vec::new();
    for p in [path.as_str(), ""] {
        let mut u = url.clone();
        u.set_path(&format!("/.well-known/oauth-protected-resource{p}"));
        u.set_query(None);
        u.set_fragment(None);
        if !out.contains(&u) {
            out.push(u);
        }
    }
    Ok(out)
}

/// Parses an RFC 9728 document: its `resource` and the first of `authorization_servers`.
pub fn parse_protected_resource(body: &[u8]) -> Result<ProtectedResource, DiscoveryError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(DiscoveryError::ProtectedResourceNotJson)?;
    let obj = value
        .as_object()
        .ok_or(DiscoveryError::ProtectedResourceNotObject)?;
    let resource = match obj.get("resource") {
        None => None,
        Some(serde_json::Value::String(r)) => {
            let url = Url::parse(r).map_err(|_| DiscoveryError::ResourceNotAbsolute)?;
            if url.scheme() != "https" && url.scheme() != "http" {
                return Err(DiscoveryError::ResourceNotHttp);
            }
            Some(r.clone())
        }
        Some(_) => return Err(DiscoveryError::ResourceNotString),
    };
    let server = obj
        .get("authorization_servers")
        .and_then(|v| v.as_array())
        .and_then(|a| a.first())
        .and_then(|v| v.as_str())
        .ok_or(DiscoveryError::NoAuthorizationServers)?;
    let url = Url::parse(server).map_err(|_| DiscoveryError::AuthorizationServerNotUrl)?;
    if !provider_url_allowed(&url) || url.query().is_some() {
        return Err(DiscoveryError::AuthorizationServerNotAllowed);
    }
    Ok(ProtectedResource {
        resource,
        authorization_server: server.to_string(),
    })
}

/// RFC 8414 §3.1 (path insertion), then OpenID Connect discovery: path-inserted for issuers
/// with a path, then appended.
pub fn authorization_server_metadata_urls(issuer: &str) -> Result<Vec<Url>, DiscoveryError> {
    let url = Url::parse(issuer).map_err(DiscoveryError::InvalidIssuer)?;
    let path = url.path().trim_end_matches('/').to_string();
    let mut out: Vec<Url> = Vec::new();
    let mut push = |p: String| {
        let mut u = url.clone();
        u.set_path(&p);
        u.set_query(None);
        u.set_fragment(None);
        if !out.contains(&u) {
            out.push(u);
        }
    };
    push(format!("/.well-known/oauth-authorization-server{path}"));
    push(format!("/.well-known/openid-configuration{path}"));
    push(format!("{path}/.well-known/openid-configuration"));
    Ok(out)
}

/// Parses RFC 8414 (or OpenID) metadata for `issuer`: the issuer must match, both endpoints be
/// https (or loopback http), and S256 be supported when methods are listed.
pub fn parse_authorization_server(
    body: &[u8],
    issuer: &str,
    resource: Option<String>,
) -> Result<ProviderEndpoints, DiscoveryError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(DiscoveryError::AuthorizationServerNotJson)?;
    let obj = value
        .as_object()
        .ok_or(DiscoveryError::AuthorizationServerNotObject)?;
    let found_issuer = obj.get("issuer").and_then(|v| v.as_str()).unwrap_or("");
    if found_issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(DiscoveryError::IssuerMismatch {
            found: found_issuer.to_string(),
            expected: issuer.to_string(),
        });
    }
    let endpoint = |name: &str| -> Result<String, DiscoveryError> {
        let value = obj
            .get(name)
            .and_then(|v| v.as_str())
            .ok_or_else(|| DiscoveryError::MissingEndpoint(name.to_string()))?;
        let url =
            Url::parse(value).map_err(|_| DiscoveryError::EndpointNotUrl(name.to_string()))?;
        if !provider_url_allowed(&url) {
            return Err(DiscoveryError::EndpointNotAllowed(name.to_string()));
        }
        Ok(value.to_string())
    };
    let auth_url = endpoint("authorization_endpoint")?;
    let token_url = endpoint("token_endpoint")?;
    let strings = |name: &str| -> Option<Vec<String>> {
        obj.get(name).and_then(|v| v.as_array()).map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
    };
    if let Some(methods) = strings("code_challenge_methods_supported") {
        if !methods.iter().any(|m| m == "S256") {
            return Err(DiscoveryError::NoS256);
        }
    }
    // RFC 8414's default is client_secret_basic; use the form body only when the provider
    // lists client_secret_post and not basic.
    let auth_style = match strings("token_endpoint_auth_methods_supported") {
        Some(m)
            if !m.iter().any(|x| x == "client_secret_basic")
                && m.iter().any(|x| x == "client_secret_post" || x == "none") =>
        {
            AuthStyle::Params
        }
        _ => AuthStyle::Header,
    };
    Ok(ProviderEndpoints {
        auth_url,
        token_url,
        auth_style,
        resource,
    })
}

/// A reqwest error's message with its causes but never the URL (which may carry a code).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    if e.is_connect() {
        return "connection failed".into();
    }
    format!("{:#}", anyhow::Error::from(e.without_url()))
}

/// The `error` code of an OAuth error body, reduced to safe characters.
fn error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = value.get("error")?.as_str()?;
    let safe: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(64)
        .collect();
    (!safe.is_empty()).then_some(safe)
}

/// How the token request transport classifies an answer (the `oauth2` crate's HTTP error type).
#[derive(Debug, thiserror::Error)]
enum TokenHttpError {
    #[error("{0}")]
    Rejected(String),
    #[error("{0}")]
    Unavailable(String),
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|len| len > MAX_BODY_BYTES as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ReadError::Transport(describe(e)))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Sends one token request. 5xx and transport failures are `Unavailable`; 4xx, and 200 bodies
/// that carry an `error` (GitHub answers refused grants that way), are `Rejected`.
async fn send_token_request(
    http: reqwest::Client,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, TokenHttpError> {
    let request = reqwest::Request::try_from(request).map_err(|e| {
        TokenHttpError::Unavailable(format!("cannot build the request: {}", describe(e)))
    })?;
    let response = http
        .execute(request)
        .await
        .map_err(|e| TokenHttpError::Unavailable(describe(e)))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .cloned();
    let body = read_limited(response)
        .await
        .map_err(|e| TokenHttpError::Unavailable(e.to_string()))?;
    let code = error_code(&body);
    let with_code = |what: String| match &code {
        Some(c) => format!("{what} ({c})"),
        None => what,
    };
    if status.is_server_error() {
        return Err(TokenHttpError::Unavailable(format!(
            "the token endpoint answered HTTP {}",
            status.as_u16()
        )));
    }
    if status.is_client_error() {
        return Err(TokenHttpError::Rejected(with_code(format!(
            "HTTP {}",
            status.as_u16()
        ))));
    }
    if status != reqwest::StatusCode::OK {
        return Err(TokenHttpError::Unavailable(format!(
            "the token endpoint answered HTTP {}",
            status.as_u16()
        )));
    }
    if code.is_some() {
        let has_token = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .is_some_and(|v| v.get("access_token").is_some());
        if !has_token {
            return Err(TokenHttpError::Rejected(with_code("HTTP 200".into())));
        }
    }
    let mut builder = oauth2::http::Response::builder().status(status.as_u16());
    if let Some(ct) = content_type {
        builder = builder.header(oauth2::http::header::CONTENT_TYPE, ct.as_bytes());
    }
    builder
        .body(body)
        .map_err(|e| TokenHttpError::Unavailable(e.to_string()))
}

fn classify<TE: oauth2::ErrorResponse>(e: RequestTokenError<TokenHttpError, TE>) -> ProviderError {
    match e {
        RequestTokenError::Request(TokenHttpError::Rejected(r)) => ProviderError::Rejected(r),
        RequestTokenError::Request(TokenHttpError::Unavailable(r)) => ProviderError::Unavailable(r),
        RequestTokenError::ServerResponse(_) => {
            ProviderError::Rejected("the provider answered with an error".into())
        }
        // Parse errors would echo the body, which may hold a token: say only what failed.
        RequestTokenError::Parse(e, _) => {
            ProviderError::Unavailable(format!("the token response is not valid (at {})", e.path()))
        }
        RequestTokenError::Other(r) => ProviderError::Unavailable(r),
    }
}

type ConfiguredClient = BasicClient<
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn oauth_client(
    config: &UpstreamOAuth2,
    endpoints: &ProviderEndpoints,
    redirect_uri: Option<&str>,
) -> anyhow::Result<ConfiguredClient> {
    let mut client = BasicClient::new(ClientId::new(config.client_id.clone()))
        .set_auth_uri(AuthUrl::new(endpoints.auth_url.clone())?)
        .set_token_uri(TokenUrl::new(endpoints.token_url.clone())?)
        .set_auth_type(match endpoints.auth_style {
            AuthStyle::Header => AuthType::BasicAuth,
            AuthStyle::Params => AuthType::RequestBody,
        });
    if let Some(secret) = &config.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.clone()));
    }
    if let Some(uri) = redirect_uri {
        client = client.set_redirect_uri(RedirectUrl::new(uri.to_string())?);
    }
    Ok(client)
}

fn token_set(response: &oauth2::basic::BasicTokenResponse) -> TokenSet {
    TokenSet {
        access_token: response.access_token().secret().clone(),
        refresh_token: response.refresh_token().map(|r| r.secret().clone()),
        expires_in: response.expires_in().map(|d| d.as_secs()),
        scope: response
            .scopes()
            .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")),
    }
}

struct Discovered {
    endpoints: Arc<ProviderEndpoints>,
    at: Instant,
}

/// Talks to upstream providers; holds the discovery cache.
pub struct UpstreamOAuth {
    http: reqwest::Client,
    discovered: Mutex<HashMap<String, Discovered>>,
}

impl UpstreamOAuth {
    /// Token and discovery requests give up after `timeout`
    /// (`token_service.upstream_request_timeout`).
    pub fn new(timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("mcpgate-token-service/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            discovered: Mutex::new(HashMap::new()),
        })
    }

    /// The route's provider: configured, or discovered (and cached).
    pub async fn endpoints(
        &self,
        route: &ServerRoute,
        config: &UpstreamOAuth2,
    ) -> Result<Arc<ProviderEndpoints>, ProviderError> {
        if let Some(e) = &config.endpoint {
            return Ok(Arc::new(ProviderEndpoints {
                auth_url: e.auth_url.clone(),
                token_url: e.token_url.clone(),
                auth_style: e.auth_style,
                resource: None,
            }));
        }
        if let Some(hit) = self.discovered.lock().ok().and_then(|c| {
            c.get(&route.resource)
                .filter(|d| d.at.elapsed() < DISCOVERY_CACHE)
                .map(|d| d.endpoints.clone())
        }) {
            return Ok(hit);
        }
        let endpoints = Arc::new(self.discover(&upstream_url(route)).await?);
        if let Ok(mut cache) = self.discovered.lock() {
            cache.insert(
                route.resource.clone(),
                Discovered {
                    endpoints: endpoints.clone(),
                    at: Instant::now(),
                },
            );
        }
        tracing::info!(route = %route.resource, auth_url = %endpoints.auth_url, "discovered the upstream OAuth provider");
        Ok(endpoints)
    }

    async fn fetch_json(&self, url: &Url) -> Result<Option<Vec<u8>>, ProviderError> {
        let response = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| ProviderError::Discovery(format!("{url}: {}", describe(e))))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status != reqwest::StatusCode::OK {
            return Err(ProviderError::Discovery(format!(
                "{url} answered HTTP {}",
                status.as_u16()
            )));
        }
        read_limited(response)
            .await
            .map(Some)
            .map_err(|e| ProviderError::Discovery(format!("{url}: {e}")))
    }

    /// RFC 9728 then RFC 8414 from the MCP server's URL.
    pub async fn discover(&self, mcp_server_url: &str) -> Result<ProviderEndpoints, ProviderError> {
        let mut protected = None;
        for url in protected_resource_metadata_urls(mcp_server_url)? {
            if let Some(body) = self.fetch_json(&url).await? {
                protected = Some(parse_protected_resource(&body)?);
                break;
            }
        }
        let protected = protected.ok_or_else(|| {
            ProviderError::Discovery(
                "the MCP server publishes no protected-resource metadata (RFC 9728)".into(),
            )
        })?;
        let resource = Some(
            protected
                .resource
                .clone()
                .unwrap_or_else(|| mcp_server_url.to_string()),
        );
        let issuer = &protected.authorization_server;
        for url in authorization_server_metadata_urls(issuer)? {
            if let Some(body) = self.fetch_json(&url).await? {
                return Ok(parse_authorization_server(&body, issuer, resource)?);
            }
        }
        Err(ProviderError::Discovery(format!(
            "{issuer} publishes no authorization-server metadata (RFC 8414 or OpenID discovery)"
        )))
    }

    /// The provider's authorization URL for one attempt.
    pub fn authorization_url(
        &self,
        config: &UpstreamOAuth2,
        endpoints: &ProviderEndpoints,
        redirect_uri: &str,
        state: &str,
        pkce_verifier: &str,
    ) -> anyhow::Result<String> {
        let client = oauth_client(config, endpoints, Some(redirect_uri))?;
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            pkce_verifier.into(),
        ));
        let state = state.to_string();
        let mut request = client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(config.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge);
        if let Some(resource) = &endpoints.resource {
            request = request.add_extra_param("resource", resource.clone());
        }
        for (k, v) in &config.authorization_url_params {
            request = request.add_extra_param(k.clone(), v.clone());
        }
        Ok(request.url().0.to_string())
    }

    /// Exchanges an authorization code.
    pub async fn exchange_code(
        &self,
        config: &UpstreamOAuth2,
        endpoints: &ProviderEndpoints,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
    ) -> Result<TokenSet, ProviderError> {
        let client = oauth_client(config, endpoints, Some(redirect_uri))
            .map_err(|e| ProviderError::Unavailable(format!("configuration: {e}")))?;
        let http = self.http.clone();
        let send = move |req| send_token_request(http.clone(), req);
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()));
        if let Some(resource) = &endpoints.resource {
            request = request.add_extra_param("resource", resource.clone());
        }
        let response = request.request_async(&send).await.map_err(classify)?;
        Ok(token_set(&response))
    }

    /// The refresh grant.
    pub async fn refresh(
        &self,
        config: &UpstreamOAuth2,
        endpoints: &ProviderEndpoints,
        refresh_token: &str,
    ) -> Result<TokenSet, ProviderError> {
        let client = oauth_client(config, endpoints, None)
            .map_err(|e| ProviderError::Unavailable(format!("configuration: {e}")))?;
        let http = self.http.clone();
        let send = move |req| send_token_request(http.clone(), req);
        let token = RefreshToken::new(refresh_token.to_string());
        let mut request = client.exchange_refresh_token(&token);
        if let Some(resource) = &endpoints.resource {
            request = request.add_extra_param("resource", resource.clone());
        }
        let response = request.request_async(&send).await.map_err(classify)?;
        Ok(token_set(&response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(urls: Result<Vec<Url>, DiscoveryError>) -> Vec<String> {
        urls.expect("urls").into_iter().map(String::from).collect()
    }

    #[test]
    fn protected_resource_urls_try_path_then_root() {
        let urls: Vec<String> = strings(protected_resource_metadata_urls(
            "http://127.0.0.1:3001/mcp",
        ));
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:3001/.well-known/oauth-protected-resource/mcp",
                "http://127.0.0.1:3001/.well-known/oauth-protected-resource",
            ]
        );
        let root: Vec<String> =
            strings(protected_resource_metadata_urls("https://mcp.example.com/"));
        assert_eq!(
            root,
            ["https://mcp.example.com/.well-known/oauth-protected-resource"]
        );
    }

    #[test]
    fn authorization_server_urls() {
        let urls: Vec<String> = strings(authorization_server_metadata_urls(
            "https://as.example/tenant1",
        ));
        assert_eq!(
            urls,
            [
                "https://as.example/.well-known/oauth-authorization-server/tenant1",
                "https://as.example/.well-known/openid-configuration/tenant1",
                "https://as.example/tenant1/.well-known/openid-configuration",
            ]
        );
        let root: Vec<String> = strings(authorization_server_metadata_urls("https://as.example"));
        assert_eq!(
            root,
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn protected_resource_documents() {
        let ok = parse_protected_resource(
            br#"{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://as.example","https://b.example"]}"#,
        )
        .expect("valid");
        assert_eq!(ok.authorization_server, "https://as.example");
        assert_eq!(ok.resource.as_deref(), Some("https://mcp.example.com/mcp"));
        let no_resource =
            parse_protected_resource(br#"{"authorization_servers":["http://127.0.0.1:9/as"]}"#)
                .expect("valid");
        assert_eq!(no_resource.resource, None);
        for bad in [
            &br#"{"resource":"https://x"}"#[..],
            br#"{"authorization_servers":[]}"#,
            br#"{"authorization_servers":["http://as.example"]}"#,
            br#"{"authorization_servers":["javascript:alert(1)"]}"#,
            br#"{"authorization_servers":["https://as.example?x=1"]}"#,
            br#"{"resource":"urn:x","authorization_servers":["https://as.example"]}"#,
            br#"{"resource":5,"authorization_servers":["https://as.example"]}"#,
            b"[]",
            b"not json",
        ] {
            assert!(
                parse_protected_resource(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn authorization_server_documents() {
        let doc = |extra: &str| {
            format!(
                r#"{{"issuer":"https://as.example","authorization_endpoint":"https://as.example/authorize","token_endpoint":"https://as.example/token"{extra}}}"#
            )
        };
        let ok = parse_authorization_server(
            doc(r#","code_challenge_methods_supported":["S256"]"#).as_bytes(),
            "https://as.example",
            Some("https://mcp.example.com/mcp".into()),
        )
        .expect("valid");
        assert_eq!(
            ok,
            ProviderEndpoints {
                auth_url: "https://as.example/authorize".into(),
                token_url: "https://as.example/token".into(),
                auth_style: AuthStyle::Header,
                resource: Some("https://mcp.example.com/mcp".into()),
            }
        );
        assert!(
            parse_authorization_server(doc("").as_bytes(), "https://as.example/", None).is_ok()
        );
        let post = parse_authorization_server(
            doc(r#","token_endpoint_auth_methods_supported":["client_secret_post"]"#).as_bytes(),
            "https://as.example",
            None,
        )
        .expect("valid");
        assert_eq!(post.auth_style, AuthStyle::Params);
        let both = parse_authorization_server(
            doc(r#","token_endpoint_auth_methods_supported":["client_secret_post","client_secret_basic"]"#)
                .as_bytes(),
            "https://as.example",
            None,
        )
        .expect("valid");
        assert_eq!(both.auth_style, AuthStyle::Header);
        let plain_only = parse_authorization_server(
            doc(r#","code_challenge_methods_supported":["plain"]"#).as_bytes(),
            "https://as.example",
            None,
        )
        .expect_err("no S256")
        .to_string();
        assert!(plain_only.contains("S256"), "{plain_only}");
        let other_issuer =
            parse_authorization_server(doc("").as_bytes(), "https://evil.example", None)
                .expect_err("issuer mismatch")
                .to_string();
        assert!(other_issuer.contains("issuer"), "{other_issuer}");
        assert!(parse_authorization_server(
            br#"{"issuer":"https://as.example","authorization_endpoint":"http://as.example/a","token_endpoint":"https://as.example/t"}"#,
            "https://as.example",
            None
        )
        .is_err());
        assert!(parse_authorization_server(
            br#"{"issuer":"https://as.example","authorization_endpoint":"https://as.example/a"}"#,
            "https://as.example",
            None
        )
        .unwrap_err()
        .to_string()
        .contains("token_endpoint"));
    }

    #[test]
    fn provider_urls() {
        let ok = |s: &str| provider_url_allowed(&Url::parse(s).expect("url"));
        assert!(ok("https://github.com/login/oauth/authorize"));
        assert!(ok("http://127.0.0.1:9000/token"));
        assert!(ok("http://localhost/token"));
        assert!(ok("http://[::1]:80/token"));
        assert!(!ok("http://github.com/login"));
        assert!(!ok("https://u:p@github.com/"));
        assert!(!ok("ftp://github.com/"));
    }

    #[test]
    fn oauth_error_codes_are_sanitized() {
        assert_eq!(
            error_code(br#"{"error":"invalid_grant","error_description":"secret-ish"}"#).as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(
            error_code(br#"{"error":"a<b>\"c"}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(error_code(b"<html>"), None);
    }

    #[test]
    fn authorization_url_has_pkce_state_scopes_resource_and_params() {
        let oauth = UpstreamOAuth::new(Duration::from_secs(10)).expect("client");
        let config = UpstreamOAuth2 {
            client_id: "cid".into(),
            client_secret: Some("csecret".into()),
            client_secret_file: None,
            scopes: vec!["read:user".into(), "repo".into()],
            endpoint: None,
            authorization_url_params: [("prompt".to_string(), "consent".to_string())].into(),
        };
        let endpoints = ProviderEndpoints {
            auth_url: "https://as.example/authorize?tenant=1".into(),
            token_url: "https://as.example/token".into(),
            auth_style: AuthStyle::Header,
            resource: Some("https://mcp.example.com/mcp".into()),
        };
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let url = oauth
            .authorization_url(
                &config,
                &endpoints,
                "http://localhost:18080/.mcpgate/upstream/callback",
                "st4te",
                verifier,
            )
            .expect("url");
        let url = Url::parse(&url).expect("parse");
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["tenant"], "1");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "cid");
        assert_eq!(q["state"], "st4te");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(
            q["code_challenge"],
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(
            q["redirect_uri"],
            "http://localhost:18080/.mcpgate/upstream/callback"
        );
        assert_eq!(q["scope"], "read:user repo");
        assert_eq!(q["resource"], "https://mcp.example.com/mcp");
        assert_eq!(q["prompt"], "consent");
        assert!(!url.as_str().contains("csecret"));
    }
}
