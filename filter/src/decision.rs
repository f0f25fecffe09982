//! From a parsed request body (or its absence), the caller's identity and the route's policy to
//! an [`Outcome`]: forward or answer locally, with the audit record and the metric labels.
//! No host calls (architecture.md, "MCP message handling in the filter").
//!
//! | case | answer |
//! |---|---|
//! | allowed | forwarded; list requests are remembered for the response ([`Outcome::lists`]) |
//! | denied JSON-RPC request | 200, JSON-RPC error `-32001` with the request's raw id |
//! | denied notification / response / body-less request | 403, JSON body |
//! | batch, protocol ≥ 2025-06-18 or no `MCP-Protocol-Version` | 400, `-32600`, `id: null` |
//! | batch, 2025-03-26 | every element evaluated; one denial denies the whole batch |
//! | body over the limit | 413 |
//! | wrong `Content-Type` / any `Content-Encoding` | 415 |
//! | 2026-07-28: a metadata header missing or disagreeing with the body | 400, `-32020` `HeaderMismatch`, the request's id |
//! | any other parse failure | 400, the error's JSON-RPC code, the request's id when it could be read, else `null` |
//!
//! A rejection's audit record names the method and target when the body told them.

use mcpgate_policy::{Identity, Policy, Reason, Request};
use mcpgate_protocol::json::Value as RawValue;
use mcpgate_protocol::jsonrpc::{self, Body, Kind, Message, Salvaged};
use mcpgate_protocol::list_filter::{ListKind, ResponseTracker, DISCOVER_METHOD};
use mcpgate_protocol::request_metadata::{self, ParamHeader, RequestHeaders};
use mcpgate_protocol::Error;
use serde_json::{json, Value};

use crate::audit::Redaction;
use crate::challenge::{LocalResponse, ALLOW_ORIGIN, EXPOSE_HEADERS};

/// JSON-RPC error code of a policy denial (implementation-defined server error range).
pub const POLICY_DENIED_CODE: i64 = -32001;

/// The audit `decision` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    Reject,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Reject => "reject",
        }
    }
}

/// What the audit record says about the request (the identity fields come from the token).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFields {
    /// JSON-RPC method(s), comma-separated for a batch.
    pub method: String,
    /// Tool / prompt name or resource URI (comma-separated for a batch).
    pub target: String,
    /// Redacted, capped arguments (a JSON array of them for a batch); empty when none.
    pub arguments: String,
    /// Rule id, policy reason code or rejection reason.
    pub reason: String,
}

/// The result of deciding a request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The local answer for a denied or rejected request; `None`: forward it.
    pub response: Option<LocalResponse>,
    pub audit: AuditFields,
    /// The list requests in an allowed body, to match and filter their responses.
    pub lists: Option<ListRequests>,
    /// Bounded metric label for the method (`other` for unknown methods, `batch`, `none`).
    pub metric_method: &'static str,
    /// Stable rejection reason (for the rejection counter), when rejected.
    pub reject_reason: Option<&'static str>,
}

/// The list requests of one forwarded body.
#[derive(Debug, Clone, Default)]
pub struct ListRequests {
    pub tracker: ResponseTracker,
    /// The kinds asked for (deduplicated, in request order).
    pub kinds: Vec<ListKind>,
}

/// Everything a decision needs besides the body.
#[derive(Debug, Clone, Copy)]
pub struct DecisionContext<'a> {
    pub policy: &'a Policy,
    pub identity: &'a Identity,
    /// Envoy's `x-request-id` (empty if absent).
    pub request_id: &'a str,
    /// `MCP-Protocol-Version`, if sent.
    pub protocol_version: Option<&'a str>,
    pub redaction: &'a Redaction,
}

/// Known MCP methods: metric labels are bounded to these (a client chooses the method string).
const KNOWN_METHODS: [&str; 26] = [
    "initialize",
    "server/discover",
    "subscriptions/listen",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "tasks/get",
    "tasks/list",
    "tasks/cancel",
    "tasks/result",
];

/// A bounded label for `method` (`/` becomes `_` so stat names stay plain).
pub fn metric_method(method: Option<&str>) -> &'static str {
    const LABELS: [&str; 26] = [
        "initialize",
        "server_discover",
        "subscriptions_listen",
        "ping",
        "tools_list",
        "tools_call",
        "prompts_list",
        "prompts_get",
        "resources_list",
        "resources_templates_list",
        "resources_read",
        "resources_subscribe",
        "resources_unsubscribe",
        "completion_complete",
        "logging_setLevel",
        "notifications_initialized",
        "notifications_cancelled",
        "notifications_progress",
        "notifications_roots_list_changed",
        "sampling_createMessage",
        "elicitation_create",
        "roots_list",
        "tasks_get",
        "tasks_list",
        "tasks_cancel",
        "tasks_result",
    ];
    let Some(method) = method else {
        return "none";
    };
    KNOWN_METHODS
        .iter()
        .zip(LABELS)
        .find(|(m, _)| **m == method)
        .map_or("other", |(_, label)| label)
}

/// The HTTP status of a rejection.
pub fn reject_status(error: &Error) -> u32 {
    match error {
        Error::TooLarge { .. } => 413,
        Error::ContentType { .. } | Error::ContentEncoding { .. } => 415,
        _ => 400,
    }
}

/// A request refused before (or instead of) evaluation: a header check, the size limit or a
/// parse failure, before anything of the body was read. Answered with `id: null`.
pub fn reject(error: &Error, request_id: &str) -> Outcome {
    reject_request(error, request_id, &Salvaged::default())
}

/// A refused request whose body told its id, method or target (any of them may be unknown): the
/// answer echoes the id (byte for byte) and the audit record names the call.
pub fn reject_request(error: &Error, request_id: &str, known: &Salvaged) -> Outcome {
    let message = format!("mcpgate: {error} (request {request_id})");
    let body = jsonrpc_error_body(
        known.id_raw.as_deref().unwrap_or("null"),
        error.jsonrpc_code(),
        &message,
        request_id,
        error.reason(),
    );
    Outcome {
        verdict: Verdict::Reject,
        response: Some(json_response(reject_status(error), body)),
        audit: AuditFields {
            method: known.method.clone().unwrap_or_default(),
            target: known.target.clone().unwrap_or_default(),
            reason: error.reason().to_owned(),
            ..AuditFields::default()
        },
        lists: None,
        metric_method: "none",
        reject_reason: Some(error.reason()),
    }
}

/// What a rejected message's body told.
fn known_of(message: &Message<'_>) -> Salvaged {
    Salvaged {
        id_raw: message.id().map(|id| id.raw().to_owned()),
        method: message.method().map(str::to_owned),
        target: message.target().map(str::to_owned),
    }
}

/// A request without a body (a GET stream, a DELETE): decided on identity alone. From
/// 2026-07-28 on there is no GET stream and no session to delete: 405, as the server would.
pub fn decide_without_body(ctx: &DecisionContext<'_>, http_method: &str) -> Outcome {
    if request_metadata::requires_header_validation(ctx.protocol_version)
        && matches!(http_method, "GET" | "DELETE")
    {
        return method_not_allowed(ctx, http_method);
    }
    let allowed = ctx.policy.allows_identity(ctx.identity);
    let reason = identity_reason(allowed);
    let response = (!allowed).then(|| {
        forbidden(
            &format!(
                "mcpgate: {http_method} denied by policy (request {})",
                ctx.request_id
            ),
            ctx.request_id,
            reason,
        )
    });
    Outcome {
        verdict: if allowed {
            Verdict::Allow
        } else {
            Verdict::Deny
        },
        response,
        audit: AuditFields {
            reason: reason.to_owned(),
            ..AuditFields::default()
        },
        // A GET stream (standalone or resuming a POST's stream with Last-Event-ID) carries
        // answers to no request of this exchange: list-shaped results on it are filtered too,
        // under the strictest reading of every list kind.
        lists: allowed.then(|| ListRequests {
            tracker: ResponseTracker::new(),
            kinds: Vec::new(),
        }),
        metric_method: "none",
        reject_reason: None,
    }
}

fn method_not_allowed(ctx: &DecisionContext<'_>, http_method: &str) -> Outcome {
    const REASON: &str = "method_not_allowed";
    let body = json!({
        "error": REASON,
        "error_description": format!(
            "mcpgate: {http_method} is not part of MCP {}: every request is a POST (request {})",
            ctx.protocol_version.unwrap_or_default(),
            ctx.request_id
        ),
        "request_id": ctx.request_id,
    });
    let mut response = json_response(405, body.to_string());
    response.headers.push(("allow", "POST".into()));
    Outcome {
        verdict: Verdict::Reject,
        response: Some(response),
        audit: AuditFields {
            reason: REASON.to_owned(),
            ..AuditFields::default()
        },
        lists: None,
        metric_method: "none",
        reject_reason: Some(REASON),
    }
}

/// Decides a complete body (the result of [`mcpgate_protocol::body::BodyAccumulator::parse`])
/// without the 2026-07-28 header checks (see [`decide_request`]).
pub fn decide_body(ctx: &DecisionContext<'_>, parsed: Result<Body<'_>, Error>) -> Outcome {
    decide_request(ctx, parsed, &RequestExtras::default())
}

/// Finds the `x-mcp-header` annotations of a tool by name.
pub type ToolParamsLookup<'a> = &'a dyn Fn(&str) -> Option<Vec<ParamHeader>>;

/// What a decision reads besides the parsed body.
#[derive(Default)]
pub struct RequestExtras<'a> {
    /// The body's bytes, to read the id of a body the parser refused.
    pub raw_body: &'a [u8],
    /// The request's metadata headers (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`,
    /// `Mcp-Param-*`); `None`: not checked.
    pub metadata: Option<&'a RequestHeaders>,
    /// The `x-mcp-header` annotations of a tool, when the gateway has seen its definition.
    pub tool_params: Option<ToolParamsLookup<'a>>,
}

/// [`decide_body`] with the header checks of 2026-07-28 and the ids of refused bodies.
pub fn decide_request(
    ctx: &DecisionContext<'_>,
    parsed: Result<Body<'_>, Error>,
    extras: &RequestExtras<'_>,
) -> Outcome {
    let body = match parsed {
        Ok(body) => body,
        Err(e) => {
            // The body may still be readable JSON with an id (e.g. a tools/call without a
            // name): answer with it so the client can match the error to its request.
            let known =
                jsonrpc::salvage(extras.raw_body, &jsonrpc::Limits::default()).unwrap_or_default();
            return reject_request(&e, ctx.request_id, &known);
        }
    };
    if body.is_batch() && !batch_accepted(ctx.protocol_version) {
        return reject(&Error::Batch, ctx.request_id);
    }
    if let (Some(metadata), Body::Single(message)) = (extras.metadata, &body) {
        let version = request_metadata::protocol_version(ctx.protocol_version, Some(message));
        // Older revisions define none of these headers: they are ignored, as before.
        if request_metadata::requires_header_validation(version) {
            let params = match (extras.tool_params, message.method(), message.target()) {
                (Some(lookup), Some("tools/call"), Some(tool)) => lookup(tool),
                _ => None,
            };
            if let Err(e) = request_metadata::check_headers(message, metadata, params.as_deref()) {
                return reject_request(&e, ctx.request_id, &known_of(message));
            }
        }
    }
    if let Some(outcome) = removed_method_without_target(ctx, &body) {
        return outcome;
    }
    let messages = body.messages();
    // Arguments become `serde_json` values only for a policy that reads them (the audit record
    // renders them from the parsed body, up to its byte cap).
    let uses_arguments = ctx.policy.uses_arguments();
    let mut evaluated = Vec::with_capacity(messages.len());
    for message in messages {
        match evaluate(ctx, message, uses_arguments) {
            Ok(e) => evaluated.push(e),
            Err(e) if body.is_batch() => return reject(&e, ctx.request_id),
            Err(e) => return reject_request(&e, ctx.request_id, &known_of(message)),
        }
    }
    let audit = audit_fields(ctx, &body, &evaluated);
    let metric_method = if body.is_batch() {
        "batch"
    } else {
        metric_method(messages.first().and_then(Message::method))
    };
    let denied = evaluated.iter().position(|e| !e.allowed);
    let Some(denied) = denied else {
        return Outcome {
            verdict: Verdict::Allow,
            response: None,
            audit,
            lists: list_requests(&body),
            metric_method,
            reject_reason: None,
        };
    };
    let response = denial_response(ctx, &body, &evaluated, denied);
    Outcome {
        verdict: Verdict::Deny,
        response: Some(response),
        audit,
        lists: None,
        metric_method,
        reject_reason: None,
    }
}

/// JSON-RPC "Method not found".
pub const METHOD_NOT_FOUND_CODE: i64 = -32601;

/// Under 2026-07-28, `resources/subscribe|unsubscribe` without a URI: a removed method that names
/// nothing the policy could decide on. Answered as the revision prescribes for a method a server
/// does not implement (404, `-32601`), since no server of that revision has it.
fn removed_method_without_target(ctx: &DecisionContext<'_>, body: &Body<'_>) -> Option<Outcome> {
    let Body::Single(message) = body else {
        return None;
    };
    let method = message.method()?;
    if jsonrpc::Revision::of(ctx.protocol_version) != jsonrpc::Revision::Stateless
        || !jsonrpc::REMOVED_RESOURCE_METHODS.contains(&method)
        || message.target().is_some()
    {
        return None;
    }
    let known = known_of(message);
    let message_text = format!(
        "mcpgate: {method} was removed in MCP 2026-07-28 (request {})",
        ctx.request_id
    );
    let body = jsonrpc_error_body(
        known.id_raw.as_deref().unwrap_or("null"),
        METHOD_NOT_FOUND_CODE,
        &message_text,
        ctx.request_id,
        "removed_method",
    );
    Some(Outcome {
        verdict: Verdict::Reject,
        response: Some(json_response(404, body)),
        audit: AuditFields {
            method: method.to_owned(),
            reason: "removed_method".to_owned(),
            ..AuditFields::default()
        },
        lists: None,
        metric_method: metric_method(Some(method)),
        reject_reason: Some("removed_method"),
    })
}

/// Batches only for an explicit `MCP-Protocol-Version: 2025-03-26`; a request without the header
/// is treated as the newest version (no batches).
pub fn batch_accepted(protocol_version: Option<&str>) -> bool {
    protocol_version.is_some() && jsonrpc::batches_allowed(protocol_version)
}

/// One evaluated message.
struct Evaluated<'m, 'a> {
    allowed: bool,
    reason: String,
    arguments: Option<&'m RawValue<'a>>,
}

fn evaluate<'m, 'a>(
    ctx: &DecisionContext<'_>,
    message: &'m Message<'a>,
    uses_arguments: bool,
) -> Result<Evaluated<'m, 'a>, Error> {
    if message.kind() == Kind::Response {
        // A client's answer to a server request (sampling, elicitation) acts on nothing:
        // decided on identity alone, like a body-less request.
        let allowed = ctx.policy.allows_identity(ctx.identity);
        return Ok(Evaluated {
            allowed,
            reason: identity_reason(allowed).to_owned(),
            arguments: None,
        });
    }
    let arguments = message.arguments();
    // The same refusal as converting them (numbers beyond `f64`), whether or not they are.
    if let Some(raw) = arguments {
        raw.check_numbers()?;
    }
    let converted = if uses_arguments {
        arguments.map(RawValue::to_serde_json).transpose()?
    } else {
        None
    };
    let mut request = Request::new(ctx.identity);
    if let Some(method) = message.method() {
        request = request.method(method);
    }
    if let Some(target) = message.target() {
        request = request.target(target);
    }
    if let Some(arguments) = &converted {
        request = request.arguments(arguments);
    }
    let decision = ctx.policy.evaluate(&request);
    Ok(Evaluated {
        allowed: decision.allowed,
        reason: reason_label(&decision.reason).to_owned(),
        arguments,
    })
}

/// The audit/response reason: the rule id when a rule decided, else the reason code.
fn reason_label<'p>(reason: &Reason<'p>) -> &'p str {
    reason.rule().unwrap_or_else(|| reason.code())
}

fn identity_reason(allowed: bool) -> &'static str {
    if allowed {
        "identity_allowed"
    } else {
        "identity_denied"
    }
}

fn audit_fields(
    ctx: &DecisionContext<'_>,
    body: &Body<'_>,
    evaluated: &[Evaluated],
) -> AuditFields {
    let messages = body.messages();
    let join = |f: &dyn Fn(&Message<'_>) -> Option<String>| -> String {
        messages.iter().filter_map(f).collect::<Vec<_>>().join(",")
    };
    let method = join(&|m| m.method().map(str::to_owned));
    let target = join(&|m| m.target().map(str::to_owned));
    let arguments = if body.is_batch() {
        if evaluated.iter().all(|e| e.arguments.is_none()) {
            String::new()
        } else {
            let all = Value::Array(
                evaluated
                    .iter()
                    .map(|e| {
                        e.arguments
                            .and_then(|a| a.to_serde_json().ok())
                            .unwrap_or(Value::Null)
                    })
                    .collect(),
            );
            ctx.redaction.render(&all)
        }
    } else {
        evaluated
            .first()
            .and_then(|e| e.arguments)
            .map(|a| ctx.redaction.render_raw(a))
            .unwrap_or_default()
    };
    // The deciding reason: the first denial's, else the first message's.
    let reason = evaluated
        .iter()
        .find(|e| !e.allowed)
        .or(evaluated.first())
        .map(|e| e.reason.clone())
        .unwrap_or_default();
    AuditFields {
        method,
        target,
        arguments,
        reason,
    }
}

fn list_requests(body: &Body<'_>) -> Option<ListRequests> {
    let mut kinds = Vec::new();
    let mut discover = false;
    for message in body.messages() {
        if message.kind() != Kind::Request {
            continue;
        }
        discover |= message.method() == Some(DISCOVER_METHOD);
        if let Some(kind) = message.method().and_then(ListKind::from_method) {
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
    }
    // A `server/discover` answer is watched too, in case it carries a list (judged by shape;
    // with no list kind asked for, its entries are held to every kind's permission).
    if kinds.is_empty() && !discover {
        return None;
    }
    let mut tracker = ResponseTracker::new();
    tracker.record_body(body);
    Some(ListRequests { tracker, kinds })
}

/// `tools/call 'admin_x'` or `initialize`.
fn describe(message: &Message<'_>) -> String {
    let method = message.method().unwrap_or("response");
    match message.target() {
        Some(target) => format!("{method} '{target}'"),
        None => method.to_owned(),
    }
}

fn denial_response(
    ctx: &DecisionContext<'_>,
    body: &Body<'_>,
    evaluated: &[Evaluated],
    denied: usize,
) -> LocalResponse {
    let messages = body.messages();
    let rid = ctx.request_id;
    let denied_message = messages.get(denied);
    let denied_reason = evaluated.get(denied).map_or("", |e| e.reason.as_str());
    let denied_text = denied_message.map(describe).unwrap_or_default();
    let calls: Vec<(usize, &Message<'_>)> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.kind() == Kind::Request)
        .collect();
    if calls.is_empty() {
        return forbidden(
            &format!("mcpgate: {denied_text} denied by policy (request {rid})"),
            rid,
            denied_reason,
        );
    }
    let mut errors = Vec::with_capacity(calls.len());
    for (i, message) in calls {
        let raw_id = message.id().map_or("null", |id| id.raw());
        let evaluated = evaluated.get(i);
        let own_denial = evaluated.filter(|e| !e.allowed);
        let error = match own_denial {
            Some(e) => jsonrpc_error_body(
                raw_id,
                POLICY_DENIED_CODE,
                &format!(
                    "mcpgate: {} denied by policy (request {rid})",
                    describe(message)
                ),
                rid,
                &e.reason,
            ),
            None => jsonrpc_error_body(
                raw_id,
                POLICY_DENIED_CODE,
                &format!(
                    "mcpgate: batch denied by policy: {denied_text} is denied (request {rid})"
                ),
                rid,
                denied_reason,
            ),
        };
        errors.push(error);
    }
    let body = if body.is_batch() {
        format!("[{}]", errors.join(","))
    } else {
        errors.concat()
    };
    json_response(200, body)
}

/// `{"jsonrpc":"2.0","id":<raw id>,"error":{"code":…,"message":…,"data":{"request_id":…,"reason":…}}}`
/// with the id copied byte for byte.
pub fn jsonrpc_error_body(
    raw_id: &str,
    code: i64,
    message: &str,
    request_id: &str,
    reason: &str,
) -> String {
    let error = json!({
        "code": code,
        "message": message,
        "data": {"request_id": request_id, "reason": reason},
    });
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{raw_id},\"error\":{error}}}")
}

/// 403 with a JSON body, for a denied request that is not a JSON-RPC call.
pub fn forbidden(message: &str, request_id: &str, reason: &str) -> LocalResponse {
    let body = json!({
        "error": "forbidden",
        "error_description": message,
        "request_id": request_id,
        "reason": reason,
    });
    json_response(403, body.to_string())
}

pub fn json_response(status: u32, body: String) -> LocalResponse {
    LocalResponse {
        status,
        headers: vec![
            ("content-type", "application/json".into()),
            ("cache-control", "no-store".into()),
            ("access-control-allow-origin", ALLOW_ORIGIN.into()),
            ("access-control-expose-headers", EXPOSE_HEADERS.into()),
        ],
        body: body.into_bytes(),
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "decision_2026_tests.rs"]
mod tests_2026;
