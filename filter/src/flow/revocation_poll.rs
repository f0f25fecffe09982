//! The token service's revocation list (`GET /internal/v1/revocations`): polled on the tick by one
//! VM at a time (the lease says when the next poll is due, [`Poller`] keeps this VM's own poll
//! from being duplicated) with `If-None-Match`, shared between the VMs as a [`SharedDocument`].
//! A list that cannot be fetched is kept: the last one stays in force however old it gets.

use mcpgate_config::paths;

use super::host::{Host, LogLevel};
use super::shared_document::{Document, SharedDocument};
use super::vm::Vm;
use super::{call_status, log_failure};
use crate::revocation::{self, PollAnswer, Poller, Revocations, MAX_REVOCATIONS_BYTES};

impl Document for Revocations {
    /// The list's ETag (empty when the token service sent none).
    type Stamp = String;
    const NAME: &'static str = "revocation list";
    const BODY: &'static str = "the revocation list";
    const MAX_BYTES: usize = MAX_REVOCATIONS_BYTES;

    fn decode_shared(value: &[u8]) -> Option<(String, &[u8])> {
        revocation::decode_shared(value).map(|(etag, document)| (etag.to_owned(), document))
    }

    fn parse(document: &[u8]) -> Result<Self, String> {
        Revocations::parse(document).map_err(|e| e.to_string())
    }
}

/// The revocation list in force on this VM, and its poll.
pub(super) struct RevocationPoll {
    pub(super) list: Revocations,
    /// ETag of that list (empty when the token service sent none).
    etag: String,
    shared: SharedDocument<Revocations>,
    poller: Poller,
    /// The root context's outstanding revocation poll (its other call-out is the JWKS).
    pub(super) call: Option<u32>,
}

impl RevocationPoll {
    /// `scope`: the token service whose internal API lists the revocations.
    pub(super) fn new(scope: &str, refresh_seconds: u64) -> Self {
        RevocationPoll {
            list: Revocations::default(),
            etag: String::new(),
            shared: SharedDocument::new("revocations", scope),
            poller: Poller::new(refresh_seconds),
            call: None,
        }
    }
}

impl Vm {
    /// Adopt the shared revocation list if another VM (or this one) published a newer one.
    fn sync_revocations<H: Host>(&mut self, host: &H) {
        if let Some((list, etag)) = self.revocations.shared.newer(host) {
            self.install_revocations(host, list, etag);
        }
    }

    fn install_revocations<H: Host>(&mut self, host: &H, list: Revocations, etag: String) {
        if list != self.revocations.list {
            let (jtis, subjects, disconnects) = list.counts();
            host.log(
                LogLevel::Info,
                &format!(
                    "mcpgate: revocation list loaded: {jtis} token id(s), {subjects} subject(s), \
                     {disconnects} upstream disconnect(s)"
                ),
            );
            self.revocations.list = list;
        }
        self.revocations.etag = etag;
    }

    /// On the tick: adopt the shared list, and poll for a new one when this VM gets the lease.
    pub(super) fn poll_revocations<H: Host>(&mut self, host: &H, now: u64) {
        if !self.internal_ready() {
            return;
        }
        self.sync_revocations(host);
        if !self.revocations.poller.idle(now) {
            return;
        }
        let until = now.saturating_add(revocation::FETCH_TIMEOUT_SECONDS);
        if !self.revocations.shared.claim_lease(host, now, until) {
            return; // polled recently, or another VM is polling
        }
        self.revocations.poller.started(now);
        self.metrics.revocations_refresh.bump();
        let etag = self.revocations.etag.clone();
        let extra: &[(&str, &str)] = if etag.is_empty() {
            &[]
        } else {
            &[("if-none-match", etag.as_str())]
        };
        match self.dispatch_internal(host, "GET", paths::INTERNAL_REVOCATIONS, None, extra) {
            Ok(id) => self.revocations.call = Some(id),
            Err(e) => self.finish_revocations(host, now, Err(e)),
        }
    }

    pub(super) fn on_revocations_answer<H: Host>(&mut self, host: &H, body_size: usize) {
        self.revocations.call = None;
        let result = self.read_revocations(host, body_size);
        let now = host.now().unwrap_or(0);
        self.finish_revocations(host, now, result);
    }

    fn read_revocations<H: Host>(&mut self, host: &H, body_size: usize) -> Result<(), String> {
        match revocation::classify(call_status(host).as_deref()) {
            PollAnswer::NotModified => return Ok(()),
            PollAnswer::Failed(reason) => return Err(reason),
            PollAnswer::Updated => {}
        }
        let (body, list) = SharedDocument::<Revocations>::read_answer(host, body_size)?;
        let etag = host.call_answer_header("etag");
        let etag = revocation::usable_etag(etag.as_deref())
            .unwrap_or_default()
            .to_owned();
        // Publish only a change. The ETag is visible ASCII or empty, never a newline, so equal
        // shared values mean an equal ETag and list.
        self.revocations
            .shared
            .publish_if_changed(host, &revocation::encode_shared(&etag, &body));
        self.install_revocations(host, list, etag);
        Ok(())
    }

    /// The poll is over: the next one is due after the period, whatever happened; on failure
    /// the list in force stays.
    fn finish_revocations<H: Host>(&mut self, host: &H, now: u64, result: Result<(), String>) {
        let (next, warn) = self.revocations.poller.finished(now, result.is_ok());
        self.revocations.shared.set_lease(host, next);
        if let Err(reason) = result {
            self.metrics.revocations_refresh_failed.bump();
            log_failure(
                host,
                warn,
                &format!(
                    "mcpgate: revocation list refresh failed ({} in a row; the last list stays \
                     in force): {reason}",
                    self.revocations.poller.failures.count()
                ),
            );
        }
    }
}
