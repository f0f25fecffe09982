//! A server route's request after its token: the header checks of a body (`Content-Type`,
//! `Content-Encoding`, `Content-Length`), reading it chunk by chunk, and the policy decision on
//! it (or on the identity alone for a request without one), recorded for the audit and stats.

use mcpgate_protocol::body::BodyAccumulator;
use mcpgate_protocol::jsonrpc::{Limits, Revision};
use mcpgate_protocol::request_checks;

use super::exchange::{set_audit, Creds, Exchange, RequestInfo, State};
use super::host::{Action, Host, Side};
use super::param_headers;
use crate::credentials::RequestIds;
use crate::decision::{self, DecisionContext, Outcome, RequestExtras};
use crate::list_response::ListResponse;

impl Exchange {
    /// After the token check: a body-less request is decided now; a request with a body gets its
    /// header checks and moves to [`State::Reading`] (or is answered locally).
    pub(super) fn check_request_headers<H: Host>(&mut self, host: &H) {
        if self.answered() {
            return;
        }
        let Some(request) = self.request.as_ref() else {
            return;
        };
        if !self.has_body {
            let outcome =
                decision::decide_without_body(&self.context(request), &request.http_method);
            self.apply(host, outcome);
            return;
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
            self.apply(host, outcome);
            return;
        }
        self.state = State::Reading(body);
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
    fn apply<H: Host>(&mut self, host: &H, outcome: Outcome) -> bool {
        set_audit(host, "mcpgate_method", &outcome.audit.method);
        set_audit(host, "mcpgate_target", &outcome.audit.target);
        set_audit(host, "mcpgate_arguments", &outcome.audit.arguments);
        set_audit(host, "mcpgate_decision", outcome.verdict.as_str());
        set_audit(host, "mcpgate_reason", &outcome.audit.reason);
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
            self.respond(host, response);
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
                self.answer_upstream_unavailable(host, &description);
                false
            }
        }
    }

    /// Reads the new bytes of the buffered body (`body_size` in total so far).
    fn read_body<H: Host>(
        &mut self,
        host: &H,
        body_size: usize,
    ) -> Result<(), mcpgate_protocol::Error> {
        let State::Reading(body) = &mut self.state else {
            return Ok(());
        };
        let seen = body.len();
        if body_size <= seen {
            return Ok(());
        }
        let chunk = host
            .body(Side::Request, seen, body_size.saturating_sub(seen))
            .unwrap_or_default();
        body.push(&chunk)
    }

    /// [`Exchange::read_body`]; a body the accumulator refuses is rejected and answered (false).
    pub(super) fn read_body_or_reject<H: Host>(&mut self, host: &H, body_size: usize) -> bool {
        if let Err(e) = self.read_body(host, body_size) {
            let request_id = self.request_id();
            self.apply(host, decision::reject(&e, &request_id));
            return false;
        }
        true
    }

    /// The body is complete: parse, decide, record. True when it may go on now.
    pub(super) fn decide_body<H: Host>(&mut self, host: &H) -> bool {
        let State::Reading(body) = std::mem::replace(&mut self.state, State::Answered) else {
            return false;
        };
        let Some(request) = self.request.as_ref() else {
            return false;
        };
        // Methods 2026-07-28 removed are the server's to answer, not shape-checked here.
        let revision = Revision::of(request.protocol_version.as_deref());
        let parsed = body.parse_for(&Limits::default(), revision);
        if !self.creds.settled() {
            // Kept to answer each request if the provider turns out to be down.
            self.request_ids = parsed.as_ref().ok().map(RequestIds::of);
        }
        let prefix = &request.route.param_key_prefix;
        let lookup = |tool: &str| param_headers::load(host, prefix, tool);
        let extras = RequestExtras {
            raw_body: body.bytes(),
            metadata: Some(&request.metadata),
            tool_params: Some(&lookup),
        };
        let outcome = decision::decide_request(&self.context(request), parsed, &extras);
        self.apply(host, outcome)
    }

    /// Body callback while reading: `Continue` once allowed.
    pub(super) fn on_reading_body<H: Host>(
        &mut self,
        host: &H,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if !self.read_body_or_reject(host, body_size) {
            return Action::Pause;
        }
        if end_of_stream && self.decide_body(host) {
            return Action::Continue;
        }
        Action::Pause
    }
}
