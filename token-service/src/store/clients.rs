//! Clients registered dynamically (RFC 7591).

use sqlx::Row;

use super::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClient {
    pub client_id: String,
    pub secret_hash: Option<String>,
    pub token_endpoint_auth_method: String,
    /// The registered metadata as JSON.
    pub metadata: String,
    pub created_at: i64,
}

impl Store {
    pub async fn insert_client(&self, c: &StoredClient) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO clients (client_id, secret_hash, token_endpoint_auth_method, metadata, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&c.client_id)
        .bind(&c.secret_hash)
        .bind(&c.token_endpoint_auth_method)
        .bind(&c.metadata)
        .bind(c.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn client(&self, client_id: &str) -> anyhow::Result<Option<StoredClient>> {
        let row = sqlx::query(
            "SELECT client_id, secret_hash, token_endpoint_auth_method, metadata, created_at \
             FROM clients WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredClient {
                client_id: r.try_get("client_id")?,
                secret_hash: r.try_get("secret_hash")?,
                token_endpoint_auth_method: r.try_get("token_endpoint_auth_method")?,
                metadata: r.try_get("metadata")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }
}
