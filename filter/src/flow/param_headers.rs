//! The `x-mcp-header` annotations of a route's tools, learned from the `tools/list` answers the
//! filter passes on and kept in shared data (every worker checks a `tools/call` against the same
//! definitions). Without a tool's definition its `Mcp-Param-*` headers are not recognised and
//! pass unchecked, as the 2026-07-28 transport requires of an intermediary; the MCP server
//! validates them itself.

use mcpgate_protocol::request_metadata::ParamHeader;
use serde_json::{json, Value};

use super::host::{Host, LogLevel};

/// Longest tool name kept (the key is built from it; a server chooses it).
const MAX_TOOL_NAME: usize = 256;

/// The annotations learned for `tool` on the route with `prefix`, if any.
pub(super) fn load<H: Host>(host: &H, prefix: &str, tool: &str) -> Option<Vec<ParamHeader>> {
    if tool.len() > MAX_TOOL_NAME {
        return None;
    }
    let (bytes, _) = host.shared_data(&format!("{prefix}{tool}")).ok()?;
    decode(&bytes?)
}

/// Keeps what a `tools/list` answer said. A tool whose annotations are invalid (clients must not
/// call it) is stored without any, so an older definition does not linger.
pub(super) fn store<H: Host>(
    host: &H,
    prefix: &str,
    learned: Vec<(String, Option<Vec<ParamHeader>>)>,
) {
    for (tool, params) in learned {
        if tool.len() > MAX_TOOL_NAME {
            continue;
        }
        let value = encode(params.as_deref().unwrap_or_default());
        if let Err(e) = host.set_shared_data(&format!("{prefix}{tool}"), value.as_bytes(), None) {
            host.log(
                LogLevel::Warn,
                &format!("mcpgate: cannot keep the x-mcp-header annotations of a tool: {e}"),
            );
        }
    }
}

fn encode(params: &[ParamHeader]) -> String {
    Value::Array(
        params
            .iter()
            .map(|p| json!({"name": p.name, "path": p.path}))
            .collect(),
    )
    .to_string()
}

fn decode(bytes: &[u8]) -> Option<Vec<ParamHeader>> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    value
        .as_array()?
        .iter()
        .map(|p| {
            Some(ParamHeader {
                name: p.get("name")?.as_str()?.to_owned(),
                path: p
                    .get("path")?
                    .as_array()?
                    .iter()
                    .map(|k| k.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_round_trip() {
        let params = vec![ParamHeader {
            name: "Region".into(),
            path: vec!["opts".into(), "region".into()],
        }];
        assert_eq!(decode(encode(&params).as_bytes()), Some(params));
        assert_eq!(decode(b"[]"), Some(vec![]));
        assert_eq!(decode(b"{"), None);
        assert_eq!(decode(br#"[{"name":1,"path":[]}]"#), None);
    }
}
