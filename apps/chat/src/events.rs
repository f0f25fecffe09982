//! The events `POST /api/chat` streams to the browser (`text/event-stream`; the SSE event name is
//! the `type`, the data the whole JSON object).

use serde::Serialize;
use serde_json::Value;

use crate::denial::Denial;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatEvent {
    /// A tool call started.
    ToolCall {
        id: String,
        server: String,
        server_url: String,
        tool: String,
        arguments: Value,
    },
    /// A tool call ended.
    ToolResult {
        id: String,
        server: String,
        tool: String,
        #[serde(flatten)]
        outcome: ToolOutcome,
    },
    /// More of the assistant's answer (markdown).
    Text { delta: String },
    /// The answer is complete.
    Done,
    /// Something a person should read; the stream ends after it.
    Error { message: String },
}

impl ChatEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            ChatEvent::ToolCall { .. } => "tool_call",
            ChatEvent::ToolResult { .. } => "tool_result",
            ChatEvent::Text { .. } => "text",
            ChatEvent::Done => "done",
            ChatEvent::Error { .. } => "error",
        }
    }
}

/// How a tool call ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ToolOutcome {
    /// `result`: the structured content, the text parsed as JSON, or the text.
    Ok { result: Value },
    /// The gateway's policy refused the call.
    Denied {
        #[serde(flatten)]
        denial: Denial,
    },
    /// The tool reported an error, or the call did not get through.
    Failed { message: String },
}

impl ToolOutcome {
    /// What the language model is told about the outcome.
    pub fn for_model(&self) -> String {
        match self {
            ToolOutcome::Ok {
                result: Value::String(text),
            } => text.clone(),
            ToolOutcome::Ok { result } => result.to_string(),
            ToolOutcome::Denied { denial } => match &denial.reason {
                Some(reason) => format!(
                    "Error: the gateway denied this call by policy: {} (reason: {reason})",
                    denial.message
                ),
                None => format!(
                    "Error: the gateway denied this call by policy: {}",
                    denial.message
                ),
            },
            ToolOutcome::Failed { message } => format!("Error: {message}"),
        }
    }
}

/// A tool's output as the app shows it: JSON when the text is JSON, else the text.
pub fn result_value(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ (Value::Object(_) | Value::Array(_))) => value,
        _ => Value::String(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_shapes() {
        let denied = ChatEvent::ToolResult {
            id: "c1".into(),
            server: "Sales database".into(),
            tool: "query".into(),
            outcome: ToolOutcome::Denied {
                denial: Denial {
                    reason: Some("HR only".into()),
                    message: "denied by policy".into(),
                },
            },
        };
        assert_eq!(
            serde_json::to_value(&denied).expect("json"),
            json!({"type": "tool_result", "id": "c1", "server": "Sales database", "tool": "query",
                   "status": "denied", "reason": "HR only", "message": "denied by policy"})
        );
        assert_eq!(
            serde_json::to_value(ChatEvent::Done).expect("json"),
            json!({"type": "done"})
        );
        let ok = ToolOutcome::Ok {
            result: json!({"rows": [[1]]}),
        };
        assert_eq!(
            serde_json::to_value(&ok).expect("json"),
            json!({"status": "ok", "result": {"rows": [[1]]}})
        );
    }

    #[test]
    fn result_values() {
        assert_eq!(result_value("{\"a\":1}"), json!({"a": 1}));
        assert_eq!(result_value("42"), json!("42"));
        assert_eq!(result_value("hello"), json!("hello"));
    }
}
