//! Authorization requests waiting for sign-in and consent, and the authorization codes
//! issued for them.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAuthorization {
    pub id_hash: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub resource: String,
    pub scope: Option<String>,
    /// Session the consent page was shown to, and the hash of that page's CSRF token.
    pub sid: Option<String>,
    pub csrf_hash: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCode {
    pub code_hash: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub resource: String,
    pub username: String,
    pub sid: String,
    /// The user's claims (JSON) at sign-in.
    pub claims: String,
    pub scope: Option<String>,
    /// The refresh-token family the exchange starts; revoked when the code is replayed.
    pub family_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

impl Store {
    pub async fn insert_pending(&self, p: &PendingAuthorization) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO pending_authorizations (id_hash, client_id, redirect_uri, state, code_challenge, \
             resource, scope, sid, csrf_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&p.id_hash)
        .bind(&p.client_id)
        .bind(&p.redirect_uri)
        .bind(&p.state)
        .bind(&p.code_challenge)
        .bind(&p.resource)
        .bind(&p.scope)
        .bind(&p.sid)
        .bind(&p.csrf_hash)
        .bind(p.created_at)
        .bind(p.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A pending request that has not expired.
    pub async fn pending(
        &self,
        id_hash: &str,
        now: i64,
    ) -> anyhow::Result<Option<PendingAuthorization>> {
        let row = sqlx::query(
            "SELECT id_hash, client_id, redirect_uri, state, code_challenge, resource, scope, sid, csrf_hash, \
             created_at, expires_at FROM pending_authorizations WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| pending_from_row(&r)).transpose()
    }

    /// Records which session was shown the consent page, with that page's CSRF token hash.
    pub async fn bind_pending_to_consent(
        &self,
        id_hash: &str,
        sid: &str,
        csrf_hash: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE pending_authorizations SET sid = $1, csrf_hash = $2 WHERE id_hash = $3",
        )
        .bind(sid)
        .bind(csrf_hash)
        .bind(id_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes a pending request; true only for the one caller that actually removed it.
    pub async fn take_pending(&self, id_hash: &str, now: i64) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "DELETE FROM pending_authorizations WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn insert_code(&self, c: &AuthorizationCode) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO authorization_codes (code_hash, client_id, redirect_uri, code_challenge, resource, \
             username, sid, claims, scope, family_id, created_at, expires_at, used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULL)",
        )
        .bind(&c.code_hash)
        .bind(&c.client_id)
        .bind(&c.redirect_uri)
        .bind(&c.code_challenge)
        .bind(&c.resource)
        .bind(&c.username)
        .bind(&c.sid)
        .bind(&c.claims)
        .bind(&c.scope)
        .bind(&c.family_id)
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn code(&self, code_hash: &str) -> anyhow::Result<Option<AuthorizationCode>> {
        let row = sqlx::query(
            "SELECT code_hash, client_id, redirect_uri, code_challenge, resource, username, sid, claims, scope, \
             family_id, created_at, expires_at, used_at FROM authorization_codes WHERE code_hash = $1",
        )
        .bind(code_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(AuthorizationCode {
                code_hash: r.try_get("code_hash")?,
                client_id: r.try_get("client_id")?,
                redirect_uri: r.try_get("redirect_uri")?,
                code_challenge: r.try_get("code_challenge")?,
                resource: r.try_get("resource")?,
                username: r.try_get("username")?,
                sid: r.try_get("sid")?,
                claims: r.try_get("claims")?,
                scope: r.try_get("scope")?,
                family_id: r.try_get("family_id")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
                used_at: r.try_get("used_at")?,
            })
        })
        .transpose()
    }

    /// Marks a code used; true only for the one exchange that won.
    pub async fn consume_code(&self, code_hash: &str, now: i64) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE authorization_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(code_hash)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

fn pending_from_row(r: &AnyRow) -> anyhow::Result<PendingAuthorization> {
    Ok(PendingAuthorization {
        id_hash: r.try_get("id_hash")?,
        client_id: r.try_get("client_id")?,
        redirect_uri: r.try_get("redirect_uri")?,
        state: r.try_get("state")?,
        code_challenge: r.try_get("code_challenge")?,
        resource: r.try_get("resource")?,
        scope: r.try_get("scope")?,
        sid: r.try_get("sid")?,
        csrf_hash: r.try_get("csrf_hash")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}
