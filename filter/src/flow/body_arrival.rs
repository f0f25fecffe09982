//! The guard against a host that holds a request's headers but never delivers its body.
//!
//! In hold-headers mode the header callback pauses a request with a body until the body is
//! decided; Envoy delivers the body to a filter paused that way only with the plugin's
//! `allow_on_headers_stop_iteration`. A host that ignores the setting (Istio's `WasmPlugin` and
//! Envoy Gateway cannot set it) buffers the body until the filter resumes, which it never would:
//! the request would hang until the client gives up. So each request held for its body waits
//! here with a deadline (`body_arrival_timeout_seconds`); proxy-wasm has no per-request timer,
//! so the VM's tick looks for expired ones ([`super::vm::Vm::expired_requests`]) and answers
//! them with an error naming the setting and the alternative (`header_mode: hold_body`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use serde_json::json;

use super::exchange::Exchange;
use crate::challenge::LocalResponse;
use crate::decision::json_response;
use crate::refresh::FailureRun;

/// The audit reason (and the `wasmcustom.mcpgate_body_not_delivered_total` counter's cause).
pub const REASON: &str = "body_not_delivered";

/// The requests held for their body, by context id, with their deadline (unix seconds).
#[derive(Default)]
pub struct HeldRequests {
    entries: HashMap<u32, (u64, Weak<RefCell<Exchange>>)>,
    /// Requests answered by the guard since one last received its body (log throttling).
    pub(super) failures: FailureRun,
}

impl HeldRequests {
    pub(super) fn hold(
        &mut self,
        context_id: u32,
        deadline: u64,
        exchange: Weak<RefCell<Exchange>>,
    ) {
        self.entries.insert(context_id, (deadline, exchange));
    }

    /// `delivered`: the body came (the host does deliver bodies to held requests).
    pub(super) fn release(&mut self, context_id: u32, delivered: bool) {
        self.entries.remove(&context_id);
        if delivered {
            self.failures.succeeded();
        }
    }

    /// Takes out the requests whose deadline is `now` or earlier and that still exist.
    pub(super) fn expired(&mut self, now: u64) -> Vec<(u32, Rc<RefCell<Exchange>>)> {
        let mut due = Vec::new();
        self.entries.retain(|id, (deadline, exchange)| {
            if *deadline > now {
                return true;
            }
            if let Some(exchange) = exchange.upgrade() {
                due.push((*id, exchange));
            }
            false
        });
        due
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What the operator must change, for the answer and the log line.
pub fn remedy() -> &'static str {
    "set allow_on_headers_stop_iteration: true in the filter's Envoy Wasm configuration, or \
     configure the filter with header_mode: hold_body"
}

/// HTTP 500 for a request whose body did not arrive within `timeout_seconds`.
pub fn not_delivered(timeout_seconds: u64) -> LocalResponse {
    let description = format!(
        "the request body did not reach the gateway's filter within {timeout_seconds} s while \
         its headers were held (header_mode: hold_headers): the client sent none in that time, \
         or the proxy does not deliver the body to a filter holding the headers; if every \
         request with a body ends so, {}",
        remedy()
    );
    let body = json!({"error": "server_error", "error_description": description});
    json_response(500, body.to_string())
}
