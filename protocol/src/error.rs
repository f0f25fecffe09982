//! The one error type of the crate.
//!
//! Every variant has a stable [`Error::reason`] (a short snake_case string, safe as a metric label)
//! and a human message that names the limit or field involved. Messages never echo more than a
//! short, escaped excerpt of the input ([`EXCERPT_CHARS`] characters).

/// At most this many characters of input (a key, a header value) appear in an error message.
pub const EXCERPT_CHARS: usize = 64;

/// Why a message, body, header or stream was refused. All of these mean "fail closed": the
/// caller must not forward the message on trust.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The body (or an announced `Content-Length`) is larger than the configured limit.
    #[error("body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The body is empty or only whitespace.
    #[error("body is empty")]
    Empty,
    /// A JSON-RPC batch where the protocol version does not allow one (2025-06-18 and later).
    #[error("JSON-RPC batches are not accepted for this MCP protocol version")]
    Batch,
    /// A JSON-RPC batch with no element (invalid per JSON-RPC 2.0 §6).
    #[error("empty JSON-RPC batch")]
    EmptyBatch,
    /// An object repeats a key (compared after unescaping) at any depth.
    #[error("duplicate object key {key:?} at byte {offset}")]
    DuplicateKey { key: String, offset: usize },
    /// The bytes are not UTF-8.
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 { offset: usize },
    /// Objects/arrays nest deeper than the configured limit.
    #[error("JSON nesting deeper than {limit} levels at byte {offset}")]
    TooDeep { limit: usize, offset: usize },
    /// The input ends in the middle of a JSON value.
    #[error("JSON ends early: truncated at byte {offset}")]
    Truncated { offset: usize },
    /// Something other than whitespace follows the JSON value.
    #[error("unexpected data after the JSON value at byte {offset}")]
    TrailingData { offset: usize },
    /// The top-level value (or a batch element) is not a JSON object.
    #[error("{what} is not a JSON object")]
    NotAnObject { what: &'static str },
    /// Not JSON (RFC 8259) at all.
    #[error("invalid JSON at byte {offset}: {what}")]
    InvalidJson { offset: usize, what: &'static str },
    /// `jsonrpc` is missing or not the string `"2.0"`.
    #[error("\"jsonrpc\" must be the string \"2.0\"")]
    InvalidVersion,
    /// `method` is present but not a string.
    #[error("\"method\" must be a string")]
    InvalidMethod,
    /// `id` has a type or value MCP does not allow.
    #[error("invalid \"id\": {what}")]
    InvalidId { what: &'static str },
    /// The object is neither a request, a notification nor a response.
    #[error("invalid JSON-RPC message: {what}")]
    InvalidMessage { what: &'static str },
    /// `params` is present but not an object (MCP params are always objects).
    #[error("\"params\" must be an object")]
    InvalidParams,
    /// `tools/call` without a string `params.name`.
    #[error("tools/call requires a string \"params.name\"")]
    MissingToolName,
    /// `prompts/get` without a string `params.name`.
    #[error("prompts/get requires a string \"params.name\"")]
    MissingPromptName,
    /// `resources/read|subscribe|unsubscribe` without a string `params.uri`.
    #[error("{method} requires a string \"params.uri\"")]
    MissingResourceUri { method: &'static str },
    /// `completion/complete` without a usable `params.ref`.
    #[error("completion/complete requires \"params.ref\" of type ref/prompt (string name) or ref/resource (string uri)")]
    MissingCompletionRef,
    /// `params.arguments` is present but not an object.
    #[error("\"params.arguments\" must be an object")]
    InvalidArguments,
    /// The request `Content-Type` is not `application/json` (UTF-8).
    #[error("content type {found:?} is not accepted; expected application/json")]
    ContentType { found: String },
    /// The body is encoded (compressed) and cannot be inspected.
    #[error("content encoding {found:?} is not accepted; only identity")]
    ContentEncoding { found: String },
    /// An SSE event (or an unterminated line) is larger than the configured limit.
    #[error("server-sent event exceeds the limit of {limit} bytes")]
    EventTooLarge { limit: usize },
    /// A 2026-07-28 request whose `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name` or
    /// `Mcp-Param-*` header is missing, malformed or disagrees with the body.
    #[error("Header mismatch: {detail}")]
    HeaderMismatch { detail: String },
    /// A list response whose result does not have the expected shape.
    #[error("invalid {method} result: {what}")]
    InvalidListResult {
        method: &'static str,
        what: &'static str,
    },
}

impl Error {
    /// A stable snake_case label for metrics and audit records. Never changes for a variant.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::TooLarge { .. } => "too_large",
            Error::Empty => "empty",
            Error::Batch => "batch",
            Error::EmptyBatch => "empty_batch",
            Error::DuplicateKey { .. } => "duplicate_key",
            Error::InvalidUtf8 { .. } => "invalid_utf8",
            Error::TooDeep { .. } => "too_deep",
            Error::Truncated { .. } => "truncated",
            Error::TrailingData { .. } => "trailing_data",
            Error::NotAnObject { .. } => "not_an_object",
            Error::InvalidJson { .. } => "invalid_json",
            Error::InvalidVersion => "invalid_version",
            Error::InvalidMethod => "invalid_method",
            Error::InvalidId { .. } => "invalid_id",
            Error::InvalidMessage { .. } => "invalid_message",
            Error::InvalidParams => "invalid_params",
            Error::MissingToolName => "missing_tool_name",
            Error::MissingPromptName => "missing_prompt_name",
            Error::MissingResourceUri { .. } => "missing_resource_uri",
            Error::MissingCompletionRef => "missing_completion_ref",
            Error::InvalidArguments => "invalid_arguments",
            Error::ContentType { .. } => "content_type",
            Error::ContentEncoding { .. } => "content_encoding",
            Error::EventTooLarge { .. } => "event_too_large",
            Error::InvalidListResult { .. } => "invalid_list_result",
            Error::HeaderMismatch { .. } => "header_mismatch",
        }
    }

    /// The JSON-RPC error code to answer with: `-32700` (parse error) when the body is not strict
    /// JSON, `-32602` (invalid params) for MCP parameter errors, `-32020` (`HeaderMismatch`) for
    /// headers that disagree with the body, `-32600` (invalid request) otherwise.
    pub fn jsonrpc_code(&self) -> i64 {
        match self {
            Error::Empty
            | Error::DuplicateKey { .. }
            | Error::InvalidUtf8 { .. }
            | Error::TooDeep { .. }
            | Error::Truncated { .. }
            | Error::TrailingData { .. }
            | Error::InvalidJson { .. } => -32700,
            Error::InvalidParams
            | Error::MissingToolName
            | Error::MissingPromptName
            | Error::MissingResourceUri { .. }
            | Error::MissingCompletionRef
            | Error::InvalidArguments => -32602,
            Error::HeaderMismatch { .. } => crate::request_metadata::HEADER_MISMATCH_CODE,
            _ => -32600,
        }
    }
}

/// A short excerpt of `s` for an error message: at most [`EXCERPT_CHARS`] characters, with `…`
/// appended when cut.
pub(crate) fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_CHARS) {
        None => s.to_owned(),
        Some((cut, _)) => {
            let mut out = s.get(..cut).unwrap_or_default().to_owned();
            out.push('…');
            out
        }
    }
}
