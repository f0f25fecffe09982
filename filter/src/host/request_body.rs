//! A server route's request after its token: the header checks of a body (`Content-Type`,
//! `Content-Encoding`, `Content-Length`), reading it chunk by chunk, and the policy decision on
//! it (or on the identity alone for a request without one), recorded for the audit and stats.

use mcpgate_protocol::body::BodyAccumulator;
use mcpgate_protocol::jsonrpc::Limits;
use mcpgate_protocol::request_checks;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType};

use super::http::{set_audit, Creds, Http, RequestInfo, State};
use crate::credentials::RequestIds;
use crate::decision::{self, DecisionContext, Outcome};
use crate::list_response::ListResponse;

impl Http {
    /// After the token check: a body-less request is decided now; a request with a body gets its
    /// header checks and moves to [`State::Reading`]. `Some(action)` when answered locally (or
    /// held for its credentials).
    pub(super) fn check_request_headers(&mut self) -> Option<Action> {
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

    /// [`Http::read_body`]; a body the accumulator refuses is rejected and answered (false).
    pub(super) fn read_body_or_reject(&mut self, body_size: usize) -> bool {
        if let Err(e) = self.read_body(body_size) {
            let request_id = self.request_id();
            self.apply(decision::reject(&e, &request_id));
            return false;
        }
        true
    }

    /// The body is complete: parse, decide, record. True when it may go on now.
    pub(super) fn decide_body(&mut self) -> bool {
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
    pub(super) fn on_reading_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.read_body_or_reject(body_size) {
            return Action::Pause;
        }
        if end_of_stream && self.decide_body() {
            return Action::Continue;
        }
        Action::Pause
    }
}
