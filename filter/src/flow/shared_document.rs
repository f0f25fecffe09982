//! A document one VM at a time fetches from the token service for every VM of the worker
//! process, through proxy-wasm shared data: the JWKS ([`super::jwks_refresh`]) and the
//! revocation list ([`super::revocation_poll`]).
//!
//! Two shared-data entries per document: `mcpgate.<name>|<scope>` holds the last fetched copy
//! (with its stamp: when it was fetched, or its ETag) and `mcpgate.<name>.lease|<scope>` the unix
//! second until which one VM owns the fetch ([`refresh::lease_is_free`]). The VM that claims the
//! lease fetches and publishes; every VM adopts the shared copy when its CAS differs from the one
//! it adopted last, so every VM ends up on one copy while only one of them fetches. When to fetch,
//! what to do with an adopted copy and how to count failures is up to each document.

use std::marker::PhantomData;

use super::host::{Host, LogLevel};
use crate::refresh;

/// A kind of shared document.
pub(super) trait Document: Sized {
    /// What the shared value records besides the document.
    type Stamp;
    /// What the document is called in log lines and errors: "ignoring the shared …: <error>",
    /// "cannot share the …".
    const NAME: &'static str;
    /// In "ignoring an unreadable shared …".
    const UNREADABLE: &'static str = Self::NAME;
    /// In "… is larger than <n> bytes".
    const TOO_LARGE: &'static str = Self::NAME;
    /// In "cannot read …: <status>".
    const BODY: &'static str;
    /// Larger answers are refused unread.
    const MAX_BYTES: usize;

    /// The stamp and the document of a shared value; `None` when unreadable.
    fn decode_shared(value: &[u8]) -> Option<(Self::Stamp, &[u8])>;
    fn parse(document: &[u8]) -> Result<Self, String>;
}

/// One document's shared-data entries, and the CAS of the copy this VM adopted.
pub(super) struct SharedDocument<D> {
    key: String,
    lease_key: String,
    /// CAS of the shared value this VM's copy comes from.
    adopted: Option<u32>,
    document: PhantomData<fn() -> D>,
}

impl<D: Document> SharedDocument<D> {
    /// The entries `mcpgate.<name>|<scope>` and `mcpgate.<name>.lease|<scope>`.
    pub(super) fn new(name: &str, scope: &str) -> Self {
        SharedDocument {
            key: format!("mcpgate.{name}|{scope}"),
            lease_key: format!("mcpgate.{name}.lease|{scope}"),
            adopted: None,
            document: PhantomData,
        }
    }

    /// The shared copy, parsed, when another VM (or this one) published one this VM has not
    /// adopted yet. The caller installs it: it counts as adopted.
    pub(super) fn newer<H: Host>(&mut self, host: &H) -> Option<(D, D::Stamp)> {
        let Ok((Some(value), cas)) = host.shared_data(&self.key) else {
            return None;
        };
        if cas.is_some() && cas == self.adopted {
            return None;
        }
        let Some((stamp, document)) = D::decode_shared(&value) else {
            host.log(
                LogLevel::Warn,
                &format!("mcpgate: ignoring an unreadable shared {}", D::UNREADABLE),
            );
            return None;
        };
        match D::parse(document) {
            Ok(parsed) => {
                self.adopted = cas;
                Some((parsed, stamp))
            }
            Err(e) => {
                host.log(
                    LogLevel::Warn,
                    &format!("mcpgate: ignoring the shared {}: {e}", D::NAME),
                );
                None
            }
        }
    }

    /// The document in the call-out answer being handled: its bytes and what they parse to.
    pub(super) fn read_answer<H: Host>(host: &H, body_size: usize) -> Result<(Vec<u8>, D), String> {
        if body_size > D::MAX_BYTES {
            return Err(format!(
                "{} is larger than {} bytes",
                D::TOO_LARGE,
                D::MAX_BYTES
            ));
        }
        let body = host
            .call_answer_body(body_size)
            .map_err(|e| format!("cannot read {}: {e}", D::BODY))?;
        let parsed = D::parse(&body)?;
        Ok((body, parsed))
    }

    /// Shares this VM's fresh copy (`value`: stamp and document, as `decode_shared` reads them)
    /// by compare-and-swap against the value shared now; the caller installs the copy: it counts
    /// as adopted. A lost race adopts nothing: the other VM's copy, as fresh, is adopted on the
    /// next sync.
    pub(super) fn publish_compare_and_swap<H: Host>(&mut self, host: &H, value: &[u8]) {
        let (_, cas) = host.shared_data(&self.key).unwrap_or((None, None));
        let published = host.set_shared_data(&self.key, value, cas).is_ok();
        self.adopted = if published {
            self.shared_cas(host)
        } else {
            None
        };
    }

    /// Shares this VM's fresh copy (`value`, as for [`Self::publish_compare_and_swap`]) only when
    /// it differs from the shared value, since every VM re-reads the document when the shared
    /// value changes; a write the host refuses is logged. The caller installs the copy: the value
    /// shared afterwards counts as adopted either way.
    pub(super) fn publish_if_changed<H: Host>(&mut self, host: &H, value: &[u8]) {
        let (current, _) = host.shared_data(&self.key).unwrap_or((None, None));
        if current.as_deref() != Some(value) {
            if let Err(e) = host.set_shared_data(&self.key, value, None) {
                host.log(
                    LogLevel::Warn,
                    &format!("mcpgate: cannot share the {}: {e}", D::NAME),
                );
            }
        }
        self.adopted = self.shared_cas(host);
    }

    fn shared_cas<H: Host>(&self, host: &H) -> Option<u32> {
        host.shared_data(&self.key).ok().and_then(|(_, cas)| cas)
    }

    /// Claims the fetch for this VM until `until`, unless the lease says it is not free at `now`
    /// (another VM is fetching, or the next fetch is not due).
    pub(super) fn claim_lease<H: Host>(&self, host: &H, now: u64, until: u64) -> bool {
        let (lease, cas) = host.shared_data(&self.lease_key).unwrap_or((None, None));
        if !refresh::lease_is_free(lease.as_deref(), now) {
            return false;
        }
        host.set_shared_data(&self.lease_key, until.to_string().as_bytes(), cas)
            .is_ok()
    }

    /// Sets the lease to `until` whoever holds it (`0`: free).
    pub(super) fn set_lease<H: Host>(&self, host: &H, until: u64) {
        let _ = host.set_shared_data(&self.lease_key, until.to_string().as_bytes(), None);
    }
}
