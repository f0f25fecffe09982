//! The per-request context: what a request is waiting for, the host callbacks (dispatched to the
//! server-route, client-route and response modules), local answers and the audit fields.

use std::rc::Rc;

use mcpgate_policy::Identity;
use mcpgate_protocol::body::BodyAccumulator;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use super::headers::Headers;
use super::log;
use super::vm::{RouteRuntime, SharedVm};
use crate::challenge::LocalResponse;
use crate::credentials::{CacheKey, RequestIds};
use crate::decision::Verdict;
use crate::list_response::{ListResponse, Plan};
use crate::token_cache::TokenHash;

pub(super) enum State {
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
    pub(super) http_method: String,
}

pub struct Http {
    pub(super) vm: Option<SharedVm>,
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
}

/// Writes one audit field to filter state (`wasm.<name>`); empty values are left unset.
pub(super) fn set_audit(name: &str, value: &str) {
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
    pub(super) fn new(vm: Option<SharedVm>) -> Self {
        Http {
            vm,
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
        }
    }

    pub(super) fn respond(&mut self, response: &LocalResponse) -> Action {
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
    pub(super) fn respond_reason(&mut self, response: &LocalResponse, reason: &str) -> Action {
        set_audit("mcpgate_decision", Verdict::Reject.as_str());
        set_audit("mcpgate_reason", reason);
        self.respond(response)
    }

    pub(super) fn answered(&self) -> bool {
        matches!(self.state, State::Answered)
    }

    pub(super) fn vm_bump(&self, family: &'static str, label: &'static str) {
        if let Some(vm) = &self.vm {
            vm.borrow_mut().bump_labelled(family, label, "");
        }
    }

    pub(super) fn resume_request(&self) {
        if let Err(status) = hostcalls::resume_http_request() {
            log(
                LogLevel::Error,
                &format!("mcpgate: cannot resume the request: {status:?}"),
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
        self.plan_list_response(end_of_stream)
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
