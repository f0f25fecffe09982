//! The proxy-wasm layer: a root context per VM (configuration, JWKS refresh, revocation list,
//! metrics) and an http context per request. It only moves data between the host and the pure
//! modules.
//!
//! A server-route request goes: token verified (and not revoked) → upstream credentials from the
//! shared-data cache or one internal API call-out, while the body is read and decided → headers
//! set and the request resumed once both are in. A client-route request goes: session cookie →
//! cached TE and assertion or one call-out → headers set and resumed (its body is never read).
//!
//! Header changes after the header callback rely on the header callback having returned
//! `StopIteration` (and the bootstrap's `allow_on_headers_stop_iteration`): the request headers
//! stay writable until the request is resumed.
//!
//! Every host call goes through `proxy_wasm::hostcalls` functions that return `Result`; the SDK
//! convenience methods unwrap internally and would trap the VM on an unexpected status.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use mcpgate_config::{paths, FilterConfig};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use mcpgate_policy::{Identity, Policy};
use mcpgate_protocol::body::BodyAccumulator;
use mcpgate_protocol::jsonrpc::Limits;
use mcpgate_protocol::request_checks;

use crate::access_token::{self, AccessClaims, TokenError, VerifyParams};
use crate::audit::Redaction;
use crate::challenge::{self, LocalResponse};
use crate::client_session::{self, Session, SessionAnswer};
use crate::credentials::{
    self, CacheKey, Credentials, CredentialsAnswer, RequestIds, CALL_TIMEOUT_SECONDS,
    MAX_ANSWER_BYTES,
};
use crate::decision::{self, DecisionContext, Outcome, Verdict};
use crate::jwks::{KeySet, MAX_JWKS_BYTES};
use crate::list_response::{ListResponse, Plan};
use crate::refresh::{self, Refresher, FETCH_TIMEOUT_SECONDS, RETRY_WITH_KEYS_SECONDS};
use crate::request;
use crate::revocation::{self, PollAnswer, Poller, Revocations, MAX_REVOCATIONS_BYTES};
use crate::token_cache::{hash_token, TokenCache};

const TICK: Duration = Duration::from_secs(1);
const NO_KEYS: &str = "the gateway's signing keys are not available";
const NO_INTERNAL_API: &str = "the gateway cannot reach its token service";
/// `error_description` when the token service refuses a token the filter accepted.
const REFUSED_BY_TOKEN_SERVICE: &str = "the access token is not valid";
/// Shared-data tables (see [`credentials`]).
const CREDENTIALS_TABLE: &str = "cred";
const SESSION_TABLE: &str = "session";

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Current unix time in seconds from the host clock (not WASI's).
fn now_secs() -> Option<u64> {
    hostcalls::get_current_time()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Envoy counters (`wasmcustom.<name>`). Failing to define or bump one never affects a request.
#[derive(Debug, Default, Clone, Copy)]
struct Metrics {
    requests: Option<u32>,
    accepted: Option<u32>,
    rejected: Option<u32>,
    cache_hits: Option<u32>,
    jwks_refresh: Option<u32>,
    jwks_refresh_failed: Option<u32>,
    unavailable: Option<u32>,
    revoked: Option<u32>,
    revocations_refresh: Option<u32>,
    revocations_refresh_failed: Option<u32>,
}

impl Metrics {
    fn define() -> Self {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        Metrics {
            requests: counter("mcpgate_requests_total"),
            accepted: counter("mcpgate_token_accepted_total"),
            rejected: counter("mcpgate_token_rejected_total"),
            cache_hits: counter("mcpgate_token_cache_hits_total"),
            jwks_refresh: counter("mcpgate_jwks_refresh_total"),
            jwks_refresh_failed: counter("mcpgate_jwks_refresh_failed_total"),
            unavailable: counter("mcpgate_unavailable_total"),
            revoked: counter("mcpgate_token_revoked_total"),
            revocations_refresh: counter("mcpgate_revocations_refresh_total"),
            revocations_refresh_failed: counter("mcpgate_revocations_refresh_failed_total"),
        }
    }

    fn bump(id: Option<u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

/// Per-VM state shared by the root context and the http contexts of one worker.
struct Vm {
    config: Rc<FilterConfig>,
    shared_key: String,
    lease_key: String,
    keys: Option<Rc<KeySet>>,
    /// CAS of the shared-data value the keys were parsed from.
    keys_cas: Option<u32>,
    /// When the shared copy was fetched (from the shared value).
    fetched_at: Option<u64>,
    cache: TokenCache,
    refresher: Refresher,
    metrics: Metrics,
    /// Counters defined on first use (per method and decision, per rejection reason).
    /// Labelled counters, defined on first use. Keyed by the static label parts so the hot path
    /// formats no metric name after the first request of each kind.
    named_metrics: HashMap<(&'static str, &'static str, &'static str), Option<u32>>,
    /// Compiled per-route settings, in the order of `config.routes`.
    routes: Vec<Rc<RouteRuntime>>,
    /// Failed refreshes in a row (for log throttling).
    failures: u64,
    /// The token service's internal API; `None` when the configuration names no cluster for it
    /// (then no assertions, upstream tokens, sessions or revocation list).
    internal: Option<Internal>,
    /// Scope of the shared-data credential and session caches (the token service behind them).
    cache_scope: String,
    revocations: Revocations,
    /// CAS of the shared-data value the revocation list was parsed from.
    revocations_cas: Option<u32>,
    /// ETag of that list (empty when the token service sent none).
    revocations_etag: String,
    revocations_key: String,
    revocations_lease_key: String,
    poller: Poller,
    /// The root context's outstanding revocation poll (its other call-out is the JWKS).
    revocations_call: Option<u32>,
    /// Failed internal API call-outs in a row (for log throttling).
    internal_failures: u64,
}

/// Where the internal API is and how to authenticate to it.
struct Internal {
    cluster: String,
    authority: String,
    /// `Bearer <secret>`; `None` when the secret is not in the VM's environment: every request
    /// that needs the internal API then fails closed.
    authorization: Option<String>,
}

/// A route's policy and audit settings, compiled once at configure time.
pub struct RouteRuntime {
    policy: Policy,
    redaction: Redaction,
    max_request_bytes: usize,
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
type SharedVm = Rc<RefCell<Vm>>;

impl Vm {
    fn new(config: FilterConfig, secret: Option<String>) -> Result<Self, String> {
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
            shared_key: format!("mcpgate.jwks|{scope}"),
            lease_key: format!("mcpgate.jwks.lease|{scope}"),
            refresher: Refresher::new(config.jwks_refresh_seconds),
            internal,
            revocations: Revocations::default(),
            revocations_cas: None,
            revocations_etag: String::new(),
            revocations_key: format!("mcpgate.revocations|{internal_scope}"),
            revocations_lease_key: format!("mcpgate.revocations.lease|{internal_scope}"),
            poller: Poller::new(config.revocations_refresh_seconds),
            revocations_call: None,
            internal_failures: 0,
            cache_scope: internal_scope,
            config: Rc::new(config),
            keys: None,
            keys_cas: None,
            fetched_at: None,
            cache: TokenCache::default(),
            metrics: Metrics::define(),
            named_metrics: HashMap::new(),
            routes,
            failures: 0,
        })
    }

    /// Bumps the counter `family.label1[.label2]`, defining it on first use (ids are cached per
    /// VM).
    fn bump_labelled(&mut self, family: &'static str, label1: &'static str, label2: &'static str) {
        let id = *self
            .named_metrics
            .entry((family, label1, label2))
            .or_insert_with(|| {
                let name = if label2.is_empty() {
                    format!("{family}.{label1}")
                } else {
                    format!("{family}.{label1}.{label2}")
                };
                hostcalls::define_metric(MetricType::Counter, &name).ok()
            });
        Metrics::bump(id);
    }

    fn params(&self) -> VerifyParams<'_> {
        VerifyParams {
            issuer: &self.config.issuer,
            algorithm: self.config.algorithm.as_str(),
            leeway_seconds: self.config.leeway_seconds,
        }
    }

    fn install(&mut self, keys: KeySet, cas: Option<u32>, fetched_at: u64) {
        let changed = self
            .keys
            .as_ref()
            .is_none_or(|old| old.kids().ne(keys.kids()));
        if changed {
            log(
                LogLevel::Info,
                &format!(
                    "mcpgate: loaded {} signing key(s): {}",
                    keys.len(),
                    keys.kids().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        self.cache.retain_kids(|kid| keys.contains(kid));
        self.keys = Some(Rc::new(keys));
        self.keys_cas = cas;
        self.fetched_at = Some(fetched_at);
    }

    /// Adopt the shared copy if another VM (or this one) published a newer one.
    fn sync_from_shared(&mut self) {
        let Ok((Some(value), cas)) = hostcalls::get_shared_data(&self.shared_key) else {
            return;
        };
        if cas.is_some() && cas == self.keys_cas {
            return;
        }
        let Some((fetched_at, document)) = refresh::decode_shared(&value) else {
            log(
                LogLevel::Warn,
                "mcpgate: ignoring an unreadable shared JWKS entry",
            );
            return;
        };
        match KeySet::parse(document) {
            Ok(keys) => self.install(keys, cas, fetched_at),
            Err(e) => log(
                LogLevel::Warn,
                &format!("mcpgate: ignoring the shared JWKS: {e}"),
            ),
        }
    }

    /// Send the JWKS request from the current context; its answer comes to that context.
    fn dispatch_fetch(&mut self) -> Result<u32, Status> {
        Metrics::bump(self.metrics.jwks_refresh);
        let result = hostcalls::dispatch_http_call(
            &self.config.token_service_cluster,
            vec![
                (":method", "GET"),
                (":path", paths::JWKS),
                (":authority", &self.config.token_service_authority),
                ("accept", "application/json"),
            ],
            None,
            vec![],
            Duration::from_secs(FETCH_TIMEOUT_SECONDS),
        );
        if let Err(status) = result {
            let cluster = &self.config.token_service_cluster;
            self.note_failure(&format!("cannot call cluster {cluster}: {status:?}"));
        }
        result
    }

    /// Count a failed refresh; warn on the first of a run and every 60th after, debug otherwise,
    /// so a token service outage does not flood the log at one line per worker per second.
    fn note_failure(&mut self, reason: &str) {
        Metrics::bump(self.metrics.jwks_refresh_failed);
        self.failures = self.failures.saturating_add(1);
        let level = if self.failures % 60 == 1 {
            LogLevel::Warn
        } else {
            LogLevel::Debug
        };
        log(
            level,
            &format!(
                "mcpgate: JWKS refresh failed ({} in a row): {reason}",
                self.failures
            ),
        );
    }

    /// Handle a JWKS answer: validate, publish to shared data, install. `Err` says why not.
    fn accept_fetch(&mut self, body_size: usize) -> Result<(), String> {
        let result = self.read_fetch(body_size);
        match &result {
            Ok(()) => log(LogLevel::Debug, "mcpgate: JWKS refreshed"),
            Err(e) => self.note_failure(e),
        }
        if result.is_ok() {
            self.failures = 0;
        }
        result
    }

    fn read_fetch(&mut self, body_size: usize) -> Result<(), String> {
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .map(|s| String::from_utf8_lossy(&s).into_owned());
        match status.as_deref() {
            Some("200") => {}
            Some(other) => return Err(format!("token service answered {other}")),
            None => {
                return Err(
                    "no response from the token service (timeout or connection failure)".into(),
                )
            }
        }
        if body_size > MAX_JWKS_BYTES {
            return Err(format!(
                "JWKS document is larger than {MAX_JWKS_BYTES} bytes"
            ));
        }
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .map_err(|s| format!("cannot read the JWKS body: {s:?}"))?
            .unwrap_or_default();
        let keys = KeySet::parse(&body).map_err(|e| e.to_string())?;
        let now = now_secs().ok_or("host clock unavailable")?;
        let value = refresh::encode_shared(now, &body);
        // Compare-and-swap against the copy we last saw; on a lost race the other copy is as
        // fresh as ours, so either way every VM ends up on one copy.
        let (_, cas) = hostcalls::get_shared_data(&self.shared_key).unwrap_or((None, None));
        let published = hostcalls::set_shared_data(&self.shared_key, Some(&value), cas).is_ok();
        let new_cas = if published {
            hostcalls::get_shared_data(&self.shared_key)
                .ok()
                .and_then(|(_, cas)| cas)
        } else {
            None
        };
        self.install(keys, new_cas, now);
        Ok(())
    }

    /// Claim the periodic fetch for this VM (one VM per stale period does it).
    fn take_lease(&self, now: u64) -> bool {
        let (value, cas) = hostcalls::get_shared_data(&self.lease_key).unwrap_or((None, None));
        if !refresh::lease_is_free(value.as_deref(), now) {
            return false;
        }
        let until = now.saturating_add(FETCH_TIMEOUT_SECONDS).to_string();
        hostcalls::set_shared_data(&self.lease_key, Some(until.as_bytes()), cas).is_ok()
    }

    fn release_lease(&self) {
        self.hold_lease(0);
    }

    fn hold_lease(&self, until: u64) {
        let _ =
            hostcalls::set_shared_data(&self.lease_key, Some(until.to_string().as_bytes()), None);
    }

    /// The internal API is configured and its secret is known.
    fn internal_ready(&self) -> bool {
        self.internal
            .as_ref()
            .is_some_and(|i| i.authorization.is_some())
    }

    /// Sends a call-out to the internal API from the current context; its answer comes to that
    /// context. The secret goes in `authorization`, never into a log line.
    fn dispatch_internal(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        extra: Option<(&str, &str)>,
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
        headers.extend(extra);
        hostcalls::dispatch_http_call(
            &internal.cluster,
            headers,
            body,
            vec![],
            Duration::from_secs(CALL_TIMEOUT_SECONDS),
        )
        .map_err(|status| format!("cannot call cluster {}: {status:?}", internal.cluster))
    }

    /// Count a failed internal API call-out; warn on the first of a run and every 100th after.
    fn note_internal_failure(&mut self, what: &str, reason: &str) {
        self.internal_failures = self.internal_failures.saturating_add(1);
        let level = if self.internal_failures % 100 == 1 {
            LogLevel::Warn
        } else {
            LogLevel::Debug
        };
        log(
            level,
            &format!(
                "mcpgate: {what} from the token service failed ({} in a row): {reason}",
                self.internal_failures
            ),
        );
    }

    fn internal_ok(&mut self) {
        self.internal_failures = 0;
    }

    /// `disconnected_at`: when the token service last deleted the user's upstream token for the
    /// route (an entry fetched at or before then is a miss).
    fn cached_credentials(
        &self,
        key: &CacheKey,
        now: u64,
        upstream_oauth: bool,
        disconnected_at: Option<u64>,
    ) -> Option<Credentials> {
        let name = credentials::slot_name(CREDENTIALS_TABLE, key);
        let (value, _) = hostcalls::get_shared_data(&name).ok()?;
        Credentials::decode(&value?, key, now, upstream_oauth, disconnected_at)
    }

    /// `fetched_at`: when the call-out that answered `value` was sent.
    fn store_credentials(&self, key: &CacheKey, value: &Credentials, fetched_at: u64, now: u64) {
        if value.reuse_until(fetched_at) > now {
            if let Some(entry) = value.encode(key, fetched_at) {
                let name = credentials::slot_name(CREDENTIALS_TABLE, key);
                let _ = hostcalls::set_shared_data(&name, Some(&entry), None);
            }
        }
    }

    /// Empties `key`'s slot if it holds `key`'s entry.
    fn drop_credentials(&self, key: &CacheKey) {
        let name = credentials::slot_name(CREDENTIALS_TABLE, key);
        if let Ok((Some(value), cas)) = hostcalls::get_shared_data(&name) {
            if credentials::decode_entry(&value, key, 0).is_some() {
                let _ = hostcalls::set_shared_data(&name, Some(b""), cas);
            }
        }
    }

    fn cached_session(&self, key: &CacheKey, now: u64) -> Option<Session> {
        let name = credentials::slot_name(SESSION_TABLE, key);
        let (value, _) = hostcalls::get_shared_data(&name).ok()?;
        Session::decode(&value?, key, now)
    }

    fn store_session(&self, key: &CacheKey, session: &Session, now: u64) {
        if session.cache_until > now {
            if let Some(entry) = session.encode(key) {
                let name = credentials::slot_name(SESSION_TABLE, key);
                let _ = hostcalls::set_shared_data(&name, Some(&entry), None);
            }
        }
    }

    /// Adopt the shared revocation list if another VM (or this one) published a newer one.
    fn sync_revocations(&mut self) {
        let Ok((Some(value), cas)) = hostcalls::get_shared_data(&self.revocations_key) else {
            return;
        };
        if cas.is_some() && cas == self.revocations_cas {
            return;
        }
        let Some((etag, document)) = revocation::decode_shared(&value) else {
            log(
                LogLevel::Warn,
                "mcpgate: ignoring an unreadable shared revocation list",
            );
            return;
        };
        match Revocations::parse(document) {
            Ok(list) => self.install_revocations(list, etag.to_owned(), cas),
            Err(e) => log(
                LogLevel::Warn,
                &format!("mcpgate: ignoring the shared revocation list: {e}"),
            ),
        }
    }

    fn install_revocations(&mut self, list: Revocations, etag: String, cas: Option<u32>) {
        if list != self.revocations {
            let (jtis, subjects, disconnects) = list.counts();
            log(
                LogLevel::Info,
                &format!(
                    "mcpgate: revocation list loaded: {jtis} token id(s), {subjects} subject(s), \
                     {disconnects} upstream disconnect(s)"
                ),
            );
            self.revocations = list;
        }
        self.revocations_etag = etag;
        self.revocations_cas = cas;
    }

    /// On the tick: adopt the shared list, and poll for a new one when this VM gets the lease.
    fn poll_revocations(&mut self, now: u64) {
        if !self.internal_ready() {
            return;
        }
        self.sync_revocations();
        if !self.poller.idle(now) {
            return;
        }
        let (lease, cas) =
            hostcalls::get_shared_data(&self.revocations_lease_key).unwrap_or((None, None));
        if !refresh::lease_is_free(lease.as_deref(), now) {
            return; // polled recently, or another VM is polling
        }
        let until = now.saturating_add(revocation::FETCH_TIMEOUT_SECONDS);
        let claimed = hostcalls::set_shared_data(
            &self.revocations_lease_key,
            Some(until.to_string().as_bytes()),
            cas,
        );
        if claimed.is_err() {
            return;
        }
        self.poller.started(now);
        Metrics::bump(self.metrics.revocations_refresh);
        let etag = self.revocations_etag.clone();
        let extra = (!etag.is_empty()).then_some(("if-none-match", etag.as_str()));
        match self.dispatch_internal("GET", paths::INTERNAL_REVOCATIONS, None, extra) {
            Ok(id) => self.revocations_call = Some(id),
            Err(e) => self.finish_revocations(now, Err(e)),
        }
    }

    fn on_revocations_answer(&mut self, body_size: usize) {
        self.revocations_call = None;
        let result = self.read_revocations(body_size);
        let now = now_secs().unwrap_or(0);
        self.finish_revocations(now, result);
    }

    fn read_revocations(&mut self, body_size: usize) -> Result<(), String> {
        let status = call_status();
        match revocation::classify(status.as_deref()) {
            PollAnswer::NotModified => return Ok(()),
            PollAnswer::Failed(reason) => return Err(reason),
            PollAnswer::Updated => {}
        }
        if body_size > MAX_REVOCATIONS_BYTES {
            return Err(format!(
                "revocation list is larger than {MAX_REVOCATIONS_BYTES} bytes"
            ));
        }
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .map_err(|s| format!("cannot read the revocation list: {s:?}"))?
            .unwrap_or_default();
        let list = Revocations::parse(&body).map_err(|e| e.to_string())?;
        let etag = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, "etag")
            .ok()
            .flatten();
        let etag = revocation::usable_etag(etag.as_deref())
            .unwrap_or_default()
            .to_owned();
        // Publish only a change: every VM re-reads the list when the shared value changes.
        let (current, _) =
            hostcalls::get_shared_data(&self.revocations_key).unwrap_or((None, None));
        let unchanged = current
            .as_deref()
            .and_then(revocation::decode_shared)
            .is_some_and(|(old_etag, old)| old_etag == etag && old == body.as_slice());
        if !unchanged {
            let value = revocation::encode_shared(&etag, &body);
            if let Err(status) =
                hostcalls::set_shared_data(&self.revocations_key, Some(&value), None)
            {
                log(
                    LogLevel::Warn,
                    &format!("mcpgate: cannot share the revocation list: {status:?}"),
                );
            }
        }
        let cas = hostcalls::get_shared_data(&self.revocations_key)
            .ok()
            .and_then(|(_, cas)| cas);
        self.install_revocations(list, etag, cas);
        Ok(())
    }

    /// The poll is over: the next one is due after the period, whatever happened; on failure
    /// the list in force stays.
    fn finish_revocations(&mut self, now: u64, result: Result<(), String>) {
        let (next, warn) = self.poller.finished(now, result.is_ok());
        let _ = hostcalls::set_shared_data(
            &self.revocations_lease_key,
            Some(next.to_string().as_bytes()),
            None,
        );
        if let Err(reason) = result {
            Metrics::bump(self.metrics.revocations_refresh_failed);
            log(
                if warn {
                    LogLevel::Warn
                } else {
                    LogLevel::Debug
                },
                &format!(
                    "mcpgate: revocation list refresh failed ({} in a row; the last list stays \
                     in force): {reason}",
                    self.poller.failures
                ),
            );
        }
    }

    /// A cached session whose TE has since been revoked is not used (the token service decides).
    fn session_revoked(&self, session: &Session) -> bool {
        if self.revocations.is_empty() {
            return false;
        }
        let claims = access_token::claims_json(&session.token);
        let text = |name: &str| claims.get(name).and_then(serde_json::Value::as_str);
        self.revocations
            .is_revoked(text("jti"), text("sub").unwrap_or_default())
    }
}

/// A token's own checks for one route, then the revocation list.
fn check_claims(
    revocations: &Revocations,
    claims: &AccessClaims,
    resource: &str,
    now: u64,
    leeway_seconds: u64,
) -> Result<Rc<Identity>, TokenError> {
    claims.check_for_route(resource, now, leeway_seconds)?;
    if revocations.is_revoked(claims.jti.as_deref(), &claims.sub) {
        return Err(TokenError::Revoked);
    }
    Ok(Rc::clone(&claims.identity))
}

/// `:status` of the call-out answer being handled (`None`: no answer, timeout or reset).
fn call_status() -> Option<String> {
    hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .map(|s| String::from_utf8_lossy(&s).into_owned())
}

/// The call-out answer's body, at most `MAX_ANSWER_BYTES + 1` bytes (more is refused anyway).
fn call_body(body_size: usize) -> Vec<u8> {
    hostcalls::get_buffer(
        BufferType::HttpCallResponseBody,
        0,
        body_size.min(MAX_ANSWER_BYTES.saturating_add(1)),
    )
    .ok()
    .flatten()
    .unwrap_or_default()
}

/// Root context: one per VM (one VM per Envoy worker).
#[derive(Default)]
pub struct Root {
    vm: Option<SharedVm>,
}

impl Root {
    fn tick(&mut self) {
        let Some(vm) = &self.vm else { return };
        let Some(now) = now_secs() else { return };
        let mut vm = vm.borrow_mut();
        vm.poll_revocations(now);
        vm.sync_from_shared();
        let have_keys = vm.keys.is_some();
        if !vm.refresher.should_fetch(now, vm.fetched_at, have_keys) {
            return;
        }
        // With keys, one VM refreshes for all (the lease); without, every VM tries each second:
        // a lease held by a lost call-out must not delay the first keys.
        if have_keys && !vm.take_lease(now) {
            return; // another VM is fetching; its copy arrives through shared data
        }
        vm.refresher.started(now);
        if vm.dispatch_fetch().is_err() {
            vm.refresher.finished(now, false);
            vm.release_lease();
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(vm) = &self.vm else { return };
        let mut vm = vm.borrow_mut();
        if vm.revocations_call == Some(token_id) {
            vm.on_revocations_answer(body_size);
            return;
        }
        let ok = vm.accept_fetch(body_size).is_ok();
        let now = now_secs().unwrap_or(0);
        vm.refresher.finished(now, ok);
        if ok {
            vm.release_lease();
        } else {
            // Keep the lease through the back-off so the other VMs do not retry at once.
            vm.hold_lease(now.saturating_add(RETRY_WITH_KEYS_SECONDS));
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        ) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => Vec::new(),
            Err(status) => {
                log(
                    LogLevel::Error,
                    &format!("mcpgate: cannot read the plugin configuration: {status:?}"),
                );
                return false;
            }
        };
        let config = match FilterConfig::from_json(&bytes) {
            Ok(config) => config,
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("mcpgate: invalid plugin configuration: {e}"),
                );
                return false;
            }
        };
        log(
            LogLevel::Info,
            &format!(
                "mcpgate: configured {} server route(s), {} client route(s), issuer {}, JWKS \
                 from cluster {}, internal API cluster {}",
                config.routes.len(),
                config.client_routes.len(),
                config.issuer,
                config.token_service_cluster,
                if config.internal_cluster.is_empty() {
                    "(none)"
                } else {
                    config.internal_cluster.as_str()
                }
            ),
        );
        let secret = std::env::var(paths::INTERNAL_SECRET_ENV)
            .ok()
            .filter(|s| !s.is_empty());
        if config.internal_cluster.is_empty() {
            log(
                LogLevel::Info,
                "mcpgate: no internal API configured (internal_cluster): no assertions, upstream \
                 tokens, client routes or revocation list",
            );
        } else if secret.is_none() {
            log(
                LogLevel::Error,
                &format!(
                    "mcpgate: {} is not in the Wasm VM's environment (Envoy \
                     vm_config.environment_variables.host_env_keys): requests to server and \
                     client routes fail with 503 and the revocation list is not fetched",
                    paths::INTERNAL_SECRET_ENV
                ),
            );
        } else if secret
            .as_ref()
            .is_some_and(|s| s.len() < paths::INTERNAL_SECRET_MIN_LEN)
        {
            log(
                LogLevel::Warn,
                &format!(
                    "mcpgate: {} is shorter than {} characters; the token service will refuse it",
                    paths::INTERNAL_SECRET_ENV,
                    paths::INTERNAL_SECRET_MIN_LEN
                ),
            );
        }
        let vm = match Vm::new(config, secret) {
            Ok(vm) => vm,
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("mcpgate: invalid plugin configuration: {e}"),
                );
                return false;
            }
        };
        self.vm = Some(Rc::new(RefCell::new(vm)));
        if let Err(status) = hostcalls::set_tick_period(TICK) {
            log(
                LogLevel::Warn,
                &format!("mcpgate: cannot set the tick period: {status:?}"),
            );
        }
        // Fetch (or adopt another VM's copy) right away instead of waiting for the first tick.
        self.tick();
        true
    }

    fn on_tick(&mut self) {
        self.tick();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            vm: self.vm.clone(),
            state: State::Idle,
            creds: Creds::NotNeeded,
            call: None,
            rejection: None,
            request_ids: None,
            response_paused: false,
            request: None,
            has_body: false,
            waiting_body: (0, false),
            list: None,
            plan: Plan::PassThrough,
            response_seen: 0,
            headers: Headers::default(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

enum State {
    /// Not an MCP route (or a client route past its session check): the request streams on
    /// untouched.
    Idle,
    /// Waiting for a JWKS fetch before verifying; body and trailers are held until then.
    WaitingForKeys { token: String, route: usize },
    /// Token accepted, headers held: reading the body to decide on it.
    Reading(BodyAccumulator),
    /// Decided and allowed; held until the upstream credentials are in.
    Allowed,
    /// Decided and allowed: forwarded to the MCP server.
    Forwarded,
    /// A client route waiting for its session call-out; the body is held, not read.
    WaitingForSession,
    /// A local response was sent.
    Answered,
}

/// The upstream credentials of a server-route request.
enum Creds {
    /// None to fetch (no internal API configured, or not a server route).
    NotNeeded,
    /// The call-out is outstanding.
    Pending,
    /// Headers set.
    Ready,
    /// The provider is down: the allowed body gets a JSON-RPC error instead of going on.
    Unavailable(String),
}

impl Creds {
    fn settled(&self) -> bool {
        matches!(self, Creds::NotNeeded | Creds::Ready)
    }
}

/// The request context's outstanding call-out.
enum Call {
    Keys,
    /// `fetched_at`: when the call-out was sent (the cache entry records it).
    Credentials {
        route: usize,
        key: CacheKey,
        fetched_at: u64,
    },
    Session {
        route: usize,
        key: CacheKey,
    },
    UpstreamRejected {
        route: usize,
    },
}

/// What an upstream rejection needs: only on routes with upstream OAuth, only until the response
/// headers arrive.
struct Rejection {
    route: usize,
    token: String,
}

enum Decision {
    Accept(Rc<Identity>),
    /// A local answer and its audit reason.
    Respond(LocalResponse, &'static str),
    FetchKeys,
}

/// What a request to a server route carries once its token is accepted.
struct RequestInfo {
    route: Rc<RouteRuntime>,
    identity: Rc<Identity>,
    request_id: String,
    protocol_version: Option<String>,
    http_method: String,
}

pub struct Http {
    vm: Option<SharedVm>,
    state: State,
    creds: Creds,
    /// The outstanding call-out and what it is for.
    call: Option<(u32, Call)>,
    rejection: Option<Rejection>,
    /// The requests of a body allowed before its credentials were in (to answer a provider
    /// outage in JSON-RPC).
    request_ids: Option<RequestIds>,
    /// The response headers are held while the token service hears of an upstream rejection.
    response_paused: bool,
    request: Option<RequestInfo>,
    /// The request has a body (`end_of_stream` was false with the headers).
    has_body: bool,
    /// While waiting for keys: body bytes buffered so far and whether the body is complete.
    waiting_body: (usize, bool),
    /// The list requests of a forwarded body, to filter their responses.
    list: Option<ListResponse>,
    plan: Plan,
    /// Response body bytes buffered so far (for a buffered JSON list response).
    response_seen: usize,
    /// The request headers, read once in the header callback.
    headers: Headers,
}

/// A header map read with one host call. In V8 every host call that returns data costs a few
/// microseconds (the host calls back into the module to allocate), so a request's headers are
/// read once and looked up here instead of one `get_map_value` per header.
#[derive(Default)]
struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    fn read(map: MapType) -> Self {
        Headers(hostcalls::get_map_bytes(map).unwrap_or_default())
    }

    fn raw(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `name`, as the host's `get_map_value` answers.
    fn get(&self, name: &str) -> Option<String> {
        self.raw(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn has(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    /// Every value of `name`.
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Writes one audit field to filter state (`wasm.<name>`); empty values are left unset.
fn set_audit(name: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    if let Err(status) = hostcalls::set_property(vec![name], Some(value.as_bytes())) {
        log(
            LogLevel::Debug,
            &format!("mcpgate: cannot set {name}: {status:?}"),
        );
    }
}

impl Http {
    fn respond(&mut self, response: &LocalResponse) -> Action {
        self.state = State::Answered;
        // The TE is not needed any more.
        self.rejection = None;
        if let Err(status) = hostcalls::send_http_response(
            response.status,
            response.header_pairs(),
            Some(&response.body),
        ) {
            log(
                LogLevel::Error,
                &format!("mcpgate: cannot send a local response: {status:?}"),
            );
        }
        Action::Pause
    }

    /// A local answer refusing the request, with its audit reason.
    fn respond_reason(&mut self, response: &LocalResponse, reason: &str) -> Action {
        set_audit("mcpgate_decision", Verdict::Reject.as_str());
        set_audit("mcpgate_reason", reason);
        self.respond(response)
    }

    fn answered(&self) -> bool {
        matches!(self.state, State::Answered)
    }

    fn vm_bump(&self, family: &'static str, label: &'static str) {
        if let Some(vm) = &self.vm {
            vm.borrow_mut().bump_labelled(family, label, "");
        }
    }

    /// Remove the client's `Authorization` and every `x-mcpgate-*` header it sent: only the
    /// filter sets those.
    fn strip_gateway_headers(&mut self) -> bool {
        let mut gateway: Vec<&str> = self
            .headers
            .0
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| {
                name.get(..paths::GATEWAY_HEADER_PREFIX.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(paths::GATEWAY_HEADER_PREFIX))
            })
            .collect();
        gateway.dedup();
        for name in gateway {
            if let Err(status) = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name) {
                log(
                    LogLevel::Error,
                    &format!("mcpgate: cannot remove the {name} header: {status:?}"),
                );
                return false;
            }
        }
        match hostcalls::remove_map_value(MapType::HttpRequestHeaders, "authorization") {
            Ok(()) => true,
            Err(status) => {
                log(
                    LogLevel::Error,
                    &format!("mcpgate: cannot remove the Authorization header: {status:?}"),
                );
                false
            }
        }
    }

    /// Strip the client's credentials before the request goes upstream.
    fn strip_credentials(&mut self) -> bool {
        // Also ask the MCP server for uncompressed answers: list answers must be readable to be
        // filtered (an encoded one is replaced by an error). Failing to remove it is harmless.
        if self.headers.has("accept-encoding") {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, "accept-encoding");
        }
        self.strip_gateway_headers()
    }

    /// Sets (replaces) a request header; false (logged) when the host refuses.
    fn set_request_header(name: &str, value: &str) -> bool {
        match hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)) {
            Ok(()) => true,
            Err(status) => {
                log(
                    LogLevel::Error,
                    &format!("mcpgate: cannot set the {name} header: {status:?}"),
                );
                false
            }
        }
    }

    fn reject(vm: &Vm, route: usize, error: Option<&str>) -> Decision {
        Metrics::bump(vm.metrics.rejected);
        let (metadata_url, scopes) = match vm.config.routes.get(route) {
            Some(r) => (r.resource_metadata_url.as_str(), r.scopes.as_slice()),
            None => ("", &[][..]),
        };
        Decision::Respond(
            challenge::unauthorized(metadata_url, scopes, error),
            "unauthenticated",
        )
    }

    fn unavailable(vm: &Vm, description: &str) -> Decision {
        Metrics::bump(vm.metrics.unavailable);
        Decision::Respond(challenge::unavailable(description), "unavailable")
    }

    /// Verify `token` for route index `route`. `may_fetch`: a JWKS fetch may still help.
    fn decide(vm: &mut Vm, token: &str, route: usize, may_fetch: bool) -> Decision {
        let Some(now) = now_secs() else {
            return Self::unavailable(vm, "the gateway clock is unavailable");
        };
        let config = Rc::clone(&vm.config);
        let Some(resource) = config.routes.get(route).map(|r| r.resource.as_str()) else {
            return Self::unavailable(vm, "route configuration changed");
        };
        let leeway = config.leeway_seconds;
        let hash = hash_token(token);
        if let Some(claims) = vm.cache.get(&hash, now, leeway) {
            let result = check_claims(&vm.revocations, claims, resource, now, leeway);
            Metrics::bump(vm.metrics.cache_hits);
            return Self::finish(vm, route, result);
        }
        if vm.keys.is_none() {
            vm.sync_from_shared();
        }
        let Some(keys) = vm.keys.clone() else {
            return if may_fetch {
                Decision::FetchKeys
            } else {
                Self::unavailable(vm, NO_KEYS)
            };
        };
        match access_token::verify_signed(token, &keys, &vm.params(), now) {
            Ok(claims) => {
                let result = check_claims(&vm.revocations, &claims, resource, now, leeway);
                vm.cache.insert(hash, claims, now, leeway);
                Self::finish(vm, route, result)
            }
            Err(TokenError::UnknownKeyId) if may_fetch => {
                // Maybe another VM already has the new keys; otherwise refresh, rate limited.
                vm.sync_from_shared();
                if vm.keys.as_ref().is_some_and(|k| !Rc::ptr_eq(k, &keys)) {
                    return Self::decide(vm, token, route, false);
                }
                if vm.refresher.try_force(now) {
                    Decision::FetchKeys
                } else {
                    Self::finish(vm, route, Err(TokenError::UnknownKeyId))
                }
            }
            Err(e) => Self::finish(vm, route, Err(e)),
        }
    }

    fn finish(vm: &Vm, route: usize, result: Result<Rc<Identity>, TokenError>) -> Decision {
        match result {
            Ok(identity) => {
                Metrics::bump(vm.metrics.accepted);
                Decision::Accept(identity)
            }
            Err(e) => {
                let name = vm
                    .config
                    .routes
                    .get(route)
                    .map(|r| r.name.as_str())
                    .unwrap_or("?");
                log(
                    LogLevel::Debug,
                    &format!("mcpgate: route {name}: rejected token: {e}"),
                );
                match (Self::reject(vm, route, Some(e.description())), e) {
                    (Decision::Respond(response, _), TokenError::Revoked) => {
                        Metrics::bump(vm.metrics.revoked);
                        Decision::Respond(response, "token_revoked")
                    }
                    (decision, _) => decision,
                }
            }
        }
    }

    fn on_headers(&mut self, end_of_stream: bool) -> Action {
        let Some(vm_rc) = self.vm.clone() else {
            return Action::Continue;
        };
        let config = Rc::clone(&vm_rc.borrow().config);
        self.headers = Headers::read(MapType::HttpRequestHeaders);
        let authority = self
            .headers
            .get(":authority")
            .or_else(|| self.headers.get("host"))
            .unwrap_or_default();
        let path = self.headers.get(":path").unwrap_or_default();
        let Some(route) = config
            .match_route(&authority, &path)
            .and_then(|matched| config.routes.iter().position(|r| std::ptr::eq(r, matched)))
        else {
            // Not a server route: a client route, or nothing of ours (reserved paths belong to
            // the token service).
            return self.on_client_route(&config, &authority, &path);
        };
        let mut vm = vm_rc.borrow_mut();
        Metrics::bump(vm.metrics.requests);
        self.has_body = !end_of_stream;

        let method = self.headers.get(":method").unwrap_or_default();
        if request::is_preflight(&method, self.headers.has("access-control-request-method")) {
            drop(vm);
            return self.respond(&challenge::preflight());
        }
        let request_id = self.headers.get("x-request-id").unwrap_or_default();
        set_audit("mcpgate_request_id", &request_id);
        if let Some(route) = config.routes.get(route) {
            set_audit("mcpgate_route", &route.name);
        }

        let values: Vec<&[u8]> = self.headers.all("authorization").collect();
        let token = match request::bearer_token(&values) {
            Ok(token) => token.to_owned(),
            Err(e) => {
                let decision = Self::reject(&vm, route, e.description());
                drop(vm);
                return self.act_on_headers(decision, route, "");
            }
        };
        let decision = Self::decide(&mut vm, &token, route, true);
        if let Decision::FetchKeys = decision {
            if let Ok(id) = vm.dispatch_fetch() {
                self.call = Some((id, Call::Keys));
                self.state = State::WaitingForKeys { token, route };
                return Action::Pause;
            }
            let fallback = if vm.keys.is_some() {
                Self::finish(&vm, route, Err(TokenError::UnknownKeyId))
            } else {
                Self::unavailable(&vm, NO_KEYS)
            };
            drop(vm);
            return self.act_on_headers(fallback, route, &token);
        }
        drop(vm);
        self.act_on_headers(decision, route, &token)
    }

    fn act_on_headers(&mut self, decision: Decision, route: usize, token: &str) -> Action {
        match decision {
            Decision::Accept(identity) => {
                if !self.accept(identity, route) {
                    return self.respond(&challenge::unavailable(
                        "the request could not be processed",
                    ));
                }
                if let Some(action) = self.start_credentials(route, token) {
                    return action;
                }
                if let Some(action) = self.check_request_headers() {
                    return action;
                }
                match self.state {
                    State::Reading(_)
                    | State::Allowed
                    | State::WaitingForSession
                    | State::Answered => Action::Pause,
                    State::Idle | State::WaitingForKeys { .. } | State::Forwarded => {
                        Action::Continue
                    }
                }
            }
            Decision::Respond(response, reason) => self.respond_reason(&response, reason),
            // Not reached: callers dispatch the fetch themselves; fail closed all the same.
            Decision::FetchKeys => self.respond(&challenge::unavailable(NO_KEYS)),
        }
    }

    /// The token is good: strip it, remember who is calling and write the identity fields.
    fn accept(&mut self, identity: Rc<Identity>, route: usize) -> bool {
        if !self.strip_credentials() {
            return false;
        }
        let Some(runtime) = self
            .vm
            .as_ref()
            .and_then(|vm| vm.borrow().routes.get(route).cloned())
        else {
            return false;
        };
        set_audit("mcpgate_sub", &identity.user);
        set_audit(
            "mcpgate_email",
            identity.email.as_deref().unwrap_or_default(),
        );
        set_audit(
            "mcpgate_client_id",
            identity
                .claims
                .get("client_id")
                .and_then(|v| v.as_str())
                .unwrap_or_default(),
        );
        self.request = Some(RequestInfo {
            route: runtime,
            identity,
            request_id: self.headers.get("x-request-id").unwrap_or_default(),
            protocol_version: self.headers.get("mcp-protocol-version"),
            http_method: self.headers.get(":method").unwrap_or_default(),
        });
        true
    }

    /// The upstream credentials for an accepted token: from the shared cache (headers set at
    /// once) or a call-out ([`Creds::Pending`]). `Some(action)` when answered locally.
    fn start_credentials(&mut self, route: usize, token: &str) -> Option<Action> {
        let vm_rc = self.vm.clone()?;
        let mut vm = vm_rc.borrow_mut();
        if vm.internal.is_none() {
            self.creds = Creds::NotNeeded;
            return None;
        }
        let config = Rc::clone(&vm.config);
        let (Some(r), Some(now), true) =
            (config.routes.get(route), now_secs(), vm.internal_ready())
        else {
            Metrics::bump(vm.metrics.unavailable);
            drop(vm);
            return Some(self.respond_reason(
                &challenge::unavailable(NO_INTERNAL_API),
                "credentials_unavailable",
            ));
        };
        let key = credentials::cache_key(&vm.cache_scope, &r.resource, token);
        if r.upstream_oauth {
            self.rejection = Some(Rejection {
                route,
                token: token.to_owned(),
            });
        }
        // Without the caller's identity (not reached: accepted first) no cached upstream token
        // is trusted.
        let disconnected_at = match &self.request {
            Some(request) => vm
                .revocations
                .disconnected_at(&request.identity.user, &r.resource),
            None => Some(u64::MAX),
        };
        if let Some(cached) = vm.cached_credentials(&key, now, r.upstream_oauth, disconnected_at) {
            vm.bump_labelled("mcpgate_credentials_total", "cache_hit", "");
            drop(vm);
            if self.install_credentials(&cached, r.upstream_oauth) {
                return None;
            }
            return Some(self.respond(&challenge::unavailable(
                "the request could not be processed",
            )));
        }
        let body = credentials::request_body(&r.resource, token);
        match vm.dispatch_internal("POST", paths::INTERNAL_CREDENTIALS, Some(&body), None) {
            Ok(id) => {
                self.call = Some((
                    id,
                    Call::Credentials {
                        route,
                        key,
                        fetched_at: now,
                    },
                ));
                self.creds = Creds::Pending;
                None
            }
            Err(e) => {
                vm.note_internal_failure("credentials", &e);
                vm.bump_labelled("mcpgate_credentials_total", "failed", "");
                Metrics::bump(vm.metrics.unavailable);
                drop(vm);
                Some(self.respond_reason(
                    &challenge::unavailable(NO_INTERNAL_API),
                    "credentials_unavailable",
                ))
            }
        }
    }

    /// `x-mcpgate-assertion`, and the upstream token on routes with upstream OAuth.
    fn install_credentials(&mut self, creds: &Credentials, upstream_oauth: bool) -> bool {
        if !Self::set_request_header(paths::ASSERTION_HEADER, &creds.assertion) {
            return false;
        }
        if upstream_oauth {
            let Some(token) = &creds.upstream_token else {
                return false;
            };
            if !Self::set_request_header("authorization", &format!("Bearer {token}")) {
                return false;
            }
        }
        self.creds = Creds::Ready;
        true
    }

    /// The credentials call-out answered.
    fn on_credentials_answer(
        &mut self,
        route: usize,
        key: CacheKey,
        fetched_at: u64,
        body_size: usize,
    ) {
        let Some(vm_rc) = self.vm.clone() else { return };
        let mut vm = vm_rc.borrow_mut();
        let config = Rc::clone(&vm.config);
        let Some(r) = config.routes.get(route) else {
            drop(vm);
            if !self.answered() {
                self.respond(&challenge::unavailable("route configuration changed"));
            }
            return;
        };
        let status = call_status();
        let answer = credentials::parse_credentials_answer(
            status.as_deref(),
            &call_body(body_size),
            r.upstream_oauth,
        );
        let now = now_secs().unwrap_or(0);
        match answer {
            CredentialsAnswer::Granted(creds) => {
                vm.internal_ok();
                vm.bump_labelled("mcpgate_credentials_total", "granted", "");
                vm.store_credentials(&key, &creds, fetched_at, now);
                drop(vm);
                if self.answered() {
                    return;
                }
                if !self.install_credentials(&creds, r.upstream_oauth) {
                    self.respond(&challenge::unavailable(
                        "the request could not be processed",
                    ));
                    return;
                }
                if matches!(self.state, State::Allowed) {
                    self.state = State::Forwarded;
                    self.resume_request();
                }
                // Still reading: the body decision resumes the request.
            }
            CredentialsAnswer::InvalidToken => {
                vm.internal_ok();
                vm.bump_labelled("mcpgate_credentials_total", "invalid_token", "");
                let decision = Self::reject(&vm, route, Some(REFUSED_BY_TOKEN_SERVICE));
                drop(vm);
                if let (false, Decision::Respond(response, reason)) = (self.answered(), decision) {
                    self.respond_reason(&response, reason);
                }
            }
            CredentialsAnswer::UpstreamAuthorizationRequired { connect_url } => {
                vm.internal_ok();
                vm.bump_labelled(
                    "mcpgate_credentials_total",
                    "upstream_authorization_required",
                    "",
                );
                drop(vm);
                if !self.answered() {
                    let connect_url = connect_url.as_deref().unwrap_or(&r.connect_url);
                    self.respond_reason(
                        &credentials::upstream_authorization_required(
                            &r.resource_metadata_url,
                            connect_url,
                        ),
                        "upstream_authorization_required",
                    );
                }
            }
            CredentialsAnswer::UpstreamUnavailable { description } => {
                vm.internal_ok();
                vm.bump_labelled("mcpgate_credentials_total", "upstream_unavailable", "");
                drop(vm);
                log(
                    LogLevel::Info,
                    &format!(
                        "mcpgate: route {}: upstream provider unavailable: {description}",
                        r.name
                    ),
                );
                match self.state {
                    State::Allowed => self.answer_upstream_unavailable(&description),
                    State::Answered => {}
                    _ => self.creds = Creds::Unavailable(description),
                }
            }
            CredentialsAnswer::Failed(reason) => {
                vm.note_internal_failure("credentials", &reason);
                vm.bump_labelled("mcpgate_credentials_total", "failed", "");
                Metrics::bump(vm.metrics.unavailable);
                drop(vm);
                if !self.answered() {
                    self.respond_reason(
                        &challenge::unavailable(NO_INTERNAL_API),
                        "credentials_unavailable",
                    );
                }
            }
        }
    }

    /// The body is allowed but the provider is down: a JSON-RPC error per request (503 JSON
    /// without a body to answer).
    fn answer_upstream_unavailable(&mut self, description: &str) {
        let request_id = self
            .request
            .as_ref()
            .map(|r| r.request_id.clone())
            .unwrap_or_default();
        let response =
            credentials::upstream_unavailable(self.request_ids.as_ref(), description, &request_id);
        self.respond_reason(&response, "upstream_unavailable");
    }

    fn resume_request(&self) {
        if let Err(status) = hostcalls::resume_http_request() {
            log(
                LogLevel::Error,
                &format!("mcpgate: cannot resume the request: {status:?}"),
            );
        }
    }

    /// After the token check: a body-less request is decided now; a request with a body gets its
    /// header checks and moves to [`State::Reading`]. `Some(action)` when answered locally (or
    /// held for its credentials).
    fn check_request_headers(&mut self) -> Option<Action> {
        if self.answered() {
            return Some(Action::Pause);
        }
        let request = self.request.as_ref()?;
        if !self.has_body {
            let outcome =
                decision::decide_without_body(&self.context(request), &request.http_method);
            return (!self.apply(outcome)).then_some(Action::Pause);
        }
        let limit = request.route.max_request_bytes;
        let mut body = BodyAccumulator::new(limit);
        let headers = &self.headers;
        let checked = request_checks::check_content_type(headers.get("content-type").as_deref())
            .and_then(|()| {
                request_checks::check_content_encoding(headers.get("content-encoding").as_deref())
            })
            .and_then(|()| {
                request_checks::check_content_length(
                    headers.get("content-length").as_deref(),
                    limit,
                )
            })
            .and_then(|length| length.map_or(Ok(()), |n| body.expect_length(n)));
        if let Err(e) = checked {
            let outcome = decision::reject(&e, &request.request_id);
            self.apply(outcome);
            return Some(Action::Pause);
        }
        self.state = State::Reading(body);
        None
    }

    fn context<'a>(&self, request: &'a RequestInfo) -> DecisionContext<'a> {
        DecisionContext {
            policy: &request.route.policy,
            identity: &request.identity,
            request_id: &request.request_id,
            protocol_version: request.protocol_version.as_deref(),
            redaction: &request.route.redaction,
        }
    }

    /// Records the outcome (audit, stats) and sends the local answer if there is one. True when
    /// the request may go on to the MCP server now (allowed and its credentials are in).
    fn apply(&mut self, outcome: Outcome) -> bool {
        set_audit("mcpgate_method", &outcome.audit.method);
        set_audit("mcpgate_target", &outcome.audit.target);
        set_audit("mcpgate_arguments", &outcome.audit.arguments);
        set_audit("mcpgate_decision", outcome.verdict.as_str());
        set_audit("mcpgate_reason", &outcome.audit.reason);
        if let Some(vm) = &self.vm {
            let mut vm = vm.borrow_mut();
            vm.bump_labelled(
                "mcpgate_mcp_requests_total",
                outcome.metric_method,
                outcome.verdict.as_str(),
            );
            if let Some(reason) = outcome.reject_reason {
                vm.bump_labelled("mcpgate_mcp_rejected_total", reason, "");
            }
        }
        if let Some(response) = &outcome.response {
            self.respond(response);
            return false;
        }
        self.list = outcome.lists.map(ListResponse::new);
        match &self.creds {
            Creds::NotNeeded | Creds::Ready => {
                self.state = State::Forwarded;
                true
            }
            Creds::Pending => {
                self.state = State::Allowed;
                false
            }
            Creds::Unavailable(description) => {
                let description = description.clone();
                self.answer_upstream_unavailable(&description);
                false
            }
        }
    }

    /// Reads the new bytes of the buffered body (`body_size` in total so far).
    fn read_body(&mut self, body_size: usize) -> Result<(), mcpgate_protocol::Error> {
        let State::Reading(body) = &mut self.state else {
            return Ok(());
        };
        let seen = body.len();
        if body_size <= seen {
            return Ok(());
        }
        let chunk = hostcalls::get_buffer(
            BufferType::HttpRequestBody,
            seen,
            body_size.saturating_sub(seen),
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        body.push(&chunk)
    }

    /// The body is complete: parse, decide, record. True when it may go on now.
    fn decide_body(&mut self) -> bool {
        let State::Reading(body) = std::mem::replace(&mut self.state, State::Answered) else {
            return false;
        };
        let Some(request) = self.request.as_ref() else {
            return false;
        };
        let parsed = body.parse(&Limits::default());
        if !self.creds.settled() {
            // Kept to answer each request if the provider turns out to be down.
            self.request_ids = parsed.as_ref().ok().map(RequestIds::of);
        }
        let outcome = decision::decide_body(&self.context(request), parsed);
        self.apply(outcome)
    }

    /// Body callback while reading: `Continue` once allowed.
    fn on_reading_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Err(e) = self.read_body(body_size) {
            let request_id = self
                .request
                .as_ref()
                .map(|r| r.request_id.clone())
                .unwrap_or_default();
            self.apply(decision::reject(&e, &request_id));
            return Action::Pause;
        }
        if end_of_stream && self.decide_body() {
            return Action::Continue;
        }
        Action::Pause
    }

    /// The keys arrived for a request that waited: finish what its headers could not.
    fn resume_after_keys(&mut self, identity: Rc<Identity>, route: usize, token: &str) {
        if !self.accept(identity, route) {
            self.respond(&challenge::unavailable(
                "the request could not be processed",
            ));
            return;
        }
        if self.start_credentials(route, token).is_some() {
            return; // answered
        }
        if self.check_request_headers().is_some() {
            return; // answered, or allowed and held for its credentials
        }
        let allowed = match self.state {
            State::Forwarded => true,
            State::Reading(_) => {
                let (seen, complete) = self.waiting_body;
                let read = self.read_body(seen);
                if let Err(e) = read {
                    let request_id = self
                        .request
                        .as_ref()
                        .map(|r| r.request_id.clone())
                        .unwrap_or_default();
                    self.apply(decision::reject(&e, &request_id));
                    return;
                }
                // The rest of the body still comes through the body callback.
                complete && self.decide_body()
            }
            State::Idle
            | State::WaitingForKeys { .. }
            | State::Allowed
            | State::WaitingForSession
            | State::Answered => false,
        };
        if allowed {
            self.resume_request();
        }
    }

    /// The keys call-out answered.
    fn on_keys_answer(&mut self, body_size: usize) {
        let State::WaitingForKeys { token, route } =
            std::mem::replace(&mut self.state, State::Answered)
        else {
            return;
        };
        let Some(vm_rc) = self.vm.clone() else { return };
        let decision = {
            let mut vm = vm_rc.borrow_mut();
            let _ = vm.accept_fetch(body_size);
            Self::decide(&mut vm, &token, route, false)
        };
        match decision {
            Decision::Accept(identity) => {
                self.state = State::Idle;
                self.resume_after_keys(identity, route, &token);
            }
            Decision::Respond(response, reason) => {
                self.respond_reason(&response, reason);
            }
            Decision::FetchKeys => {
                self.respond(&challenge::unavailable(NO_KEYS));
            }
        }
    }

    /// A request to a client route: the session cookie buys the app a TE and an assertion.
    fn on_client_route(&mut self, config: &FilterConfig, authority: &str, path: &str) -> Action {
        let Some((index, route)) = config.match_client_route(authority, path).and_then(|m| {
            config
                .client_routes
                .iter()
                .enumerate()
                .find(|(_, r)| std::ptr::eq(*r, m))
        }) else {
            return Action::Continue;
        };
        let Some(vm_rc) = self.vm.clone() else {
            return Action::Continue;
        };
        set_audit(
            "mcpgate_request_id",
            &self.headers.get("x-request-id").unwrap_or_default(),
        );
        set_audit("mcpgate_route", &route.name);
        if !self.strip_gateway_headers() {
            return self.respond(&challenge::unavailable(
                "the request could not be processed",
            ));
        }
        let cookies: Vec<&[u8]> = self.headers.all("cookie").collect();
        let Some(session) = client_session::find_session(&cookies).map(str::to_owned) else {
            self.vm_bump("mcpgate_session_total", "no_session");
            return self.sign_in(config, &route.scheme, authority, path, "sign_in_required");
        };
        let mut vm = vm_rc.borrow_mut();
        let (Some(now), true) = (now_secs(), vm.internal_ready()) else {
            Metrics::bump(vm.metrics.unavailable);
            drop(vm);
            return self.respond_reason(
                &challenge::unavailable(NO_INTERNAL_API),
                "session_unavailable",
            );
        };
        let key = credentials::cache_key(&vm.cache_scope, &route.url, &session);
        if let Some(cached) = vm
            .cached_session(&key, now)
            .filter(|s| !vm.session_revoked(s))
        {
            vm.bump_labelled("mcpgate_session_total", "cache_hit", "");
            drop(vm);
            return if self.install_session(&cached) {
                Action::Continue
            } else {
                self.respond(&challenge::unavailable(
                    "the request could not be processed",
                ))
            };
        }
        let body = client_session::request_body(&session, &route.url);
        match vm.dispatch_internal("POST", paths::INTERNAL_SESSION, Some(&body), None) {
            Ok(id) => {
                self.call = Some((id, Call::Session { route: index, key }));
                self.state = State::WaitingForSession;
                Action::Pause
            }
            Err(e) => {
                vm.note_internal_failure("session", &e);
                vm.bump_labelled("mcpgate_session_total", "failed", "");
                Metrics::bump(vm.metrics.unavailable);
                drop(vm);
                self.respond_reason(
                    &challenge::unavailable(NO_INTERNAL_API),
                    "session_unavailable",
                )
            }
        }
    }

    /// No usable session: a browser goes to sign in, anything else gets 401.
    fn sign_in(
        &mut self,
        config: &FilterConfig,
        scheme: &str,
        authority: &str,
        path: &str,
        reason: &str,
    ) -> Action {
        let method = self.headers.get(":method").unwrap_or_default();
        let accept = self.headers.get("accept");
        let return_to = client_session::request_url(scheme, authority, path);
        let response =
            client_session::sign_in(&config.sign_in_url, &method, accept.as_deref(), &return_to);
        self.respond_reason(&response, reason)
    }

    /// The app's headers: its user's TE, the assertion, and the cookies minus the session.
    fn install_session(&mut self, session: &Session) -> bool {
        if !Self::set_request_header("authorization", &format!("Bearer {}", session.token))
            || !Self::set_request_header(paths::ASSERTION_HEADER, &session.assertion)
        {
            return false;
        }
        let cookies: Vec<&[u8]> = self.headers.all("cookie").collect();
        let forwarded = client_session::strip_session(&cookies);
        if !cookies.is_empty() {
            if let Err(status) = hostcalls::remove_map_value(MapType::HttpRequestHeaders, "cookie")
            {
                log(
                    LogLevel::Error,
                    &format!("mcpgate: cannot remove the Cookie header: {status:?}"),
                );
                return false;
            }
        }
        if let Some(forwarded) = forwarded {
            if let Err(status) =
                hostcalls::add_map_value_bytes(MapType::HttpRequestHeaders, "cookie", &forwarded)
            {
                log(
                    LogLevel::Error,
                    &format!("mcpgate: cannot set the Cookie header: {status:?}"),
                );
                return false;
            }
        }
        let claims = access_token::claims_json(&session.token);
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
        };
        set_audit("mcpgate_sub", text("sub"));
        set_audit("mcpgate_email", text("email"));
        set_audit("mcpgate_client_id", text("client_id"));
        set_audit("mcpgate_decision", Verdict::Allow.as_str());
        set_audit("mcpgate_reason", "session");
        true
    }

    /// The session call-out answered.
    fn on_session_answer(&mut self, route: usize, key: CacheKey, body_size: usize) {
        if !matches!(self.state, State::WaitingForSession) {
            return;
        }
        let Some(vm_rc) = self.vm.clone() else { return };
        let mut vm = vm_rc.borrow_mut();
        let config = Rc::clone(&vm.config);
        let status = call_status();
        let answer = client_session::parse_session_answer(status.as_deref(), &call_body(body_size));
        let Some(r) = config.client_routes.get(route) else {
            drop(vm);
            self.respond(&challenge::unavailable("route configuration changed"));
            return;
        };
        match answer {
            SessionAnswer::Granted(session) => {
                vm.internal_ok();
                vm.bump_labelled("mcpgate_session_total", "granted", "");
                vm.store_session(&key, &session, now_secs().unwrap_or(0));
                drop(vm);
                if self.install_session(&session) {
                    self.state = State::Idle;
                    self.resume_request();
                } else {
                    self.respond(&challenge::unavailable(
                        "the request could not be processed",
                    ));
                }
            }
            SessionAnswer::Invalid => {
                vm.internal_ok();
                vm.bump_labelled("mcpgate_session_total", "invalid_session", "");
                drop(vm);
                let authority = self
                    .headers
                    .get(":authority")
                    .or_else(|| self.headers.get("host"))
                    .unwrap_or_default();
                let path = self.headers.get(":path").unwrap_or_default();
                self.sign_in(&config, &r.scheme, &authority, &path, "invalid_session");
            }
            SessionAnswer::Failed(reason) => {
                vm.note_internal_failure("session", &reason);
                vm.bump_labelled("mcpgate_session_total", "failed", "");
                Metrics::bump(vm.metrics.unavailable);
                drop(vm);
                self.respond_reason(
                    &challenge::unavailable(NO_INTERNAL_API),
                    "session_unavailable",
                );
            }
        }
    }

    /// Response headers on a route with upstream OAuth: did the MCP server refuse the user's
    /// upstream token? Then forget it (here and in the token service) and ask the user to
    /// reconnect instead of passing the refusal on. `Some(action)` when so.
    fn check_upstream_rejection(&mut self, rejection: Rejection) -> Option<Action> {
        let status = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status")
            .ok()
            .flatten()?;
        let status = std::str::from_utf8(&status).ok()?;
        if status != "401" && status != "403" {
            return None;
        }
        let headers = Headers::read(MapType::HttpResponseHeaders);
        if !credentials::is_upstream_rejection(Some(status), headers.all("www-authenticate")) {
            return None;
        }
        let vm_rc = self.vm.clone()?;
        let mut vm = vm_rc.borrow_mut();
        let config = Rc::clone(&vm.config);
        let route = rejection.route;
        let r = config.routes.get(route)?;
        let key = credentials::cache_key(&vm.cache_scope, &r.resource, &rejection.token);
        vm.drop_credentials(&key);
        vm.bump_labelled(
            "mcpgate_upstream_rejected_total",
            if status == "401" {
                "status_401"
            } else {
                "status_403"
            },
            "",
        );
        log(
            LogLevel::Info,
            &format!(
                "mcpgate: route {}: the MCP server refused the upstream token ({status}); the \
                 user must reconnect",
                r.name
            ),
        );
        let body = credentials::request_body(&r.resource, &rejection.token);
        drop(rejection);
        match vm.dispatch_internal("POST", paths::INTERNAL_UPSTREAM_REJECTED, Some(&body), None) {
            Ok(id) => {
                self.call = Some((id, Call::UpstreamRejected { route }));
                self.response_paused = true;
                Some(Action::Pause)
            }
            Err(e) => {
                vm.note_internal_failure("upstream rejection", &e);
                drop(vm);
                Some(self.respond_upstream_rejected(r))
            }
        }
    }

    fn respond_upstream_rejected(&mut self, route: &mcpgate_config::FilterRoute) -> Action {
        self.response_paused = false;
        self.respond_reason(
            &credentials::upstream_authorization_required(
                &route.resource_metadata_url,
                &route.connect_url,
            ),
            "upstream_rejected",
        )
    }

    /// The token service heard of the upstream rejection (or did not answer in time).
    fn on_upstream_rejected_answer(&mut self, route: usize) {
        let status = call_status();
        if status.as_deref() != Some("204") {
            let reason = credentials::unexpected_status(status.as_deref(), "");
            if let Some(vm) = &self.vm {
                vm.borrow_mut()
                    .note_internal_failure("upstream rejection", &reason);
            }
        }
        let Some(config) = self.vm.as_ref().map(|vm| Rc::clone(&vm.borrow().config)) else {
            return;
        };
        match config.routes.get(route) {
            Some(r) => {
                self.respond_upstream_rejected(r);
            }
            None => {
                self.response_paused = false;
                self.respond(&challenge::unavailable("route configuration changed"));
            }
        }
    }

    fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(list), Some(request)) = (self.list.as_mut(), self.request.as_ref()) else {
            return Action::Continue;
        };
        match self.plan {
            Plan::PassThrough => Action::Continue,
            Plan::Buffer => {
                self.response_seen = body_size;
                if !end_of_stream {
                    return Action::Pause;
                }
                let body = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                if let Some(new) = list.filter_json(&body, &request.route.policy, &request.identity)
                {
                    replace_response_body(body_size, &new);
                }
                self.plan = Plan::PassThrough;
                Action::Continue
            }
            Plan::Stream => {
                let chunk = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let policy = &request.route.policy;
                let identity = &request.identity;
                let mut out = list.push_sse(&chunk, policy, identity);
                if end_of_stream {
                    out.extend(list.finish_sse(policy, identity));
                }
                if out != chunk {
                    replace_response_body(body_size, &out);
                }
                Action::Continue
            }
        }
    }
}

fn replace_response_body(old_size: usize, new: &[u8]) {
    if let Err(status) = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, old_size, new) {
        log(
            LogLevel::Error,
            &format!("mcpgate: cannot replace a list response body: {status:?}"),
        );
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some((id, call)) = self.call.take() else {
            return;
        };
        if id != token_id {
            self.call = Some((id, call));
            return;
        }
        match call {
            Call::Keys => self.on_keys_answer(body_size),
            Call::Credentials {
                route,
                key,
                fetched_at,
            } => self.on_credentials_answer(route, key, fetched_at, body_size),
            Call::Session { route, key } => self.on_session_answer(route, key, body_size),
            Call::UpstreamRejected { route } => self.on_upstream_rejected_answer(route),
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.on_headers(end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // While the headers wait for the keys, the credentials or the session, while the body is
        // read, or after a local answer, the body must not slip past: Continue here would resume
        // the stopped request.
        match self.state {
            State::Idle | State::Forwarded => Action::Continue,
            State::WaitingForKeys { .. } => {
                self.waiting_body = (body_size, end_of_stream);
                Action::Pause
            }
            State::Reading(_) => self.on_reading_body(body_size, end_of_stream),
            State::Allowed | State::WaitingForSession | State::Answered => Action::Pause,
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // HTTP/2 with trailers: the body callback never saw end_of_stream.
        match self.state {
            State::Idle | State::Forwarded => Action::Continue,
            State::WaitingForKeys { .. } => {
                self.waiting_body.1 = true;
                Action::Pause
            }
            State::Reading(_) => {
                if self.decide_body() {
                    Action::Continue
                } else {
                    Action::Pause
                }
            }
            State::Allowed | State::WaitingForSession | State::Answered => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // The TE is kept for this moment only.
        if let Some(rejection) = self.rejection.take() {
            if let Some(action) = self.check_upstream_rejection(rejection) {
                return action;
            }
        }
        let Some(list) = self.list.as_mut() else {
            return Action::Continue;
        };
        if end_of_stream || !matches!(self.state, State::Forwarded) {
            return Action::Continue;
        }
        let headers = Headers::read(MapType::HttpResponseHeaders);
        self.plan = list.plan(
            headers.get("content-type").as_deref(),
            headers.get("content-encoding").as_deref(),
        );
        if self.plan != Plan::PassThrough && headers.has("content-length") {
            let _ = hostcalls::remove_map_value(MapType::HttpResponseHeaders, "content-length");
        }
        if list.is_encoded() {
            let _ = hostcalls::remove_map_value(MapType::HttpResponseHeaders, "content-encoding");
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.response_paused {
            return Action::Pause;
        }
        self.on_response_body(body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.response_paused {
            return Action::Pause;
        }
        // A buffered JSON list response with trailers: end_of_stream never came with the body.
        if self.plan == Plan::Buffer {
            let seen = self.response_seen;
            return self.on_response_body(seen, true);
        }
        Action::Continue
    }
}
