//! Strict parsing of one complete HTTP body into MCP JSON-RPC messages.
//!
//! [`parse`] takes the complete body bytes, parses them once with the strict [`crate::json`]
//! parser and classifies every message ([`parse_str_shallow`] does the same without building the
//! inner levels, for callers that only read the outer ones). It accepts:
//!
//! - a **request**: `jsonrpc: "2.0"`, a string `method`, and an `id` that is a string or an
//!   integer in ±(2^53−1);
//! - a **notification**: like a request without `id`;
//! - a **response**: `result` (an object) or `error` (an object), not both, and no `method`;
//!   `id` as for requests, except that an `error` response may have a `null` or absent id
//!   (JSON-RPC's answer to a request whose id could not be read);
//! - a **batch**: a non-empty array of the above, no two requests with the same id;
//!   [`Body::Batch`] returns every element and the caller decides with [`batches_allowed`]
//!   (only protocol 2025-03-26 batches). One invalid element refuses the whole batch.
//!
//! Id decisions (MCP: "Requests MUST include a string or integer ID", "the ID MUST NOT be null"):
//! `null`, booleans, objects, arrays, fractions/exponents and integers beyond ±(2^53−1) are
//! [`Error::InvalidId`]. The 2^53 bound keeps every id exactly representable by every JSON
//! implementation (JavaScript numbers), so the response a server sends back carries the same id
//! and [`crate::list_filter::ResponseTracker`] can match it; a rounded id would slip past the
//! list filter.
//!
//! MCP shape checks (so the policy decides on what the server will act on): `params`, when
//! present, must be an object; `tools/call` and `prompts/get` need a string `params.name`,
//! `resources/read|subscribe|unsubscribe` a string `params.uri`, `completion/complete` a
//! `params.ref`; `params.arguments`, when present, must be an object. These checks apply to
//! notifications too: a server that (wrongly) acts on a `tools/call` notification must not get
//! one the policy never saw. Method names and targets are compared exactly after JSON unescaping;
//! nothing is normalised (case, Unicode), so a look-alike name is a different name.

use std::borrow::Cow;

use crate::error::Error;
use crate::json::{self, Value, ValueKind};

/// Default nesting limit for a JSON-RPC body (a top-level object is depth 1).
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// Default body size limit: 1 MiB.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;
/// The largest integer id accepted (and its negation): 2^53 − 1.
pub const MAX_SAFE_INTEGER_ID: i64 = (1 << 53) - 1;
/// Container levels of a message that classification reads: the message, its
/// `params`/`result`/`error`, and `params.arguments`/`params.ref`. [`parse_str_shallow`] always
/// builds these so a message is classified as by [`parse_str`].
pub const CLASSIFY_LEVELS: usize = 3;

/// Parse limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Larger bodies are [`Error::TooLarge`].
    pub max_bytes: usize,
    /// Deeper nesting is [`Error::TooDeep`] (clamped to [`json::MAX_DEPTH_CAP`]).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }
}

/// A parsed body: one message or a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Body<'a> {
    Single(Message<'a>),
    /// Non-empty, every element a valid message, in input order.
    Batch(Vec<Message<'a>>),
}

impl<'a> Body<'a> {
    /// Every message in the body (one for [`Body::Single`]).
    pub fn messages(&self) -> &[Message<'a>] {
        match self {
            Body::Single(m) => std::slice::from_ref(m),
            Body::Batch(ms) => ms,
        }
    }

    pub fn is_batch(&self) -> bool {
        matches!(self, Body::Batch(_))
    }

    /// The single message, or [`Error::Batch`].
    pub fn into_single(self) -> Result<Message<'a>, Error> {
        match self {
            Body::Single(m) => Ok(m),
            Body::Batch(_) => Err(Error::Batch),
        }
    }
}

/// Whether a body may be a batch for this `MCP-Protocol-Version`. Batching exists only in
/// protocol 2025-03-26 (removed in 2025-06-18). A request without the header is, per the
/// 2025-06-18 transport spec, to be treated as 2025-03-26 (older clients do not send it), so
/// `None` allows batches: every element is parsed and must be evaluated by the policy anyway.
/// Any other value — later or unknown versions — does not.
pub fn batches_allowed(protocol_version: Option<&str>) -> bool {
    matches!(protocol_version.map(str::trim), None | Some("2025-03-26"))
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

/// What [`Message::target`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Tool,
    Prompt,
    Resource,
}

/// One validated JSON-RPC message, borrowing from the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message<'a> {
    kind: Kind,
    value: Value<'a>,
    target: Option<(TargetKind, Cow<'a, str>)>,
}

/// A request or response id (validated: a string or a safe integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id<'m> {
    raw: &'m str,
    value: IdRef<'m>,
}

/// The decoded value of an [`Id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdRef<'m> {
    Number(i64),
    String(&'m str),
}

/// An owned, comparable id, decoded: `"a"` and `"\u0061"` are the same key, `-0` and `0` are
/// both `Number(0)`, and the string `"1"` differs from the number `1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdKey {
    Number(i64),
    String(String),
}

impl<'m> Id<'m> {
    /// The id exactly as written in the body: echo this in an error reply.
    pub fn raw(&self) -> &'m str {
        self.raw
    }

    pub fn value(&self) -> IdRef<'m> {
        self.value
    }

    pub fn to_key(&self) -> IdKey {
        match self.value {
            IdRef::Number(n) => IdKey::Number(n),
            IdRef::String(s) => IdKey::String(s.to_owned()),
        }
    }
}

impl<'a> Message<'a> {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The whole message object.
    pub fn value(&self) -> &Value<'a> {
        &self.value
    }

    /// The message exactly as written in the body.
    pub fn raw(&self) -> &'a str {
        self.value.raw()
    }

    /// The decoded method (requests and notifications).
    pub fn method(&self) -> Option<&str> {
        self.value.get("method")?.as_str()
    }

    /// The id, if the message has a non-null one.
    pub fn id(&self) -> Option<Id<'_>> {
        let v = self.value.get("id")?;
        Some(Id {
            raw: v.raw(),
            value: id_ref(v).ok()?,
        })
    }

    /// `params` (always an object when present).
    pub fn params(&self) -> Option<&Value<'a>> {
        self.value.get("params")
    }

    /// The decoded name the policy decides on: the tool (`tools/call`), prompt (`prompts/get`),
    /// resource URI (`resources/read|subscribe|unsubscribe`) or the prompt/resource a
    /// `completion/complete` refers to. `None` for other methods and for responses.
    pub fn target(&self) -> Option<&str> {
        self.target.as_ref().map(|(_, name)| name.as_ref())
    }

    pub fn target_kind(&self) -> Option<TargetKind> {
        self.target.as_ref().map(|(kind, _)| *kind)
    }

    /// `params.arguments` (always an object when present).
    pub fn arguments(&self) -> Option<&Value<'a>> {
        self.params()?.get("arguments")
    }

    /// `result` of a success response.
    pub fn result(&self) -> Option<&Value<'a>> {
        match self.kind {
            Kind::Response => self.value.get("result"),
            _ => None,
        }
    }

    /// `error` of an error response.
    pub fn error(&self) -> Option<&Value<'a>> {
        match self.kind {
            Kind::Response => self.value.get("error"),
            _ => None,
        }
    }
}

/// Which shape checks apply: methods a revision removed have no shape to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Revision {
    /// 2025-11-25 and earlier (and a request that names no version).
    #[default]
    Legacy,
    /// 2026-07-28 and later: `resources/subscribe` and `resources/unsubscribe` are removed
    /// methods (a server answers 404, `-32601`), so a missing `params.uri` is not refused here.
    Stateless,
}

impl Revision {
    /// The revision of an `MCP-Protocol-Version` value.
    pub fn of(protocol_version: Option<&str>) -> Revision {
        if crate::request_metadata::requires_header_validation(protocol_version) {
            Revision::Stateless
        } else {
            Revision::Legacy
        }
    }
}

/// Methods 2026-07-28 removed that name a resource: a request for one without a URI acts on
/// nothing a policy could decide on.
pub const REMOVED_RESOURCE_METHODS: [&str; 2] = ["resources/subscribe", "resources/unsubscribe"];

/// Parses a complete body. See the module docs for what is accepted.
pub fn parse<'a>(body: &'a [u8], limits: &Limits) -> Result<Body<'a>, Error> {
    parse_for(body, limits, Revision::Legacy)
}

/// [`parse`] with the shape checks of `revision`.
pub fn parse_for<'a>(
    body: &'a [u8],
    limits: &Limits,
    revision: Revision,
) -> Result<Body<'a>, Error> {
    if body.len() > limits.max_bytes {
        return Err(Error::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let value = json::parse_bytes(body, limits.max_depth)?;
    classify_body(value, revision)
}

/// What can still be read from a body that [`parse`] refused: the request's id (when it is a
/// valid one), method and target, so a local rejection can echo the id and the audit record
/// name the call. `None` when the body is not a JSON object at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Salvaged {
    /// The id exactly as written.
    pub id_raw: Option<String>,
    pub method: Option<String>,
    /// `params.name` or `params.uri`, when a string.
    pub target: Option<String>,
}

/// Reads what [`Salvaged`] holds from a refused body (the error path only: a second parse).
pub fn salvage(body: &[u8], limits: &Limits) -> Option<Salvaged> {
    if body.len() > limits.max_bytes {
        return None;
    }
    let value = json::parse_bytes(body, limits.max_depth).ok()?;
    value.as_object()?;
    let string = |v: Option<&Value<'_>>| v.and_then(Value::as_str).map(str::to_owned);
    let params = value.get("params");
    Some(Salvaged {
        id_raw: value
            .get("id")
            .filter(|id| id_ref(id).is_ok())
            .map(|id| id.raw().to_owned()),
        method: string(value.get("method")),
        target: string(params.and_then(|p| p.get("name")))
            .or_else(|| string(params.and_then(|p| p.get("uri")))),
    })
}

/// [`parse`] for a body already known to be UTF-8 (e.g. an SSE event's data).
pub fn parse_str<'a>(body: &'a str, limits: &Limits) -> Result<Body<'a>, Error> {
    if body.len() > limits.max_bytes {
        return Err(Error::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let value = json::parse(body, limits.max_depth)?;
    classify_body(value, Revision::Legacy)
}

/// [`parse_str`] that builds only the outer `levels` levels of objects and arrays of each message
/// (the message object is level 1; at least [`CLASSIFY_LEVELS`]); deeper ones are
/// [`ValueKind::Opaque`]. Accepts and refuses exactly what [`parse_str`] does, with the same
/// error, and classifies every message the same way. For callers that read only the outer
/// members (the list filter): never hand such a body to the policy.
pub fn parse_str_shallow<'a>(
    body: &'a str,
    limits: &Limits,
    levels: usize,
) -> Result<Body<'a>, Error> {
    if body.len() > limits.max_bytes {
        return Err(Error::TooLarge {
            limit: limits.max_bytes,
        });
    }
    // A batch's array is one more level above each message.
    let batch = body
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('[');
    let levels = levels
        .max(CLASSIFY_LEVELS)
        .saturating_add(usize::from(batch));
    let value = json::parse_shallow(body, limits.max_depth, levels)?;
    classify_body(value, Revision::Legacy)
}

fn classify_body(value: Value<'_>, revision: Revision) -> Result<Body<'_>, Error> {
    let raw = value.raw();
    match value.into_kind() {
        ValueKind::Array(items) => {
            if items.is_empty() {
                return Err(Error::EmptyBatch);
            }
            let messages = items
                .into_iter()
                .map(|item| message(item, "batch element", revision))
                .collect::<Result<Vec<_>, _>>()?;
            check_unique_request_ids(&messages)?;
            Ok(Body::Batch(messages))
        }
        kind @ ValueKind::Object(_) => Ok(Body::Single(message(
            Value::from_parts(raw, kind),
            "body",
            revision,
        )?)),
        _ => Err(Error::NotAnObject { what: "body" }),
    }
}

/// Validates and classifies one message object.
fn message<'a>(
    value: Value<'a>,
    what: &'static str,
    revision: Revision,
) -> Result<Message<'a>, Error> {
    if value.as_object().is_none() {
        return Err(Error::NotAnObject { what });
    }
    if value.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Error::InvalidVersion);
    }
    let method = value.get("method");
    let id = value.get("id");
    let result = value.get("result");
    let error = value.get("error");

    if let Some(method) = method {
        if result.is_some() || error.is_some() {
            return Err(Error::InvalidMessage {
                what: "a request cannot carry \"result\" or \"error\"",
            });
        }
        let method = method.as_str().ok_or(Error::InvalidMethod)?;
        let kind = match id {
            Some(id) => {
                id_ref(id)?;
                Kind::Request
            }
            None => Kind::Notification,
        };
        let params = value.get("params");
        if let Some(params) = params {
            if params.as_object().is_none() {
                return Err(Error::InvalidParams);
            }
        }
        let target = target(method, params, revision)?;
        return Ok(Message {
            kind,
            target,
            value,
        });
    }

    match (result, error) {
        (Some(_), Some(_)) => Err(Error::InvalidMessage {
            what: "a response cannot carry both \"result\" and \"error\"",
        }),
        (None, None) => Err(Error::InvalidMessage {
            what: "neither \"method\" nor \"result\"/\"error\"",
        }),
        (Some(result), None) => {
            if result.as_object().is_none() {
                return Err(Error::InvalidMessage {
                    what: "\"result\" must be an object",
                });
            }
            id_ref(id.ok_or(Error::InvalidId {
                what: "a result response needs an id",
            })?)?;
            Ok(Message {
                kind: Kind::Response,
                target: None,
                value,
            })
        }
        (None, Some(error)) => {
            if error.as_object().is_none() {
                return Err(Error::InvalidMessage {
                    what: "\"error\" must be an object",
                });
            }
            if let Some(id) = id.filter(|id| !id.is_null()) {
                id_ref(id)?;
            }
            Ok(Message {
                kind: Kind::Response,
                target: None,
                value,
            })
        }
    }
}

/// Two requests in one batch with the same id would make their responses indistinguishable
/// (and MCP forbids reusing an id), so such a batch is refused.
fn check_unique_request_ids(messages: &[Message<'_>]) -> Result<(), Error> {
    let mut ids: Vec<IdKey> = messages
        .iter()
        .filter(|m| m.kind == Kind::Request)
        .filter_map(|m| m.id().map(|id| id.to_key()))
        .collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| matches!(w, [a, b] if a == b)) {
        return Err(Error::InvalidId {
            what: "the same request id appears twice in the batch",
        });
    }
    Ok(())
}

fn id_ref<'m>(id: &'m Value<'_>) -> Result<IdRef<'m>, Error> {
    match id.kind() {
        ValueKind::String(s) => Ok(IdRef::String(s)),
        ValueKind::Number(n) => {
            if n.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                return Err(Error::InvalidId {
                    what: "a numeric id must be an integer",
                });
            }
            match n.parse::<i64>() {
                Ok(v) if (-MAX_SAFE_INTEGER_ID..=MAX_SAFE_INTEGER_ID).contains(&v) => {
                    Ok(IdRef::Number(v))
                }
                _ => Err(Error::InvalidId {
                    what: "a numeric id must be within ±(2^53−1)",
                }),
            }
        }
        ValueKind::Null => Err(Error::InvalidId {
            what: "MCP forbids a null id",
        }),
        _ => Err(Error::InvalidId {
            what: "must be a string or an integer",
        }),
    }
}

fn target<'a>(
    method: &str,
    params: Option<&Value<'a>>,
    revision: Revision,
) -> Result<Option<(TargetKind, Cow<'a, str>)>, Error> {
    let string_param = |key: &str| -> Option<Cow<'a, str>> {
        match params?.get(key)?.kind() {
            ValueKind::String(s) => Some(s.clone()),
            _ => None,
        }
    };
    let check_arguments = || -> Result<(), Error> {
        match params.and_then(|p| p.get("arguments")) {
            Some(args) if args.as_object().is_none() => Err(Error::InvalidArguments),
            _ => Ok(()),
        }
    };
    Ok(match method {
        // Removed in 2026-07-28: no required shape, but a URI, when given, is still what the
        // policy decides on (a server speaking an older revision too could act on it).
        "resources/subscribe" | "resources/unsubscribe" if revision == Revision::Stateless => {
            string_param("uri").map(|uri| (TargetKind::Resource, uri))
        }
        "tools/call" => {
            let name = string_param("name").ok_or(Error::MissingToolName)?;
            check_arguments()?;
            Some((TargetKind::Tool, name))
        }
        "prompts/get" => {
            let name = string_param("name").ok_or(Error::MissingPromptName)?;
            check_arguments()?;
            Some((TargetKind::Prompt, name))
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let method: &'static str = match method {
                "resources/read" => "resources/read",
                "resources/subscribe" => "resources/subscribe",
                _ => "resources/unsubscribe",
            };
            let uri = string_param("uri").ok_or(Error::MissingResourceUri { method })?;
            Some((TargetKind::Resource, uri))
        }
        "completion/complete" => {
            let reference = params
                .and_then(|p| p.get("ref"))
                .ok_or(Error::MissingCompletionRef)?;
            let field = |key: &str| -> Option<Cow<'a, str>> {
                match reference.get(key)?.kind() {
                    ValueKind::String(s) => Some(s.clone()),
                    _ => None,
                }
            };
            match field("type").as_deref() {
                Some("ref/prompt") => Some((
                    TargetKind::Prompt,
                    field("name").ok_or(Error::MissingCompletionRef)?,
                )),
                Some("ref/resource") => Some((
                    TargetKind::Resource,
                    field("uri").ok_or(Error::MissingCompletionRef)?,
                )),
                _ => return Err(Error::MissingCompletionRef),
            }
        }
        _ => None,
    })
}

/// A JSON-RPC error response echoing `id_raw` (from [`Id::raw`]) exactly, or `null` without one.
/// `message` is JSON-escaped.
pub fn error_response(id_raw: Option<&str>, code: i64, message: &str) -> String {
    let mut out = String::with_capacity(64 + message.len());
    out.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
    out.push_str(id_raw.unwrap_or("null"));
    out.push_str(",\"error\":{\"code\":");
    out.push_str(&code.to_string());
    out.push_str(",\"message\":");
    json::write_string(&mut out, message);
    out.push_str("}}");
    out
}

#[cfg(test)]
#[path = "jsonrpc_tests.rs"]
mod tests;
