//! The proxy-wasm layer: a root context per VM (configuration, JWKS refresh, metrics) and an
//! http context per request. It only moves data between the host and the pure modules.
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

use crate::access_token::{self, TokenError, VerifyParams};
use crate::audit::Redaction;
use crate::challenge::{self, LocalResponse};
use crate::decision::{self, DecisionContext, Outcome, Verdict};
use crate::jwks::{KeySet, MAX_JWKS_BYTES};
use crate::list_response::{ListResponse, Plan};
use crate::refresh::{self, Refresher, FETCH_TIMEOUT_SECONDS, RETRY_WITH_KEYS_SECONDS};
use crate::request;
use crate::token_cache::{hash_token, TokenCache};

const TICK: Duration = Duration::from_secs(1);
const NO_KEYS: &str = "the gateway's signing keys are not available";

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
    fn new(config: FilterConfig) -> Result<Self, String> {
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
        Ok(Vm {
            shared_key: format!("mcpgate.jwks|{scope}"),
            lease_key: format!("mcpgate.jwks.lease|{scope}"),
            refresher: Refresher::new(config.jwks_refresh_seconds),
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
        _token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(vm) = &self.vm else { return };
        let mut vm = vm.borrow_mut();
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
                "mcpgate: configured {} route(s), issuer {}, JWKS from cluster {}",
                config.routes.len(),
                config.issuer,
                config.token_service_cluster
            ),
        );
        let vm = match Vm::new(config) {
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
    /// Not an MCP route: the request streams on untouched.
    Idle,
    /// Waiting for a JWKS fetch before verifying; body and trailers are held until then.
    WaitingForKeys { token: String, route: usize },
    /// Token accepted, headers held: reading the body to decide on it.
    Reading(BodyAccumulator),
    /// Decided and allowed: forwarded to the MCP server.
    Forwarded,
    /// A local response was sent.
    Answered,
}

enum Decision {
    Accept(Rc<Identity>),
    Respond(LocalResponse),
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

    /// Strip the client's credentials before the request goes upstream.
    fn strip_credentials(&mut self) -> bool {
        // Also ask the MCP server for uncompressed answers: list answers must be readable to be
        // filtered (an encoded one is replaced by an error). Failing to remove it is harmless.
        if self.headers.has("accept-encoding") {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, "accept-encoding");
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

    fn reject(vm: &Vm, route: usize, error: Option<&str>) -> Decision {
        Metrics::bump(vm.metrics.rejected);
        let (metadata_url, scopes) = match vm.config.routes.get(route) {
            Some(r) => (r.resource_metadata_url.as_str(), r.scopes.as_slice()),
            None => ("", &[][..]),
        };
        Decision::Respond(challenge::unauthorized(metadata_url, scopes, error))
    }

    fn unavailable(vm: &Vm, description: &str) -> Decision {
        Metrics::bump(vm.metrics.unavailable);
        Decision::Respond(challenge::unavailable(description))
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
            let result = claims
                .check_for_route(resource, now, leeway)
                .map(|()| Rc::clone(&claims.identity));
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
                let result = claims
                    .check_for_route(resource, now, leeway)
                    .map(|()| Rc::clone(&claims.identity));
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
                Self::reject(vm, route, Some(e.description()))
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
            return Action::Continue; // not an MCP route (reserved paths belong to the token service)
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
                return self.act_on_headers(decision, route);
            }
        };
        let decision = Self::decide(&mut vm, &token, route, true);
        if let Decision::FetchKeys = decision {
            if vm.dispatch_fetch().is_ok() {
                self.state = State::WaitingForKeys { token, route };
                return Action::Pause;
            }
            let fallback = if vm.keys.is_some() {
                Self::finish(&vm, route, Err(TokenError::UnknownKeyId))
            } else {
                Self::unavailable(&vm, NO_KEYS)
            };
            drop(vm);
            return self.act_on_headers(fallback, route);
        }
        drop(vm);
        self.act_on_headers(decision, route)
    }

    fn act_on_headers(&mut self, decision: Decision, route: usize) -> Action {
        match decision {
            Decision::Accept(identity) => {
                if !self.accept(identity, route) {
                    return self.respond(&challenge::unavailable(
                        "the request could not be processed",
                    ));
                }
                if let Some(action) = self.check_request_headers() {
                    return action;
                }
                match self.state {
                    State::Reading(_) | State::Answered => Action::Pause,
                    State::Idle | State::WaitingForKeys { .. } | State::Forwarded => {
                        Action::Continue
                    }
                }
            }
            Decision::Respond(response) => self.respond_unauthenticated(&response),
            // Not reached: callers dispatch the fetch themselves; fail closed all the same.
            Decision::FetchKeys => self.respond(&challenge::unavailable(NO_KEYS)),
        }
    }

    fn respond_unauthenticated(&mut self, response: &LocalResponse) -> Action {
        set_audit("mcpgate_decision", Verdict::Reject.as_str());
        let reason = if response.status == 401 {
            "unauthenticated"
        } else {
            "unavailable"
        };
        set_audit("mcpgate_reason", reason);
        self.respond(response)
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

    /// After the token check: a body-less request is decided now; a request with a body gets its
    /// header checks and moves to [`State::Reading`]. `Some(action)` when answered locally.
    fn check_request_headers(&mut self) -> Option<Action> {
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
    /// the request may go on to the MCP server.
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
        match &outcome.response {
            Some(response) => {
                self.respond(response);
                false
            }
            None => {
                self.state = State::Forwarded;
                self.list = outcome.lists.map(ListResponse::new);
                true
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

    /// The body is complete: parse, decide, record. True when allowed.
    fn decide_body(&mut self) -> bool {
        let State::Reading(body) = std::mem::replace(&mut self.state, State::Answered) else {
            return false;
        };
        let Some(request) = self.request.as_ref() else {
            return false;
        };
        let outcome = decision::decide_body(&self.context(request), body.parse(&Limits::default()));
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
    fn resume_after_keys(&mut self, identity: Rc<Identity>, route: usize) {
        if !self.accept(identity, route) {
            self.respond(&challenge::unavailable(
                "the request could not be processed",
            ));
            return;
        }
        if self.check_request_headers().is_some() {
            return; // answered (or decided: a body-less request that was allowed resumes below)
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
            State::Idle | State::WaitingForKeys { .. } | State::Answered => false,
        };
        if allowed {
            if let Err(status) = hostcalls::resume_http_request() {
                log(
                    LogLevel::Error,
                    &format!("mcpgate: cannot resume the request: {status:?}"),
                );
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
        _token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
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
                self.resume_after_keys(identity, route);
            }
            Decision::Respond(response) => {
                self.respond_unauthenticated(&response);
            }
            Decision::FetchKeys => {
                self.respond(&challenge::unavailable(NO_KEYS));
            }
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.on_headers(end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // While the headers wait for the keys or the body is read (or after a local answer), the
        // body must not slip past: Continue here would resume the stopped request undecided.
        match self.state {
            State::Idle | State::Forwarded => Action::Continue,
            State::WaitingForKeys { .. } => {
                self.waiting_body = (body_size, end_of_stream);
                Action::Pause
            }
            State::Reading(_) => self.on_reading_body(body_size, end_of_stream),
            State::Answered => Action::Pause,
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
            State::Answered => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
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
        self.on_response_body(body_size, end_of_stream)
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        // A buffered JSON list response with trailers: end_of_stream never came with the body.
        if self.plan == Plan::Buffer {
            let seen = self.response_seen;
            return self.on_response_body(seen, true);
        }
        Action::Continue
    }
}
