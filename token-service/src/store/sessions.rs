//! Browser sessions, stored by the hash of the cookie secret.

use sqlx::Row;

use super::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub secret_hash: String,
    pub sid: String,
    pub username: String,
    pub claims: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl Store {
    pub async fn insert_session(&self, s: &Session) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO sessions (secret_hash, sid, username, claims, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.secret_hash)
        .bind(&s.sid)
        .bind(&s.username)
        .bind(&s.claims)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A session that has not expired.
    pub async fn session(&self, secret_hash: &str, now: i64) -> anyhow::Result<Option<Session>> {
        let row = sqlx::query(
            "SELECT secret_hash, sid, username, claims, created_at, expires_at FROM sessions \
             WHERE secret_hash = $1 AND expires_at > $2",
        )
        .bind(secret_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Session {
                secret_hash: r.try_get("secret_hash")?,
                sid: r.try_get("sid")?,
                username: r.try_get("username")?,
                claims: r.try_get("claims")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }
}
