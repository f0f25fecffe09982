//! Single use of JWT assertions (`private_key_jwt` client assertions, ID-JAG grants).

use super::Store;

impl Store {
    /// Records that `issuer`'s assertion `jti` was used; `false` when it already was (a replay).
    /// The row is kept until `expires_at`, after which the assertion is refused as expired anyway.
    pub async fn use_assertion(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: i64,
    ) -> anyhow::Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO used_assertions (issuer, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (issuer, jti) DO NOTHING",
        )
        .bind(issuer)
        .bind(jti)
        .bind(expires_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }
}
