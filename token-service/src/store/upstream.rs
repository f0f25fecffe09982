//! What the service keeps of upstream OAuth: users' encrypted upstream tokens (with the refresh
//! lease), the `state` of trips through a provider, and disconnects (for the revocation list).
//! The rows hold ciphertext only; sealing and opening is `crate::upstream::tokens`' business.

use sqlx::Row;

use super::Store;

/// How long an upstream disconnect stays in the revocation list (and in the database). The
/// filter reuses no upstream token it cached longer than this.
pub const UPSTREAM_DISCONNECT_LISTED_SECS: i64 = 3600;

/// A user's upstream token row as stored: the sealed secrets and their times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTokenRow {
    pub ciphertext: String,
    pub nonce: String,
    pub issued_at: i64,
    pub expires_at: Option<i64>,
}

/// A freshly obtained upstream token to store for `username` and `route`.
pub struct NewUpstreamToken<'a> {
    pub username: &'a str,
    pub route: &'a str,
    pub ciphertext: &'a str,
    pub nonce: &'a str,
    pub issued_at: i64,
    pub expires_at: Option<i64>,
    /// Whether the sealed secrets include a refresh token.
    pub refreshable: bool,
}

/// The refresh lease on one upstream token row, held by `owner`.
pub struct UpstreamLease<'a> {
    pub username: &'a str,
    pub route: &'a str,
    pub owner: &'a str,
}

/// A trip through an upstream provider, stored by the hash of the `state` sent to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamState {
    pub sid: String,
    pub username: String,
    pub route: String,
    pub verifier_ciphertext: String,
    pub verifier_nonce: String,
    pub redirect_url: Option<String>,
    /// The carried MCP-client authorization (JSON), when the trip is part of one.
    pub pending: Option<String>,
}

impl Store {
    /// Stores (or replaces) a user's token for a route; clears any lease.
    pub async fn upsert_upstream_token(&self, new: &NewUpstreamToken<'_>) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO upstream_tokens (username, route, ciphertext, nonce, issued_at, expires_at, \
             refreshable, lease_until, lease_owner, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $5, $5) \
             ON CONFLICT (username, route) DO UPDATE SET ciphertext = $3, nonce = $4, issued_at = $5, \
             expires_at = $6, refreshable = $7, lease_until = NULL, lease_owner = NULL, updated_at = $5",
        )
        .bind(new.username)
        .bind(new.route)
        .bind(new.ciphertext)
        .bind(new.nonce)
        .bind(new.issued_at)
        .bind(new.expires_at)
        .bind(i64::from(new.refreshable))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn upstream_token(
        &self,
        username: &str,
        route: &str,
    ) -> anyhow::Result<Option<UpstreamTokenRow>> {
        let row = sqlx::query(
            "SELECT ciphertext, nonce, issued_at, expires_at FROM upstream_tokens \
             WHERE username = $1 AND route = $2",
        )
        .bind(username)
        .bind(route)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> anyhow::Result<UpstreamTokenRow> {
            Ok(UpstreamTokenRow {
                ciphertext: r.try_get("ciphertext")?,
                nonce: r.try_get("nonce")?,
                issued_at: r.try_get("issued_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// A user's token for a route without its secrets: (expiry, whether it can be refreshed).
    pub async fn upstream_token_expiry(
        &self,
        username: &str,
        route: &str,
    ) -> anyhow::Result<Option<(Option<i64>, bool)>> {
        let row = sqlx::query(
            "SELECT expires_at, refreshable FROM upstream_tokens WHERE username = $1 AND route = $2",
        )
        .bind(username)
        .bind(route)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> anyhow::Result<(Option<i64>, bool)> {
            let refreshable: i64 = r.try_get("refreshable")?;
            Ok((r.try_get("expires_at")?, refreshable != 0))
        })
        .transpose()
    }

    /// The routes a user holds upstream tokens for.
    pub async fn upstream_token_routes(&self, username: &str) -> anyhow::Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT route FROM upstream_tokens WHERE username = $1")
                .bind(username)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Deletes a user's token for a route; true when there was one.
    pub async fn delete_upstream_token(&self, username: &str, route: &str) -> anyhow::Result<bool> {
        let deleted = sqlx::query("DELETE FROM upstream_tokens WHERE username = $1 AND route = $2")
            .bind(username)
            .bind(route)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    /// Takes the refresh lease until `until` unless another owner holds an unexpired one at `t`.
    pub async fn take_upstream_lease(
        &self,
        lease: &UpstreamLease<'_>,
        until: i64,
        t: i64,
    ) -> anyhow::Result<bool> {
        let won = sqlx::query(
            "UPDATE upstream_tokens SET lease_until = $1, lease_owner = $2 \
             WHERE username = $3 AND route = $4 AND (lease_until IS NULL OR lease_until < $5)",
        )
        .bind(until)
        .bind(lease.owner)
        .bind(lease.username)
        .bind(lease.route)
        .bind(t)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(won == 1)
    }

    /// Replaces the secrets of a leased row after a refresh and releases the lease; false when
    /// the lease is no longer held (the row was replaced or deleted meanwhile).
    pub async fn save_refreshed_upstream_token(
        &self,
        lease: &UpstreamLease<'_>,
        ciphertext: &str,
        nonce: &str,
        issued_at: i64,
        expires_at: Option<i64>,
    ) -> anyhow::Result<bool> {
        let updated = sqlx::query(
            "UPDATE upstream_tokens SET ciphertext = $1, nonce = $2, issued_at = $3, \
             expires_at = $4, refreshable = 1, lease_until = NULL, lease_owner = NULL, \
             updated_at = $3 WHERE username = $5 AND route = $6 AND lease_owner = $7",
        )
        .bind(ciphertext)
        .bind(nonce)
        .bind(issued_at)
        .bind(expires_at)
        .bind(lease.username)
        .bind(lease.route)
        .bind(lease.owner)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// Deletes a leased row (its refresh token was refused); true when it was deleted.
    pub async fn delete_leased_upstream_token(
        &self,
        lease: &UpstreamLease<'_>,
    ) -> anyhow::Result<bool> {
        let deleted = sqlx::query(
            "DELETE FROM upstream_tokens WHERE username = $1 AND route = $2 AND lease_owner = $3",
        )
        .bind(lease.username)
        .bind(lease.route)
        .bind(lease.owner)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted > 0)
    }

    /// Releases the lease, keeping the row.
    pub async fn release_upstream_lease(&self, lease: &UpstreamLease<'_>) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE upstream_tokens SET lease_until = NULL, lease_owner = NULL \
             WHERE username = $1 AND route = $2 AND lease_owner = $3",
        )
        .bind(lease.username)
        .bind(lease.route)
        .bind(lease.owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a trip's state (valid from `t` until `expires_at`), first clearing abandoned ones.
    pub async fn insert_upstream_state(
        &self,
        state_hash: &str,
        row: &UpstreamState,
        t: i64,
        expires_at: i64,
    ) -> anyhow::Result<()> {
        // Abandoned trips are cleared here rather than by a separate task.
        sqlx::query("DELETE FROM upstream_states WHERE expires_at <= $1")
            .bind(t)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO upstream_states (state_hash, sid, username, route, verifier_ciphertext, \
             verifier_nonce, redirect_url, pending, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(state_hash)
        .bind(&row.sid)
        .bind(&row.username)
        .bind(&row.route)
        .bind(&row.verifier_ciphertext)
        .bind(&row.verifier_nonce)
        .bind(&row.redirect_url)
        .bind(&row.pending)
        .bind(t)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The unexpired trip stored under `state_hash`.
    pub async fn upstream_state(
        &self,
        state_hash: &str,
        t: i64,
    ) -> anyhow::Result<Option<UpstreamState>> {
        let row = sqlx::query(
            "SELECT sid, username, route, verifier_ciphertext, verifier_nonce, redirect_url, pending \
             FROM upstream_states WHERE state_hash = $1 AND expires_at > $2",
        )
        .bind(state_hash)
        .bind(t)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> anyhow::Result<UpstreamState> {
            Ok(UpstreamState {
                sid: r.try_get("sid")?,
                username: r.try_get("username")?,
                route: r.try_get("route")?,
                verifier_ciphertext: r.try_get("verifier_ciphertext")?,
                verifier_nonce: r.try_get("verifier_nonce")?,
                redirect_url: r.try_get("redirect_url")?,
                pending: r.try_get("pending")?,
            })
        })
        .transpose()
    }

    /// Consumes the state for the session that started it; false when already used, expired, or
    /// asked for by another session (which leaves it in place).
    pub async fn consume_upstream_state(
        &self,
        state_hash: &str,
        sid: &str,
        t: i64,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "DELETE FROM upstream_states WHERE state_hash = $1 AND sid = $2 AND expires_at > $3",
        )
        .bind(state_hash)
        .bind(sid)
        .bind(t)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
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
}
