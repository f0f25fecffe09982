//! Sign-in through OpenID Connect providers: the browser's trip through a provider and the
//! provider side of the sessions it creates (see migrations/0005_oidc.sql).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::Store;

/// A sign-in in flight, keyed by the hash of the `state` sent to the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSignIn {
    pub state_hash: String,
    /// Hash of the random value in the browser's sign-in cookie.
    pub browser_hash: String,
    pub provider: String,
    /// Encrypted nonce, PKCE verifier and what the sign-in continues.
    pub ciphertext: String,
    pub nonce: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// The provider side of an mcpgate session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSession {
    pub sid: String,
    pub provider: String,
    pub subject: String,
    /// The provider's tokens, encrypted.
    pub ciphertext: String,
    pub nonce: String,
    pub token_version: i64,
    pub has_refresh_token: bool,
    pub id_token_expires_at: i64,
    pub checked_at: i64,
    pub ended_at: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// The provider tokens a check stores, encrypted.
pub struct CheckedTokens<'a> {
    pub ciphertext: &'a str,
    pub nonce: &'a str,
    /// A new refresh token is stored: `token_version` grows.
    pub new_refresh_token: bool,
    pub has_refresh_token: bool,
    pub id_token_expires_at: i64,
}

const SESSION_COLUMNS: &str = "sid, provider, subject, ciphertext, nonce, token_version, \
     has_refresh_token, id_token_expires_at, checked_at, ended_at, created_at, expires_at";

fn session_from_row(r: &AnyRow) -> anyhow::Result<OidcSession> {
    let has: i64 = r.try_get("has_refresh_token")?;
    Ok(OidcSession {
        sid: r.try_get("sid")?,
        provider: r.try_get("provider")?,
        subject: r.try_get("subject")?,
        ciphertext: r.try_get("ciphertext")?,
        nonce: r.try_get("nonce")?,
        token_version: r.try_get("token_version")?,
        has_refresh_token: has != 0,
        id_token_expires_at: r.try_get("id_token_expires_at")?,
        checked_at: r.try_get("checked_at")?,
        ended_at: r.try_get("ended_at")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

impl Store {
    pub async fn insert_oidc_sign_in(&self, s: &OidcSignIn) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO oidc_sign_ins (state_hash, browser_hash, provider, ciphertext, nonce, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.state_hash)
        .bind(&s.browser_hash)
        .bind(&s.provider)
        .bind(&s.ciphertext)
        .bind(&s.nonce)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Takes (deletes and returns) a live sign-in: only one callback can use a state.
    pub async fn take_oidc_sign_in(
        &self,
        state_hash: &str,
        now: i64,
    ) -> anyhow::Result<Option<OidcSignIn>> {
        let row = sqlx::query(
            "SELECT state_hash, browser_hash, provider, ciphertext, nonce, created_at, expires_at \
             FROM oidc_sign_ins WHERE state_hash = $1 AND expires_at > $2",
        )
        .bind(state_hash)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let deleted = sqlx::query("DELETE FROM oidc_sign_ins WHERE state_hash = $1")
            .bind(state_hash)
            .execute(self.pool())
            .await?
            .rows_affected();
        if deleted != 1 {
            return Ok(None);
        }
        Ok(Some(OidcSignIn {
            state_hash: r.try_get("state_hash")?,
            browser_hash: r.try_get("browser_hash")?,
            provider: r.try_get("provider")?,
            ciphertext: r.try_get("ciphertext")?,
            nonce: r.try_get("nonce")?,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
        }))
    }

    pub async fn insert_oidc_session(&self, s: &OidcSession) -> anyhow::Result<()> {
        sqlx::query(&format!(
            "INSERT INTO oidc_sessions ({SESSION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&s.sid)
        .bind(&s.provider)
        .bind(&s.subject)
        .bind(&s.ciphertext)
        .bind(&s.nonce)
        .bind(s.token_version)
        .bind(i64::from(s.has_refresh_token))
        .bind(s.id_token_expires_at)
        .bind(s.checked_at)
        .bind(s.ended_at)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn oidc_session(&self, sid: &str) -> anyhow::Result<Option<OidcSession>> {
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM oidc_sessions WHERE sid = $1"
        ))
        .bind(sid)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Takes the check lease of a live session unless another holder's lease still runs.
    pub async fn acquire_oidc_lease(
        &self,
        sid: &str,
        owner: &str,
        until: i64,
        now: i64,
    ) -> anyhow::Result<bool> {
        let won = sqlx::query(
            "UPDATE oidc_sessions SET lease_until = $1, lease_owner = $2 \
             WHERE sid = $3 AND ended_at IS NULL AND (lease_until IS NULL OR lease_until < $4)",
        )
        .bind(until)
        .bind(owner)
        .bind(sid)
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(won == 1)
    }

    /// Records a successful check by the lease holder (and the tokens it got); releases the
    /// lease. False when the lease was lost.
    pub async fn record_oidc_check(
        &self,
        sid: &str,
        owner: &str,
        tokens: &CheckedTokens<'_>,
        now: i64,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE oidc_sessions SET ciphertext = $1, nonce = $2, \
             token_version = token_version + $3, has_refresh_token = $4, id_token_expires_at = $5, \
             checked_at = $6, lease_until = NULL, lease_owner = NULL \
             WHERE sid = $7 AND lease_owner = $8 AND ended_at IS NULL",
        )
        .bind(tokens.ciphertext)
        .bind(tokens.nonce)
        .bind(i64::from(tokens.new_refresh_token))
        .bind(i64::from(tokens.has_refresh_token))
        .bind(tokens.id_token_expires_at)
        .bind(now)
        .bind(sid)
        .bind(owner)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    pub async fn release_oidc_lease(&self, sid: &str, owner: &str) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE oidc_sessions SET lease_until = NULL, lease_owner = NULL \
             WHERE sid = $1 AND lease_owner = $2",
        )
        .bind(sid)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Marks the provider side of a session ended; true for the call that ended it.
    pub async fn end_oidc_session(
        &self,
        sid: &str,
        reason: &str,
        now: i64,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE oidc_sessions SET ended_at = $1, end_reason = $2, lease_until = NULL, \
             lease_owner = NULL WHERE sid = $3 AND ended_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(sid)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Ends an mcpgate session everywhere: the browser session row goes, and every token family
    /// it started (MCP clients' refresh tokens and their access tokens, and the client-route
    /// tokens recorded under the sid) is revoked.
    pub async fn revoke_session(
        &self,
        sid: &str,
        reason: &str,
        now: i64,
        keep_until: i64,
    ) -> anyhow::Result<usize> {
        sqlx::query("DELETE FROM sessions WHERE sid = $1")
            .bind(sid)
            .execute(self.pool())
            .await?;
        let families: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT family_id FROM refresh_tokens WHERE sid = $1")
                .bind(sid)
                .fetch_all(self.pool())
                .await?;
        for family in &families {
            self.revoke_family(family, reason, now, keep_until).await?;
        }
        self.revoke_family(sid, reason, now, keep_until).await?;
        Ok(families.len())
    }

    pub(super) async fn purge_expired_oidc(&self, now: i64) -> anyhow::Result<u64> {
        let mut total = 0;
        for sql in [
            "DELETE FROM oidc_sign_ins WHERE expires_at <= $1",
            "DELETE FROM oidc_sessions WHERE expires_at <= $1",
        ] {
            total += sqlx::query(sql)
                .bind(now)
                .execute(self.pool())
                .await?
                .rows_affected();
        }
        Ok(total)
    }
}
