//! Service accounts (see `crate::service_accounts`).

use anyhow::Context;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::Store;

/// A service account (see `crate::service_accounts`). `routes` are resource URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub id: String,
    pub name: String,
    pub email: String,
    pub groups: Vec<String>,
    pub routes: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Set for accounts that use the client_credentials grant; only the secret's hash is kept.
    pub client_id: Option<String>,
    pub client_secret_hash: Option<String>,
    /// `private_key_jwt` accounts: their public keys (a JWK Set as JSON) instead of a secret.
    pub client_jwks: Option<String>,
}

impl Store {
    pub async fn insert_service_account(&self, a: &ServiceAccount) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO service_accounts (id, name, email, groups, routes, created_at, expires_at, \
             revoked_at, client_id, client_secret_hash, client_jwks) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&a.id)
        .bind(&a.name)
        .bind(&a.email)
        .bind(serde_json::to_string(&a.groups)?)
        .bind(serde_json::to_string(&a.routes)?)
        .bind(a.created_at)
        .bind(a.expires_at)
        .bind(a.revoked_at)
        .bind(&a.client_id)
        .bind(&a.client_secret_hash)
        .bind(&a.client_jwks)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn service_account_where(
        &self,
        column: &str,
        value: &str,
    ) -> anyhow::Result<Option<ServiceAccount>> {
        // `column` comes from the fixed callers below, never from input.
        let sql =
            format!("SELECT {SERVICE_ACCOUNT_COLUMNS} FROM service_accounts WHERE {column} = $1");
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| service_account_from_row(&r)).transpose()
    }

    pub async fn service_account(&self, id: &str) -> anyhow::Result<Option<ServiceAccount>> {
        self.service_account_where("id", id).await
    }

    pub async fn service_account_by_name(
        &self,
        name: &str,
    ) -> anyhow::Result<Option<ServiceAccount>> {
        self.service_account_where("name", name).await
    }

    pub async fn service_account_by_client_id(
        &self,
        client_id: &str,
    ) -> anyhow::Result<Option<ServiceAccount>> {
        self.service_account_where("client_id", client_id).await
    }

    /// Every service account, by name.
    pub async fn service_accounts(&self) -> anyhow::Result<Vec<ServiceAccount>> {
        let sql = format!("SELECT {SERVICE_ACCOUNT_COLUMNS} FROM service_accounts ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(service_account_from_row).collect()
    }

    /// Revoked service accounts (for the revocation list).
    pub async fn revoked_service_accounts(&self) -> anyhow::Result<Vec<ServiceAccount>> {
        let sql = format!(
            "SELECT {SERVICE_ACCOUNT_COLUMNS} FROM service_accounts WHERE revoked_at IS NOT NULL ORDER BY id"
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(service_account_from_row).collect()
    }

    /// Marks the named account revoked; false when there is none or it was already revoked.
    pub async fn revoke_service_account(&self, name: &str, now: i64) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE service_accounts SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

const SERVICE_ACCOUNT_COLUMNS: &str =
    "id, name, email, groups, routes, created_at, expires_at, revoked_at, client_id, client_secret_hash, client_jwks";

fn service_account_from_row(r: &AnyRow) -> anyhow::Result<ServiceAccount> {
    let groups: String = r.try_get("groups")?;
    let routes: String = r.try_get("routes")?;
    Ok(ServiceAccount {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        email: r.try_get("email")?,
        groups: serde_json::from_str(&groups).context("service_accounts.groups")?,
        routes: serde_json::from_str(&routes).context("service_accounts.routes")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        client_id: r.try_get("client_id")?,
        client_secret_hash: r.try_get("client_secret_hash")?,
        client_jwks: r.try_get("client_jwks")?,
    })
}
