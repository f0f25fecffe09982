//! Talking to OpenID Connect providers (the `openidconnect` crate): discovery with a cache,
//! the authorization URL, the code exchange, ID token validation (with one rate-limited
//! re-fetch of the provider's keys on an unknown `kid`, so key rotation works), userinfo, the
//! refresh grant and the end-session URL. No axum types; errors say what failed in words and
//! never carry a token.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mcpgate_config::identity::OidcProvider;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm, CoreTokenResponse,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadataWithLogout,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, SignatureVerificationError, TokenResponse,
};
use serde_json::Value;

/// How long discovered metadata and keys are used before they are fetched again.
pub const METADATA_TTL: Duration = Duration::from_secs(300);
/// The least time between two key re-fetches for an unknown `kid` (per provider).
pub const KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BODY_BYTES: usize = 256 * 1024;

/// A provider step that failed. `Display` is a sentence for the person in front of the browser
/// and for the log line; it never contains a token or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Discovery failed: the provider is down, or its issuer is misconfigured.
    #[error("the provider's configuration could not be loaded: {0}")]
    Discovery(String),
    /// The token endpoint could not be reached or failed.
    #[error("the provider's token endpoint could not be reached: {0}")]
    TokenUnavailable(String),
    /// The provider refused the grant (`invalid_grant` and friends).
    #[error("the provider refused the request ({0})")]
    Refused(String),
    /// The ID token is not acceptable.
    #[error("the provider's ID token is not valid: {0}")]
    InvalidIdToken(String),
    /// The userinfo endpoint failed.
    #[error("the provider's userinfo endpoint failed: {0}")]
    Userinfo(String),
}

impl ProviderError {
    /// A short word for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Discovery(_) => "discovery",
            Self::TokenUnavailable(_) => "token_endpoint",
            Self::Refused(_) => "refused",
            Self::InvalidIdToken(_) => "invalid_id_token",
            Self::Userinfo(_) => "userinfo",
        }
    }
}

/// What the token endpoint returned. `Debug` shows no secret.
#[derive(Clone)]
pub struct ProviderTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub expires_in: Option<u64>,
}

impl std::fmt::Debug for ProviderTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderTokens")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// The browser-facing half of an authorization request: where to send the browser, and the
/// secrets to keep until the callback.
pub struct AuthorizationStart {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

// --- ID token validation (no network) --------------------------------------------------------

/// What an ID token must satisfy.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub allowed_algorithms: &'a [String],
    /// The nonce sent with the authorization request; `None` for a refresh grant's ID token.
    pub nonce: Option<&'a str>,
    pub now: i64,
    pub leeway_secs: i64,
}

/// Why an ID token was refused; `UnknownKey` is the one worth re-fetching keys for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdTokenError {
    UnknownKey,
    Invalid(String),
}

impl IdTokenError {
    fn into_provider_error(self) -> ProviderError {
        match self {
            Self::UnknownKey => ProviderError::InvalidIdToken(
                "it is signed by a key the provider does not publish".into(),
            ),
            Self::Invalid(reason) => ProviderError::InvalidIdToken(reason),
        }
    }
}

fn algorithm(name: &str) -> Option<CoreJwsSigningAlgorithm> {
    use CoreJwsSigningAlgorithm::*;
    Some(match name {
        "RS256" => RsaSsaPkcs1V15Sha256,
        "RS384" => RsaSsaPkcs1V15Sha384,
        "RS512" => RsaSsaPkcs1V15Sha512,
        "PS256" => RsaSsaPssSha256,
        "PS384" => RsaSsaPssSha384,
        "PS512" => RsaSsaPssSha512,
        "ES256" => EcdsaP256Sha256,
        "ES384" => EcdsaP384Sha384,
        "ES512" => EcdsaP521Sha512,
        "EdDSA" => EdDsa,
        "HS256" => HmacSha256,
        "HS384" => HmacSha384,
        "HS512" => HmacSha512,
        _ => return Option::None,
    })
}

fn describe_claims_error(e: &ClaimsVerificationError) -> IdTokenError {
    use ClaimsVerificationError as C;
    use SignatureVerificationError as S;
    let reason = match e {
        C::SignatureVerification(S::NoMatchingKey) => return IdTokenError::UnknownKey,
        C::SignatureVerification(S::DisallowedAlg(_) | S::UnsupportedAlg(_)) => {
            "it is signed with an algorithm this gateway does not accept for this provider"
        }
        C::SignatureVerification(S::NoSignature) => "it is not signed",
        C::SignatureVerification(_) => "its signature does not verify",
        C::InvalidIssuer(_) => "it was issued by another issuer than the configured one",
        C::InvalidAudience(_) => "it was not issued to this gateway (audience)",
        C::InvalidNonce(_) => "it does not belong to this sign-in (nonce)",
        C::Expired(_) => "it has expired or was issued at an impossible time",
        C::InvalidAuthContext(_) | C::InvalidAuthTime(_) => {
            "its authentication context is not acceptable"
        }
        _ => "it could not be verified",
    };
    IdTokenError::Invalid(reason.into())
}

/// The `azp` rule of OpenID Connect Core 3.1.3.7 (which the crate leaves to its users): with
/// several audiences `azp` must be present, and when present it must be our client id.
pub fn check_azp(claims: &Value, client_id: &str) -> Result<(), IdTokenError> {
    let several = claims
        .get("aud")
        .and_then(Value::as_array)
        .is_some_and(|a| a.len() > 1);
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != client_id => Err(IdTokenError::Invalid(
            "it was issued to another party (azp)".into(),
        )),
        None if several => Err(IdTokenError::Invalid(
            "it has several audiences but no authorized party (azp)".into(),
        )),
        _ => Ok(()),
    }
}

/// Validates an ID token in full against `keys` and returns its claims as JSON: signature by a
/// published key with an allowed algorithm (never `none`; HS* only when listed, keyed by the
/// client secret), `iss`, `aud`, `azp`, `exp` and `iat` (with `leeway_secs`), and the nonce.
pub fn verify_id_token(
    raw: &str,
    keys: &CoreJsonWebKeySet,
    expected: &Expected<'_>,
) -> Result<Value, IdTokenError> {
    let token = CoreIdToken::from_str(raw)
        .map_err(|_| IdTokenError::Invalid("it is not a well-formed signed JWT".into()))?;
    let issuer = IssuerUrl::new(expected.issuer.to_string())
        .map_err(|_| IdTokenError::Invalid("the configured issuer is not a URL".into()))?;
    let algs: Vec<CoreJwsSigningAlgorithm> = expected
        .allowed_algorithms
        .iter()
        .filter_map(|a| algorithm(a))
        .collect();
    let now = expected.now;
    let leeway = expected.leeway_secs.max(0);
    let verifier = CoreIdTokenVerifier::new_confidential_client(
        ClientId::new(expected.client_id.to_string()),
        ClientSecret::new(expected.client_secret.to_string()),
        issuer,
        keys.clone(),
    )
    .set_allowed_algs(algs)
    .set_time_fn(move || chrono::DateTime::from_timestamp(now - leeway, 0).unwrap_or_default())
    .set_issue_time_verifier_fn(move |iat| {
        if iat.timestamp() > now + leeway {
            Err("issued in the future".into())
        } else {
            Ok(())
        }
    });
    let verified = match expected.nonce {
        Some(nonce) => token
            .claims(&verifier, &Nonce::new(nonce.to_string()))
            .map(|_| ()),
        None => token
            .claims(&verifier, |_: Option<&Nonce>| Ok(()))
            .map(|_| ()),
    };
    verified.map_err(|e| describe_claims_error(&e))?;
    let claims = payload(raw)
        .ok_or_else(|| IdTokenError::Invalid("its claims are not a JSON object".into()))?;
    check_azp(&claims, expected.client_id)?;
    Ok(claims)
}

/// The payload of a compact JWS (after its signature was verified).
fn payload(raw: &str) -> Option<Value> {
    let middle = raw.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(middle.trim_end_matches('=')).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.is_object().then_some(value)
}

/// The `exp` of an ID token already verified.
pub fn expiry(claims: &Value) -> Option<i64> {
    claims.get("exp").and_then(Value::as_i64)
}

// --- HTTP ------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// A reqwest error's message without the URL (which may carry a code).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    if e.is_connect() {
        return "connection refused or unreachable".into();
    }
    format!("{:#}", anyhow::Error::from(e.without_url()))
}

async fn send(
    http: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let request = reqwest::Request::try_from(request)
        .map_err(|e| HttpError(format!("cannot build the request: {}", describe(e))))?;
    let mut response = http
        .execute(request)
        .await
        .map_err(|e| HttpError(describe(e)))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .cloned();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| HttpError(describe(e)))? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(HttpError("the answer is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    let mut builder = openidconnect::http::Response::builder().status(status.as_u16());
    if let Some(ct) = content_type {
        builder = builder.header(openidconnect::http::header::CONTENT_TYPE, ct.as_bytes());
    }
    builder.body(body).map_err(|e| HttpError(e.to_string()))
}

fn discovery_error<E: std::error::Error>(e: openidconnect::DiscoveryError<E>) -> ProviderError {
    use openidconnect::DiscoveryError as D;
    ProviderError::Discovery(match e {
        D::Request(e) => e.to_string(),
        D::Response(status, _, _) => format!("it answered HTTP {}", status.as_u16()),
        D::Parse(e) => format!("its metadata is not valid (at {})", e.path()),
        D::Validation(reason) => reason,
        D::UrlParse(_) => "the issuer is not a valid URL".into(),
        D::Other(reason) => reason,
        _ => "unknown error".into(),
    })
}

fn token_error<E: std::error::Error, TE: openidconnect::ErrorResponse>(
    e: RequestTokenError<E, TE>,
) -> ProviderError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            // The code only, never the description (which a provider may fill with anything).
            let code = serde_json::to_value(&r)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| "error".into());
            let safe: String = code
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
                .take(64)
                .collect();
            ProviderError::Refused(safe)
        }
        RequestTokenError::Request(e) => ProviderError::TokenUnavailable(e.to_string()),
        RequestTokenError::Parse(e, _) => {
            ProviderError::TokenUnavailable(format!("its answer is not valid (at {})", e.path()))
        }
        RequestTokenError::Other(r) => ProviderError::TokenUnavailable(r),
    }
}

// --- the providers ---------------------------------------------------------------------------

struct Cached {
    metadata: Arc<ProviderMetadataWithLogout>,
    fetched_at: Instant,
    last_key_refetch: Option<Instant>,
}

/// Talks to the configured providers; keeps their discovered metadata and keys.
pub struct OidcProviders {
    http: reqwest::Client,
    cache: Mutex<HashMap<String, Cached>>,
    /// JWK Sets published at a URL: enterprise identity providers' (`identity.enterprise`) and
    /// `private_key_jwt` clients' `jwks_uri`.
    pub key_sets: crate::oauth::jose::KeySets,
}

impl OidcProviders {
    pub fn new() -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .user_agent(concat!("mcpgate-token-service/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            cache: Mutex::new(HashMap::new()),
            key_sets: crate::oauth::jose::KeySets::new()?,
        })
    }

    fn cached(&self, p: &OidcProvider) -> Option<Arc<ProviderMetadataWithLogout>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(&cache_key(p))
            .filter(|c| c.fetched_at.elapsed() < METADATA_TTL)
            .map(|c| c.metadata.clone())
    }

    async fn discover(
        &self,
        p: &OidcProvider,
    ) -> Result<Arc<ProviderMetadataWithLogout>, ProviderError> {
        let issuer = IssuerUrl::new(p.issuer.clone())
            .map_err(|_| ProviderError::Discovery("the issuer is not a valid URL".into()))?;
        let http = self.http.clone();
        let client = move |req| send(http.clone(), req);
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &client)
            .await
            .map_err(discovery_error)?;
        let metadata = Arc::new(metadata);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cache.entry(cache_key(p)).or_insert_with(|| Cached {
            metadata: metadata.clone(),
            fetched_at: Instant::now(),
            last_key_refetch: None,
        });
        entry.metadata = metadata.clone();
        entry.fetched_at = Instant::now();
        Ok(metadata)
    }

    /// The provider's metadata and keys, from the cache while fresh.
    pub async fn metadata(
        &self,
        p: &OidcProvider,
    ) -> Result<Arc<ProviderMetadataWithLogout>, ProviderError> {
        match self.cached(p) {
            Some(m) => Ok(m),
            None => self.discover(p).await,
        }
    }

    /// Whether an unknown `kid` may trigger a re-fetch now; records it when so.
    fn may_refetch_keys(&self, p: &OidcProvider) -> bool {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = cache.get_mut(&cache_key(p)) else {
            return true;
        };
        if entry
            .last_key_refetch
            .is_some_and(|t| t.elapsed() < KEY_REFETCH_INTERVAL)
        {
            return false;
        }
        entry.last_key_refetch = Some(Instant::now());
        true
    }

    fn client(
        p: &OidcProvider,
        metadata: &ProviderMetadataWithLogout,
        redirect_uri: Option<&str>,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        ProviderError,
    > {
        let mut client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(p.client_id.clone()),
            p.client_secret.clone().map(ClientSecret::new),
        );
        // client_secret_basic unless the provider offers only client_secret_post.
        let methods = metadata.token_endpoint_auth_methods_supported();
        let post_only = methods.is_some_and(|m| {
            let names: Vec<String> = m
                .iter()
                .filter_map(|x| serde_json::to_value(x).ok())
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            !names.iter().any(|n| n == "client_secret_basic")
                && names.iter().any(|n| n == "client_secret_post")
        });
        if post_only {
            client = client.set_auth_type(openidconnect::AuthType::RequestBody);
        }
        if let Some(uri) = redirect_uri {
            let uri = RedirectUrl::new(uri.to_string())
                .map_err(|_| ProviderError::Discovery("the callback URL is not valid".into()))?;
            client = client.set_redirect_uri(uri);
        }
        Ok(client)
    }

    /// Starts authorization code + PKCE (S256) with fresh `state` and `nonce`.
    pub async fn start(
        &self,
        p: &OidcProvider,
        redirect_uri: &str,
    ) -> Result<AuthorizationStart, ProviderError> {
        let metadata = self.metadata(p).await?;
        let client = Self::client(p, &metadata, Some(redirect_uri))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in p.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if p.scopes.iter().any(|s| s == "offline_access") {
            // Providers that follow OpenID Connect Core 11 issue a refresh token for
            // offline_access only with prompt=consent.
            request = request.add_prompt(openidconnect::core::CoreAuthPrompt::Consent);
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(AuthorizationStart {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the authorization code.
    pub async fn exchange_code(
        &self,
        p: &OidcProvider,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
    ) -> Result<ProviderTokens, ProviderError> {
        let metadata = self.metadata(p).await?;
        let client = Self::client(p, &metadata, Some(redirect_uri))?;
        let http = self.http.clone();
        let send_fn = move |req| send(http.clone(), req);
        let response: CoreTokenResponse = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|_| {
                ProviderError::Discovery("the provider publishes no token endpoint".into())
            })?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(&send_fn)
            .await
            .map_err(token_error)?;
        Ok(tokens(&response))
    }

    /// The refresh grant at the provider.
    pub async fn refresh(
        &self,
        p: &OidcProvider,
        refresh_token: &str,
    ) -> Result<ProviderTokens, ProviderError> {
        let metadata = self.metadata(p).await?;
        let client = Self::client(p, &metadata, None)?;
        let http = self.http.clone();
        let send_fn = move |req| send(http.clone(), req);
        let token = RefreshToken::new(refresh_token.to_string());
        let response: CoreTokenResponse = client
            .exchange_refresh_token(&token)
            .map_err(|_| {
                ProviderError::Discovery("the provider publishes no token endpoint".into())
            })?
            .request_async(&send_fn)
            .await
            .map_err(token_error)?;
        Ok(tokens(&response))
    }

    /// Validates an ID token against the provider's keys; on an unknown `kid`, fetches the
    /// provider's metadata and keys again (at most once per `KEY_REFETCH_INTERVAL`) and retries.
    pub async fn verify_id_token(
        &self,
        p: &OidcProvider,
        raw: &str,
        nonce: Option<&str>,
        now: i64,
        leeway_secs: i64,
    ) -> Result<Value, ProviderError> {
        let secret = p.client_secret.clone().unwrap_or_default();
        let expected = Expected {
            issuer: &p.issuer,
            client_id: &p.client_id,
            client_secret: &secret,
            allowed_algorithms: &p.allowed_algorithms,
            nonce,
            now,
            leeway_secs,
        };
        let metadata = self.metadata(p).await?;
        match verify_id_token(raw, metadata.jwks(), &expected) {
            Err(IdTokenError::UnknownKey) if self.may_refetch_keys(p) => {
                tracing::info!(provider = %p.id, "ID token signed by an unknown key: fetching the provider's keys again");
                let metadata = self.discover(p).await?;
                verify_id_token(raw, metadata.jwks(), &expected)
                    .map_err(IdTokenError::into_provider_error)
            }
            other => other.map_err(IdTokenError::into_provider_error),
        }
    }

    /// The provider's userinfo claims for `access_token` (JSON answers only).
    pub async fn userinfo(
        &self,
        p: &OidcProvider,
        access_token: &str,
    ) -> Result<Value, ProviderError> {
        let metadata = self.metadata(p).await?;
        let url = metadata
            .userinfo_endpoint()
            .ok_or_else(|| {
                ProviderError::Userinfo("the provider publishes no userinfo endpoint".into())
            })?
            .url()
            .clone();
        let response = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| ProviderError::Userinfo(describe(e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(ProviderError::Refused(format!(
                "userinfo HTTP {}",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(ProviderError::Userinfo(format!(
                "it answered HTTP {}",
                status.as_u16()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| ProviderError::Userinfo(describe(e)))?;
        if body.len() > MAX_BODY_BYTES {
            return Err(ProviderError::Userinfo("the answer is too large".into()));
        }
        serde_json::from_slice::<Value>(&body)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| ProviderError::Userinfo("the answer is not a JSON object".into()))
    }

    /// The provider's end-session URL for RP-initiated logout, when it has one.
    pub async fn end_session_url(
        &self,
        p: &OidcProvider,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: &str,
    ) -> Option<String> {
        let metadata = self.metadata(p).await.ok()?;
        let endpoint = metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let mut url = endpoint.url().clone();
        {
            let mut q = url.query_pairs_mut();
            if let Some(hint) = id_token_hint {
                q.append_pair("id_token_hint", hint);
            }
            q.append_pair("client_id", &p.client_id);
            q.append_pair("post_logout_redirect_uri", post_logout_redirect_uri);
        }
        Some(url.to_string())
    }
}

fn cache_key(p: &OidcProvider) -> String {
    format!("{}|{}", p.id, p.issuer)
}

fn tokens(response: &CoreTokenResponse) -> ProviderTokens {
    ProviderTokens {
        access_token: response.access_token().secret().clone(),
        refresh_token: response.refresh_token().map(|r| r.secret().clone()),
        id_token: response.id_token().map(|t| t.to_string()),
        expires_in: response.expires_in().map(|d| d.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_simple::prelude::*;
    use serde_json::json;

    /// A 2048-bit RSA key made for these tests only.
    const RSA_PEM: &str = include_str!("test_rsa_key.pem");
    const OTHER_RSA_PEM: &str = include_str!("test_rsa_key_2.pem");
    const SECRET: &str = "a-client-secret-of-some-length";

    fn jwk(pem: &str, kid: &str) -> Value {
        let key = RS256KeyPair::from_pem(pem).expect("pem");
        let c = key.public_key().to_components();
        json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
               "n": URL_SAFE_NO_PAD.encode(c.n), "e": URL_SAFE_NO_PAD.encode(c.e)})
    }

    fn jwks() -> CoreJsonWebKeySet {
        serde_json::from_value(json!({"keys": [jwk(RSA_PEM, "k1")]})).expect("jwks")
    }

    fn claims(now: i64) -> Value {
        json!({"iss": "https://idp.example.com", "aud": "mcpgate", "sub": "u1",
               "exp": now + 300, "iat": now, "nonce": "n0nce", "email": "a@example.com"})
    }

    /// `body` as the whole claim set: the tests set every registered claim themselves.
    fn exactly(body: &Value) -> JWTClaims<Value> {
        JWTClaims {
            issued_at: None,
            expires_at: None,
            invalid_before: None,
            issuer: None,
            subject: None,
            audiences: None,
            jwt_id: None,
            nonce: None,
            custom: body.clone(),
        }
    }

    fn sign_rs(pem: &str, kid: &str, body: &Value) -> String {
        let key = RS256KeyPair::from_pem(pem).expect("pem").with_key_id(kid);
        key.sign(exactly(body)).expect("sign")
    }

    fn sign_hs(body: &Value) -> String {
        let key = HS256Key::from_bytes(SECRET.as_bytes());
        key.authenticate(exactly(body)).expect("sign")
    }

    fn unsigned(body: &Value) -> String {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(body.to_string())
        )
    }

    fn expected(now: i64, algs: &[String]) -> Expected<'_> {
        Expected {
            issuer: "https://idp.example.com",
            client_id: "mcpgate",
            client_secret: SECRET,
            allowed_algorithms: algs,
            nonce: Some("n0nce"),
            now,
            leeway_secs: 5,
        }
    }

    fn refused(raw: &str, algs: &[String], now: i64) -> String {
        match verify_id_token(raw, &jwks(), &expected(now, algs)) {
            Err(IdTokenError::Invalid(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_good_token_verifies_and_yields_its_claims() {
        let now = 1_700_000_000;
        let rs = ["RS256".to_string()];
        let mut body = claims(now);
        body["org"] = json!({"groups": ["eng"]});
        let got = verify_id_token(&sign_rs(RSA_PEM, "k1", &body), &jwks(), &expected(now, &rs))
            .expect("valid");
        assert_eq!(got["org"]["groups"][0], "eng");
        assert_eq!(expiry(&got), Some(now + 300));
    }

    #[test]
    fn each_claim_is_checked() {
        let now = 1_700_000_000;
        let rs = ["RS256".to_string()];
        let with = |k: &str, v: Value| {
            let mut b = claims(now);
            b[k] = v;
            sign_rs(RSA_PEM, "k1", &b)
        };
        assert!(refused(&with("aud", json!("someone-else")), &rs, now).contains("audience"));
        assert!(
            refused(&with("iss", json!("https://evil.example.com")), &rs, now).contains("issuer")
        );
        assert!(refused(&with("nonce", json!("other")), &rs, now).contains("nonce"));
        assert!(refused(&with("exp", json!(now - 60)), &rs, now).contains("expired"));
        assert!(refused(&with("iat", json!(now + 600)), &rs, now).contains("expired"));
        // Several audiences need an azp naming us (and the other audience must be trusted,
        // which by default none is).
        assert!(refused(&with("aud", json!(["mcpgate", "other"])), &rs, now).contains("audience"));
        assert!(refused(&with("azp", json!("other")), &rs, now).contains("azp"));
        // A token within the leeway of its expiry still passes.
        assert!(
            verify_id_token(&with("exp", json!(now - 2)), &jwks(), &expected(now, &rs)).is_ok()
        );
    }

    #[test]
    fn algorithms_none_and_hs_are_refused_unless_listed() {
        let now = 1_700_000_000;
        let rs = ["RS256".to_string()];
        assert!(
            refused(&unsigned(&claims(now)), &rs, now).contains("algorithm")
                || refused(&unsigned(&claims(now)), &rs, now).contains("signed")
        );
        assert!(refused(&sign_hs(&claims(now)), &rs, now).contains("algorithm"));
        let hs = ["HS256".to_string()];
        assert!(verify_id_token(&sign_hs(&claims(now)), &jwks(), &expected(now, &hs)).is_ok());
        // Listing HS256 never lets `none` through.
        assert!(verify_id_token(&unsigned(&claims(now)), &jwks(), &expected(now, &hs)).is_err());
    }

    #[test]
    fn an_unknown_key_is_reported_as_such_and_a_forged_signature_is_refused() {
        let now = 1_700_000_000;
        let rs = ["RS256".to_string()];
        assert_eq!(
            verify_id_token(
                &sign_rs(OTHER_RSA_PEM, "k2", &claims(now)),
                &jwks(),
                &expected(now, &rs)
            ),
            Err(IdTokenError::UnknownKey)
        );
        // Signed by another key under our kid.
        assert!(
            refused(&sign_rs(OTHER_RSA_PEM, "k1", &claims(now)), &rs, now).contains("signature")
        );
    }

    #[test]
    fn azp_rules() {
        assert!(check_azp(&json!({"aud": "c"}), "c").is_ok());
        assert!(check_azp(&json!({"aud": ["c", "d"], "azp": "c"}), "c").is_ok());
        assert!(check_azp(&json!({"aud": ["c", "d"]}), "c").is_err());
        assert!(check_azp(&json!({"aud": "c", "azp": "d"}), "c").is_err());
    }

    #[test]
    fn tokens_debug_redacts() {
        let t = ProviderTokens {
            access_token: "at-secret".into(),
            refresh_token: Some("rt-secret".into()),
            id_token: Some("id-secret".into()),
            expires_in: Some(60),
        };
        let shown = format!("{t:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
