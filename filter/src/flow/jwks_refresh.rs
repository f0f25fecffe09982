//! The token service's signing keys: fetched from `/.well-known/jwks.json` on the tick (one VM at
//! a time once keys are loaded, [`crate::refresh`] decides when), by a request that finds no keys
//! or an unknown `kid`, shared between the VMs as a [`SharedDocument`].

use std::rc::Rc;
use std::time::Duration;

use mcpgate_config::paths;

use super::host::{CallOut, Host, HostError, LogLevel};
use super::shared_document::{Document, SharedDocument};
use super::vm::Vm;
use super::{call_status, log_failure};
use crate::jwks::{KeySet, MAX_JWKS_BYTES};
use crate::refresh::{self, FailureRun, Refresher, FETCH_TIMEOUT_SECONDS, RETRY_WITH_KEYS_SECONDS};

impl Document for KeySet {
    /// When the shared copy was fetched.
    type Stamp = u64;
    const NAME: &'static str = "JWKS";
    const UNREADABLE: &'static str = "JWKS entry";
    const TOO_LARGE: &'static str = "JWKS document";
    const BODY: &'static str = "the JWKS body";
    const MAX_BYTES: usize = MAX_JWKS_BYTES;

    fn decode_shared(value: &[u8]) -> Option<(u64, &[u8])> {
        refresh::decode_shared(value)
    }

    fn parse(document: &[u8]) -> Result<Self, String> {
        KeySet::parse(document).map_err(|e| e.to_string())
    }
}

/// This VM's signing keys and their refresh.
pub(super) struct Jwks {
    pub(super) keys: Option<Rc<KeySet>>,
    /// When the shared copy was fetched (from the shared value).
    fetched_at: Option<u64>,
    shared: SharedDocument<KeySet>,
    pub(super) refresher: Refresher,
    /// Failed refreshes in a row (for log throttling).
    failures: FailureRun,
}

impl Jwks {
    /// `scope`: the token service the keys come from.
    pub(super) fn new(scope: &str, refresh_seconds: u64) -> Self {
        Jwks {
            keys: None,
            fetched_at: None,
            shared: SharedDocument::new("jwks", scope),
            refresher: Refresher::new(refresh_seconds),
            failures: FailureRun::default(),
        }
    }
}

impl Vm {
    fn install_keys<H: Host>(&mut self, host: &H, keys: KeySet, fetched_at: u64) {
        let changed = self
            .jwks
            .keys
            .as_ref()
            .is_none_or(|old| old.kids().ne(keys.kids()));
        if changed {
            host.log(
                LogLevel::Info,
                &format!(
                    "mcpgate: loaded {} signing key(s): {}",
                    keys.len(),
                    keys.kids().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        self.cache.retain_kids(|kid| keys.contains(kid));
        self.jwks.keys = Some(Rc::new(keys));
        self.jwks.fetched_at = Some(fetched_at);
    }

    /// Adopt the shared copy if another VM (or this one) published a newer one.
    pub(super) fn sync_keys<H: Host>(&mut self, host: &H) {
        if let Some((keys, fetched_at)) = self.jwks.shared.newer(host) {
            self.install_keys(host, keys, fetched_at);
        }
    }

    /// On the tick: adopt the shared keys, and fetch new ones when they are due (with keys, only
    /// the VM that gets the lease).
    pub(super) fn refresh_keys<H: Host>(&mut self, host: &H, now: u64) {
        self.sync_keys(host);
        let have_keys = self.jwks.keys.is_some();
        if !self
            .jwks
            .refresher
            .should_fetch(now, self.jwks.fetched_at, have_keys)
        {
            return;
        }
        // With keys, one VM refreshes for all (the lease); without, every VM tries each second:
        // a lease held by a lost call-out must not delay the first keys.
        if have_keys
            && !self
                .jwks
                .shared
                .claim_lease(host, now, now.saturating_add(FETCH_TIMEOUT_SECONDS))
        {
            return; // another VM is fetching; its copy arrives through shared data
        }
        self.jwks.refresher.started(now);
        if self.dispatch_fetch(host).is_err() {
            self.jwks.refresher.finished(now, false);
            self.jwks.shared.set_lease(host, 0);
        }
    }

    /// The root context's fetch answered.
    pub(super) fn on_refresh_answer<H: Host>(&mut self, host: &H, body_size: usize) {
        let ok = self.accept_fetch(host, body_size).is_ok();
        let now = host.now().unwrap_or(0);
        self.jwks.refresher.finished(now, ok);
        if ok {
            self.jwks.shared.set_lease(host, 0);
        } else {
            // Keep the lease through the back-off so the other VMs do not retry at once.
            self.jwks
                .shared
                .set_lease(host, now.saturating_add(RETRY_WITH_KEYS_SECONDS));
        }
    }

    /// Send the JWKS request from the current context; its answer comes to that context.
    pub(super) fn dispatch_fetch<H: Host>(&mut self, host: &H) -> Result<u32, HostError> {
        self.metrics.jwks_refresh.bump();
        let result = host.dispatch(&CallOut {
            cluster: &self.config.token_service_cluster,
            headers: vec![
                (":method", "GET"),
                (":path", paths::JWKS),
                (":authority", &self.config.token_service_authority),
                ("accept", "application/json"),
            ],
            body: None,
            timeout: Duration::from_secs(FETCH_TIMEOUT_SECONDS),
        });
        if let Err(e) = &result {
            let cluster = &self.config.token_service_cluster;
            let reason = format!("cannot call cluster {cluster}: {e}");
            self.note_fetch_failure(host, &reason);
        }
        result
    }

    /// Count a failed refresh; warn on the first of a run and every 60th after, debug otherwise,
    /// so a token service outage does not flood the log at one line per worker per second.
    fn note_fetch_failure<H: Host>(&mut self, host: &H, reason: &str) {
        self.metrics.jwks_refresh_failed.bump();
        let warn = self.jwks.failures.failed(60);
        log_failure(
            host,
            warn,
            &format!(
                "mcpgate: JWKS refresh failed ({} in a row): {reason}",
                self.jwks.failures.count()
            ),
        );
    }

    /// Handle a JWKS answer: validate, publish to shared data, install. `Err` says why not.
    pub(super) fn accept_fetch<H: Host>(
        &mut self,
        host: &H,
        body_size: usize,
    ) -> Result<(), String> {
        let result = self.read_fetch(host, body_size);
        match &result {
            Ok(()) => host.log(LogLevel::Debug, "mcpgate: JWKS refreshed"),
            Err(e) => self.note_fetch_failure(host, e),
        }
        if result.is_ok() {
            self.jwks.failures.succeeded();
        }
        result
    }

    fn read_fetch<H: Host>(&mut self, host: &H, body_size: usize) -> Result<(), String> {
        refresh::check_answer(call_status(host).as_deref())?;
        let (body, keys) = SharedDocument::<KeySet>::read_answer(host, body_size)?;
        let now = host.now().ok_or("host clock unavailable")?;
        // On a lost race the other copy is as fresh as ours, so either way every VM ends up on
        // one copy.
        self.jwks
            .shared
            .publish_compare_and_swap(host, &refresh::encode_shared(now, &body));
        self.install_keys(host, keys, now);
        Ok(())
    }
}
