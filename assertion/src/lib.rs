//! The identity assertion (`x-mcpgate-assertion`): a short-lived JWT the gateway adds to every
//! request it forwards to a server or client route, so the upstream can trust who the caller is
//! without seeing the caller's token.
//!
//! This crate is the one definition of that contract: the claims the token service signs
//! ([`AssertionClaims`]) and the checks an upstream must make before trusting them
//! ([`verify`], [`Verifier`]): EdDSA with a key from the gateway's JWKS, `typ: JWT` (never an
//! access token's `at+jwt`), the gateway's issuer, the upstream's own route URL as audience, and
//! an unexpired `exp`.

#[cfg(feature = "axum")]
pub mod axum_layer;
mod jwks;
mod verifier;

pub use jwks::{Jwks, JwksError};
pub use verifier::{verify, Identity, Verifier, VerifyError};

use serde::{Deserialize, Serialize};

/// The request header that carries the assertion.
pub use mcpgate_config::paths::ASSERTION_HEADER as HEADER;
/// The `typ` header of an assertion (access tokens are `at+jwt`).
pub const TYP: &str = "JWT";
/// How long an assertion is valid, in seconds.
pub const LIFETIME_SECS: i64 = 300;
/// Clock skew tolerated when checking `exp`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// The non-registered claims of an assertion (`iss`, `sub`, `aud`, `iat`, `exp`, `jti` are the
/// registered ones).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AssertionClaims {
    pub email: String,
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}
