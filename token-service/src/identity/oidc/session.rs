//! The provider side of an mcpgate session signed in through an OpenID Connect provider: what is
//! stored at sign-in, the re-check at `recheck_interval` (see `recheck` for the rules), and the
//! end of the session.

use std::time::Duration;

use mcpgate_config::identity::{Identity, OidcProvider};
use serde::{Deserialize, Serialize};

use super::provider::{OidcProviders, ProviderError, ProviderTokens};
use super::recheck::{self, AfterRefusal};
use crate::oauth::opaque_token;
use crate::store::{CheckedTokens, OidcSession, Store};
use crate::upstream::tokens::TokenCipher;

/// How long a check lease holds.
const LEASE_SECS: i64 = 30;
/// A check gives up before its lease runs out: a check that saved its provider's rotated refresh
/// token after another replica took the lease over would leave that replica a spent one. A check
/// makes up to three provider requests (metadata, refresh, keys), each bounded by the client's
/// timeout; this bounds them together.
const CHECK_DEADLINE: Duration = Duration::from_secs(25);
const LEASE_POLL: Duration = Duration::from_millis(200);
const LEASE_WAIT: Duration = Duration::from_secs(35);

/// The provider's tokens as stored (encrypted). `Debug` shows none.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredTokens {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// When the access token expires (userinfo checks need a live one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_expires_at: Option<i64>,
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredTokens(<redacted>)")
    }
}

fn aad(sid: &str) -> Vec<u8> {
    format!("mcpgate-oidc-session-v1|{sid}").into_bytes()
}

pub fn seal(
    cipher: &TokenCipher,
    sid: &str,
    tokens: &StoredTokens,
) -> anyhow::Result<(String, String)> {
    cipher.seal(&aad(sid), &serde_json::to_vec(tokens)?)
}

pub fn open(cipher: &TokenCipher, row: &OidcSession) -> anyhow::Result<StoredTokens> {
    let plain = cipher.open(&aad(&row.sid), &row.ciphertext, &row.nonce)?;
    Ok(serde_json::from_slice(&plain)?)
}

/// The tokens to keep after a grant: a provider that does not rotate its refresh token (or
/// sends none on refresh) keeps the one we had; an ID token not sent keeps the old one.
pub fn merge_tokens(old: Option<&StoredTokens>, new: &ProviderTokens, now: i64) -> StoredTokens {
    StoredTokens {
        access_token: new.access_token.clone(),
        refresh_token: new
            .refresh_token
            .clone()
            .or_else(|| old.and_then(|o| o.refresh_token.clone())),
        id_token: new
            .id_token
            .clone()
            .or_else(|| old.and_then(|o| o.id_token.clone())),
        access_token_expires_at: new
            .expires_in
            .map(|s| now.saturating_add(i64::try_from(s).unwrap_or(i64::MAX / 2))),
    }
}

/// Records the provider side of a new session.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    store: &Store,
    cipher: &TokenCipher,
    sid: &str,
    provider: &OidcProvider,
    subject: &str,
    tokens: &StoredTokens,
    id_token_expires_at: i64,
    now: i64,
    keep_until: i64,
) -> anyhow::Result<()> {
    let (ciphertext, nonce) = seal(cipher, sid, tokens)?;
    store
        .insert_oidc_session(&OidcSession {
            sid: sid.to_string(),
            provider: provider.id.clone(),
            subject: subject.to_string(),
            ciphertext,
            nonce,
            token_version: 1,
            has_refresh_token: tokens.refresh_token.is_some(),
            id_token_expires_at,
            checked_at: now,
            ended_at: None,
            created_at: now,
            expires_at: keep_until,
        })
        .await
}

/// Where a session stands after `ensure_current`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Not signed in through a provider (built-in directory): nothing to check.
    NotProviderBacked,
    /// The provider confirmed the user within the interval.
    Current,
    /// The session has ended (the provider refused the user, or sign-out).
    Ended,
    /// The provider could not be asked; the session is kept. The reason has no token in it.
    Unavailable(String),
}

/// What a check needs besides the session id.
pub struct CheckContext<'a> {
    pub store: &'a Store,
    /// The at-rest key (`token_service.upstream_token_key_file`); required once a provider
    /// session exists.
    pub cipher: Option<&'a TokenCipher>,
    pub providers: &'a OidcProviders,
    pub identity: &'a Identity,
    pub leeway_secs: i64,
    /// How long revocations are kept (the refresh token lifetime).
    pub keep_until: i64,
}

/// Makes sure the session `sid` is still good at its provider: checks again when its last check
/// is older than the provider's `recheck_interval`, one replica at a time; ends it (and revokes
/// its tokens) when the provider refuses the user.
pub async fn ensure_current(
    cx: &CheckContext<'_>,
    sid: &str,
    now: i64,
) -> anyhow::Result<Standing> {
    let Some(row) = cx.store.oidc_session(sid).await? else {
        return Ok(Standing::NotProviderBacked);
    };
    if row.ended_at.is_some() {
        return Ok(Standing::Ended);
    }
    let Some(provider) = cx.identity.oidc.iter().find(|p| p.id == row.provider) else {
        // The provider was removed from the gateway file: nobody can confirm the user.
        end(cx, &row, "provider no longer configured", now).await?;
        return Ok(Standing::Ended);
    };
    let interval = i64::try_from(provider.recheck_interval.as_secs()).unwrap_or(i64::MAX / 2);
    if !recheck::due(row.checked_at, interval, now) {
        return Ok(Standing::Current);
    }
    let owner = opaque_token::generate();
    let waited_since = std::time::Instant::now();
    loop {
        let t = crate::clock::now();
        if cx
            .store
            .acquire_oidc_lease(sid, &owner, t + LEASE_SECS, t)
            .await?
        {
            break;
        }
        // Another request (here or on another replica) is checking: wait for its answer.
        if waited_since.elapsed() > LEASE_WAIT {
            return Ok(Standing::Unavailable(
                "another check of this session did not finish".into(),
            ));
        }
        tokio::time::sleep(LEASE_POLL).await;
        match cx.store.oidc_session(sid).await? {
            None => return Ok(Standing::Ended),
            Some(r) if r.ended_at.is_some() => return Ok(Standing::Ended),
            Some(r) if !recheck::due(r.checked_at, interval, crate::clock::now()) => {
                return Ok(Standing::Current)
            }
            Some(_) => {}
        }
    }
    let result = tokio::time::timeout(
        CHECK_DEADLINE,
        check_under_lease(cx, provider, sid, &owner, now),
    )
    .await
    .unwrap_or_else(|_| {
        Ok(Standing::Unavailable(
            "the provider did not answer the check in time".into(),
        ))
    });
    if !matches!(result, Ok(Standing::Current | Standing::Ended)) {
        cx.store.release_oidc_lease(sid, &owner).await?;
    }
    result
}

async fn check_under_lease(
    cx: &CheckContext<'_>,
    provider: &OidcProvider,
    sid: &str,
    owner: &str,
    now: i64,
) -> anyhow::Result<Standing> {
    for _ in 0..recheck::MAX_ATTEMPTS {
        let Some(row) = cx.store.oidc_session(sid).await? else {
            return Ok(Standing::Ended);
        };
        if row.ended_at.is_some() {
            return Ok(Standing::Ended);
        }
        let cipher = cx
            .cipher
            .ok_or_else(|| anyhow::anyhow!("token_service.upstream_token_key_file is not set"))?;
        let stored = open(cipher, &row)?;
        let outcome = match &stored.refresh_token {
            Some(refresh_token) => cx
                .providers
                .refresh(provider, refresh_token)
                .await
                .map(Some),
            None => check_without_refresh_token(cx, provider, &row, &stored, now)
                .await
                .map(|()| None),
        };
        match outcome {
            Ok(new_tokens) => {
                let (kept, id_exp, rotated) = match &new_tokens {
                    Some(new) => {
                        let mut id_exp = row.id_token_expires_at;
                        if let Some(id_token) = &new.id_token {
                            // A refresh's ID token is validated too (no nonce), and must be
                            // about the same user.
                            let claims = cx
                                .providers
                                .verify_id_token(provider, id_token, None, now, cx.leeway_secs)
                                .await;
                            match claims {
                                Ok(c)
                                    if c.get("sub").and_then(|s| s.as_str())
                                        == Some(row.subject.as_str()) =>
                                {
                                    id_exp = super::provider::expiry(&c).unwrap_or(id_exp);
                                }
                                Ok(_) => {
                                    return end_and_report(
                                        cx,
                                        provider,
                                        &row,
                                        "the provider's refreshed ID token names another subject",
                                        now,
                                    )
                                    .await
                                }
                                Err(e) => {
                                    return end_and_report(cx, provider, &row, &e.to_string(), now)
                                        .await
                                }
                            }
                        }
                        let rotated = new.refresh_token.is_some()
                            && new.refresh_token != stored.refresh_token;
                        (merge_tokens(Some(&stored), new, now), id_exp, rotated)
                    }
                    None => (stored.clone(), row.id_token_expires_at, false),
                };
                let (ciphertext, nonce) = seal(cipher, sid, &kept)?;
                let recorded = cx
                    .store
                    .record_oidc_check(
                        sid,
                        owner,
                        &CheckedTokens {
                            ciphertext: &ciphertext,
                            nonce: &nonce,
                            new_refresh_token: rotated,
                            has_refresh_token: kept.refresh_token.is_some(),
                            id_token_expires_at: id_exp,
                        },
                        now,
                    )
                    .await?;
                if !recorded {
                    // The lease ran out while the provider answered; the next request checks again.
                    tracing::warn!(provider = %provider.id, sid, "provider check finished after its lease expired; not recorded");
                }
                tracing::info!(target: "mcpgate::audit", event = "oidc_recheck", provider = %provider.id, sid, rotated);
                return Ok(Standing::Current);
            }
            Err(ProviderError::Refused(code)) => {
                let now_row = cx.store.oidc_session(sid).await?;
                match recheck::after_refusal(
                    row.token_version,
                    now_row
                        .as_ref()
                        .map(|r| (r.token_version, r.ended_at.is_some())),
                ) {
                    AfterRefusal::RetryWithStored => {
                        tracing::info!(provider = %provider.id, sid, "provider refused a refresh token another replica had already replaced; retrying with the newer one");
                        continue;
                    }
                    AfterRefusal::AlreadyEnded => return Ok(Standing::Ended),
                    AfterRefusal::EndSession => {
                        return end_and_report(
                            cx,
                            provider,
                            &row,
                            &format!("the provider refused the user ({code})"),
                            now,
                        )
                        .await
                    }
                }
            }
            Err(e @ ProviderError::InvalidIdToken(_)) => {
                return end_and_report(cx, provider, &row, &e.to_string(), now).await
            }
            Err(e) => {
                tracing::warn!(provider = %provider.id, sid, reason = %e, kind = e.kind(), "cannot re-check a session at its provider");
                return Ok(Standing::Unavailable(e.to_string()));
            }
        }
    }
    Ok(Standing::Unavailable(
        "the provider's refresh token kept changing".into(),
    ))
}

/// Without a refresh token: userinfo with a live access token when the provider has one, else
/// the ID token's lifetime.
async fn check_without_refresh_token(
    cx: &CheckContext<'_>,
    provider: &OidcProvider,
    row: &OidcSession,
    stored: &StoredTokens,
    now: i64,
) -> Result<(), ProviderError> {
    let access_live = stored.access_token_expires_at.is_none_or(|exp| now < exp);
    if access_live {
        match cx.providers.userinfo(provider, &stored.access_token).await {
            Ok(claims) => {
                if claims.get("sub").and_then(|s| s.as_str()) != Some(row.subject.as_str()) {
                    return Err(ProviderError::Refused(
                        "userinfo names another subject".into(),
                    ));
                }
                return Ok(());
            }
            Err(e @ ProviderError::Refused(_)) => return Err(e),
            // No userinfo endpoint (or it failed): fall back to the ID token's lifetime.
            Err(_) => {}
        }
    }
    if recheck::without_refresh_token_valid(row.id_token_expires_at, now) {
        Ok(())
    } else {
        Err(ProviderError::Refused(
            "the ID token expired and there is no refresh token".into(),
        ))
    }
}

async fn end_and_report(
    cx: &CheckContext<'_>,
    provider: &OidcProvider,
    row: &OidcSession,
    reason: &str,
    now: i64,
) -> anyhow::Result<Standing> {
    tracing::info!(target: "mcpgate::audit", event = "oidc_session_ended", provider = %provider.id, sid = %row.sid, user = %super::claims::qualified_subject(&provider.id, &row.subject), reason);
    end(cx, row, reason, now).await?;
    Ok(Standing::Ended)
}

async fn end(
    cx: &CheckContext<'_>,
    row: &OidcSession,
    reason: &str,
    now: i64,
) -> anyhow::Result<()> {
    end_session(cx.store, &row.sid, reason, now, cx.keep_until).await
}

/// Ends a session: the provider side is marked ended, the browser session is removed and every
/// token family it started is revoked.
pub async fn end_session(
    store: &Store,
    sid: &str,
    reason: &str,
    now: i64,
    keep_until: i64,
) -> anyhow::Result<()> {
    store.end_oidc_session(sid, reason, now).await?;
    store.revoke_session(sid, reason, now, keep_until).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider_tokens(refresh: Option<&str>, id: Option<&str>) -> ProviderTokens {
        ProviderTokens {
            access_token: "at2".into(),
            refresh_token: refresh.map(String::from),
            id_token: id.map(String::from),
            expires_in: Some(60),
        }
    }

    #[test]
    fn kept_tokens_follow_rotation() {
        let old = StoredTokens {
            access_token: "at1".into(),
            refresh_token: Some("rt1".into()),
            id_token: Some("id1".into()),
            access_token_expires_at: None,
        };
        let rotated = merge_tokens(Some(&old), &provider_tokens(Some("rt2"), None), 100);
        assert_eq!(rotated.refresh_token.as_deref(), Some("rt2"));
        assert_eq!(rotated.id_token.as_deref(), Some("id1"));
        assert_eq!(rotated.access_token_expires_at, Some(160));
        let same = merge_tokens(Some(&old), &provider_tokens(None, Some("id2")), 100);
        assert_eq!(same.refresh_token.as_deref(), Some("rt1"));
        assert_eq!(same.id_token.as_deref(), Some("id2"));
        assert_eq!(format!("{same:?}"), "StoredTokens(<redacted>)");
    }

    #[test]
    fn stored_tokens_are_bound_to_their_session() {
        let cipher = TokenCipher::from_key(&[7u8; 32]);
        let tokens = StoredTokens {
            access_token: "at".into(),
            refresh_token: Some("rt".into()),
            id_token: None,
            access_token_expires_at: None,
        };
        let (ciphertext, nonce) = seal(&cipher, "sid-1", &tokens).expect("seal");
        assert!(!ciphertext.contains("rt"));
        let row = |sid: &str| OidcSession {
            sid: sid.into(),
            provider: "corp".into(),
            subject: "u".into(),
            ciphertext: ciphertext.clone(),
            nonce: nonce.clone(),
            token_version: 1,
            has_refresh_token: true,
            id_token_expires_at: 0,
            checked_at: 0,
            ended_at: None,
            created_at: 0,
            expires_at: 0,
        };
        assert_eq!(
            open(&cipher, &row("sid-1"))
                .expect("open")
                .refresh_token
                .as_deref(),
            Some("rt")
        );
        assert!(open(&cipher, &row("sid-2")).is_err());
    }

    /// A tiny provider for re-checks: discovery, an empty JWKS and a token endpoint that rotates
    /// refresh tokens, answers `invalid_grant` to a used one, and is slow enough for two checks
    /// to overlap. Its state: (current refresh token, refreshes granted, refusals).
    mod stand_in {
        use std::sync::{Arc, Mutex};

        use axum::extract::{Form, State};
        use axum::http::StatusCode;
        use axum::response::{IntoResponse, Response};
        use axum::routing::{get, post};
        use axum::{Json, Router};
        use serde_json::json;

        type Shared = Arc<Mutex<(String, usize, usize)>>;

        async fn token(
            State(st): State<Shared>,
            Form(form): Form<std::collections::HashMap<String, String>>,
        ) -> Response {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let mut g = st.lock().unwrap_or_else(|e| e.into_inner());
            let offered = form.get("refresh_token").map(String::as_str);
            if form.get("grant_type").map(String::as_str) != Some("refresh_token")
                || offered != Some(g.0.as_str())
            {
                g.2 += 1;
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": "invalid_grant"})),
                )
                    .into_response();
            }
            g.1 += 1;
            g.0 = format!("rt-{}", g.1 + 1);
            Json(
                json!({"access_token": format!("at-{}", g.1 + 1), "token_type": "Bearer",
                        "expires_in": 60, "refresh_token": g.0}),
            )
            .into_response()
        }

        pub struct Running {
            pub issuer: String,
            pub state: Shared,
            shutdown: Option<tokio::sync::oneshot::Sender<()>>,
            task: tokio::task::JoinHandle<()>,
        }

        impl Running {
            pub fn counts(&self) -> (String, usize, usize) {
                self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
            }

            pub async fn stop(mut self) {
                if let Some(tx) = self.shutdown.take() {
                    let _ = tx.send(());
                }
                let _ = self.task.await;
            }
        }

        pub async fn start(first_refresh_token: &str) -> Running {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let issuer = format!("http://{}", listener.local_addr().expect("addr"));
            let state: Shared = Arc::new(Mutex::new((first_refresh_token.to_string(), 0, 0)));
            let meta = json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/auth"),
                "token_endpoint": format!("{issuer}/token"),
                "jwks_uri": format!("{issuer}/jwks"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            });
            let app = Router::new()
                .route(
                    "/.well-known/openid-configuration",
                    get(move || async move { Json(meta) }),
                )
                .route("/jwks", get(|| async { Json(json!({"keys": []})) }))
                .route("/token", post(token))
                .with_state(state.clone());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await;
            });
            Running {
                issuer,
                state,
                shutdown: Some(tx),
                task,
            }
        }
    }

    /// Two replicas (each its own store connection and provider client) re-check one session at
    /// once against a provider that rotates refresh tokens and refuses a reused one: one refresh
    /// at the provider, the other replica waits for the lease and takes its answer, the session
    /// lives on with the rotated token.
    async fn two_replicas_race(url: &str) {
        let first = "rt-1";
        let provider_stand_in = stand_in::start(first).await;
        let replica_a = Store::connect(url).await.expect("store a");
        let replica_b = Store::connect(url).await.expect("store b");
        let cipher = TokenCipher::from_key(&[9u8; 32]);
        let provider = OidcProvider {
            id: "corp".into(),
            display_name: "Corp".into(),
            issuer: provider_stand_in.issuer.clone(),
            client_id: "mcpgate".into(),
            client_secret: Some("client-secret-for-the-stand-in".into()),
            client_secret_file: None,
            scopes: vec!["openid".into(), "offline_access".into()],
            claims: mcpgate_config::identity::ClaimPaths::default(),
            allowed_email_domains: vec![],
            allowed_algorithms: vec!["RS256".into()],
            userinfo: false,
            recheck_interval: Duration::from_secs(60),
        };
        let identity = Identity {
            oidc: vec![provider.clone()],
            ..Default::default()
        };
        let now = crate::clock::now();
        let tokens = StoredTokens {
            access_token: "at-1".into(),
            refresh_token: Some(first.into()),
            id_token: None,
            access_token_expires_at: Some(now - 10),
        };
        let sid = format!("race-{}", opaque_token::generate());
        record(
            &replica_a,
            &cipher,
            &sid,
            &provider,
            "u1",
            &tokens,
            now + 3600,
            now - 120, // signed in two minutes ago: due for a check
            now + 3600,
        )
        .await
        .expect("record");

        let providers_a = OidcProviders::new().expect("client a");
        let providers_b = OidcProviders::new().expect("client b");
        let cx = |store, providers| CheckContext {
            store,
            cipher: Some(&cipher),
            providers,
            identity: &identity,
            leeway_secs: 5,
            keep_until: now + 3600,
        };
        let (cx_a, cx_b) = (cx(&replica_a, &providers_a), cx(&replica_b, &providers_b));
        let started = std::time::Instant::now();
        let (a, b) = tokio::join!(
            ensure_current(&cx_a, &sid, now),
            ensure_current(&cx_b, &sid, now)
        );
        assert_eq!(a.expect("replica a"), Standing::Current);
        assert_eq!(b.expect("replica b"), Standing::Current);
        let (current, refreshes, refused) = provider_stand_in.counts();
        assert_eq!(refreshes, 1, "exactly one refresh at the provider");
        assert_eq!(refused, 0, "nobody used a spent refresh token");
        let row = replica_b
            .oidc_session(&sid)
            .await
            .expect("row")
            .expect("present");
        assert!(row.ended_at.is_none(), "the session survives");
        assert_eq!(row.token_version, 2, "one rotation recorded");
        assert_eq!(
            open(&cipher, &row).expect("open").refresh_token.as_deref(),
            Some(current.as_str()),
            "the rotated refresh token is stored"
        );
        // And it is the token the next check uses: a later check (due again) refreshes with it.
        let later = now + 120;
        assert_eq!(
            ensure_current(&cx_b, &sid, later).await.expect("later"),
            Standing::Current
        );
        assert_eq!(provider_stand_in.counts().1, 2);
        assert_eq!(provider_stand_in.counts().2, 0);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "fast: {:?}",
            started.elapsed()
        );
        replica_a.close().await;
        replica_b.close().await;
        provider_stand_in.stop().await;
    }

    #[tokio::test]
    async fn two_replicas_racing_refresh_once_and_keep_the_session_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        two_replicas_race(&format!(
            "sqlite://{}/db.sqlite?mode=rwc",
            dir.path().display()
        ))
        .await;
    }

    /// Runs when MCPGATE_TEST_POSTGRES_URL is set, in a fresh schema dropped afterwards.
    #[tokio::test]
    async fn two_replicas_racing_refresh_once_and_keep_the_session_postgres() {
        let Ok(base) = std::env::var("MCPGATE_TEST_POSTGRES_URL") else {
            eprintln!("MCPGATE_TEST_POSTGRES_URL not set; skipping the PostgreSQL race test");
            return;
        };
        sqlx::any::install_default_drivers();
        let schema = format!(
            "mcpgate_race_{}",
            opaque_token::generate()
                .to_ascii_lowercase()
                .replace(['-', '_'], "")
        );
        let admin = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&base)
            .await
            .expect("connect to postgres");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("create schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        let outcome = tokio::spawn(async move { two_replicas_race(&url).await }).await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&admin)
            .await
            .expect("drop schema");
        outcome.expect("postgres race test");
    }
}
