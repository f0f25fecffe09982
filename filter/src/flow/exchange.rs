//! One request and its response: what the request is waiting for, the events the host delivers
//! (dispatched to the server-route, client-route and response modules), local answers and the
//! audit fields.
//!
//! How long the request headers are held depends on the header mode
//! ([`HeaderMode`], per request in [`Exchange::holds_headers`]):
//!
//! - hold headers: the header callback pauses until the body is read and decided, so a denied
//!   request never opens an upstream request. Needs a host that delivers the body to a filter
//!   that paused in the header phase (Envoy's `allow_on_headers_stop_iteration`); a request whose
//!   body does not come is answered by the guard ([`super::body_arrival`]).
//! - hold body: the header phase ends once the token is checked and the upstream credentials are
//!   set (pausing only for a key fetch or the credentials call-out); the body callback then
//!   pauses every chunk until the body is decided. A denied request's local answer resets the
//!   upstream request, which has seen the headers and no body byte. A host that does deliver the
//!   body while the headers are paused makes the request hold its headers after all: resuming
//!   them would pass the buffered body on unread.

use mcpgate_protocol::request_metadata::RequestHeaders;
use std::cell::RefCell;
use std::rc::{Rc, Weak};

use mcpgate_config::HeaderMode;
use mcpgate_policy::Identity;
use mcpgate_protocol::body::BodyAccumulator;

use super::body_arrival;
use super::headers::Headers;
use super::host::{Action, Host, LogLevel};
use super::vm::{RouteRuntime, SharedVm};
use crate::challenge::LocalResponse;
use crate::credentials::{CacheKey, RequestIds};
use crate::decision::Verdict;
use crate::list_response::{ListResponse, Plan};
use crate::token_cache::TokenHash;

#[derive(Debug)]
pub(super) enum State {
    /// Not an MCP route (or a client route past its session check): the request streams on
    /// untouched.
    Idle,
    /// Waiting for a JWKS fetch before verifying; body and trailers are held until then.
    WaitingForKeys { token: String, route: usize },
    /// Token accepted: reading the body to decide on it (the headers held or not, see the
    /// module doc).
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
#[derive(Debug)]
pub(super) enum Creds {
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
    pub(super) fn settled(&self) -> bool {
        matches!(self, Creds::NotNeeded | Creds::Ready)
    }
}

/// The request context's outstanding call-out.
#[derive(Debug)]
pub(super) enum Call {
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
pub(super) struct Rejection {
    pub(super) route: usize,
    pub(super) token: String,
}

/// What a request to a server route carries once its token is accepted.
pub(super) struct RequestInfo {
    pub(super) route: Rc<RouteRuntime>,
    pub(super) identity: Rc<Identity>,
    pub(super) request_id: String,
    pub(super) protocol_version: Option<String>,
    /// `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*` (checked under 2026-07-28).
    pub(super) metadata: RequestHeaders,
    pub(super) http_method: String,
}

/// One request's state machine. The host adapter owns it behind an `Rc<RefCell<…>>` so the
/// body-arrival guard can reach a held request from the VM's tick.
pub struct Exchange {
    /// This exchange, for the body-arrival registry.
    me: Weak<RefCell<Exchange>>,
    /// The host's id of this request's context.
    context_id: u32,
    pub(super) vm: Option<SharedVm>,
    /// The server route the request matched (index into the configuration's routes).
    pub(super) route: Option<usize>,
    pub(super) state: State,
    pub(super) creds: Creds,
    /// The outstanding call-out and what it is for.
    pub(super) call: Option<(u32, Call)>,
    pub(super) rejection: Option<Rejection>,
    /// SHA-256 of the request's bearer token, computed once: the token cache and the
    /// credentials cache are both keyed by it.
    pub(super) token_hash: TokenHash,
    /// The clock (Unix seconds) read once when the token was checked.
    pub(super) now: Option<u64>,
    /// The requests of a body allowed before its credentials were in (to answer a provider
    /// outage in JSON-RPC).
    pub(super) request_ids: Option<RequestIds>,
    /// The response headers are held while the token service hears of an upstream rejection.
    pub(super) response_paused: bool,
    pub(super) request: Option<RequestInfo>,
    /// The request has a body (`end_of_stream` was false with the headers).
    pub(super) has_body: bool,
    /// While waiting for keys: body bytes buffered so far and whether the body is complete.
    pub(super) waiting_body: (usize, bool),
    /// The list requests of a forwarded body, to filter their responses.
    pub(super) list: Option<ListResponse>,
    pub(super) plan: Plan,
    /// Response body bytes buffered so far (for a buffered JSON list response).
    pub(super) response_seen: usize,
    /// The request headers, read once in the header callback.
    pub(super) headers: Headers,
    /// The request headers stay held until the body is decided (hold-headers mode, or a host
    /// that delivered body bytes while they were held).
    pub(super) holds_headers: bool,
    /// The header callback paused the request and nothing has let it go on since.
    headers_held: bool,
    /// The body (or trailers) callback has run.
    body_seen: bool,
    /// This request is in the VM's body-arrival registry.
    guarded: bool,
}

impl Exchange {
    /// A new request's machine, shared with the body-arrival registry by weak reference.
    pub fn shared(vm: Option<SharedVm>, context_id: u32) -> Rc<RefCell<Exchange>> {
        Rc::new_cyclic(|me| {
            RefCell::new(Exchange {
                me: me.clone(),
                context_id,
                vm,
                route: None,
                state: State::Idle,
                creds: Creds::NotNeeded,
                call: None,
                rejection: None,
                token_hash: TokenHash::default(),
                now: None,
                request_ids: None,
                response_paused: false,
                request: None,
                has_body: false,
                waiting_body: (0, false),
                list: None,
                plan: Plan::PassThrough,
                response_seen: 0,
                headers: Headers::default(),
                holds_headers: true,
                headers_held: false,
                body_seen: false,
                guarded: false,
            })
        })
    }

    pub fn on_request_headers<H: Host>(&mut self, host: &H, end_of_stream: bool) -> Action {
        if let Some(vm) = &self.vm {
            self.holds_headers = vm.borrow().config.header_mode == HeaderMode::HoldHeaders;
        }
        let action = self.on_headers(host, end_of_stream);
        self.headers_held = action == Action::Pause && !self.answered();
        self.update_guard(host);
        action
    }

    pub fn on_request_body<H: Host>(
        &mut self,
        host: &H,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        self.body_arrived();
        // While the headers wait for the keys, the credentials or the session, while the body is
        // read, or after a local answer, the body must not slip past: Continue here would resume
        // the stopped request.
        let action = match self.state {
            State::Idle | State::Forwarded => Action::Continue,
            State::WaitingForKeys { .. } => {
                self.waiting_body = (body_size, end_of_stream);
                Action::Pause
            }
            State::Reading(_) => self.on_reading_body(host, body_size, end_of_stream),
            State::Allowed | State::WaitingForSession | State::Answered => Action::Pause,
        };
        self.after_body_callback(host, action)
    }

    pub fn on_request_trailers<H: Host>(&mut self, host: &H) -> Action {
        self.body_arrived();
        // HTTP/2 with trailers: the body callback never saw end_of_stream.
        let action = match self.state {
            State::Idle | State::Forwarded => Action::Continue,
            State::WaitingForKeys { .. } => {
                self.waiting_body.1 = true;
                Action::Pause
            }
            State::Reading(_) => {
                if self.decide_body(host) {
                    Action::Continue
                } else {
                    Action::Pause
                }
            }
            State::Allowed | State::WaitingForSession | State::Answered => Action::Pause,
        };
        self.after_body_callback(host, action)
    }

    pub fn on_response_headers<H: Host>(&mut self, host: &H, end_of_stream: bool) -> Action {
        // The TE is kept for this moment only.
        if let Some(rejection) = self.rejection.take() {
            if let Some(action) = self.check_upstream_rejection(host, rejection) {
                return action;
            }
        }
        self.plan_list_response(host, end_of_stream)
    }

    pub fn on_response_body<H: Host>(
        &mut self,
        host: &H,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if self.response_paused {
            return Action::Pause;
        }
        self.on_list_body(host, body_size, end_of_stream)
    }

    pub fn on_response_trailers<H: Host>(&mut self, host: &H) -> Action {
        if self.response_paused {
            return Action::Pause;
        }
        // A buffered JSON list response with trailers: end_of_stream never came with the body.
        if self.plan == Plan::Buffer {
            let seen = self.response_seen;
            return self.on_list_body(host, seen, true);
        }
        Action::Continue
    }

    /// The answer to this context's call-out `token` (`body_size` bytes of body; the host tells
    /// a timeout or reset by the missing `:status`).
    pub fn on_call_answer<H: Host>(&mut self, host: &H, token: u32, body_size: usize) {
        let Some((id, call)) = self.call.take() else {
            return;
        };
        if id != token {
            self.call = Some((id, call));
            return;
        }
        match call {
            Call::Keys => self.on_keys_answer(host, body_size),
            Call::Credentials {
                route,
                key,
                fetched_at,
            } => self.on_credentials_answer(host, route, key, fetched_at, body_size),
            Call::Session { route, key } => self.on_session_answer(host, route, key, body_size),
            Call::UpstreamRejected { route } => self.on_upstream_rejected_answer(host, route),
        }
        self.release_headers_when_ready(host);
        self.update_guard(host);
    }

    /// The body-arrival guard's deadline passed (the VM's tick): a request still held without a
    /// body gets the error that names the host setting.
    pub fn on_body_timeout<H: Host>(&mut self, host: &H) {
        // The registry let go of this request when it expired.
        self.guarded = false;
        if !self.awaiting_body() {
            return;
        }
        let mut timeout = 0;
        if let Some(Ok(mut vm)) = self.vm.as_ref().map(|vm| vm.try_borrow_mut()) {
            timeout = vm.config.body_arrival_timeout_seconds;
            let config = Rc::clone(&vm.config);
            let route = self.route.and_then(|i| config.routes.get(i));
            vm.note_body_not_delivered(host, route.map_or("?", |r| r.name.as_str()));
        }
        self.respond_reason(
            host,
            &body_arrival::not_delivered(timeout),
            body_arrival::REASON,
        );
    }

    /// The headers are held in the reading state and no body has come: what the guard waits
    /// for.
    fn awaiting_body(&self) -> bool {
        self.holds_headers
            && self.headers_held
            && !self.body_seen
            && matches!(self.state, State::Reading(_))
    }

    /// A body or trailers callback: the host delivers the body. If the headers are still held,
    /// they stay held until the body is decided whatever the mode: resuming them now would pass
    /// the body the host buffered for this filter on, unread.
    fn body_arrived(&mut self) {
        self.body_seen = true;
        if self.headers_held {
            self.holds_headers = true;
        }
    }

    fn after_body_callback<H: Host>(&mut self, host: &H, action: Action) -> Action {
        if action == Action::Continue {
            // Continuing the body continues the held headers with it.
            self.headers_held = false;
        }
        self.update_guard(host);
        action
    }

    /// What the header callback answers once the header phase's work is done: go on, or keep
    /// the headers (waiting for keys, credentials or a session, or holding them for the body).
    pub(super) fn header_action(&self) -> Action {
        match self.state {
            State::Reading(_) if !self.holds_headers && !matches!(self.creds, Creds::Pending) => {
                Action::Continue
            }
            State::Reading(_)
            | State::Allowed
            | State::WaitingForSession
            | State::WaitingForKeys { .. }
            | State::Answered => Action::Pause,
            State::Idle | State::Forwarded => Action::Continue,
        }
    }

    /// After a call-out answer: let held headers go on if the header phase would now.
    fn release_headers_when_ready<H: Host>(&mut self, host: &H) {
        if self.headers_held && self.header_action() == Action::Continue {
            self.resume_request(host);
        }
    }

    /// Puts this request into the VM's body-arrival registry while it awaits its body, and
    /// takes it out when it does not any more.
    fn update_guard<H: Host>(&mut self, host: &H) {
        let awaiting = self.awaiting_body();
        if awaiting == self.guarded {
            return;
        }
        let Some(vm) = &self.vm else { return };
        let Ok(mut vm) = vm.try_borrow_mut() else {
            return;
        };
        if awaiting {
            let Some(now) = host.now().or(self.now) else {
                return;
            };
            // Whole seconds: one more, so no request is answered before the full timeout.
            let deadline = now
                .saturating_add(vm.config.body_arrival_timeout_seconds)
                .saturating_add(1);
            vm.held.hold(self.context_id, deadline, self.me.clone());
            self.guarded = true;
        } else {
            vm.held.release(self.context_id, self.body_seen);
            self.guarded = false;
        }
    }

    pub(super) fn respond<H: Host>(&mut self, host: &H, response: &LocalResponse) -> Action {
        self.state = State::Answered;
        // The TE is not needed any more.
        self.rejection = None;
        if let Err(e) = host.send_response(response) {
            host.log(
                LogLevel::Error,
                &format!("mcpgate: cannot send a local response: {e}"),
            );
        }
        Action::Pause
    }

    /// A local answer refusing the request, with its audit reason.
    pub(super) fn respond_reason<H: Host>(
        &mut self,
        host: &H,
        response: &LocalResponse,
        reason: &str,
    ) -> Action {
        set_audit(host, "mcpgate_decision", Verdict::Reject.as_str());
        set_audit(host, "mcpgate_reason", reason);
        self.respond(host, response)
    }

    pub(super) fn answered(&self) -> bool {
        matches!(self.state, State::Answered)
    }

    pub(super) fn vm_bump(&self, family: &'static str, label: &'static str) {
        if let Some(vm) = &self.vm {
            vm.borrow_mut().bump_labelled(family, label, "");
        }
    }

    pub(super) fn resume_request<H: Host>(&mut self, host: &H) {
        self.headers_held = false;
        if let Err(e) = host.resume_request() {
            host.log(
                LogLevel::Error,
                &format!("mcpgate: cannot resume the request: {e}"),
            );
        }
    }

    /// The request id the body decision answers with (empty before the token is accepted).
    pub(super) fn request_id(&self) -> String {
        self.request
            .as_ref()
            .map(|r| r.request_id.clone())
            .unwrap_or_default()
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // A request that went away while held (the client gave up) leaves the registry now
        // rather than at its deadline.
        if self.guarded {
            if let Some(Ok(mut vm)) = self.vm.as_ref().map(|vm| vm.try_borrow_mut()) {
                vm.held.release(self.context_id, false);
            }
        }
    }
}

/// Writes one audit field to filter state (`wasm.<name>`); empty values are left unset.
pub(super) fn set_audit<H: Host>(host: &H, name: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    if let Err(e) = host.set_property(name, value.as_bytes()) {
        host.log(LogLevel::Debug, &format!("mcpgate: cannot set {name}: {e}"));
    }
}
