//! Header-level checks, as pure functions over header values.
//!
//! A body the filter cannot read is never forwarded on trust: a request body must be declared
//! `application/json` (UTF-8; parameters such as `charset=utf-8` are fine, any other charset is
//! not) and must not be content-encoded (`Content-Encoding` absent or `identity`). Compressed or
//! differently typed bodies would otherwise pass the parser's notice while the server decodes and
//! acts on them. Responses are classified so the caller knows whether to parse JSON, rewrite SSE,
//! or (for a response it must filter) fail closed.

use crate::error::{excerpt, Error};

/// How a response body is framed, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// `application/json`: one JSON-RPC message (or batch).
    Json,
    /// `text/event-stream`: SSE, see [`crate::sse`].
    EventStream,
    /// Anything else (or absent): cannot be inspected.
    Other,
}

/// Checks a request's `Content-Type` (the header's value, `None` if absent): the media type must
/// be `application/json` (case-insensitive), and a `charset` parameter, if any, must be UTF-8.
pub fn check_content_type(value: Option<&str>) -> Result<(), Error> {
    let value = value.unwrap_or_default();
    if is_json_media_type(value) {
        Ok(())
    } else {
        Err(Error::ContentType {
            found: excerpt(value),
        })
    }
}

/// Checks a request's `Content-Encoding`: absent, empty or `identity` (case-insensitive).
pub fn check_content_encoding(value: Option<&str>) -> Result<(), Error> {
    match value.map(str::trim) {
        None | Some("") => Ok(()),
        Some(v) if v.eq_ignore_ascii_case("identity") => Ok(()),
        Some(v) => Err(Error::ContentEncoding { found: excerpt(v) }),
    }
}

/// Parses `Content-Length` (when present) and fails early when it is over `limit`. A value that is
/// not a plain decimal number is refused as [`Error::TooLarge`] too (Envoy normally rejects those
/// first).
pub fn check_content_length(value: Option<&str>, limit: usize) -> Result<Option<usize>, Error> {
    let Some(value) = value.map(str::trim) else {
        return Ok(None);
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::TooLarge { limit });
    }
    match value.parse::<usize>() {
        Ok(n) if n <= limit => Ok(Some(n)),
        _ => Err(Error::TooLarge { limit }),
    }
}

/// Classifies a response by its `Content-Type`.
pub fn response_body(content_type: Option<&str>) -> ResponseBody {
    let value = content_type.unwrap_or_default();
    if is_json_media_type(value) {
        return ResponseBody::Json;
    }
    let (media, params) = split_media_type(value);
    if media.eq_ignore_ascii_case("text/event-stream") && charset_ok(params) {
        ResponseBody::EventStream
    } else {
        ResponseBody::Other
    }
}

fn is_json_media_type(value: &str) -> bool {
    let (media, params) = split_media_type(value);
    media.eq_ignore_ascii_case("application/json") && charset_ok(params)
}

/// Splits `type/subtype; params` into the trimmed media type and the parameter string. A comma
/// (several values folded into one header) leaves the whole value as the media type, which then
/// matches nothing.
fn split_media_type(value: &str) -> (&str, &str) {
    if value.contains(',') {
        return (value, "");
    }
    match value.split_once(';') {
        Some((media, params)) => (media.trim(), params),
        None => (value.trim(), ""),
    }
}

/// Every parameter must be `name=value` with a token name; `charset`, if present (once), must be
/// UTF-8 (quoted or not, case-insensitive).
fn charset_ok(params: &str) -> bool {
    let mut charset_seen = false;
    for param in params.split(';') {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
        let Some((name, val)) = param.split_once('=') else {
            return false;
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
        {
            return false;
        }
        if name.eq_ignore_ascii_case("charset") {
            if charset_seen {
                return false;
            }
            charset_seen = true;
            let val = val.trim();
            let val = val
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(val);
            if !(val.eq_ignore_ascii_case("utf-8") || val.eq_ignore_ascii_case("utf8")) {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
#[path = "request_checks_tests.rs"]
mod tests;
