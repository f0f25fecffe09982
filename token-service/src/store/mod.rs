//! Persistence through an sqlx `Any` pool: SQLite by default, PostgreSQL by URL. Every query uses
//! `$n` placeholders and portable types (TEXT, BIGINT unix seconds), so one set of migrations and
//! queries serves both. Single-use transitions (codes, refresh tokens, pending requests) are one
//! conditional statement each, so two concurrent requests cannot both win.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::AnyPool;
use sqlx::Row;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long an upstream disconnect stays in the revocation list (and in the database). The
/// filter reuses no upstream token it cached longer than this.
pub const UPSTREAM_DISCONNECT_LISTED_SECS: i64 = 3600;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClient {
    pub client_id: String,
    pub secret_hash: Option<String>,
    pub token_endpoint_auth_method: String,
    /// The registered metadata as JSON.
    pub metadata: String,
    pub created_at: i64,
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub secret_hash: String,
    pub sid: String,
    pub username: String,
    pub claims: String,
    pub created_at: i64,
    pub expires_at: i64,
}

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

/// A service account (see `service_accounts`). `routes` are resource URLs.
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
}

/// The file behind a `sqlite:` URL, if any (not for in-memory databases).
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path.starts_with(":memory:") {
        None
    } else {
        Some(PathBuf::from(path))
    }
}

impl Store {
    /// Connects (creating the SQLite file's directory) and applies the migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        if let Some(dir) = sqlite_file(url)
            .as_deref()
            .and_then(|p| p.parent())
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "token_service.database_url: cannot create directory {}",
                    dir.display()
                )
            })?;
        }
        // The URL is not echoed: a PostgreSQL URL may carry a password.
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    if conn.backend_name() == "SQLite" {
                        // WAL lets readers run beside the writer, and NORMAL syncs at checkpoints
                        // instead of on every commit: still durable across a process crash,
                        // and an order of magnitude more grants per second.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .context("token_service.database_url: cannot open the database")?;
        MIGRATOR
            .run(&pool)
            .await
            .context("cannot apply database migrations")?;
        Ok(Self { pool })
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The pool, for modules that keep their own tables (upstream tokens).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // --- clients -------------------------------------------------------------------------

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

    // --- pending authorization requests --------------------------------------------------

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

    // --- authorization codes -------------------------------------------------------------

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

    // --- sessions ------------------------------------------------------------------------

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

    // --- refresh tokens and families -----------------------------------------------------

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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO revoked_families (family_id, reason, revoked_at, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (family_id) DO NOTHING",
        )
        .bind(family_id)
        .bind(reason)
        .bind(now)
        .bind(keep_until)
        .execute(&mut *tx)
        .await?;
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

    // --- access tokens -------------------------------------------------------------------

    pub async fn record_access_token(
        &self,
        jti: &str,
        family_id: &str,
        expires_at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO issued_access_tokens (jti, family_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(jti)
        .bind(family_id)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
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

    // --- consents ------------------------------------------------------------------------

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

    // --- service accounts and the revocation list ----------------------------------------

    pub async fn insert_service_account(&self, a: &ServiceAccount) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO service_accounts (id, name, email, groups, routes, created_at, expires_at, \
             revoked_at, client_id, client_secret_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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

    // --- upstream disconnects (for the revocation list) ----------------------------------

    /// Notes that `username`'s upstream token for `route` was deleted at `at`; a row keeps the
    /// latest moment.
    pub async fn record_upstream_disconnect(
        &self,
        username: &str,
        route: &str,
        at: i64,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO upstream_disconnects (username, route, disconnected_at) VALUES ($1, $2, $3) \
             ON CONFLICT (username, route) DO UPDATE SET disconnected_at = $3 \
             WHERE upstream_disconnects.disconnected_at < $3",
        )
        .bind(username)
        .bind(route)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Upstream disconnects later than `since`: (username, route, at), sorted.
    pub async fn upstream_disconnects(
        &self,
        since: i64,
    ) -> anyhow::Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT username, route, disconnected_at FROM upstream_disconnects \
             WHERE disconnected_at > $1 ORDER BY username, route",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("username")?,
                    r.try_get("route")?,
                    r.try_get("disconnected_at")?,
                ))
            })
            .collect()
    }

    // --- housekeeping --------------------------------------------------------------------

    /// Deletes expired rows; returns how many.
    pub async fn purge_expired(&self, now: i64) -> anyhow::Result<u64> {
        let mut total = 0;
        for table in [
            "pending_authorizations",
            "authorization_codes",
            "sessions",
            "refresh_tokens",
            "revoked_families",
            "issued_access_tokens",
            "revoked_access_tokens",
        ] {
            // Table names come from the fixed list above, never from input.
            let sql = format!("DELETE FROM {table} WHERE expires_at <= $1");
            total += sqlx::query(&sql)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        total += sqlx::query("DELETE FROM upstream_disconnects WHERE disconnected_at <= $1")
            .bind(now - UPSTREAM_DISCONNECT_LISTED_SECS)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(total)
    }
}

const SERVICE_ACCOUNT_COLUMNS: &str =
    "id, name, email, groups, routes, created_at, expires_at, revoked_at, client_id, client_secret_hash";

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
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn code(hash: &str, family: &str, t: i64) -> AuthorizationCode {
        AuthorizationCode {
            code_hash: hash.into(),
            client_id: "cli".into(),
            redirect_uri: "https://a.example/cb".into(),
            code_challenge: "ch".into(),
            resource: "http://localhost:18080/everything".into(),
            username: "alice".into(),
            sid: "sid".into(),
            claims: "{}".into(),
            scope: None,
            family_id: family.into(),
            created_at: t,
            expires_at: t + 60,
            used_at: None,
        }
    }

    fn refresh(hash: &str, family: &str, t: i64) -> RefreshToken {
        RefreshToken {
            token_hash: hash.into(),
            family_id: family.into(),
            client_id: "cli".into(),
            resource: "http://localhost:18080/everything".into(),
            username: "alice".into(),
            sid: "sid".into(),
            claims: "{}".into(),
            scope: Some("mcp:tools".into()),
            issued_at: t,
            expires_at: t + 3600,
            spent_at: None,
        }
    }

    /// Every query, on whichever database `store` is.
    async fn exercise(store: &Store) {
        let t = 1_700_000_000;
        store.ping().await.expect("ping");

        let client = StoredClient {
            client_id: "cli".into(),
            secret_hash: None,
            token_endpoint_auth_method: "none".into(),
            metadata: "{\"redirect_uris\":[]}".into(),
            created_at: t,
        };
        store.insert_client(&client).await.expect("insert client");
        assert_eq!(store.client("cli").await.expect("client"), Some(client));
        assert_eq!(store.client("other").await.expect("client"), None);

        let pending = PendingAuthorization {
            id_hash: "p1".into(),
            client_id: "cli".into(),
            redirect_uri: "https://a.example/cb".into(),
            state: None,
            code_challenge: "ch".into(),
            resource: "r".into(),
            scope: Some("a b".into()),
            sid: None,
            csrf_hash: None,
            created_at: t,
            expires_at: t + 600,
        };
        store
            .insert_pending(&pending)
            .await
            .expect("insert pending");
        assert_eq!(
            store.pending("p1", t).await.expect("pending").as_ref(),
            Some(&pending)
        );
        assert_eq!(store.pending("p1", t + 600).await.expect("expired"), None);
        store
            .bind_pending_to_consent("p1", "sid", "csrf")
            .await
            .expect("bind");
        assert_eq!(
            store
                .pending("p1", t)
                .await
                .expect("pending")
                .and_then(|p| p.csrf_hash)
                .as_deref(),
            Some("csrf")
        );
        assert!(store.take_pending("p1", t).await.expect("take"));
        assert!(!store.take_pending("p1", t).await.expect("take twice"));

        store
            .insert_code(&code("c1", "f1", t))
            .await
            .expect("insert code");
        assert_eq!(
            store.code("c1").await.expect("code").map(|c| c.used_at),
            Some(None)
        );
        let (a, b) = tokio::join!(store.consume_code("c1", t), store.consume_code("c1", t));
        assert!(
            a.expect("first") ^ b.expect("second"),
            "exactly one concurrent exchange wins"
        );
        assert_eq!(
            store
                .code("c1")
                .await
                .expect("code")
                .and_then(|c| c.used_at),
            Some(t)
        );

        let session = Session {
            secret_hash: "s1".into(),
            sid: "sid".into(),
            username: "alice".into(),
            claims: "{}".into(),
            created_at: t,
            expires_at: t + 100,
        };
        store
            .insert_session(&session)
            .await
            .expect("insert session");
        assert_eq!(
            store.session("s1", t).await.expect("session"),
            Some(session)
        );
        assert_eq!(
            store.session("s1", t + 100).await.expect("expired session"),
            None
        );

        store
            .insert_refresh_token(&refresh("r1", "f1", t))
            .await
            .expect("insert refresh");
        store
            .insert_refresh_token(&refresh("r2", "f1", t))
            .await
            .expect("insert refresh");
        assert!(store.spend_refresh_token("r1", t).await.expect("spend"));
        assert!(!store
            .spend_refresh_token("r1", t)
            .await
            .expect("spend twice"));
        store
            .record_access_token("jti1", "f1", t + 300)
            .await
            .expect("record jti");
        let family_revoked = |hash: &'static str| {
            let store = &store;
            async move {
                store
                    .refresh_token_for_grant(hash)
                    .await
                    .expect("lookup")
                    .map(|(_, revoked)| revoked)
            }
        };
        assert_eq!(family_revoked("r2").await, Some(false));
        assert_eq!(family_revoked("nope").await, None);
        store
            .revoke_family("f1", "test", t, t + 3600)
            .await
            .expect("revoke");
        store
            .revoke_family("f1", "test", t, t + 3600)
            .await
            .expect("revoke is idempotent");
        assert_eq!(family_revoked("r2").await, Some(true));
        assert!(store
            .refresh_token("r2")
            .await
            .expect("r2")
            .and_then(|r| r.spent_at)
            .is_some());
        assert!(store.is_access_token_revoked("jti1").await.expect("jti"));
        store
            .revoke_access_token("jti2", t, t + 10)
            .await
            .expect("revoke jti");
        store
            .revoke_access_token("jti2", t, t + 10)
            .await
            .expect("revoke jti twice");
        assert!(store.is_access_token_revoked("jti2").await.expect("jti"));

        store
            .record_consent("alice", "cli", "r", Some("a"), t)
            .await
            .expect("consent");
        store
            .record_consent("alice", "cli", "r", None, t + 1)
            .await
            .expect("consent again");

        let account = ServiceAccount {
            id: "0a1b".into(),
            name: "robot".into(),
            email: "robot@example.com".into(),
            groups: vec!["ci".into()],
            routes: vec!["http://localhost:18080/everything".into()],
            created_at: t,
            expires_at: None,
            revoked_at: None,
            client_id: Some("sa-0a1b".into()),
            client_secret_hash: Some("h".into()),
        };
        store
            .insert_service_account(&account)
            .await
            .expect("insert service account");
        assert!(store.insert_service_account(&account).await.is_err());
        assert_eq!(
            store.service_account("0a1b").await.expect("by id").as_ref(),
            Some(&account)
        );
        assert_eq!(
            store
                .service_account_by_client_id("sa-0a1b")
                .await
                .expect("by client id")
                .map(|a| a.name),
            Some("robot".into())
        );
        assert!(store
            .revoked_service_accounts()
            .await
            .expect("revoked")
            .is_empty());
        assert!(store
            .revoke_service_account("robot", t)
            .await
            .expect("revoke"));
        assert!(!store
            .revoke_service_account("robot", t)
            .await
            .expect("twice"));
        assert_eq!(
            store.service_accounts().await.expect("all")[0].revoked_at,
            Some(t)
        );
        assert_eq!(
            store
                .revoked_service_accounts()
                .await
                .expect("revoked")
                .len(),
            1
        );
        assert_eq!(
            store.revoked_access_token_ids(t).await.expect("jtis"),
            vec!["jti1".to_string(), "jti2".to_string()]
        );
        assert_eq!(
            store.revoked_access_token_ids(t + 10).await.expect("jtis"),
            vec!["jti1".to_string()]
        );

        // Upstream disconnects: one row per (user, route) with the latest moment, listed for an
        // hour.
        store
            .record_upstream_disconnect("alice", "http://r/gh", t)
            .await
            .expect("disconnect");
        store
            .record_upstream_disconnect("alice", "http://r/gh", t - 5)
            .await
            .expect("an older one");
        store
            .record_upstream_disconnect("alice", "http://r/gl", t - 10)
            .await
            .expect("another route");
        store
            .record_upstream_disconnect("bob", "http://r/gh", t - 4000)
            .await
            .expect("an old one");
        assert_eq!(
            store.upstream_disconnects(t - 3600).await.expect("list"),
            vec![
                ("alice".to_string(), "http://r/gh".to_string(), t),
                ("alice".to_string(), "http://r/gl".to_string(), t - 10),
            ]
        );
        store
            .record_upstream_disconnect("alice", "http://r/gl", t + 1)
            .await
            .expect("a later one");
        assert_eq!(
            store.upstream_disconnects(t).await.expect("list"),
            vec![("alice".to_string(), "http://r/gl".to_string(), t + 1)]
        );
        store
            .purge_expired(t)
            .await
            .expect("purge an old disconnect");
        assert_eq!(store.upstream_disconnects(0).await.expect("list").len(), 2);

        assert!(store.purge_expired(t + 100_000).await.expect("purge") >= 5);
        assert!(store
            .upstream_disconnects(0)
            .await
            .expect("list")
            .is_empty());
        assert_eq!(store.code("c1").await.expect("code"), None);
        assert!(!store.is_access_token_revoked("jti2").await.expect("purged"));
    }

    #[tokio::test]
    async fn sqlite_store_survives_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!(
            "sqlite://{}/nested/dir/db.sqlite?mode=rwc",
            dir.path().display()
        );
        let store = Store::connect(&url).await.expect("connect");
        exercise(&store).await;
        store.close().await;
        let reopened = Store::connect(&url)
            .await
            .expect("reconnect and re-run migrations");
        assert!(
            reopened.client("cli").await.expect("client").is_some(),
            "clients survive a restart"
        );
    }

    /// Runs when MCPGATE_TEST_POSTGRES_URL is set, in a fresh schema dropped afterwards.
    #[tokio::test]
    async fn postgres_store_when_configured() {
        let Ok(base) = std::env::var("MCPGATE_TEST_POSTGRES_URL") else {
            eprintln!("MCPGATE_TEST_POSTGRES_URL not set; skipping the PostgreSQL store test");
            return;
        };
        sqlx::any::install_default_drivers();
        let schema = format!(
            "mcpgate_test_{}",
            crate::oauth::opaque_token::generate()
                .to_ascii_lowercase()
                .replace(['-', '_'], "")
        );
        let admin = AnyPoolOptions::new()
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
        let result = async move {
            let store = Store::connect(&url).await.expect("connect with schema");
            exercise(&store).await;
            store.close().await;
        };
        let outcome = tokio::spawn(result).await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&admin)
            .await
            .expect("drop schema");
        outcome.expect("postgres store test");
    }
}
