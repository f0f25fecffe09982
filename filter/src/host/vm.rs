//! Per-VM state, shared by the root context and the http contexts of one worker: the
//! configuration, the compiled routes, the token cache, the JWKS and the revocation list, the
//! internal API, and the metrics.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use mcpgate_config::FilterConfig;
use mcpgate_policy::Policy;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use super::internal_api::Internal;
use super::jwks_refresh::Jwks;
use super::revocation_poll::RevocationPoll;
use crate::access_token::VerifyParams;
use crate::audit::Redaction;
use crate::credentials::LocalTable;
use crate::refresh::FailureRun;
use crate::token_cache::TokenCache;

/// One Envoy counter (`wasmcustom.<name>`). Increments are added up in the VM and handed to
/// Envoy once per tick ([`Vm::flush_counters`]): under V8 every host call costs about a
/// microsecond, and a request bumps four or five counters. Counters therefore lag by at most
/// a tick (1 s). Failing to define or bump one never affects a request.
#[derive(Debug, Default)]
pub(super) struct Counter {
    id: Option<u32>,
    pending: Cell<u64>,
}

impl Counter {
    fn define(name: &str) -> Self {
        Counter {
            id: hostcalls::define_metric(MetricType::Counter, name).ok(),
            pending: Cell::new(0),
        }
    }

    pub(super) fn bump(&self) {
        if self.id.is_some() {
            self.pending.set(self.pending.get().saturating_add(1));
        }
    }

    fn flush(&self) {
        let (Some(id), delta) = (self.id, self.pending.take()) else {
            return;
        };
        if delta > 0 {
            let _ = hostcalls::increment_metric(id, delta as i64);
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
}

impl Metrics {
    fn define() -> Self {
        Metrics {
            requests: Counter::define("mcpgate_requests_total"),
            accepted: Counter::define("mcpgate_token_accepted_total"),
            rejected: Counter::define("mcpgate_token_rejected_total"),
            cache_hits: Counter::define("mcpgate_token_cache_hits_total"),
            jwks_refresh: Counter::define("mcpgate_jwks_refresh_total"),
            jwks_refresh_failed: Counter::define("mcpgate_jwks_refresh_failed_total"),
            unavailable: Counter::define("mcpgate_unavailable_total"),
            revoked: Counter::define("mcpgate_token_revoked_total"),
            revocations_refresh: Counter::define("mcpgate_revocations_refresh_total"),
            revocations_refresh_failed: Counter::define("mcpgate_revocations_refresh_failed_total"),
        }
    }

    /// Every field (a counter missing here would never reach Envoy).
    fn all(&self) -> [&Counter; 10] {
        [
            &self.requests,
            &self.accepted,
            &self.rejected,
            &self.cache_hits,
            &self.jwks_refresh,
            &self.jwks_refresh_failed,
            &self.unavailable,
            &self.revoked,
            &self.revocations_refresh,
            &self.revocations_refresh_failed,
        ]
    }
}

/// Per-VM state shared by the root context and the http contexts of one worker.
pub(super) struct Vm {
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
}

pub(super) type SharedVm = Rc<RefCell<Vm>>;

/// A route's policy and audit settings, compiled once at configure time.
pub struct RouteRuntime {
    pub(super) policy: Policy,
    pub(super) redaction: Redaction,
    pub(super) max_request_bytes: usize,
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
        })
    }
}

impl Vm {
    pub(super) fn new(config: FilterConfig, secret: Option<String>) -> Result<Self, String> {
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
            metrics: Metrics::define(),
            named_metrics: HashMap::new(),
            routes,
        })
    }

    /// Bumps the counter `family.label1[.label2]`, defining it on first use (ids are cached per
    /// VM).
    pub(super) fn bump_labelled(
        &mut self,
        family: &'static str,
        label1: &'static str,
        label2: &'static str,
    ) {
        self.named_metrics
            .entry((family, label1, label2))
            .or_insert_with(|| {
                let name = if label2.is_empty() {
                    format!("{family}.{label1}")
                } else {
                    format!("{family}.{label1}.{label2}")
                };
                Counter::define(&name)
            })
            .bump();
    }

    /// Hands the counted increments to Envoy (once per tick, and when the VM stops).
    pub(super) fn flush_counters(&self) {
        for counter in self.metrics.all() {
            counter.flush();
        }
        for counter in self.named_metrics.values() {
            counter.flush();
        }
    }

    pub(super) fn params(&self) -> VerifyParams<'_> {
        VerifyParams {
            issuer: &self.config.issuer,
            algorithm: self.config.algorithm.as_str(),
            leeway_seconds: self.config.leeway_seconds,
        }
    }
}
