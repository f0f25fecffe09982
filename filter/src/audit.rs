//! Audit records: the filter-state fields Envoy's access log prints
//! (`%FILTER_STATE(wasm.mcpgate_<field>:PLAIN)%`), and argument redaction. No host calls.
//!
//! Redaction entries are either a plain key (`password`: every object member with that name, at
//! any depth) or a JSON path from the arguments object: `$.auth.token`, `$.items[0].secret`,
//! `$["odd.key"]`, `$.items[*].secret` (`*` is every member or element). Matched values become
//! the string `"[redacted]"`. The serialized arguments are then cut at the route's byte cap on a
//! character boundary and marked with [`TRUNCATED`]. A token is never part of a record.

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
