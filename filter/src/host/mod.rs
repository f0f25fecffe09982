//! The proxy-wasm layer: a root context per VM and an http context per request. It only moves
//! events and data between the host and [`crate::flow`], which holds every decision.
//!
//! | module | what |
//! |---|---|
//! | this one | the entry wiring: [`Root`], `on_configure`, the tick, the body-arrival guard's answers |
//! | `http` | the per-request context: each callback handed to the request's `Exchange` |
//! | `proxy_wasm_host` | the flow's `Host` over `proxy_wasm::hostcalls` |

mod http;
mod proxy_wasm_host;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use mcpgate_config::{paths, FilterConfig};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use crate::flow::{SharedVm, Vm};
pub use http::Http;
pub use proxy_wasm_host::ProxyWasmHost;

const TICK: Duration = Duration::from_secs(1);

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Root context: one per VM (one VM per Envoy worker).
pub struct Root {
    /// The host's id of this context (the tick acts on held requests' contexts, then comes
    /// back to it).
    context_id: u32,
    vm: Option<SharedVm>,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Root {
            context_id,
            vm: None,
        }
    }

    fn tick(&mut self) {
        let Some(vm) = &self.vm else { return };
        let host = ProxyWasmHost;
        let expired = {
            let mut vm = vm.borrow_mut();
            vm.tick(&host);
            vm.expired_requests(&host)
        };
        if expired.is_empty() {
            return;
        }
        // proxy-wasm has no per-request timer: the held request's answer goes out from here,
        // in its own context.
        for (context_id, exchange) in expired {
            if hostcalls::set_effective_context(context_id).is_err() {
                continue; // the request is gone
            }
            if let Ok(mut exchange) = exchange.try_borrow_mut() {
                exchange.on_body_timeout(&host);
            }
        }
        let _ = hostcalls::set_effective_context(self.context_id);
    }
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        // The VM stops: what was counted since the last tick still reaches Envoy.
        if let Some(vm) = &self.vm {
            vm.borrow().flush_counters(&ProxyWasmHost);
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
        vm.borrow_mut()
            .on_root_call_answer(&ProxyWasmHost, token_id, body_size);
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
        let mut vm = match Vm::new(config, secret) {
            Ok(vm) => vm,
            Err(e) => {
                log(
                    LogLevel::Error,
                    &format!("mcpgate: invalid plugin configuration: {e}"),
                );
                return false;
            }
        };
        if let Some(Ok(mut old)) = self.vm.as_ref().map(|old| old.try_borrow_mut()) {
            vm.adopt_held_requests(&mut old);
        }
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

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(self.vm.clone(), context_id)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
