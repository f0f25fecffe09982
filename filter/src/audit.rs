//! Audit records: the filter-state fields Envoy's access log prints
//! (`%FILTER_STATE(wasm.mcpgate_<field>:PLAIN)%`), and argument redaction. No host calls.
//!
//! Redaction entries are either a plain key (`password`: every object member with that name, at
//! any depth) or a JSON path from the arguments object: `$.auth.token`, `$.items[0].secret`,
//! `$["odd.key"]`, `$.items[*].secret` (`*` is every member or element). Matched values become
//! the string `"[redacted]"`. The serialized arguments are then cut at the route's byte cap on a
//! character boundary and marked with [`TRUNCATED`]. A token is never part of a record.

use mcpgate_protocol::json::{Value as RawValue, ValueKind};
use serde_json::Value;

/// The value that replaces a redacted argument.
pub const REDACTED: &str = "[redacted]";
/// Appended to arguments cut at the byte cap.
pub const TRUNCATED: &str = "…[truncated]";

/// Filter-state field names (`wasm.` is Envoy's prefix for properties set by a Wasm filter).
pub const FIELDS: [&str; 10] = [
    "mcpgate_request_id",
    "mcpgate_sub",
    "mcpgate_email",
    "mcpgate_client_id",
    "mcpgate_route",
    "mcpgate_method",
    "mcpgate_target",
    "mcpgate_arguments",
    "mcpgate_decision",
    "mcpgate_reason",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
    Any,
}

/// A route's compiled redaction settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redaction {
    keys: Vec<String>,
    paths: Vec<Vec<Segment>>,
    max_bytes: usize,
}

impl Redaction {
    /// Compiles `audit_redact` entries; `Err` names the first entry that is not a valid path.
    pub fn compile(entries: &[String], max_bytes: usize) -> Result<Self, String> {
        let mut redaction = Redaction {
            keys: Vec::new(),
            paths: Vec::new(),
            max_bytes,
        };
        for entry in entries {
            if entry.starts_with('$') {
                let path =
                    parse_path(entry).ok_or_else(|| format!("invalid redaction path {entry:?}"))?;
                redaction.paths.push(path);
            } else if entry.is_empty() {
                return Err("empty redaction key".into());
            } else {
                redaction.keys.push(entry.clone());
            }
        }
        Ok(redaction)
    }

    /// The serialized, redacted, capped arguments.
    pub fn render(&self, arguments: &Value) -> String {
        let text = if self.keys.is_empty() && self.paths.is_empty() {
            arguments.to_string()
        } else {
            let mut copy = arguments.clone();
            self.redact(&mut copy);
            copy.to_string()
        };
        cap(text, self.max_bytes)
    }

    /// What [`Redaction::render`] gives for `arguments.to_serde_json()` (same key order, number
    /// and string forms, redaction and cut), written straight from the parsed body: nothing is
    /// copied or converted, and writing stops at the byte cap.
    pub fn render_raw(&self, arguments: &RawValue<'_>) -> String {
        let mut out = Capped {
            out: Vec::new(),
            keep: self.max_bytes.saturating_add(1),
        };
        let paths: Vec<&[Segment]> = self.paths.iter().map(Vec::as_slice).collect();
        self.write_raw(arguments, &paths, &mut out);
        out.finish(self.max_bytes)
    }

    /// Writes `value`; `paths` are the rests of the redaction paths that lead to it.
    fn write_raw(&self, value: &RawValue<'_>, paths: &[&[Segment]], out: &mut Capped) {
        if out.is_full() {
            return;
        }
        if paths.iter().any(|p| p.is_empty()) {
            write_json_string(out, REDACTED);
            return;
        }
        match value.kind() {
            ValueKind::Null => out.push(b"null"),
            ValueKind::Bool(b) => out.push(if *b { b"true" } else { b"false" }),
            ValueKind::Number(n) => match serde_json::from_str::<serde_json::Number>(n) {
                Ok(number) => out.push(number.to_string().as_bytes()),
                // Not reached: such arguments are refused before the audit record.
                Err(_) => out.push(b"null"),
            },
            ValueKind::String(text) => write_json_string(out, text),
            // Not reached: request arguments are parsed in full. Built here so nothing is lost.
            ValueKind::Opaque => match value.materialize() {
                Ok(full) => self.write_raw(&full, paths, out),
                Err(_) => out.push(b"null"),
            },
            ValueKind::Array(items) => {
                out.push(b"[");
                for (i, item) in items.iter().enumerate() {
                    if out.is_full() {
                        return;
                    }
                    if i > 0 {
                        out.push(b",");
                    }
                    let inner: Vec<&[Segment]> = paths
                        .iter()
                        .filter_map(|p| match p.split_first() {
                            Some((Segment::Index(n), rest)) if *n == i => Some(rest),
                            Some((Segment::Any, rest)) => Some(rest),
                            _ => None,
                        })
                        .collect();
                    self.write_raw(item, &inner, out);
                }
                out.push(b"]");
            }
            ValueKind::Object(members) => {
                // `serde_json::Map` keeps its keys sorted.
                let mut sorted: Vec<_> = members.iter().collect();
                sorted.sort_unstable_by(|a, b| a.key.cmp(&b.key));
                out.push(b"{");
                for (i, member) in sorted.into_iter().enumerate() {
                    if out.is_full() {
                        return;
                    }
                    if i > 0 {
                        out.push(b",");
                    }
                    write_json_string(out, &member.key);
                    out.push(b":");
                    if self.keys.iter().any(|k| *k == *member.key) {
                        write_json_string(out, REDACTED);
                        continue;
                    }
                    let inner: Vec<&[Segment]> = paths
                        .iter()
                        .filter_map(|p| match p.split_first() {
                            Some((Segment::Key(k), rest)) if *k == *member.key => Some(rest),
                            Some((Segment::Any, rest)) => Some(rest),
                            _ => None,
                        })
                        .collect();
                    self.write_raw(&member.value, &inner, out);
                }
                out.push(b"}");
            }
        }
    }

    fn redact(&self, value: &mut Value) {
        if !self.keys.is_empty() {
            redact_keys(value, &self.keys);
        }
        for path in &self.paths {
            redact_path(value, path);
        }
    }
}

fn redact_keys(value: &mut Value, keys: &[String]) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if keys.iter().any(|k| k == key) {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact_keys(v, keys);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_keys(v, keys)),
        _ => {}
    }
}

fn redact_path(value: &mut Value, path: &[Segment]) {
    let Some((first, rest)) = path.split_first() else {
        *value = Value::String(REDACTED.into());
        return;
    };
    match (first, value) {
        (Segment::Key(key), Value::Object(map)) => {
            if let Some(v) = map.get_mut(key) {
                redact_path(v, rest);
            }
        }
        (Segment::Index(i), Value::Array(items)) => {
            if let Some(v) = items.get_mut(*i) {
                redact_path(v, rest);
            }
        }
        (Segment::Any, Value::Object(map)) => map.values_mut().for_each(|v| redact_path(v, rest)),
        (Segment::Any, Value::Array(items)) => items.iter_mut().for_each(|v| redact_path(v, rest)),
        _ => {}
    }
}

/// `$`, `.key`, `.*`, `[n]`, `[*]`, `["key"]` / `['key']`.
fn parse_path(path: &str) -> Option<Vec<Segment>> {
    let mut rest = path.strip_prefix('$')?;
    let mut segments = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let key = after.get(..end)?;
            if key.is_empty() {
                return None;
            }
            segments.push(if key == "*" {
                Segment::Any
            } else {
                Segment::Key(key.to_owned())
            });
            rest = after.get(end..)?;
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            let inner = after.get(..end)?;
            let quoted = inner
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')));
            segments.push(match quoted {
                Some(key) => Segment::Key(key.to_owned()),
                None if inner == "*" => Segment::Any,
                None => Segment::Index(inner.parse().ok()?),
            });
            rest = after.get(end.checked_add(1)?..)?;
        } else {
            return None;
        }
    }
    Some(segments)
}

/// An output that keeps only its first `keep` bytes (the cap plus one, to know it was passed).
struct Capped {
    out: Vec<u8>,
    keep: usize,
}

impl Capped {
    fn is_full(&self) -> bool {
        self.out.len() >= self.keep
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = self.keep.saturating_sub(self.out.len());
        let take = bytes.get(..room).unwrap_or(bytes);
        self.out.extend_from_slice(take);
    }

    /// The text, cut as [`cap`] cuts it.
    fn finish(mut self, max_bytes: usize) -> String {
        if self.out.len() > max_bytes {
            let mut end = max_bytes;
            // Back to a character boundary (the byte at `end` does not continue a character).
            while end > 0 && self.out.get(end).is_some_and(|b| b & 0xC0 == 0x80) {
                end = end.saturating_sub(1);
            }
            self.out.truncate(end);
            let mut text = String::from_utf8_lossy(&self.out).into_owned();
            text.push_str(TRUNCATED);
            return text;
        }
        String::from_utf8(self.out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

/// A JSON string literal as `serde_json` writes it.
fn write_json_string(out: &mut Capped, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b"\"");
    // Every input byte writes at least one byte, so what lies past the room left is never
    // written: a 64 KB argument costs no more than the cap.
    let room = out.keep.saturating_sub(out.out.len());
    let bytes = s.as_bytes();
    let bytes = bytes.get(..room).unwrap_or(bytes);
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0x00..=0x1F => b"",
            _ => continue,
        };
        out.push(bytes.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            let hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            let lo = HEX.get(usize::from(b & 0xF)).copied().unwrap_or(b'0');
            out.push(&[b'\\', b'u', b'0', b'0', hi, lo]);
        } else {
            out.push(escape);
        }
        start = i.saturating_add(1);
        if out.is_full() {
            return;
        }
    }
    out.push(bytes.get(start..).unwrap_or_default());
    out.push(b"\"");
}

/// Cuts `text` to at most `max_bytes` bytes on a character boundary, marking the cut.
pub fn cap(mut text: String, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    text.truncate(end);
    text.push_str(TRUNCATED);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redaction(entries: &[&str], max: usize) -> Redaction {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        Redaction::compile(&entries, max).unwrap()
    }

    #[test]
    fn keys_are_redacted_at_any_depth() {
        let r = redaction(&["password"], 1000);
        let args = json!({"user": "a", "password": "p", "nested": [{"password": {"x": 1}}]});
        assert_eq!(
            r.render(&args),
            r#"{"nested":[{"password":"[redacted]"}],"password":"[redacted]","user":"a"}"#
        );
    }

    #[test]
    fn paths_are_redacted_exactly() {
        let r = redaction(
            &["$.auth.token", "$.items[1].secret", "$[\"odd.key\"]"],
            1000,
        );
        let args = json!({
            "auth": {"token": "t", "user": "u"},
            "token": "top-level stays",
            "items": [{"secret": 1}, {"secret": 2}],
            "odd.key": "x"
        });
        let out: Value = serde_json::from_str(&r.render(&args)).unwrap();
        assert_eq!(out["auth"], json!({"token": REDACTED, "user": "u"}));
        assert_eq!(out["token"], "top-level stays");
        assert_eq!(out["items"], json!([{"secret": 1}, {"secret": REDACTED}]));
        assert_eq!(out["odd.key"], REDACTED);
        let r = redaction(&["$.items[*].secret", "$.*.inner"], 1000);
        let out: Value = serde_json::from_str(&r.render(&json!({
            "items": [{"secret": 1}, {"secret": 2}], "a": {"inner": 3}
        })))
        .unwrap();
        assert_eq!(
            out["items"],
            json!([{"secret": REDACTED}, {"secret": REDACTED}])
        );
        assert_eq!(out["a"]["inner"], REDACTED);
    }

    #[test]
    fn whole_arguments_path() {
        let r = redaction(&["$"], 1000);
        assert_eq!(r.render(&json!({"a": 1})), "\"[redacted]\"");
    }

    #[test]
    fn invalid_paths_are_refused() {
        for bad in ["$.", "$..a", "$[", "$[x]", "$a", "$[1"] {
            assert!(Redaction::compile(&[bad.to_string()], 10).is_err(), "{bad}");
        }
        assert!(Redaction::compile(&[String::new()], 10).is_err());
    }

    #[test]
    fn render_raw_matches_render() {
        let inputs = [
            r#"{"b":1,"a":[1,2.50,-0,1e5,1E-7,12345678901234567890123,-9223372036854775808],"c":null}"#,
            r#"{"text":"q\"\\/\b\f\n\r\t\u0001\u001f\u007f é ☃ \ud83d\ude00","z":true,"y":false}"#,
            r#"{"password":"p","nested":[{"password":{"x":1}},{"secret":[1,2]}],"user":"a"}"#,
            r#"{"auth":{"token":"t","user":"u"},"items":[{"secret":1},{"secret":2}],"odd.key":"x","a":{"inner":3}}"#,
            r#"[{"a":1},{"secret":2},"x",[]]"#,
            r#""plain""#,
            r#"{"é":1,"e":2,"E":3,"":4,"ab":5,"a":6}"#,
            r#"{"text":"ééééééééééééééééééééé☃☃☃☃☃☃☃☃☃"}"#,
            r#"{}"#,
            r#"[]"#,
        ];
        // Strings far longer than the cap, escapes and multi-byte characters on either side of it.
        let long = format!(
            r#"{{"q":"{}","r":"{}"}}"#,
            r#"ab\n\"é☃"#.repeat(400),
            "x".repeat(5000)
        );
        let inputs: Vec<&str> = inputs.into_iter().chain([long.as_str()]).collect();
        let settings: [&[&str]; 5] = [
            &[],
            &["password"],
            &[
                "$.auth.token",
                "$.items[1].secret",
                "$[\"odd.key\"]",
                "$.*.inner",
            ],
            &["$"],
            &[
                "secret",
                "$.items[*].secret",
                "$[1]",
                "$.nested[*].password.x",
            ],
        ];
        for input in inputs {
            let raw = mcpgate_protocol::json::parse(input, 64).unwrap();
            let value = raw.to_serde_json().unwrap();
            for entries in settings {
                for max in [
                    0, 1, 2, 5, 9, 10, 11, 17, 30, 31, 32, 33, 60, 1000, 1001, 2047, 4096,
                ] {
                    let r = redaction(entries, max);
                    assert_eq!(
                        r.render_raw(&raw),
                        r.render(&value),
                        "{input} {entries:?} {max}"
                    );
                }
            }
        }
    }

    #[test]
    fn cap_cuts_on_a_char_boundary() {
        assert_eq!(cap("abcdef".into(), 6), "abcdef");
        assert_eq!(cap("abcdef".into(), 3), format!("abc{TRUNCATED}"));
        // 'é' is two bytes: a cut inside it moves back.
        assert_eq!(cap("aéb".into(), 2), format!("a{TRUNCATED}"));
        assert_eq!(cap("é".into(), 0), TRUNCATED);
        let r = redaction(&[], 10);
        let out = r.render(&json!({"text": "ééééééééé"}));
        assert!(out.starts_with(r#"{"text":""#) && out.ends_with(TRUNCATED));
        assert!(out.len() <= 10 + TRUNCATED.len());
    }
}
