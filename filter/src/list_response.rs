//! Filtering the responses to list requests (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`) so a user sees only entries the policy lets them use
//! (`Policy::allows_target`). No host calls.
//!
//! - `application/json`: the host buffers the body; [`ListResponse::filter_json`] rewrites it
//!   once at end of stream.
//! - `text/event-stream`: every chunk goes through [`ListResponse::push_sse`], which returns the
//!   complete events seen so far (filtered) and keeps the unfinished tail for the next chunk; the
//!   stream is never buffered as a whole.
//! - Anything else passes untouched (an error page is no list).
//!
//! Fail closed: a list response that cannot be read is replaced by a JSON-RPC error (JSON) or
//! ends with an error event and nothing after it (SSE).

use mcpgate_policy::{list_entry_method, Identity, Policy};
use mcpgate_protocol::jsonrpc::{self, Limits};
use mcpgate_protocol::list_filter::ListKind;
use mcpgate_protocol::request_checks::{self, ResponseBody};
use mcpgate_protocol::request_metadata::{self, ParamHeader};
use mcpgate_protocol::sse::SseRewriter;
use mcpgate_protocol::Error;

use crate::decision::ListRequests;

/// Largest list response (JSON body or one SSE event) the filter reads.
pub use mcpgate_config::filter::MAX_LIST_RESPONSE_BYTES;
/// JSON-RPC internal error, for a list response that could not be checked.
pub const INTERNAL_ERROR: i64 = -32603;

const LIMITS: Limits = Limits {
    max_bytes: MAX_LIST_RESPONSE_BYTES,
    max_depth: jsonrpc::DEFAULT_MAX_DEPTH,
};

/// How the response body is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Buffer the whole body (hold it until end of stream), then [`ListResponse::filter_json`].
    Buffer,
    /// Rewrite chunk by chunk with [`ListResponse::push_sse`] / [`ListResponse::finish_sse`].
    Stream,
    /// Leave it alone.
    PassThrough,
}

#[derive(Debug)]
enum Mode {
    Idle,
    Sse(Box<SseRewriter>),
    /// The stream failed; everything after the error event is dropped.
    Failed,
}

/// The response side of one exchange that carried list requests.
#[derive(Debug)]
pub struct ListResponse {
    requests: ListRequests,
    mode: Mode,
    /// The response's `Content-Encoding`, when it is not identity: such a body cannot be read,
    /// so it is replaced by an error rather than passed on unchecked.
    encoding: Option<String>,
    /// `x-mcp-header` annotations of the tools this answer listed, for the caller to keep.
    learned: Vec<(String, Option<Vec<ParamHeader>>)>,
}

/// The method whose permission decides whether a list entry is shown.
pub fn entry_method(kind: ListKind) -> &'static str {
    // Resource templates are read through `resources/read` like resources.
    list_entry_method(kind.method()).unwrap_or("resources/read")
}

impl ListResponse {
    pub fn new(requests: ListRequests) -> Self {
        ListResponse {
            requests,
            mode: Mode::Idle,
            encoding: None,
            learned: Vec::new(),
        }
    }

    /// Chooses the plan from the response `Content-Type` and `Content-Encoding`. Fail closed: an
    /// answer to a list request that cannot be read (compressed, or of another content type) is
    /// buffered and replaced, never passed on unchecked.
    pub fn plan(&mut self, content_type: Option<&str>, content_encoding: Option<&str>) -> Plan {
        self.encoding = content_encoding
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
            .map(str::to_owned);
        if self.encoding.is_some() {
            return Plan::Buffer;
        }
        match request_checks::response_body(content_type) {
            ResponseBody::Json => Plan::Buffer,
            ResponseBody::EventStream => {
                self.mode = Mode::Sse(Box::new(SseRewriter::new(MAX_LIST_RESPONSE_BYTES)));
                Plan::Stream
            }
            // A body-less exchange (a GET stream) asked for no list: its other answers
            // (a 405, an HTML error page) are not list responses.
            ResponseBody::Other if self.requests.kinds.is_empty() => Plan::PassThrough,
            ResponseBody::Other => Plan::Buffer,
        }
    }

    /// Whether the response's content encoding must be dropped with its replaced body.
    pub fn is_encoded(&self) -> bool {
        self.encoding.is_some()
    }

    /// Whether an entry name is shown: allowed for every list kind this exchange asked for (one,
    /// almost always; for a 2025-03-26 batch mixing kinds, the strictest answer).
    fn allows(&self, policy: &Policy, identity: &Identity, name: &str) -> bool {
        let kinds: &[ListKind] = if self.requests.kinds.is_empty() {
            &ListKind::ALL
        } else {
            &self.requests.kinds
        };
        kinds
            .iter()
            .all(|kind| policy.allows_target(identity, entry_method(*kind), name))
    }

    /// Filters a complete JSON response body: `None` to leave it as it is, `Some(bytes)` to
    /// replace it (filtered, or an error when it could not be checked).
    pub fn filter_json(
        &self,
        body: &[u8],
        policy: &Policy,
        identity: &Identity,
    ) -> Option<Vec<u8>> {
        if let Some(found) = &self.encoding {
            let error = Error::ContentEncoding {
                found: found.clone(),
            };
            return Some(unreadable(&error).into_bytes());
        }
        let result = std::str::from_utf8(body)
            .map_err(|e| Error::InvalidUtf8 {
                offset: e.valid_up_to(),
            })
            .and_then(|text| {
                self.requests
                    .tracker
                    .filter_body(text, &LIMITS, |name| self.allows(policy, identity, name))
            });
        match result {
            Ok(filtered) => filtered.body.map(String::into_bytes),
            Err(e) => Some(unreadable(&e).into_bytes()),
        }
    }

    /// Reads the tools' `x-mcp-header` annotations from a complete JSON answer (the one
    /// [`ListResponse::filter_json`] checked) for [`ListResponse::take_learned`].
    pub fn learn_json(&mut self, body: &[u8]) {
        if self.encoding.is_some() || !self.requests.kinds.contains(&ListKind::Tools) {
            return;
        }
        if let Ok(text) = std::str::from_utf8(body) {
            self.learned
                .extend(request_metadata::tools_param_headers(text));
        }
    }

    /// The tools' `x-mcp-header` annotations read from the answer so far (taken once).
    pub fn take_learned(&mut self) -> Vec<(String, Option<Vec<ParamHeader>>)> {
        std::mem::take(&mut self.learned)
    }

    /// Feeds one SSE chunk; returns the bytes to send in its place.
    pub fn push_sse(&mut self, chunk: &[u8], policy: &Policy, identity: &Identity) -> Vec<u8> {
        self.sse(policy, identity, |rewriter, rewrite| {
            rewriter.push(chunk, rewrite)
        })
    }

    /// Ends the SSE stream; returns the last bytes to send (an unterminated final event).
    pub fn finish_sse(&mut self, policy: &Policy, identity: &Identity) -> Vec<u8> {
        self.sse(policy, identity, |rewriter, rewrite| {
            rewriter.finish(rewrite)
        })
    }

    fn sse<F>(&mut self, policy: &Policy, identity: &Identity, step: F) -> Vec<u8>
    where
        F: FnOnce(
            &mut SseRewriter,
            &mut dyn FnMut(&mcpgate_protocol::sse::Event) -> Result<Option<String>, Error>,
        ) -> Result<Vec<u8>, Error>,
    {
        let mode = std::mem::replace(&mut self.mode, Mode::Failed);
        let Mode::Sse(mut rewriter) = mode else {
            self.mode = mode;
            return Vec::new();
        };
        let this = &*self;
        let tools = this.requests.kinds.contains(&ListKind::Tools);
        let mut learned = Vec::new();
        let mut rewrite = |event: &mcpgate_protocol::sse::Event| -> Result<Option<String>, Error> {
            let filtered = this
                .requests
                .tracker
                .filter_body(&event.data, &LIMITS, |name| {
                    this.allows(policy, identity, name)
                })
                .map(|f| f.body);
            if tools && filtered.is_ok() {
                learned.extend(request_metadata::tools_param_headers(&event.data));
            }
            filtered
        };
        let stepped = step(&mut rewriter, &mut rewrite);
        self.learned.extend(learned);
        match stepped {
            Ok(out) => {
                self.mode = Mode::Sse(rewriter);
                out
            }
            Err(e) => {
                let mut out = b"event: message\ndata: ".to_vec();
                out.extend_from_slice(unreadable(&e).as_bytes());
                out.extend_from_slice(b"\n\n");
                out
            }
        }
    }

    /// Whether the SSE stream failed (later chunks are dropped).
    pub fn failed(&self) -> bool {
        matches!(self.mode, Mode::Failed)
    }
}

/// The JSON-RPC error that replaces a list response the filter could not check.
fn unreadable(error: &Error) -> String {
    jsonrpc::error_response(
        None,
        INTERNAL_ERROR,
        &format!("mcpgate: the list response could not be checked: {error}"),
    )
}

#[cfg(test)]
#[path = "list_response_tests.rs"]
mod tests;
