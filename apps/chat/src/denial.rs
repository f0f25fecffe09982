//! The gateway's policy denial, recognised wherever it surfaces: as the JSON-RPC error a tool call
//! gets back (code -32001, `data.reason`), or as text a language model API relays from its own MCP
//! client ("… denied by policy …").

use serde::Serialize;
use serde_json::Value;

/// The JSON-RPC error code the gateway answers a denied MCP request with.
pub const POLICY_DENIED_CODE: i64 = -32001;

/// A denial as the app shows it: the policy's reason (when the gateway gave one) and the gateway's
/// message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub message: String,
}

/// A JSON-RPC error (`code`, `message`, `data`) → a denial when the code is the gateway's.
pub fn from_jsonrpc_error(code: i64, message: &str, data: Option<&Value>) -> Option<Denial> {
    (code == POLICY_DENIED_CODE).then(|| Denial {
        reason: data.and_then(reason_in),
        message: message.to_string(),
    })
}

/// A JSON-RPC error object (`{"code","message","data"}`, or a whole response carrying `error`).
pub fn from_jsonrpc_value(value: &Value) -> Option<Denial> {
    let error = value
        .get("error")
        .filter(|e| e.is_object())
        .unwrap_or(value);
    let code = error.get("code")?.as_i64()?;
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    from_jsonrpc_error(code, message, error.get("data"))
}

/// An error as another MCP client reports it (a string, or an object with a message, JSON-RPC
/// fields or text content) → a denial when it is one.
pub fn from_reported(error: &Value) -> Option<Denial> {
    if let Some(denial) = from_jsonrpc_value(error) {
        return Some(denial);
    }
    if let Some(text) = error.as_str() {
        // A relayed error is often the JSON-RPC error serialised into a string.
        if let Ok(parsed) = serde_json::from_str::<Value>(text) {
            if parsed.is_object() {
                return from_reported(&parsed);
            }
        }
        return from_text(text);
    }
    let text = reported_text(error)?;
    from_text(&text).map(|mut denial| {
        denial.reason = denial.reason.or_else(|| reason_in(error));
        denial
    })
}

/// Free text → a denial when it says the policy denied the call; the reason is what follows
/// `reason:` when the text carries one.
pub fn from_text(text: &str) -> Option<Denial> {
    if !text.to_ascii_lowercase().contains("denied by policy") {
        return None;
    }
    let reason = text
        .to_ascii_lowercase()
        .find("reason:")
        .map(|at| {
            text[at + "reason:".len()..]
                .trim()
                .trim_end_matches(['.', ')'])
                .trim()
        })
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    Some(Denial {
        reason,
        message: text.trim().to_string(),
    })
}

/// The human text of a reported error object: `message`, or the text items of `content`.
pub fn reported_text(error: &Value) -> Option<String> {
    if let Some(text) = error.as_str() {
        return Some(text.to_string());
    }
    if let Some(message) = error.get("message").and_then(Value::as_str) {
        return Some(message.to_string());
    }
    let parts: Vec<&str> = error
        .get("content")?
        .as_array()?
        .iter()
        .filter_map(|c| c.get("text").and_then(Value::as_str))
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

/// `data.reason` (or `reason`) as text.
fn reason_in(data: &Value) -> Option<String> {
    let reason = data
        .get("data")
        .and_then(|d| d.get("reason"))
        .or_else(|| data.get("reason"))?;
    match reason {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::String(_) | Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MESSAGE: &str = "mcpgate: tools/call 'query' denied by policy (request 7f3a)";

    #[test]
    fn gateway_jsonrpc_error_is_a_denial_with_its_reason() {
        let denial = from_jsonrpc_error(
            -32001,
            MESSAGE,
            Some(&json!({"reason": "salaries are HR-only"})),
        )
        .expect("denial");
        assert_eq!(denial.reason.as_deref(), Some("salaries are HR-only"));
        assert_eq!(denial.message, MESSAGE);
    }

    #[test]
    fn other_codes_are_not_denials() {
        assert_eq!(from_jsonrpc_error(-32603, "internal error", None), None);
        assert_eq!(
            from_jsonrpc_value(&json!({"code": -32602, "message": "bad"})),
            None
        );
    }

    #[test]
    fn whole_response_and_missing_reason() {
        let response =
            json!({"jsonrpc": "2.0", "id": 3, "error": {"code": -32001, "message": MESSAGE}});
        let denial = from_jsonrpc_value(&response).expect("denial");
        assert_eq!(denial.reason, None);
        assert_eq!(denial.message, MESSAGE);
    }

    #[test]
    fn relayed_string_holding_the_jsonrpc_error() {
        let relayed = json!(
            json!({"code": -32001, "message": MESSAGE, "data": {"reason": "HR only"}}).to_string()
        );
        let denial = from_reported(&relayed).expect("denial");
        assert_eq!(denial.reason.as_deref(), Some("HR only"));
    }

    #[test]
    fn relayed_free_text_with_a_reason() {
        let text = format!("Error calling tool: {MESSAGE}; reason: salaries are HR-only.");
        let denial = from_reported(&json!(text)).expect("denial");
        assert_eq!(denial.reason.as_deref(), Some("salaries are HR-only"));
        assert_eq!(denial.message, text);
    }

    #[test]
    fn relayed_object_with_content_text() {
        let error = json!({"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": MESSAGE}]});
        let denial = from_reported(&error).expect("denial");
        assert_eq!(denial.message, MESSAGE);
        assert_eq!(from_reported(&json!({"message": "connection reset"})), None);
        assert_eq!(from_reported(&json!("timeout")), None);
    }
}
