//! The routes and scopes a user consented to for a client.

use super::Store;

impl Store {
    pub async fn record_consent(
        &self,
        username: &str,
        client_id: &str,
        resource: &str,
        scope: Option<&str>,
        now: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO consents (username, client_id, resource, scope, granted_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (username, client_id, resource) DO UPDATE SET scope = $4, granted_at = $5",
        )
        .bind(username)
        .bind(client_id)
        .bind(resource)
        .bind(scope)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
