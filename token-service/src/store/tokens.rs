//! Refresh tokens and their families, issued access tokens and the revocations of both.

use sqlx::Row;

use super::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub token_hash: String,
    pub family_id: String,
    pub client_id: String,
    pub resource: String,
    pub username: String,
    pub sid: String,
    pub claims: String,
    pub scope: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub spent_at: Option<i64>,
}

impl Store {
    pub async fn insert_refresh_token(&self, t: &RefreshToken) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, client_id, resource, username, sid, claims, scope, \
             issued_at, expires_at, spent_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)",
        )
        .bind(&t.token_hash)
        .bind(&t.family_id)
        .bind(&t.client_id)
        .bind(&t.resource)
        .bind(&t.username)
        .bind(&t.sid)
        .bind(&t.claims)
        .bind(&t.scope)
        .bind(t.issued_at)
        .bind(t.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn refresh_token(&self, token_hash: &str) -> anyhow::Result<Option<RefreshToken>> {
        let row = sqlx::query(
            "SELECT token_hash, family_id, client_id, resource, username, sid, claims, scope, issued_at, \
             expires_at, spent_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(refresh_token_from_row).transpose()
    }

    /// A refresh token and whether its family is revoked, in one query: the refresh grant's
    /// hot path (each statement is a round trip to the database's worker thread).
    pub async fn refresh_token_for_grant(
        &self,
        token_hash: &str,
    ) -> anyhow::Result<Option<(RefreshToken, bool)>> {
        let row = sqlx::query(
            "SELECT r.token_hash, r.family_id, r.client_id, r.resource, r.username, r.sid, r.claims, \
             r.scope, r.issued_at, r.expires_at, r.spent_at, \
             (SELECT COUNT(*) FROM revoked_families f WHERE f.family_id = r.family_id) AS revoked \
             FROM refresh_tokens r WHERE r.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let revoked: i64 = r.try_get("revoked")?;
            Ok((refresh_token_from_row(&r)?, revoked > 0))
        })
        .transpose()
    }

    /// Marks a refresh token spent; true only for the one request that won.
    pub async fn spend_refresh_token(&self, token_hash: &str, now: i64) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET spent_at = $1 WHERE token_hash = $2 AND spent_at IS NULL",
        )
        .bind(now)
        .bind(token_hash)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes a token family: records it, spends its live refresh tokens and revokes the access
    /// tokens issued in it. `keep_until` bounds how long the record is kept.
    pub async fn revoke_family(
        &self,
        family_id: &str,
        reason: &str,
        now: i64,
        keep_until: i64,
    ) -> anyhow::Result<()> {
        // The family row is committed on its own, before the access tokens are looked up: an
        // exchange that records an access token in this family concurrently (on this replica or
        // another) either is seen below or sees the family revoked (`record_access_token`).
        // Inside one transaction neither would see the other's write, and the new token would
        // stay valid.
        sqlx::query(
            "INSERT INTO revoked_families (family_id, reason, revoked_at, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (family_id) DO NOTHING",
        )
        .bind(family_id)
        .bind(reason)
        .bind(now)
        .bind(keep_until)
        .execute(&self.pool)
        .await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE refresh_tokens SET spent_at = $1 WHERE family_id = $2 AND spent_at IS NULL",
        )
        .bind(now)
        .bind(family_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, revoked_at, expires_at) \
             SELECT jti, $1, expires_at FROM issued_access_tokens WHERE family_id = $2 AND expires_at > $3 \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(now)
        .bind(family_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records an access token issued in `family_id`. When the family is revoked meanwhile (a
    /// concurrent reuse of its refresh token or code, see `revoke_family`), the token is listed
    /// revoked at once: true then.
    pub async fn record_access_token(
        &self,
        jti: &str,
        family_id: &str,
        expires_at: i64,
    ) -> anyhow::Result<bool> {
        sqlx::query(
            "INSERT INTO issued_access_tokens (jti, family_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(jti)
        .bind(family_id)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        // A statement of its own, after the insert is committed (see `revoke_family`).
        let revoked = sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, revoked_at, expires_at) \
             SELECT $1, revoked_at, $2 FROM revoked_families WHERE family_id = $3 \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .bind(family_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(revoked > 0)
    }

    pub async fn revoke_access_token(
        &self,
        jti: &str,
        now: i64,
        expires_at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, revoked_at, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn is_access_token_revoked(&self, jti: &str) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT jti FROM revoked_access_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}

fn refresh_token_from_row(r: &sqlx::any::AnyRow) -> anyhow::Result<RefreshToken> {
    Ok(RefreshToken {
        token_hash: r.try_get("token_hash")?,
        family_id: r.try_get("family_id")?,
        client_id: r.try_get("client_id")?,
        resource: r.try_get("resource")?,
        username: r.try_get("username")?,
        sid: r.try_get("sid")?,
        claims: r.try_get("claims")?,
        scope: r.try_get("scope")?,
        issued_at: r.try_get("issued_at")?,
        expires_at: r.try_get("expires_at")?,
        spent_at: r.try_get("spent_at")?,
    })
}

impl Store {
    /// Ids of revoked access tokens that have not expired yet, sorted.
    pub async fn revoked_access_token_ids(&self, now: i64) -> anyhow::Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT jti FROM revoked_access_tokens WHERE expires_at > $1 ORDER BY jti")
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("jti")?))
            .collect()
    }
}
