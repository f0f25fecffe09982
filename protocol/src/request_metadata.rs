//! MCP 2026-07-28 request metadata: the protocol version of a request and the header checks of
//! the Streamable HTTP transport ("Request Metadata", "Server Validation").
//!
//! From 2026-07-28 on, a client mirrors body fields into headers so intermediaries can route on
//! them: `MCP-Protocol-Version` (= `params._meta["io.modelcontextprotocol/protocolVersion"]`),
//! `Mcp-Method` (= `method`), `Mcp-Name` (= `params.name` or `params.uri` of `tools/call`,
//! `prompts/get`, `resources/read`) and `Mcp-Param-{Name}` (= the tool argument whose
//! `inputSchema` property carries `"x-mcp-header": "{Name}"`). A component that reads the body
//! must refuse a request whose headers disagree with it (HTTP 400, JSON-RPC `-32020`
//! `HeaderMismatch`): otherwise a load balancer routing on the header and the server acting on
//! the body see two different requests. Older protocol versions define none of these headers:
//! [`requires_header_validation`] is false and the caller ignores them.
//!
//! `Mcp-Name` and `Mcp-Param-*` values that are not plain header text are sent as
//! `=?base64?{standard Base64 of the UTF-8 value}?=` (case-sensitive markers) and compared after
//! decoding.

use std::borrow::Cow;

use crate::error::{excerpt, Error};
use crate::json::{Value, ValueKind};
use crate::jsonrpc::{Kind, Message};

/// The first revision with per-request metadata headers and without sessions.
pub const STATELESS_VERSION: &str = "2026-07-28";
/// `_meta` key of the protocol version in every 2026-07-28 request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// JSON-RPC code of `HeaderMismatch` (2026-07-28 schema `HEADER_MISMATCH`).
pub const HEADER_MISMATCH_CODE: i64 = -32020;
/// Prefix of the header a tool parameter is mirrored into (compared case-insensitively).
pub const PARAM_HEADER_PREFIX: &str = "mcp-param-";

const SENTINEL_PREFIX: &str = "=?base64?";
const SENTINEL_SUFFIX: &str = "?=";

/// Whether `version` is 2026-07-28 or a later dated revision (header validation applies). A
/// value that is not a `YYYY-MM-DD` date is not a version that defines these headers.
pub fn requires_header_validation(version: Option<&str>) -> bool {
    let Some(v) = version.map(str::trim) else {
        return false;
    };
    let dated = v.len() == 10
        && v.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    // Same-length ISO dates compare correctly as strings.
    dated && v >= STATELESS_VERSION
}

/// `params._meta["io.modelcontextprotocol/protocolVersion"]` when it is a string.
pub fn meta_protocol_version<'m>(message: &'m Message<'_>) -> Option<&'m str> {
    message
        .params()?
        .get("_meta")?
        .get(META_PROTOCOL_VERSION)?
        .as_str()
}

/// The protocol version a request speaks: the `MCP-Protocol-Version` header, else (a
/// 2026-07-28 request carries it in every body) the version in the first message's `_meta`.
pub fn protocol_version<'v>(
    header: Option<&'v str>,
    message: Option<&'v Message<'_>>,
) -> Option<&'v str> {
    header
        .map(str::trim)
        .or_else(|| message.and_then(meta_protocol_version))
}

/// The metadata headers of one request, as received (names are matched case-insensitively by
/// the caller: pass `Mcp-Param-*` headers with their full name in any case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHeaders {
    pub protocol_version: Option<String>,
    pub method: Option<String>,
    pub name: Option<String>,
    /// `(name without the "Mcp-Param-" prefix, value)`.
    pub params: Vec<(String, String)>,
}

impl RequestHeaders {
    /// Collects the metadata headers from `(name, value)` pairs (any case).
    pub fn from_pairs<'h, I>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (&'h str, &'h str)>,
    {
        let mut out = RequestHeaders::default();
        for (name, value) in pairs {
            let lower = name.to_ascii_lowercase();
            match lower.as_str() {
                "mcp-protocol-version" => out.protocol_version = Some(value.to_owned()),
                "mcp-method" => out.method = Some(value.to_owned()),
                "mcp-name" => out.name = Some(value.to_owned()),
                _ => {
                    if let Some(param) = lower.strip_prefix(PARAM_HEADER_PREFIX) {
                        out.params.push((param.to_owned(), value.to_owned()));
                    }
                }
            }
        }
        out
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One `x-mcp-header` annotation of a tool: header `Mcp-Param-{name}` mirrors the argument at
/// `path` (a chain of `properties` keys from the schema root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    pub name: String,
    pub path: Vec<String>,
}

/// The `x-mcp-header` annotations of a tool definition (a `tools/list` item), reachable from
/// `inputSchema` through `properties` only, as the spec defines them. `None` when an annotation
/// is not a valid token or names repeat (case-insensitively): the spec makes such a tool invalid,
/// and the caller then has no mapping to check against.
pub fn param_headers(tool: &Value<'_>) -> Option<Vec<ParamHeader>> {
    let mut out = Vec::new();
    if let Some(schema) = tool.get("inputSchema") {
        collect_param_headers(schema, &mut Vec::new(), &mut out, 0)?;
    }
    for (i, a) in out.iter().enumerate() {
        if out
            .iter()
            .skip(i + 1)
            .any(|b| b.name.eq_ignore_ascii_case(&a.name))
        {
            return None;
        }
    }
    Some(out)
}

/// The `x-mcp-header` annotations of every tool in a `tools/list` answer (one JSON-RPC message,
/// as a body or an SSE event's data): `(tool name, annotations)`, `None` for a tool whose
/// annotations are invalid. Empty for anything that is not a tools list result. Only answers
/// that can carry annotations are parsed (2026-07-28 list results carry `cacheScope`).
pub fn tools_param_headers(message: &str) -> Vec<(String, Option<Vec<ParamHeader>>)> {
    if !(message.contains("x-mcp-header") || message.contains("cacheScope")) {
        return Vec::new();
    }
    let Ok(body) = crate::jsonrpc::parse_str(message, &crate::jsonrpc::Limits::default()) else {
        return Vec::new();
    };
    let Some(tools) = body
        .messages()
        .first()
        .and_then(Message::result)
        .and_then(|r| r.get("tools"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    tools
        .iter()
        .filter_map(|tool| {
            let name = tool.get("name")?.as_str()?;
            Some((name.to_owned(), param_headers(tool)))
        })
        .collect()
}

/// Depth bound of the walk: the parser bounds nesting already; this keeps it explicit.
const MAX_SCHEMA_PATH: usize = 32;

fn collect_param_headers(
    schema: &Value<'_>,
    path: &mut Vec<String>,
    out: &mut Vec<ParamHeader>,
    depth: usize,
) -> Option<()> {
    if depth > MAX_SCHEMA_PATH {
        return Some(());
    }
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Some(());
    };
    for property in properties {
        path.push(property.key.to_string());
        if let Some(annotation) = property.value.get("x-mcp-header") {
            let name = annotation.as_str().filter(|n| is_token(n))?;
            out.push(ParamHeader {
                name: name.to_owned(),
                path: path.clone(),
            });
        }
        collect_param_headers(&property.value, path, out, depth + 1)?;
        path.pop();
    }
    Some(())
}

/// RFC 9110 `1*tchar`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks a 2026-07-28 request's headers against its parsed body (one message: batches do not
/// exist in that revision). `params` are the `x-mcp-header` annotations of the called tool when
/// known; without them `Mcp-Param-*` headers are not recognised and, as the spec requires of an
/// intermediary, forwarded unchecked.
pub fn check_headers(
    message: &Message<'_>,
    headers: &RequestHeaders,
    params: Option<&[ParamHeader]>,
) -> Result<(), Error> {
    let header_version = headers.protocol_version.as_deref().map(str::trim);
    let Some(header_version) = header_version else {
        return Err(mismatch("the MCP-Protocol-Version header is missing"));
    };
    if let Some(meta) = meta_protocol_version(message) {
        if meta != header_version {
            return Err(mismatch(&format!(
                "MCP-Protocol-Version header value '{}' does not match body value '{}'",
                excerpt(header_version),
                excerpt(meta)
            )));
        }
    }
    if message.kind() == Kind::Response {
        return Ok(());
    }
    let method = message.method().unwrap_or_default();
    match headers.method.as_deref() {
        Some(h) => {
            let h = plain_value("Mcp-Method", h)?;
            if h != method {
                return Err(value_mismatch("Mcp-Method", h, method));
            }
        }
        // Required for every request; this revision defines no header rules for notifications.
        None if message.kind() == Kind::Request => {
            return Err(mismatch("the Mcp-Method header is missing"));
        }
        None => {}
    }
    if let Some(name) = named_value(message) {
        let header = headers
            .name
            .as_deref()
            .ok_or_else(|| mismatch("the Mcp-Name header is missing"))?;
        let decoded = decode_value("Mcp-Name", header)?;
        if decoded != name {
            return Err(value_mismatch("Mcp-Name", &decoded, &name));
        }
    }
    if method == "tools/call" {
        if let Some(params) = params {
            check_param_headers(message, headers, params)?;
        }
    }
    Ok(())
}

/// The body value `Mcp-Name` mirrors: `params.name` (`tools/call`, `prompts/get`) or
/// `params.uri` (`resources/read`).
fn named_value<'m>(message: &'m Message<'_>) -> Option<Cow<'m, str>> {
    let key = match message.method()? {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return None,
    };
    match message.params()?.get(key)?.kind() {
        ValueKind::String(s) => Some(Cow::Borrowed(s.as_ref())),
        _ => None,
    }
}

fn check_param_headers(
    message: &Message<'_>,
    headers: &RequestHeaders,
    params: &[ParamHeader],
) -> Result<(), Error> {
    let arguments = message.arguments();
    for param in params {
        let header_name = format!("Mcp-Param-{}", param.name);
        let mut value = arguments;
        for key in &param.path {
            value = value.and_then(|v| v.get(key));
        }
        let value = value.filter(|v| !v.is_null());
        match (headers.param(&param.name), value) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(mismatch(&format!(
                    "{header_name} header is present but the body has no value for it"
                )))
            }
            (None, Some(_)) => {
                return Err(mismatch(&format!("the {header_name} header is missing")));
            }
            (Some(header), Some(body)) => {
                let decoded = decode_value(&header_name, header)?;
                if !param_matches(&decoded, body) {
                    return Err(value_mismatch(&header_name, &decoded, body.raw()));
                }
            }
        }
    }
    Ok(())
}

/// A string compares as itself, a boolean as `true`/`false`, an integer numerically (the spec:
/// `42.0` and `42` are equal). Other types cannot be mirrored.
fn param_matches(header: &str, body: &Value<'_>) -> bool {
    match body.kind() {
        ValueKind::String(s) => header == s.as_ref(),
        ValueKind::Bool(b) => header == if *b { "true" } else { "false" },
        ValueKind::Number(n) => {
            match (header.trim().parse::<f64>(), n.parse::<f64>()) {
                // Integers are bounded to ±(2^53−1) by the spec, where f64 is exact.
                (Ok(h), Ok(b)) => h.is_finite() && h == b,
                _ => false,
            }
        }
        _ => false,
    }
}

/// A header value that may use the Base64 sentinel (`Mcp-Name`, `Mcp-Param-*`), decoded.
pub fn decode_value(header: &str, value: &str) -> Result<String, Error> {
    let plain = plain_value(header, value)?;
    let Some(encoded) = plain
        .strip_prefix(SENTINEL_PREFIX)
        .and_then(|v| v.strip_suffix(SENTINEL_SUFFIX))
    else {
        return Ok(plain.to_owned());
    };
    let bytes = decode_base64(encoded)
        .ok_or_else(|| mismatch(&format!("{header} header has an invalid Base64 value")))?;
    String::from_utf8(bytes)
        .map_err(|_| mismatch(&format!("{header} header's Base64 value is not UTF-8")))
}

/// A header value of visible ASCII, space and tab only (RFC 9110 field values as the spec
/// restricts them), without surrounding whitespace.
fn plain_value<'v>(header: &str, value: &'v str) -> Result<&'v str, Error> {
    if value
        .bytes()
        .all(|b| b == b'\t' || (0x20..=0x7e).contains(&b))
    {
        Ok(value.trim_matches([' ', '\t']))
    } else {
        Err(mismatch(&format!(
            "{header} header contains invalid characters"
        )))
    }
}

/// Standard Base64 (RFC 4648 §4) with the required padding; `None` for anything else.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let chunks = bytes.len() / 4;
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i + 1 == chunks;
        let mut acc: u32 = 0;
        let mut pad = 0usize;
        for (j, &c) in chunk.iter().enumerate() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                // Padding only at the end of the last chunk, at most two.
                b'=' if last && j >= 2 => {
                    pad += 1;
                    0
                }
                _ => return None,
            };
            if pad > 0 && c != b'=' {
                return None;
            }
            acc = (acc << 6) | u32::from(v);
        }
        let [_, b0, b1, b2] = acc.to_be_bytes();
        out.push(b0);
        if pad < 2 {
            out.push(b1);
        }
        if pad < 1 {
            out.push(b2);
        }
    }
    Some(out)
}

fn mismatch(detail: &str) -> Error {
    Error::HeaderMismatch {
        detail: detail.to_owned(),
    }
}

fn value_mismatch(header: &str, header_value: &str, body_value: &str) -> Error {
    mismatch(&format!(
        "{header} header value '{}' does not match body value '{}'",
        excerpt(header_value),
        excerpt(body_value)
    ))
}

#[cfg(test)]
#[path = "request_metadata_tests.rs"]
mod tests;
