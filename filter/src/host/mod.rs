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
//!
//! Where things are:
//!
//! | module | what |
//! |---|---|
//! | this one | the entry wiring: [`Root`], `on_configure`, the tick |
//! | `vm` | per-VM state, compiled routes, metrics |
//! | `shared_document` | a document one VM at a time fetches for all, through shared data |
//! | `jwks_refresh` | the signing keys: fetch, publish, adopt |
//! | `revocation_poll` | the revocation list: poll, publish, adopt |
//! | `internal_api` | call-outs to the token service's internal API; the credentials and session caches |
//! | `http` | the per-request context: its states, the host callbacks, local answers, audit fields |
//! | `headers` | the request headers, read once; header removals and replacements |
//! | `server_route` | a server route's header phase: the token check, waiting for keys |
//! | `upstream_credentials` | a server route's assertion and upstream token |
//! | `request_body` | a server route's body: header checks, reading, the policy decision |
//! | `list_filtering` | filtering the answers to list requests |
//! | `upstream_rejection` | an MCP server refusing the user's upstream token |
//! | `client_route` | a client route: session cookie → TE and assertion, or sign-in |

mod client_route;
mod headers;
mod http;
mod internal_api;
mod jwks_refresh;
mod list_filtering;
mod request_body;
mod revocation_poll;
mod server_route;
mod shared_document;
mod upstream_credentials;
mod upstream_rejection;
mod vm;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use mcpgate_config::{paths, FilterConfig};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType};

pub use http::Http;
pub use vm::RouteRuntime;
use vm::{SharedVm, Vm};

const TICK: Duration = Duration::from_secs(1);

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// A failure's log line: a warning when `warn` (the first of a run, see
/// [`crate::refresh::FailureRun`]), debug otherwise.
fn log_failure(warn: bool, message: &str) {
    log(
        if warn {
            LogLevel::Warn
        } else {
            LogLevel::Debug
        },
        message,
    );
}

/// Current unix time in seconds from the host clock (not WASI's).
fn now_secs() -> Option<u64> {
    hostcalls::get_current_time()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// `:status` of the call-out answer being handled (`None`: no answer, timeout or reset).
fn call_status() -> Option<String> {
    hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .map(|s| String::from_utf8_lossy(&s).into_owned())
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
        vm.flush_counters();
        vm.poll_revocations(now);
        vm.refresh_keys(now);
    }
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        // The VM stops: what was counted since the last tick still reaches Envoy.
        if let Some(vm) = &self.vm {
            vm.borrow().flush_counters();
        }
        true
    }

    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(vm) = &self.vm else { return };
        let mut vm = vm.borrow_mut();
        if vm.revocations.call == Some(token_id) {
            vm.on_revocations_answer(body_size);
            return;
        }
        vm.on_refresh_answer(body_size);
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
        Some(Box::new(Http::new(self.vm.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
