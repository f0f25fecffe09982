//! The per-request context: each host callback hands its event to the request's
//! [`Exchange`] with the proxy-wasm [`Host`](crate::flow::Host).

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action as HostAction;

use super::proxy_wasm_host::ProxyWasmHost;
use crate::flow::{Action, Exchange, SharedVm};

pub struct Http {
    /// Shared with the VM's body-arrival registry (by weak reference) so the tick can answer
    /// a request whose body never comes.
    exchange: Rc<RefCell<Exchange>>,
}

impl Http {
    pub(super) fn new(vm: Option<SharedVm>, context_id: u32) -> Self {
        Http {
            exchange: Exchange::shared(vm, context_id),
        }
    }

    /// Runs one event. The host defers every effect that could call back into this context
    /// (local replies, resumes) until the callback returns, so the exchange is never borrowed
    /// twice; if it were, the request stays paused rather than slip past unchecked.
    fn run(&self, event: impl FnOnce(&mut Exchange, &ProxyWasmHost) -> Action) -> HostAction {
        match self.exchange.try_borrow_mut() {
            Ok(mut exchange) => match event(&mut exchange, &ProxyWasmHost) {
                Action::Continue => HostAction::Continue,
                Action::Pause => HostAction::Pause,
            },
            Err(_) => HostAction::Pause,
        }
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
        self.run(|exchange, host| {
            exchange.on_call_answer(host, token_id, body_size);
            Action::Continue
        });
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> HostAction {
        self.run(|exchange, host| exchange.on_request_headers(host, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> HostAction {
        self.run(|exchange, host| exchange.on_request_body(host, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> HostAction {
        self.run(|exchange, host| exchange.on_request_trailers(host))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> HostAction {
        self.run(|exchange, host| exchange.on_response_headers(host, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> HostAction {
        self.run(|exchange, host| exchange.on_response_body(host, body_size, end_of_stream))
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> HostAction {
        self.run(|exchange, host| exchange.on_response_trailers(host))
    }
}
