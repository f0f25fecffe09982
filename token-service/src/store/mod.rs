//! Persistence through an sqlx `Any` pool: SQLite by default, PostgreSQL by URL. Every query uses
//! `$n` placeholders and portable types (TEXT, BIGINT unix seconds), so one set of migrations and
//! queries serves both. Single-use transitions (codes, refresh tokens, pending requests) are one
//! conditional statement each, so two concurrent requests cannot both win.

mod assertions;
mod authorizations;
mod clients;
mod consents;
mod service_accounts;
mod sessions;
mod tokens;
mod upstream;

pub use authorizations::{AuthorizationCode, PendingAuthorization};
pub use clients::StoredClient;
pub use service_accounts::ServiceAccount;
pub use sessions::Session;
pub use tokens::RefreshToken;
pub use upstream::{
    NewUpstreamToken, UpstreamLease, UpstreamState, UpstreamTokenRow,
    UPSTREAM_DISCONNECT_LISTED_SECS,
};

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

mod oidc;
pub use oidc::{CheckedTokens, OidcSession, OidcSignIn};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a query waits for a connection (busy pool, or a database that is down).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
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

/// Whether `e` says the database could not be reached or went away: connection refused or
/// lost, no connection free within the acquire timeout, the server shutting down, starting up or
/// out of connections. That passes by itself (the pool reconnects), so callers answer 503
/// `temporarily_unavailable` rather than 500.
pub fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
            Some(
                sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_),
            ) => true,
            // PostgreSQL: class 08 connection exceptions, 57P01-03 (admin shutdown, crash
            // shutdown, cannot connect now), 53300 too many connections.
            Some(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300"),
            _ => false,
        })
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
        //
        // A restarted or unreachable database heals by itself: every connection is pinged
        // before use (`test_before_acquire`), a dead one is dropped and a new one opened, and
        // opening retries a refused connection until the acquire timeout. That timeout is what
        // a request waits while the database is down before it is answered 503
        // `temporarily_unavailable` (see `is_unavailable`).
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .test_before_acquire(true)
            .acquire_timeout(ACQUIRE_TIMEOUT)
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

    /// The pool, for tests that reach into the tables.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

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
            "used_assertions",
        ] {
            // Table names come from the fixed list above, never from input.
            let sql = format!("DELETE FROM {table} WHERE expires_at <= $1");
            total += sqlx::query(&sql)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        total += self.purge_expired_oidc(now).await?;
        total += sqlx::query("DELETE FROM upstream_disconnects WHERE disconnected_at <= $1")
            .bind(now - UPSTREAM_DISCONNECT_LISTED_SECS)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(total)
    }
}

#[cfg(test)]
mod tests;
