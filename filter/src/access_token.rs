//! Access-token (TE) verification: a compact JWS signed by the token service (architecture.md,
//! "Access tokens"). Pure Rust, no host calls: the caller passes the current time.
//!
//! Order of checks: size and shape, header `alg` equal to the configured algorithm (jwt-simple
//! would also accept `Ed25519` for EdDSA keys; the contract says exactly the configured name),
//! header `typ` `at+jwt` (RFC 9068; the token service signs user assertions with the same key,
//! `typ: JWT`, and those must never work as bearer tokens), `kid` present and known, signature, `iss`, `iat`/`nbf` not in the future, `exp` in the future
//! (both with leeway). The audience and expiry are checked per request by
//! [`AccessClaims::check_for_route`], so a verified token can be cached once and still be held
//! to the route it is presented on.

use std::collections::HashSet;
use std::fmt;
use std::rc::Rc;

use jwt_simple::algorithms::EdDSAPublicKeyLike;
use jwt_simple::claims::{Audiences, JWTClaims};
use jwt_simple::common::VerificationOptions;
use jwt_simple::reexports::coarsetime::{Duration, UnixTimeStamp};
use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Decoder};
use jwt_simple::token::Token;
use jwt_simple::JWTError;
use mcpgate_policy::Identity;
use serde::Deserialize;

use crate::jwks::KeySet;
use crate::revocation::Revocations;

/// Larger tokens are rejected before any parsing (a TE is well under 1 KB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The only accepted JOSE `typ` (RFC 9068 §2.1; `application/at+jwt` is the same media type).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// Leeway is capped so time arithmetic stays far from overflow whatever the configuration says.
pub const MAX_LEEWAY_SECONDS: u64 = 24 * 3600;

/// What a token must match besides its audience.
#[derive(Debug, Clone, Copy)]
pub struct VerifyParams<'a> {
    pub issuer: &'a str,
    /// The only accepted header `alg`, e.g. `EdDSA`.
    pub algorithm: &'a str,
    pub leeway_seconds: u64,
}

impl VerifyParams<'_> {
    fn leeway(&self) -> u64 {
        self.leeway_seconds.min(MAX_LEEWAY_SECONDS)
    }
}

/// The verified claims the filter uses.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessClaims {
    pub sub: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub client_id: Option<String>,
    pub sid: Option<String>,
    pub jti: Option<String>,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// `aud`, a string or an array in the token; the route resource must be one of them.
    pub audiences: Vec<String>,
    /// The key the token was verified with (a cached token is dropped if its key disappears).
    pub kid: String,
    /// The policy identity (sub, email, groups and every claim for `claim` criteria), built
    /// once per verified token and shared by the requests that present it.
    pub identity: Rc<Identity>,
}

#[derive(Deserialize)]
struct CustomClaims {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    groups: Option<Vec<String>>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    sid: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a compact JWS with a JSON header and claims (wrong number of parts, bad base64, …).
    Malformed,
    TooLarge,
    /// Header `alg` is not the configured algorithm (`HS256`, `none`, `ES256`, `Ed25519`, …).
    UnsupportedAlgorithm,
    /// Header `typ` is not `at+jwt`: another kind of JWT (a user assertion, an ID token).
    WrongType,
    MissingKeyId,
    /// `kid` is not in the key set: the caller may refresh the JWKS once and retry.
    UnknownKeyId,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    Expired,
    /// `iat` or `nbf` is in the future beyond the leeway.
    NotYetValid,
    MissingClaim(&'static str),
    /// Its `jti` or its subject is on the token service's revocation list.
    Revoked,
}

impl TokenError {
    /// A short description, safe for a response and a log line: it never contains the token.
    pub fn description(&self) -> &'static str {
        match self {
            TokenError::Malformed => "the access token is malformed",
            TokenError::TooLarge => "the access token is too large",
            TokenError::UnsupportedAlgorithm => {
                "the access token is not signed with the accepted algorithm"
            }
            TokenError::WrongType => "the token is not an access token",
            TokenError::MissingKeyId => "the access token has no key id",
            TokenError::UnknownKeyId => "the access token is signed with an unknown key",
            TokenError::BadSignature => "the access token signature is invalid",
            TokenError::WrongIssuer => "the access token was not issued by this gateway",
            TokenError::WrongAudience => "the access token is not valid for this resource",
            TokenError::Expired => "the access token has expired",
            TokenError::NotYetValid => "the access token is not valid yet",
            TokenError::MissingClaim(_) => "the access token lacks a required claim",
            TokenError::Revoked => "token revoked",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::MissingClaim(claim) => write!(f, "{} ({claim})", self.description()),
            _ => f.write_str(self.description()),
        }
    }
}

impl std::error::Error for TokenError {}

/// The `kid` of a token's header, when it is well formed, uses the configured algorithm and is
/// typed `at+jwt`. Cheap (no signature check); lets the caller decide whether a JWKS refresh can
/// help.
pub fn peek_kid(token: &str, algorithm: &str) -> Result<String, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    if token.split('.').count() != 3 {
        return Err(TokenError::Malformed);
    }
    let meta = Token::decode_metadata(token).map_err(|_| TokenError::Malformed)?;
    if meta.algorithm() != algorithm {
        return Err(TokenError::UnsupportedAlgorithm);
    }
    if !meta.signature_type().is_some_and(is_access_token_type) {
        return Err(TokenError::WrongType);
    }
    match meta.key_id() {
        Some(kid) if !kid.is_empty() => Ok(kid.to_owned()),
        _ => Err(TokenError::MissingKeyId),
    }
}

/// `at+jwt` or `application/at+jwt`, in any case (media type names are case-insensitive).
fn is_access_token_type(typ: &str) -> bool {
    const MEDIA_PREFIX: &str = "application/";
    let typ = match typ.get(..MEDIA_PREFIX.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(MEDIA_PREFIX) => {
            typ.get(MEDIA_PREFIX.len()..).unwrap_or_default()
        }
        _ => typ,
    };
    typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
}

/// Verify everything but the audience; `now` is unix seconds from the host clock.
pub fn verify_signed(
    token: &str,
    keys: &KeySet,
    params: &VerifyParams<'_>,
    now: u64,
) -> Result<AccessClaims, TokenError> {
    let kid = peek_kid(token, params.algorithm)?;
    let key = keys.get(&kid).ok_or(TokenError::UnknownKeyId)?;
    let leeway = params.leeway();
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([params.issuer.to_owned()])),
        time_tolerance: Some(Duration::from_secs(leeway)),
        // The host clock, not WASI's: verification must not depend on the VM's clock imports.
        artificial_time: Some(UnixTimeStamp::from_secs(now)),
        max_token_length: Some(MAX_TOKEN_BYTES),
        accept_future: false,
        ..VerificationOptions::default()
    };
    let claims: JWTClaims<CustomClaims> =
        key.verify_token(token, Some(options)).map_err(map_error)?;
    let exp = claims
        .expires_at
        .ok_or(TokenError::MissingClaim("exp"))?
        .as_secs();
    let sub = claims
        .subject
        .filter(|s| !s.is_empty())
        .ok_or(TokenError::MissingClaim("sub"))?;
    let email = claims.custom.email;
    let groups = claims.custom.groups.unwrap_or_default();
    let identity = Rc::new(Identity {
        user: sub.clone(),
        email: email.clone(),
        groups: groups.clone(),
        claims: claims_json(token),
    });
    let claims_out = AccessClaims {
        sub,
        email,
        groups,
        client_id: claims.custom.client_id,
        sid: claims.custom.sid,
        jti: claims.jwt_id,
        exp,
        audiences: match claims.audiences {
            Some(Audiences::AsString(aud)) => vec![aud],
            Some(Audiences::AsSet(set)) => set.into_iter().collect(),
            None => return Err(TokenError::MissingClaim("aud")),
        },
        kid,
        identity,
    };
    // jwt-simple accepts `now == exp + leeway`; RFC 7519 wants `now` strictly before `exp`.
    claims_out.check_expiry(now, leeway)?;
    Ok(claims_out)
}

/// The verified token's payload as JSON (for `claim` policy criteria); `Null` if it cannot be
/// decoded again (it just was, by the verifier, so that does not happen).
pub(crate) fn claims_json(token: &str) -> serde_json::Value {
    let Some(payload) = token.split('.').nth(1) else {
        return serde_json::Value::Null;
    };
    Base64UrlSafeNoPadding::decode_to_vec(payload, None)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Full verification for one route: [`verify_signed`] then [`AccessClaims::check_for_route`].
pub fn verify(
    token: &str,
    keys: &KeySet,
    params: &VerifyParams<'_>,
    resource: &str,
    now: u64,
) -> Result<AccessClaims, TokenError> {
    let claims = verify_signed(token, keys, params, now)?;
    claims.check_for_route(resource, now, params.leeway_seconds)?;
    Ok(claims)
}

impl AccessClaims {
    /// The per-request checks, also applied to cached tokens: the audience is the route's
    /// resource (exact match) and the token has not expired since it was verified.
    pub fn check_for_route(
        &self,
        resource: &str,
        now: u64,
        leeway_seconds: u64,
    ) -> Result<(), TokenError> {
        self.check_expiry(now, leeway_seconds.min(MAX_LEEWAY_SECONDS))?;
        if !self.audiences.iter().any(|aud| aud == resource) {
            return Err(TokenError::WrongAudience);
        }
        Ok(())
    }

    /// What a request on `resource` is decided with: [`AccessClaims::check_for_route`], then the
    /// revocation list (the token's `jti` or its subject).
    pub fn identity_for_route(
        &self,
        resource: &str,
        now: u64,
        leeway_seconds: u64,
        revocations: &Revocations,
    ) -> Result<Rc<Identity>, TokenError> {
        self.check_for_route(resource, now, leeway_seconds)?;
        if revocations.is_revoked(self.jti.as_deref(), &self.sub) {
            return Err(TokenError::Revoked);
        }
        Ok(Rc::clone(&self.identity))
    }

    fn check_expiry(&self, now: u64, leeway_seconds: u64) -> Result<(), TokenError> {
        if now < self.exp.saturating_add(leeway_seconds) {
            Ok(())
        } else {
            Err(TokenError::Expired)
        }
    }
}

fn map_error(err: jwt_simple::Error) -> TokenError {
    match err.downcast_ref::<JWTError>() {
        Some(JWTError::InvalidSignature) => TokenError::BadSignature,
        Some(JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing) => {
            TokenError::WrongIssuer
        }
        Some(JWTError::TokenHasExpired) => TokenError::Expired,
        Some(JWTError::ClockDrift | JWTError::TokenNotValidYet) => TokenError::NotYetValid,
        Some(JWTError::AlgorithmMismatch) => TokenError::UnsupportedAlgorithm,
        Some(JWTError::TokenTooLong) => TokenError::TooLarge,
        _ => TokenError::Malformed,
    }
}

#[cfg(test)]
#[path = "access_token_tests.rs"]
mod tests;
