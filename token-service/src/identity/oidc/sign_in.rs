//! The browser's trip through a provider: `start` stores the sign-in (keyed by the hash of
//! `state`, bound to the browser by the hash of a cookie value, with the encrypted nonce, PKCE
//! verifier and what it continues) and returns the provider's authorization URL; `finish` takes
//! the callback's `state` and `code`, checks the browser binding, exchanges the code, validates
//! the ID token in full, reads userinfo when configured and returns the identity to sign in.

use mcpgate_config::identity::OidcProvider;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::claims::{self, Refusal};
use super::provider::{self, OidcProviders, ProviderError, ProviderTokens};
use crate::identity::users::UserClaims;
use crate::oauth::opaque_token;
use crate::store::{OidcSignIn, Store};
use crate::upstream::tokens::TokenCipher;

/// How long a browser may take at the provider.
pub const SIGN_IN_LIFETIME_SECS: i64 = 600;

/// What a sign-in continues once the provider is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Continuation {
    /// A pending MCP authorization (the `request` id of the sign-in page).
    Authorization { request: String },
    /// A validated `return_to` URL (a client route or a connect URL).
    ReturnTo { url: String },
}

#[derive(Serialize, Deserialize)]
struct Secrets {
    nonce: String,
    pkce_verifier: String,
    continuation: Continuation,
}

fn aad(state_hash: &str, provider: &str) -> Vec<u8> {
    format!(
        "mcpgate-oidc-sign-in-v1|{}|{provider}|{state_hash}",
        provider.len()
    )
    .into_bytes()
}

/// Why a sign-in failed, for the error page and the one log line. No variant carries a token.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The provider is down or misbehaved (502).
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The provider sent the browser back with an error (the person cancelled, or the provider
    /// refused): its `error` code, reduced to safe characters.
    #[error("the provider answered {0}")]
    ProviderDenied(String),
    /// The callback does not belong to a sign-in this browser started (400).
    #[error("this sign-in response does not belong to a sign-in started in this browser, or it has expired")]
    NotThisBrowser,
    /// The identity may not sign in here (403).
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl SignInError {
    /// A short word for the log line.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Provider(e) => e.kind(),
            Self::ProviderDenied(_) => "provider_denied",
            Self::NotThisBrowser => "state_mismatch",
            Self::Refused(_) => "identity_refused",
            Self::Internal(_) => "internal",
        }
    }
}

/// Starts a sign-in for the browser whose sign-in cookie holds `browser_value`; returns the
/// provider URL to send it to.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    providers: &OidcProviders,
    store: &Store,
    cipher: &TokenCipher,
    provider: &OidcProvider,
    redirect_uri: &str,
    browser_value: &str,
    continuation: Continuation,
    now: i64,
) -> Result<String, SignInError> {
    let started = providers.start(provider, redirect_uri).await?;
    let state_hash = opaque_token::hash(&started.state);
    let secrets = Secrets {
        nonce: started.nonce,
        pkce_verifier: started.pkce_verifier,
        continuation,
    };
    let plain = serde_json::to_vec(&secrets).map_err(anyhow::Error::from)?;
    let (ciphertext, nonce) = cipher.seal(&aad(&state_hash, &provider.id), &plain)?;
    store
        .insert_oidc_sign_in(&OidcSignIn {
            state_hash,
            browser_hash: opaque_token::hash(browser_value),
            provider: provider.id.clone(),
            ciphertext,
            nonce,
            created_at: now,
            expires_at: now + SIGN_IN_LIFETIME_SECS,
        })
        .await?;
    Ok(started.url)
}

/// The provider's callback parameters.
pub struct Callback<'a> {
    pub state: Option<&'a str>,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
    /// The browser's sign-in cookie value.
    pub browser_value: Option<&'a str>,
}

/// A finished sign-in.
pub struct SignedIn {
    pub user: UserClaims,
    /// The provider's `sub`.
    pub subject: String,
    pub tokens: ProviderTokens,
    pub id_token_expires_at: i64,
    pub continuation: Continuation,
}

/// The continuation of the sign-in a callback names, when it belongs to this browser; taken
/// (single use) either way.
pub async fn take(
    store: &Store,
    cipher: &TokenCipher,
    provider: &OidcProvider,
    state: Option<&str>,
    browser_value: Option<&str>,
    now: i64,
) -> Result<(String, String, Continuation), SignInError> {
    let state = state
        .filter(|s| !s.is_empty() && s.len() <= 512)
        .ok_or(SignInError::NotThisBrowser)?;
    let state_hash = opaque_token::hash(state);
    let record = store
        .take_oidc_sign_in(&state_hash, now)
        .await?
        .ok_or(SignInError::NotThisBrowser)?;
    let bound = record.provider == provider.id
        && browser_value.is_some_and(|v| opaque_token::matches(v, &record.browser_hash));
    if !bound {
        return Err(SignInError::NotThisBrowser);
    }
    let plain = cipher.open(
        &aad(&state_hash, &provider.id),
        &record.ciphertext,
        &record.nonce,
    )?;
    let secrets: Secrets = serde_json::from_slice(&plain).map_err(anyhow::Error::from)?;
    Ok((secrets.nonce, secrets.pkce_verifier, secrets.continuation))
}

/// Finishes a sign-in at the callback.
#[allow(clippy::too_many_arguments)]
pub async fn finish(
    providers: &OidcProviders,
    store: &Store,
    cipher: &TokenCipher,
    provider: &OidcProvider,
    redirect_uri: &str,
    callback: &Callback<'_>,
    now: i64,
    leeway_secs: i64,
) -> Result<SignedIn, (SignInError, Option<Continuation>)> {
    let (nonce, verifier, continuation) = take(
        store,
        cipher,
        provider,
        callback.state,
        callback.browser_value,
        now,
    )
    .await
    .map_err(|e| (e, None))?;
    let fail = |e: SignInError| (e, Some(continuation.clone()));
    if let Some(error) = callback.error {
        let safe: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(fail(SignInError::ProviderDenied(safe)));
    }
    let code = callback
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| fail(SignInError::ProviderDenied("no code".into())))?;
    let tokens = providers
        .exchange_code(provider, redirect_uri, code, &verifier)
        .await
        .map_err(|e| fail(e.into()))?;
    let id_token = tokens.id_token.as_deref().ok_or_else(|| {
        fail(ProviderError::InvalidIdToken("the token response has no ID token".into()).into())
    })?;
    let id_claims = providers
        .verify_id_token(provider, id_token, Some(&nonce), now, leeway_secs)
        .await
        .map_err(|e| fail(e.into()))?;
    let userinfo: Option<Value> = if provider.userinfo {
        Some(
            providers
                .userinfo(provider, &tokens.access_token)
                .await
                .map_err(|e| fail(e.into()))?,
        )
    } else {
        None
    };
    let merged =
        claims::merge_userinfo(&id_claims, userinfo.as_ref()).map_err(|e| fail(e.into()))?;
    let user = claims::identity(provider, &merged).map_err(|e| fail(e.into()))?;
    let subject = merged
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(SignedIn {
        user,
        subject,
        id_token_expires_at: provider::expiry(&id_claims).unwrap_or(now),
        tokens,
        continuation,
    })
}
