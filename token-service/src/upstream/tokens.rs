//! Upstream OAuth tokens: what the token service holds for a user and a server route whose MCP
//! server wants its own OAuth token (TI). Tokens are stored encrypted (XChaCha20-Poly1305, the
//! associated data binding user and route, so a row cannot be moved to another user) and
//! refreshed shortly before they expire, once per token even across replicas sharing a database:
//! an in-process lock per token plus a lease in the row.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use mcpgate_config::gateway::ServerRoute;
use mcpgate_config::GatewayConfig;
use serde::{Deserialize, Serialize};

use crate::clock::now;
use crate::oauth::opaque_token;
use crate::state::AppState;
use crate::store::{NewUpstreamToken, UpstreamLease, UpstreamTokenRow};
use crate::telemetry::metrics::UpstreamRefresh;
use crate::upstream::provider::{ProviderError, TokenSet, UpstreamOAuth};

/// How often a caller looks whether another replica's refresh finished or its lease ran out.
const LEASE_POLL: Duration = Duration::from_millis(200);
/// The most a token is refreshed ahead of its expiry.
pub const MAX_REFRESH_MARGIN_SECS: i64 = 60;

/// The upstream token for a user and route, as the internal API needs it.
#[derive(Clone, PartialEq, Eq)]
pub enum Fresh {
    /// A usable access token. `refresh_at` is when the token service will refresh it (or, for a
    /// token it cannot refresh, when it expires): callers cache it no longer than that. Both are
    /// `None` for a token the provider gave no expiry.
    Token {
        access_token: String,
        expires_at: Option<i64>,
        refresh_at: Option<i64>,
    },
    /// No token stored, or the provider refused to refresh it (the row was deleted).
    NotConnected,
    /// The provider could not be reached or answered 5xx; the stored token is kept. The reason
    /// never contains a token.
    Unavailable(String),
}

impl std::fmt::Debug for Fresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fresh::Token {
                expires_at,
                refresh_at,
                ..
            } => f
                .debug_struct("Token")
                .field("access_token", &"<redacted>")
                .field("expires_at", expires_at)
                .field("refresh_at", refresh_at)
                .finish(),
            Fresh::NotConnected => f.write_str("NotConnected"),
            Fresh::Unavailable(r) => f.debug_tuple("Unavailable").field(r).finish(),
        }
    }
}

/// How far ahead of expiry a token is refreshed: a minute, or half its lifetime when shorter.
pub fn refresh_margin(lifetime_secs: i64) -> i64 {
    (lifetime_secs / 2).clamp(0, MAX_REFRESH_MARGIN_SECS)
}

/// When a token obtained at `issued_at` and expiring at `expires_at` is refreshed.
pub fn refresh_at(issued_at: i64, expires_at: i64) -> i64 {
    expires_at - refresh_margin(expires_at - issued_at)
}

// --- encryption ------------------------------------------------------------------------------

/// The AEAD key for stored upstream secrets.
pub struct TokenCipher {
    aead: XChaCha20Poly1305,
}

impl TokenCipher {
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self {
            aead: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// Loads the base64 key at `path`, or generates and writes one (0600) when it does not exist.
    pub fn load_or_generate(path: &Path) -> anyhow::Result<Self> {
        const FIELD: &str = "token_service.upstream_token_key_file";
        // Replicas starting at once on one volume agree on one key (see `key_files`).
        let (text, created) = crate::runtime::key_files::read_or_create(path, FIELD, || {
            format!(
                "{}\n",
                STANDARD.encode(XChaCha20Poly1305::generate_key(&mut OsRng))
            )
        })?;
        if created {
            tracing::info!(path = %path.display(), "generated a new upstream token key");
        }
        let bytes = STANDARD.decode(text.trim()).ok();
        let key: [u8; 32] = bytes.and_then(|b| b.try_into().ok()).ok_or_else(|| {
            anyhow::anyhow!(
                "{FIELD}: {} must hold 32 bytes, base64-encoded",
                path.display()
            )
        })?;
        Ok(Self::from_key(&key))
    }

    /// Encrypts `plaintext`; returns (ciphertext, nonce), both base64.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> anyhow::Result<(String, String)> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("encrypting an upstream secret failed"))?;
        Ok((STANDARD.encode(ciphertext), STANDARD.encode(nonce)))
    }

    /// Decrypts what `seal` returned; fails for another key or other associated data.
    pub fn open(&self, aad: &[u8], ciphertext: &str, nonce: &str) -> anyhow::Result<Vec<u8>> {
        let nonce = STANDARD
            .decode(nonce)
            .ok()
            .filter(|n| n.len() == 24)
            .ok_or_else(|| anyhow::anyhow!("stored nonce is malformed"))?;
        let ciphertext = STANDARD
            .decode(ciphertext)
            .map_err(|_| anyhow::anyhow!("stored ciphertext is malformed"))?;
        self.aead
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad,
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "stored upstream secret does not decrypt (another key, or moved to another row)"
                )
            })
    }
}

/// Associated data of a stored token: length-prefixed so no (user, route) pair can collide.
pub fn token_aad(username: &str, route: &str) -> Vec<u8> {
    format!(
        "mcpgate-upstream-token-v1|{}|{username}|{route}",
        username.len()
    )
    .into_bytes()
}

/// The encrypted part of a row.
#[derive(Serialize, Deserialize)]
struct Secrets {
    access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

// --- shared state ----------------------------------------------------------------------------

/// Upstream OAuth state kept in `AppState`: the key, the provider client and refresh locks.
pub struct UpstreamTokens {
    cipher: Option<TokenCipher>,
    pub oauth: UpstreamOAuth,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl UpstreamTokens {
    /// Loads (or creates) the key when `upstream_token_key_file` is set.
    pub fn new(config: &GatewayConfig, routes: &[ServerRoute]) -> anyhow::Result<Self> {
        let cipher = match &config.token_service.upstream_token_key_file {
            Some(path) => Some(TokenCipher::load_or_generate(path)?),
            None if routes.iter().any(|r| r.upstream_oauth2.is_some()) => anyhow::bail!(
                "token_service.upstream_token_key_file is required when a route has upstream_oauth2"
            ),
            None => None,
        };
        Ok(Self {
            cipher,
            oauth: UpstreamOAuth::new(config.token_service.upstream_request_timeout)?,
            locks: Mutex::new(HashMap::new()),
        })
    }

    pub fn cipher(&self) -> anyhow::Result<&TokenCipher> {
        self.cipher
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("token_service.upstream_token_key_file is not set"))
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(key.to_string()).or_default().clone()
    }

    /// Drops the lock's map entry when nobody else holds or waits for it.
    fn release_lock(&self, key: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&lock) <= 2 {
            locks.remove(key);
        }
    }
}

// --- storage ---------------------------------------------------------------------------------

fn seal_secrets(
    cipher: &TokenCipher,
    username: &str,
    route: &str,
    secrets: &Secrets,
) -> anyhow::Result<(String, String)> {
    cipher.seal(&token_aad(username, route), &serde_json::to_vec(secrets)?)
}

fn open_secrets(
    cipher: &TokenCipher,
    username: &str,
    route: &str,
    row: &UpstreamTokenRow,
) -> anyhow::Result<Secrets> {
    let plain = cipher.open(&token_aad(username, route), &row.ciphertext, &row.nonce)?;
    Ok(serde_json::from_slice(&plain)?)
}

fn expiry(issued_at: i64, expires_in: Option<u64>) -> Option<i64> {
    expires_in.map(|s| issued_at.saturating_add(i64::try_from(s).unwrap_or(i64::MAX / 4)))
}

/// Stores (or replaces) the user's token for `route` after a code exchange; clears any lease.
pub async fn store(
    state: &AppState,
    username: &str,
    route: &ServerRoute,
    tokens: &TokenSet,
    t: i64,
) -> anyhow::Result<()> {
    let cipher = state.upstream.cipher()?;
    let secrets = Secrets {
        access_token: tokens.access_token.clone(),
        refresh_token: tokens.refresh_token.clone(),
        scope: tokens.scope.clone(),
    };
    let (ciphertext, nonce) = seal_secrets(cipher, username, &route.resource, &secrets)?;
    state
        .store
        .upsert_upstream_token(&NewUpstreamToken {
            username,
            route: &route.resource,
            ciphertext: &ciphertext,
            nonce: &nonce,
            issued_at: t,
            expires_at: expiry(t, tokens.expires_in),
            refreshable: secrets.refresh_token.is_some(),
        })
        .await
}

/// Deletes the user's token for `route`; true when there was one (then the disconnect is
/// recorded for the revocation list).
async fn delete(state: &AppState, username: &str, route: &str) -> anyhow::Result<bool> {
    let deleted = state.store.delete_upstream_token(username, route).await?;
    if deleted {
        record_disconnect(state, username, route).await?;
    }
    Ok(deleted)
}

/// Lists a deleted token's (user, route) in the revocation list, so the filter stops reusing a
/// copy it cached. The moment is taken after the deletion: a copy the filter asked for at or
/// before it may be the deleted token.
async fn record_disconnect(state: &AppState, username: &str, route: &str) -> anyhow::Result<()> {
    state
        .store
        .record_upstream_disconnect(username, route, now())
        .await
}

/// `None` when the user has no usable upstream token for `route` (none stored, or expired with
/// nothing to refresh it); otherwise its expiry (if any). Always `None` for routes without
/// `upstream_oauth2`.
pub async fn status(
    state: &AppState,
    username: &str,
    route: &ServerRoute,
) -> anyhow::Result<Option<Option<i64>>> {
    if route.upstream_oauth2.is_none() {
        return Ok(None);
    }
    let Some((expires_at, refreshable)) = state
        .store
        .upstream_token_expiry(username, &route.resource)
        .await?
    else {
        return Ok(None);
    };
    if !refreshable && expires_at.is_some_and(|e| e <= now()) {
        return Ok(None);
    }
    Ok(Some(expires_at))
}

/// Deletes the user's upstream tokens: for one route, or all of them.
pub async fn forget(
    state: &AppState,
    username: &str,
    route: Option<&ServerRoute>,
) -> anyhow::Result<()> {
    let routes: Vec<String> = match route {
        Some(route) => vec![route.resource.clone()],
        None => state.store.upstream_token_routes(username).await?,
    };
    let mut deleted = 0u64;
    for route in &routes {
        if delete(state, username, route).await? {
            deleted += 1;
        }
    }
    tracing::info!(
        target: "mcpgate::audit",
        event = "upstream_disconnect",
        user = %username,
        route = %route.map_or("*", |r| r.resource.as_str()),
        tokens = deleted,
    );
    Ok(())
}

// --- freshness -------------------------------------------------------------------------------

enum Decision {
    /// No row.
    Absent,
    Use(Fresh),
    Refresh(Secrets),
    /// A row that can never be used again: deleted, with this reason.
    Gone(&'static str),
}

fn decide(secrets: Secrets, row: &UpstreamTokenRow, t: i64) -> Decision {
    let Some(expires_at) = row.expires_at else {
        return Decision::Use(Fresh::Token {
            access_token: secrets.access_token,
            expires_at: None,
            refresh_at: None,
        });
    };
    let due = refresh_at(row.issued_at, expires_at);
    if t < due {
        return Decision::Use(Fresh::Token {
            access_token: secrets.access_token,
            expires_at: Some(expires_at),
            refresh_at: Some(due),
        });
    }
    if secrets.refresh_token.is_some() {
        return Decision::Refresh(secrets);
    }
    if t < expires_at {
        return Decision::Use(Fresh::Token {
            access_token: secrets.access_token,
            expires_at: Some(expires_at),
            refresh_at: Some(expires_at),
        });
    }
    Decision::Gone("expired without a refresh token")
}

/// Reads the row and decides; undecryptable rows are deleted.
async fn read_and_decide(
    state: &AppState,
    username: &str,
    route: &ServerRoute,
    t: i64,
) -> anyhow::Result<Decision> {
    let Some(row) = state
        .store
        .upstream_token(username, &route.resource)
        .await?
    else {
        return Ok(Decision::Absent);
    };
    match open_secrets(state.upstream.cipher()?, username, &route.resource, &row) {
        Ok(secrets) => Ok(decide(secrets, &row, t)),
        Err(e) => {
            tracing::warn!(user = %username, route = %route.resource, error = %e, "deleting an unreadable upstream token");
            Ok(Decision::Gone("unreadable"))
        }
    }
}

/// A usable upstream access token for `username` on `route`, refreshed first when due.
/// `NotConnected` for routes without `upstream_oauth2`.
pub async fn fresh_token(
    state: &AppState,
    username: &str,
    route: &ServerRoute,
) -> anyhow::Result<Fresh> {
    if route.upstream_oauth2.is_none() {
        return Ok(Fresh::NotConnected);
    }
    match read_and_decide(state, username, route, now()).await? {
        Decision::Absent => return Ok(Fresh::NotConnected),
        Decision::Use(fresh) => return Ok(fresh),
        Decision::Gone(why) => return gone(state, username, route, why).await,
        Decision::Refresh(_) => {}
    }
    let key = format!("{}\n{username}", route.resource);
    let lock = state.upstream.lock_for(&key);
    let result = {
        let _held = lock.lock().await;
        refresh_under_lock(state, username, route).await
    };
    state.upstream.release_lock(&key, lock);
    result
}

async fn gone(
    state: &AppState,
    username: &str,
    route: &ServerRoute,
    why: &str,
) -> anyhow::Result<Fresh> {
    delete(state, username, &route.resource).await?;
    tracing::info!(target: "mcpgate::audit", event = "upstream_disconnect", user = %username, route = %route.resource, reason = why);
    Ok(Fresh::NotConnected)
}

async fn refresh_under_lock(
    state: &AppState,
    username: &str,
    route: &ServerRoute,
) -> anyhow::Result<Fresh> {
    // `token_service.upstream_refresh_lease`, in whole seconds (the row keeps unix seconds).
    let lease_for = state.config.token_service.upstream_refresh_lease;
    let lease_secs = crate::clock::secs(lease_for.saturating_add(Duration::from_millis(999)));
    // A caller waits for another's refresh at most one lease (plus the second the row's clock
    // rounds to): by then the holder has finished, or died and its lease can be taken over.
    let deadline = Instant::now()
        + Duration::from_secs(u64::try_from(lease_secs).unwrap_or(0) + 1)
        + 2 * LEASE_POLL;
    loop {
        let t = now();
        let secrets = match read_and_decide(state, username, route, t).await? {
            Decision::Absent => return Ok(Fresh::NotConnected),
            Decision::Use(fresh) => return Ok(fresh),
            Decision::Gone(why) => return gone(state, username, route, why).await,
            Decision::Refresh(secrets) => secrets,
        };
        let owner = opaque_token::generate();
        let lease = UpstreamLease {
            username,
            route: &route.resource,
            owner: &owner,
        };
        if state
            .store
            .take_upstream_lease(&lease, t + lease_secs, t)
            .await?
        {
            match refresh_with_lease(state, route, secrets, &lease).await? {
                Some(fresh) => return Ok(fresh),
                // The row changed under the lease (reconnected or forgotten): read it again.
                None => continue,
            }
        }
        if Instant::now() >= deadline {
            return Ok(Fresh::Unavailable(
                "another refresh of this token did not finish in time".into(),
            ));
        }
        tokio::time::sleep(LEASE_POLL).await;
    }
}

/// Runs the refresh grant while holding the lease `owner`. `None` when the row changed meanwhile.
async fn refresh_with_lease(
    state: &AppState,
    route: &ServerRoute,
    secrets: Secrets,
    lease: &UpstreamLease<'_>,
) -> anyhow::Result<Option<Fresh>> {
    let username = lease.username;
    let Some(config) = &route.upstream_oauth2 else {
        return Ok(Some(Fresh::NotConnected));
    };
    let Some(refresh_token) = secrets.refresh_token.clone() else {
        return Ok(Some(Fresh::NotConnected));
    };
    let oauth = &state.upstream.oauth;
    let started = Instant::now();
    let result = match oauth.endpoints(route, config).await {
        Ok(endpoints) => oauth.refresh(config, &endpoints, &refresh_token).await,
        Err(e) => Err(e),
    };
    let outcome = match &result {
        Ok(_) => UpstreamRefresh::Refreshed,
        Err(ProviderError::Rejected(_)) => UpstreamRefresh::Rejected,
        Err(_) => UpstreamRefresh::Unavailable,
    };
    state.metrics.upstream_refresh(outcome, started.elapsed());
    let t = now();
    match result {
        Ok(tokens) => {
            let kept = Secrets {
                access_token: tokens.access_token,
                refresh_token: tokens.refresh_token.or(Some(refresh_token)),
                scope: tokens.scope.or(secrets.scope),
            };
            let (ciphertext, nonce) =
                seal_secrets(state.upstream.cipher()?, username, &route.resource, &kept)?;
            let expires_at = expiry(t, tokens.expires_in);
            let updated = state
                .store
                .save_refreshed_upstream_token(lease, &ciphertext, &nonce, t, expires_at)
                .await?;
            if !updated {
                return Ok(None);
            }
            tracing::info!(target: "mcpgate::audit", event = "upstream_refresh", user = %username, route = %route.resource, expires_at = ?expires_at);
            Ok(Some(Fresh::Token {
                access_token: kept.access_token,
                expires_at,
                refresh_at: expires_at.map(|e| refresh_at(t, e)),
            }))
        }
        Err(ProviderError::Rejected(reason)) => {
            if state.store.delete_leased_upstream_token(lease).await? {
                record_disconnect(state, username, &route.resource).await?;
            }
            tracing::info!(target: "mcpgate::audit", event = "upstream_refresh_failed", user = %username, route = %route.resource, outcome = "deleted", reason = %reason);
            Ok(Some(Fresh::NotConnected))
        }
        Err(e) => {
            state.store.release_upstream_lease(lease).await?;
            let reason = e.to_string();
            tracing::warn!(target: "mcpgate::audit", event = "upstream_refresh_failed", user = %username, route = %route.resource, outcome = "kept", reason = %reason);
            Ok(Some(Fresh::Unavailable(reason)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_a_minute_or_half_the_lifetime() {
        assert_eq!(refresh_margin(4), 2);
        assert_eq!(refresh_margin(3600), 60);
        assert_eq!(refresh_margin(120), 60);
        assert_eq!(refresh_margin(100), 50);
        assert_eq!(refresh_margin(0), 0);
        assert_eq!(refresh_margin(-5), 0);
        assert_eq!(refresh_at(1000, 1004), 1002);
        assert_eq!(refresh_at(1000, 4600), 4540);
    }

    fn row(issued_at: i64, expires_at: Option<i64>) -> UpstreamTokenRow {
        UpstreamTokenRow {
            ciphertext: String::new(),
            nonce: String::new(),
            issued_at,
            expires_at,
        }
    }

    fn secrets(refresh: bool) -> Secrets {
        Secrets {
            access_token: "at".into(),
            refresh_token: refresh.then(|| "rt".into()),
            scope: None,
        }
    }

    #[test]
    fn decisions() {
        let token = |e: Option<i64>, r: Option<i64>| Fresh::Token {
            access_token: "at".into(),
            expires_at: e,
            refresh_at: r,
        };
        let use_ = |refresh: bool, expires_at: Option<i64>, now: i64| match decide(
            secrets(refresh),
            &row(100, expires_at),
            now,
        ) {
            Decision::Use(f) => Some(f),
            _ => None,
        };
        assert_eq!(use_(true, None, 1_000_000), Some(token(None, None)));
        assert_eq!(
            use_(true, Some(104), 101),
            Some(token(Some(104), Some(102)))
        );
        assert!(matches!(
            decide(secrets(true), &row(100, Some(104)), 102),
            Decision::Refresh(_)
        ));
        assert_eq!(
            use_(false, Some(104), 103),
            Some(token(Some(104), Some(104)))
        );
        assert!(matches!(
            decide(secrets(false), &row(100, Some(104)), 104),
            Decision::Gone(_)
        ));
    }

    #[test]
    fn encryption_round_trip_and_binding() {
        let cipher = TokenCipher::from_key(&[7u8; 32]);
        let aad = token_aad("alice", "http://localhost:18080/github");
        let (ct, nonce) = cipher
            .seal(&aad, b"{\"access_token\":\"x\"}")
            .expect("seal");
        assert!(!ct.contains("access_token"));
        assert_eq!(
            cipher.open(&aad, &ct, &nonce).expect("open"),
            b"{\"access_token\":\"x\"}"
        );
        let (ct2, nonce2) = cipher
            .seal(&aad, b"{\"access_token\":\"x\"}")
            .expect("seal");
        assert_ne!((&ct, &nonce), (&ct2, &nonce2), "nonces are random");
        assert!(cipher
            .open(
                &token_aad("mallory", "http://localhost:18080/github"),
                &ct,
                &nonce
            )
            .is_err());
        assert!(cipher
            .open(
                &token_aad("alice", "http://localhost:18080/other"),
                &ct,
                &nonce
            )
            .is_err());
        assert!(TokenCipher::from_key(&[8u8; 32])
            .open(&aad, &ct, &nonce)
            .is_err());
        assert!(cipher.open(&aad, &ct, "short").is_err());
        assert_ne!(token_aad("a|b", "c"), token_aad("a", "b|c"));
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/upstream-token-key");
        let first = TokenCipher::load_or_generate(&path).expect("generate");
        let (ct, nonce) = first.seal(b"aad", b"secret").expect("seal");
        let second = TokenCipher::load_or_generate(&path).expect("reload");
        assert_eq!(second.open(b"aad", &ct, &nonce).expect("open"), b"secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "dG9vIHNob3J0").expect("write");
        let err = TokenCipher::load_or_generate(&bad)
            .err()
            .expect("error")
            .to_string();
        assert!(err.contains("upstream_token_key_file"), "{err}");
    }
}
