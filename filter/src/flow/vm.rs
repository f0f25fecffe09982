//! Per-VM state, shared by the root context and the http contexts of one worker: the
//! configuration, the compiled routes, the token cache, the JWKS and the revocation list, the
//! internal API, and the metrics.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use mcpgate_config::FilterConfig;
use mcpgate_policy::Policy;

use super::body_arrival::{self, HeldRequests};
use super::exchange::Exchange;
use super::host::Host;
use super::internal_api::Internal;
use super::jwks_refresh::Jwks;
use super::log_failure;
use super::revocation_poll::RevocationPoll;
use crate::access_token::VerifyParams;
use crate::audit::Redaction;
use crate::credentials::LocalTable;
use crate::refresh::FailureRun;
use crate::token_cache::TokenCache;

/// One Envoy counter (`wasmcustom.<name>`). Increments are added up in the VM and handed to
/// Envoy once per tick ([`Vm::flush_counters`]): under V8 every host call costs about a
/// microsecond, and a request bumps four or five counters. Counters therefore lag by at most
/// a tick (1 s). The host defines a counter at its first flush; failing to define or bump one
/// never affects a request.
#[derive(Debug, Default)]
pub(super) struct Counter {
    /// `None` until the first flush; then the host's id, or `Some(None)` when it refused.
    id: Cell<Option<Option<u32>>>,
    pending: Cell<u64>,
}

impl Counter {
    pub(super) fn bump(&self) {
        if self.id.get() != Some(None) {
            self.pending.set(self.pending.get().saturating_add(1));
        }
    }

    fn flush<H: Host>(&self, host: &H, name: impl FnOnce() -> String) {
        let id = match self.id.get() {
            Some(id) => id,
            None => {
                let id = host.define_counter(&name()).ok();
                self.id.set(Some(id));
                id
            }
        };
        let delta = self.pending.take();
        if let (Some(id), true) = (id, delta > 0) {
            let _ = host.add_to_counter(id, delta);
        }
    }
}

/// The filter's unlabelled counters.
#[derive(Debug, Default)]
pub(super) struct Metrics {
    pub(super) requests: Counter,
    pub(super) accepted: Counter,
    pub(super) rejected: Counter,
    pub(super) cache_hits: Counter,
    pub(super) jwks_refresh: Counter,
    pub(super) jwks_refresh_failed: Counter,
    pub(super) unavailable: Counter,
    pub(super) revoked: Counter,
    pub(super) revocations_refresh: Counter,
    pub(super) revocations_refresh_failed: Counter,
    pub(super) body_not_delivered: Counter,
}

impl Metrics {
    /// Every field with its name (a counter missing here would never reach Envoy).
    fn all(&self) -> [(&'static str, &Counter); 11] {
        [
            ("mcpgate_requests_total", &self.requests),
            ("mcpgate_token_accepted_total", &self.accepted),
            ("mcpgate_token_rejected_total", &self.rejected),
            ("mcpgate_token_cache_hits_total", &self.cache_hits),
            ("mcpgate_jwks_refresh_total", &self.jwks_refresh),
            (
                "mcpgate_jwks_refresh_failed_total",
                &self.jwks_refresh_failed,
            ),
            ("mcpgate_unavailable_total", &self.unavailable),
            ("mcpgate_token_revoked_total", &self.revoked),
            (
                "mcpgate_revocations_refresh_total",
                &self.revocations_refresh,
            ),
            (
                "mcpgate_revocations_refresh_failed_total",
                &self.revocations_refresh_failed,
            ),
            ("mcpgate_body_not_delivered_total", &self.body_not_delivered),
        ]
    }
}

/// Per-VM state shared by the root context and the http contexts of one worker.
pub struct Vm {
    pub(super) config: Rc<FilterConfig>,
    pub(super) cache: TokenCache,
    pub(super) metrics: Metrics,
    /// Labelled counters, defined on first use (per method and decision, per rejection reason).
    /// Keyed by the static label parts so the hot path formats no metric name after the first
    /// request of each kind.
    named_metrics: HashMap<(&'static str, &'static str, &'static str), Counter>,
    /// Compiled per-route settings, in the order of `config.routes`.
    pub(super) routes: Vec<Rc<RouteRuntime>>,
    /// The token service's signing keys.
    pub(super) jwks: Jwks,
    /// The token service's internal API; `None` when the configuration names no cluster for it
    /// (then no assertions, upstream tokens, sessions or revocation list).
    pub(super) internal: Option<Internal>,
    /// Failed internal API call-outs in a row (for log throttling).
    pub(super) internal_failures: FailureRun,
    /// This VM's copy of the credentials cache entries it read or wrote.
    pub(super) local_credentials: LocalTable,
    /// Scope of the shared-data credential and session caches (the token service behind them).
    pub(super) cache_scope: String,
    /// The revocation list in force and its poll.
    pub(super) revocations: RevocationPoll,
    /// Requests whose headers are held for a body that has not come yet.
    pub(super) held: HeldRequests,
}

pub type SharedVm = Rc<RefCell<Vm>>;

/// A route's policy and audit settings, compiled once at configure time.
pub struct RouteRuntime {
    pub(super) policy: Policy,
    pub(super) redaction: Redaction,
    pub(super) max_request_bytes: usize,
    /// Shared-data key prefix of the route's learned `x-mcp-header` annotations (per tool).
    pub(super) param_key_prefix: String,
}

impl RouteRuntime {
    fn compile(route: &mcpgate_config::FilterRoute, index: usize) -> Result<Self, String> {
        let policy = mcpgate_config::filter::compile_policy(
            route.policy.as_ref(),
            &format!("routes[{index}].policy"),
        )
        .map_err(|e| e.to_string())?;
        let redaction = Redaction::compile(&route.audit_redact, route.audit_max_argument_bytes)
            .map_err(|e| format!("routes[{index}].audit_redact: {e}"))?;
        Ok(RouteRuntime {
            policy,
            redaction,
            max_request_bytes: route.max_request_bytes,
            param_key_prefix: format!("mcpgate_x_mcp_header|{}|", route.resource),
        })
    }
}

impl Vm {
    /// `secret`: the internal API secret from the VM's environment.
    pub fn new(config: FilterConfig, secret: Option<String>) -> Result<Self, String> {
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| RouteRuntime::compile(r, i).map(Rc::new))
            .collect::<Result<Vec<_>, _>>()?;
        // Keyed by the token service, so a reconfiguration to another one never reuses old keys.
        let scope = format!(
            "{}|{}",
            config.token_service_cluster, config.token_service_authority
        );
        let internal = (!config.internal_cluster.is_empty()).then(|| Internal {
            cluster: config.internal_cluster.clone(),
            authority: config.internal_authority.clone(),
            authorization: secret.map(|s| format!("Bearer {s}")),
        });
        let internal_scope = format!("{}|{}", config.internal_cluster, config.issuer);
        Ok(Vm {
            jwks: Jwks::new(&scope, config.jwks_refresh_seconds),
            internal,
            revocations: RevocationPoll::new(&internal_scope, config.revocations_refresh_seconds),
            internal_failures: FailureRun::default(),
            local_credentials: LocalTable::default(),
            cache_scope: internal_scope,
            config: Rc::new(config),
            cache: TokenCache::default(),
            metrics: Metrics::default(),
            named_metrics: HashMap::new(),
            routes,
            held: HeldRequests::default(),
        })
    }

    /// Bumps the counter `family.label1[.label2]` (defined at its first flush; ids are cached
    /// per VM).
    pub(super) fn bump_labelled(
        &mut self,
        family: &'static str,
        label1: &'static str,
        label2: &'static str,
    ) {
        self.named_metrics
            .entry((family, label1, label2))
            .or_default()
            .bump();
    }

    /// Hands the counted increments to the host (once per tick, and when the VM stops).
    pub fn flush_counters<H: Host>(&self, host: &H) {
        for (name, counter) in self.metrics.all() {
            counter.flush(host, || name.to_owned());
        }
        for ((family, label1, label2), counter) in &self.named_metrics {
            counter.flush(host, || {
                if label2.is_empty() {
                    format!("{family}.{label1}")
                } else {
                    format!("{family}.{label1}.{label2}")
                }
            });
        }
    }

    pub(super) fn params(&self) -> VerifyParams<'_> {
        VerifyParams {
            issuer: &self.config.issuer,
            algorithm: self.config.algorithm.as_str(),
            leeway_seconds: self.config.leeway_seconds,
        }
    }

    /// The root context's tick: counters to the host, the revocation list and the keys.
    pub fn tick<H: Host>(&mut self, host: &H) {
        self.flush_counters(host);
        let Some(now) = host.now() else { return };
        self.poll_revocations(host, now);
        self.refresh_keys(host, now);
    }

    /// An answer to one of the root context's call-outs (the revocation poll or a key refresh).
    pub fn on_root_call_answer<H: Host>(&mut self, host: &H, token: u32, body_size: usize) {
        if self.revocations.call == Some(token) {
            self.on_revocations_answer(host, body_size);
            return;
        }
        self.on_refresh_answer(host, body_size);
    }

    /// The held requests whose body did not come in time; each gets
    /// [`Exchange::on_body_timeout`] in its own context, once the VM is not borrowed.
    pub fn expired_requests<H: Host>(&mut self, host: &H) -> Vec<(u32, Rc<RefCell<Exchange>>)> {
        match host.now() {
            Some(now) if !self.held.is_empty() => self.held.expired(now),
            _ => Vec::new(),
        }
    }

    /// A new configuration replaces `old`: the requests held under it still get their answer
    /// from this VM's tick.
    pub fn adopt_held_requests(&mut self, old: &mut Vm) {
        self.held = std::mem::take(&mut old.held);
    }

    /// The guard answered a request: counted, and a warning for the first of a run and every
    /// 100th after (a host ignoring the setting fails every request with a body).
    pub(super) fn note_body_not_delivered<H: Host>(&mut self, host: &H, route: &str) {
        self.metrics.body_not_delivered.bump();
        let warn = self.held.failures.failed(100);
        log_failure(
            host,
            warn,
            &format!(
                "mcpgate: route {route}: a request's body did not reach the filter within {} s \
                 while its headers were held ({} in a row); if every request with a body ends \
                 so, the proxy does not honour allow_on_headers_stop_iteration: {}",
                self.config.body_arrival_timeout_seconds,
                self.held.failures.count(),
                body_arrival::remedy()
            ),
        );
    }
}
