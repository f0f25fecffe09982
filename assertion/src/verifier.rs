//! Checking an assertion: [`verify`] against a key set in hand, [`Verifier`] against the
//! gateway's published JWKS (fetched once, fetched again when a token names a key it does not
//! know, at most every [`REFETCH_INTERVAL`]).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use jwt_simple::prelude::{EdDSAPublicKeyLike, Token, VerificationOptions};
use tokio::sync::Mutex;

use crate::{AssertionClaims, Jwks, JwksError, LEEWAY_SECS, TYP};

/// How often an unknown `kid` may trigger a new JWKS fetch (the gateway rotates keys rarely).
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Who the gateway says the caller is, after every check passed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// The user (`alice`, `corp:0042`) or service account (`sa:<id>`).
    pub sub: String,
    pub email: String,
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub issuer: String,
    /// The route URL the assertion was made for.
    pub audience: String,
    /// Unix seconds.
    pub issued_at: Option<u64>,
    /// Unix seconds.
    pub expires_at: u64,
    pub jwt_id: Option<String>,
}

/// Why an assertion is not trusted. No variant carries the assertion itself.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("no `x-mcpgate-assertion` header: the request did not come through the gateway")]
    Missing,
    #[error("the assertion is not a JWT")]
    Malformed,
    #[error("the assertion's `typ` is `{0}`, not `JWT` (an access token is not an assertion)")]
    WrongType(String),
    #[error("the assertion is signed with a key the gateway does not publish")]
    UnknownKey,
    #[error("the assertion was refused: {0}")]
    Invalid(String),
    #[error("the assertion was issued by `{found}`, not the gateway `{expected}`")]
    WrongIssuer { expected: String, found: String },
    #[error("the assertion is for `{found}`, not this upstream `{expected}`")]
    WrongAudience { expected: String, found: String },
    #[error("the assertion has no `{0}` claim")]
    MissingClaim(&'static str),
    #[error("cannot fetch the gateway's JWKS from {url}: {reason}")]
    Jwks { url: String, reason: String },
}

/// Verifies `token` with `keys`: EdDSA signature, `typ: JWT`, `exp` (with [`LEEWAY_SECS`]),
/// `iss == issuer` and `audience` among `aud`.
pub fn verify(
    token: &str,
    keys: &Jwks,
    issuer: &str,
    audience: &str,
) -> Result<Identity, VerifyError> {
    let metadata = Token::decode_metadata(token).map_err(|_| VerifyError::Malformed)?;
    if metadata.signature_type() != Some(TYP) {
        return Err(VerifyError::WrongType(
            metadata.signature_type().unwrap_or("none").to_string(),
        ));
    }
    if metadata.algorithm() != "EdDSA" {
        return Err(VerifyError::Invalid(format!(
            "algorithm {} is not EdDSA",
            metadata.algorithm()
        )));
    }
    let key = keys.key(metadata.key_id()).ok_or(VerifyError::UnknownKey)?;
    let options = VerificationOptions {
        required_signature_type: Some(TYP.into()),
        time_tolerance: Some(jwt_simple::prelude::Duration::from_secs(LEEWAY_SECS)),
        ..Default::default()
    };
    let claims = key
        .verify_token::<AssertionClaims>(token, Some(options))
        .map_err(|e| VerifyError::Invalid(e.to_string()))?;

    let found_issuer = claims
        .issuer
        .clone()
        .ok_or(VerifyError::MissingClaim("iss"))?;
    if found_issuer != issuer {
        return Err(VerifyError::WrongIssuer {
            expected: issuer.to_string(),
            found: found_issuer,
        });
    }
    let audiences: HashSet<String> = claims
        .audiences
        .clone()
        .ok_or(VerifyError::MissingClaim("aud"))?
        .into_set();
    if !audiences.contains(audience) {
        let mut found: Vec<_> = audiences.into_iter().collect();
        found.sort();
        return Err(VerifyError::WrongAudience {
            expected: audience.to_string(),
            found: found.join(" "),
        });
    }
    let expires_at = claims
        .expires_at
        .ok_or(VerifyError::MissingClaim("exp"))?
        .as_secs();
    Ok(Identity {
        sub: claims.subject.ok_or(VerifyError::MissingClaim("sub"))?,
        email: claims.custom.email,
        groups: claims.custom.groups,
        name: claims.custom.name,
        issuer: found_issuer,
        audience: audience.to_string(),
        issued_at: claims.issued_at.map(|t| t.as_secs()),
        expires_at,
        jwt_id: claims.jwt_id,
    })
}

/// Verifies assertions for one upstream (`audience`) against the gateway's published JWKS.
pub struct Verifier {
    issuer: String,
    audience: String,
    jwks_url: String,
    http: reqwest::Client,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    keys: Option<Jwks>,
    fetched_at: Option<Instant>,
}

impl Verifier {
    /// `issuer`: the gateway's issuer; `audience`: this upstream's route URL (the route's `from`);
    /// `jwks_url`: usually `<issuer>/.well-known/jwks.json`.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        jwks_url: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: jwks_url.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// A verifier for the route `route_url` of the gateway `issuer`, with the gateway's JWKS at
    /// `jwks_url` or, by default, `<issuer>/.well-known/jwks.json`.
    pub fn for_route(issuer: &str, route_url: impl Into<String>, jwks_url: Option<String>) -> Self {
        let issuer = issuer.trim_end_matches('/');
        let jwks_url = jwks_url.unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json"));
        Self::new(issuer, route_url, jwks_url)
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Verifies the header's value (`None`: the header was absent).
    pub async fn verify(&self, header: Option<&str>) -> Result<Identity, VerifyError> {
        let token = header
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(VerifyError::Missing)?;
        let kid = Token::decode_metadata(token)
            .map_err(|_| VerifyError::Malformed)?
            .key_id()
            .map(str::to_string);
        let keys = self.keys_for(kid.as_deref()).await?;
        verify(token, &keys, &self.issuer, &self.audience)
    }

    /// The cached key set, fetched first when empty or (rate-limited) when it lacks `kid`.
    async fn keys_for(&self, kid: Option<&str>) -> Result<Jwks, VerifyError> {
        let mut cache = self.cache.lock().await;
        let stale = match (&cache.keys, cache.fetched_at) {
            (Some(keys), _) if keys.has(kid) => false,
            (Some(_), Some(at)) => at.elapsed() >= REFETCH_INTERVAL,
            _ => true,
        };
        if stale {
            cache.fetched_at = Some(Instant::now());
            cache.keys = Some(self.fetch().await?);
        }
        cache.keys.clone().ok_or_else(|| VerifyError::Jwks {
            url: self.jwks_url.clone(),
            reason: "no key set".into(),
        })
    }

    async fn fetch(&self) -> Result<Jwks, VerifyError> {
        let failed = |reason: String| VerifyError::Jwks {
            url: self.jwks_url.clone(),
            reason,
        };
        let response = self
            .http
            .get(&self.jwks_url)
            .send()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        Jwks::parse(&body).map_err(|e: JwksError| failed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jwt_simple::prelude::*;
    type JDuration = jwt_simple::prelude::Duration;

    const ISSUER: &str = "http://localhost:18080";
    const AUD: &str = "http://localhost:18080/whoami";

    fn key_pair() -> Ed25519KeyPair {
        Ed25519KeyPair::generate().with_key_id("k1")
    }

    fn jwks_of(key: &Ed25519KeyPair) -> Jwks {
        let x = URL_SAFE_NO_PAD.encode(key.public_key().to_bytes());
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa"},
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA", "use": "sig"}
        ]});
        Jwks::parse(doc.to_string().as_bytes()).expect("jwks")
    }

    fn sign(
        key: &Ed25519KeyPair,
        typ: &str,
        issuer: &str,
        audience: &str,
        valid_secs: u64,
    ) -> String {
        let claims = Claims::with_custom_claims(
            AssertionClaims {
                email: "alice@example.com".into(),
                groups: vec!["engineering".into()],
                name: Some("Alice".into()),
            },
            JDuration::from_secs(valid_secs),
        )
        .with_issuer(issuer)
        .with_audience(audience)
        .with_subject("alice");
        let options = HeaderOptions {
            signature_type: Some(typ.into()),
            ..Default::default()
        };
        key.sign_with_options(claims, &options).expect("sign")
    }

    #[test]
    fn a_gateway_assertion_for_this_upstream_verifies() {
        let key = key_pair();
        let identity = verify(
            &sign(&key, "JWT", ISSUER, AUD, 300),
            &jwks_of(&key),
            ISSUER,
            AUD,
        )
        .expect("verifies");
        assert_eq!(identity.sub, "alice");
        assert_eq!(identity.email, "alice@example.com");
        assert_eq!(identity.groups, vec!["engineering".to_string()]);
        assert_eq!(identity.name.as_deref(), Some("Alice"));
        assert_eq!(identity.audience, AUD);
    }

    #[test]
    fn access_tokens_other_audiences_issuers_and_keys_are_refused() {
        let key = key_pair();
        let keys = jwks_of(&key);
        assert!(matches!(
            verify(&sign(&key, "at+jwt", ISSUER, AUD, 300), &keys, ISSUER, AUD),
            Err(VerifyError::WrongType(t)) if t == "at+jwt"
        ));
        assert!(matches!(
            verify(
                &sign(&key, "JWT", ISSUER, "http://localhost:18080/notes", 300),
                &keys,
                ISSUER,
                AUD
            ),
            Err(VerifyError::WrongAudience { .. })
        ));
        assert!(matches!(
            verify(
                &sign(&key, "JWT", "http://evil", AUD, 300),
                &keys,
                ISSUER,
                AUD
            ),
            Err(VerifyError::WrongIssuer { .. })
        ));
        let stranger = Ed25519KeyPair::generate().with_key_id("k1");
        assert!(matches!(
            verify(
                &sign(&stranger, "JWT", ISSUER, AUD, 300),
                &keys,
                ISSUER,
                AUD
            ),
            Err(VerifyError::Invalid(_))
        ));
        let unknown = Ed25519KeyPair::generate().with_key_id("k2");
        assert!(matches!(
            verify(&sign(&unknown, "JWT", ISSUER, AUD, 300), &keys, ISSUER, AUD),
            Err(VerifyError::UnknownKey)
        ));
        assert!(matches!(
            verify("not a jwt", &keys, ISSUER, AUD),
            Err(VerifyError::Malformed)
        ));
    }

    #[test]
    fn an_expired_assertion_is_refused() {
        let key = key_pair();
        let claims = Claims::with_custom_claims(
            AssertionClaims {
                email: "a@example.com".into(),
                groups: vec![],
                name: None,
            },
            JDuration::from_secs(1),
        )
        .with_issuer(ISSUER)
        .with_audience(AUD)
        .with_subject("alice");
        let mut claims = claims;
        claims.expires_at = Some(Clock::now_since_epoch() - JDuration::from_secs(LEEWAY_SECS + 60));
        let token = key
            .sign_with_options(
                claims,
                &HeaderOptions {
                    signature_type: Some("JWT".into()),
                    ..Default::default()
                },
            )
            .expect("sign");
        assert!(matches!(
            verify(&token, &jwks_of(&key), ISSUER, AUD),
            Err(VerifyError::Invalid(_))
        ));
    }

    #[test]
    fn a_jwks_without_ed25519_keys_is_an_error() {
        assert!(matches!(
            Jwks::parse(br#"{"keys":[]}"#),
            Err(JwksError::NoKey)
        ));
        assert!(matches!(Jwks::parse(b"[]"), Err(JwksError::Shape(_))));
    }
}
