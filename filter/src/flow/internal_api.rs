//! Call-outs to the token service's internal API (credentials, sessions, upstream rejections,
//! revocations), and the shared-data caches of what it answered for credentials and sessions
//! (fixed tables, see [`crate::credentials`]).

use std::time::Duration;

use mcpgate_config::paths;

use super::host::{CallOut, Host};
use super::log_failure;
use super::vm::Vm;
use crate::client_session::Session;
use crate::credentials::{self, CacheKey, Credentials, CALL_TIMEOUT_SECONDS, MAX_ANSWER_BYTES};

/// The 503 description when the internal API cannot be used.
pub(super) const NO_INTERNAL_API: &str = "the gateway cannot reach its token service";
/// Shared-data tables (see [`credentials`]).
const CREDENTIALS_TABLE: &str = "cred";
const SESSION_TABLE: &str = "session";

/// Where the internal API is and how to authenticate to it.
pub(super) struct Internal {
    pub(super) cluster: String,
    pub(super) authority: String,
    /// `Bearer <secret>`; `None` when the secret is not in the VM's environment: every request
    /// that needs the internal API then fails closed.
    pub(super) authorization: Option<String>,
}

/// The call-out answer's body, at most `MAX_ANSWER_BYTES + 1` bytes (more is refused anyway).
pub(super) fn call_body<H: Host>(host: &H, body_size: usize) -> Vec<u8> {
    host.call_answer_body(body_size.min(MAX_ANSWER_BYTES.saturating_add(1)))
        .unwrap_or_default()
}

impl Vm {
    /// The internal API is configured and its secret is known.
    pub(super) fn internal_ready(&self) -> bool {
        self.internal
            .as_ref()
            .is_some_and(|i| i.authorization.is_some())
    }

    /// Sends a call-out to the internal API from the current context; its answer comes to that
    /// context. The secret goes in `authorization`, never into a log line. `extra`: more
    /// headers (the request's trace context, a revalidation's `if-none-match`).
    pub(super) fn dispatch_internal<H: Host>(
        &self,
        host: &H,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        extra: &[(&str, &str)],
    ) -> Result<u32, String> {
        let Some(internal) = &self.internal else {
            return Err("the internal API is not configured".into());
        };
        let Some(authorization) = &internal.authorization else {
            return Err(format!("{} is not set", paths::INTERNAL_SECRET_ENV));
        };
        let mut headers = vec![
            (":method", method),
            (":path", path),
            (":authority", internal.authority.as_str()),
            ("authorization", authorization.as_str()),
            ("accept", "application/json"),
        ];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        headers.extend_from_slice(extra);
        host.dispatch(&CallOut {
            cluster: &internal.cluster,
            headers,
            body,
            timeout: Duration::from_secs(CALL_TIMEOUT_SECONDS),
        })
        .map_err(|e| format!("cannot call cluster {}: {e}", internal.cluster))
    }

    /// Count a failed internal API call-out; warn on the first of a run and every 100th after.
    pub(super) fn note_internal_failure<H: Host>(&mut self, host: &H, what: &str, reason: &str) {
        let warn = self.internal_failures.failed(100);
        log_failure(
            host,
            warn,
            &format!(
                "mcpgate: {what} from the token service failed ({} in a row): {reason}",
                self.internal_failures.count()
            ),
        );
    }

    pub(super) fn internal_ok(&mut self) {
        self.internal_failures.succeeded();
    }

    /// This VM's copy first, then the shared table (a hit there is copied here).
    /// `disconnected_at`: when the token service last deleted the user's upstream token for the
    /// route (an entry fetched at or before then is a miss).
    pub(super) fn cached_credentials<H: Host>(
        &mut self,
        host: &H,
        key: &CacheKey,
        now: u64,
        upstream_oauth: bool,
        disconnected_at: Option<u64>,
    ) -> Option<Credentials> {
        if let Some(value) = self.local_credentials.get(key) {
            if let Some(found) =
                Credentials::decode(value, key, now, upstream_oauth, disconnected_at)
            {
                return Some(found);
            }
        }
        let name = credentials::slot_name(CREDENTIALS_TABLE, key);
        let value = host.shared_data(&name).ok()?.0?;
        let found = Credentials::decode(&value, key, now, upstream_oauth, disconnected_at)?;
        self.local_credentials.put(key, value);
        Some(found)
    }

    /// `fetched_at`: when the call-out that answered `value` was sent.
    pub(super) fn store_credentials<H: Host>(
        &mut self,
        host: &H,
        key: &CacheKey,
        value: &Credentials,
        fetched_at: u64,
        now: u64,
    ) {
        if value.reuse_until(fetched_at) > now {
            if let Some(entry) = value.encode(key, fetched_at) {
                let name = credentials::slot_name(CREDENTIALS_TABLE, key);
                let _ = host.set_shared_data(&name, &entry, None);
                self.local_credentials.put(key, entry);
            }
        }
    }

    /// Empties `key`'s slot, here and in the shared table, if it holds `key`'s entry.
    pub(super) fn drop_credentials<H: Host>(&mut self, host: &H, key: &CacheKey) {
        self.local_credentials.remove(key);
        let name = credentials::slot_name(CREDENTIALS_TABLE, key);
        if let Ok((Some(value), cas)) = host.shared_data(&name) {
            if credentials::decode_entry(&value, key, 0).is_some() {
                let _ = host.set_shared_data(&name, b"", cas);
            }
        }
    }

    pub(super) fn cached_session<H: Host>(
        &self,
        host: &H,
        key: &CacheKey,
        now: u64,
    ) -> Option<Session> {
        let name = credentials::slot_name(SESSION_TABLE, key);
        let (value, _) = host.shared_data(&name).ok()?;
        Session::decode(&value?, key, now)
    }

    pub(super) fn store_session<H: Host>(
        &self,
        host: &H,
        key: &CacheKey,
        session: &Session,
        now: u64,
    ) {
        if session.cache_until > now {
            if let Some(entry) = session.encode(key) {
                let name = credentials::slot_name(SESSION_TABLE, key);
                let _ = host.set_shared_data(&name, &entry, None);
            }
        }
    }
}
