//! A chat completions request read as the playbook needs it: the latest user question, the
//! functions on offer, and the tool calls already made since that question with their results.

use serde_json::{Map, Value};

use crate::api_error::ApiError;
use crate::playbook::{self, Failure, FailureKind, Outcome, StepResult, ToolCall};

#[derive(Debug)]
pub struct ChatRequest {
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// The offered function names.
    pub functions: Vec<String>,
    pub question: String,
    /// Calls made since the question, with their results, in order.
    pub done: Vec<StepResult>,
    /// Characters of prompt, for the usage estimate.
    pub prompt_chars: usize,
}

/// What the model says this round.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Call(ToolCall),
    Text(String),
}

/// The playbook's next step for this conversation: a call it still wants, else the answer.
pub fn reply(request: &ChatRequest) -> Reply {
    let plan = playbook::plan(&request.question, &request.functions);
    match plan.next_call(&request.done) {
        Some(call) => Reply::Call(call),
        None => Reply::Text(plan.answer(&request.done)),
    }
}

pub fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_json(&e.to_string()))?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::bad_json("the body is not a JSON object"));
    };
    let model = match object.get("model") {
        None | Some(Value::Null) => return Err(ApiError::missing("model")),
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                "model",
                "'model' must be a non-empty string.",
            ))
        }
    };
    let stream = match object.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("stream", "'stream' must be a boolean.")),
    };
    let include_usage = object
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let functions = read_functions(object.get("tools"))?;
    let messages = match object.get("messages") {
        None | Some(Value::Null) => return Err(ApiError::missing("messages")),
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(_) => {
            return Err(ApiError::invalid(
                "messages",
                "'messages' must be a non-empty array of messages.",
            ))
        }
    };
    let (question, done) = read_messages(messages)?;
    Ok(ChatRequest {
        model,
        stream,
        include_usage,
        functions,
        question,
        done,
        prompt_chars: value.get("messages").map_or(0, |m| m.to_string().len()),
    })
}

fn read_functions(tools: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let tools = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(tools)) => tools,
        Some(_) => return Err(ApiError::invalid("tools", "'tools' must be an array.")),
    };
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(ApiError::invalid(
                    format!("tools[{i}].type"),
                    "Only 'function' tools are supported.",
                ));
            }
            tool.get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| ApiError::missing(&format!("tools[{i}].function.name")))
        })
        .collect()
}

fn read_messages(messages: &[Value]) -> Result<(String, Vec<StepResult>), ApiError> {
    let role = |m: &Value| m.get("role").and_then(Value::as_str).map(str::to_owned);
    for (i, m) in messages.iter().enumerate() {
        if role(m).is_none() {
            return Err(ApiError::missing(&format!("messages[{i}].role")));
        }
    }
    let last_user = messages
        .iter()
        .rposition(|m| role(m).as_deref() == Some("user"))
        .ok_or_else(|| {
            ApiError::invalid(
                "messages",
                "'messages' has no user message for the model to answer.",
            )
        })?;
    let question = text_of(messages[last_user].get("content")).unwrap_or_default();

    let after = &messages[last_user + 1..];
    let mut done = Vec::new();
    for (offset, m) in after.iter().enumerate() {
        if role(m).as_deref() != Some("assistant") {
            continue;
        }
        let Some(calls) = m.get("tool_calls").and_then(Value::as_array) else {
            continue;
        };
        let mut unanswered = Vec::new();
        for call in calls {
            let id = call.get("id").and_then(Value::as_str).unwrap_or("");
            let function = call.get("function");
            let name = function
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let arguments = function
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
                .and_then(|a| serde_json::from_str::<Map<String, Value>>(a).ok())
                .unwrap_or_default();
            let result = after.iter().find(|r| {
                role(r).as_deref() == Some("tool")
                    && r.get("tool_call_id").and_then(Value::as_str) == Some(id)
            });
            let Some(result) = result else {
                unanswered.push(id.to_owned());
                continue;
            };
            let short = name.rsplit("__").next().unwrap_or(&name).to_owned();
            done.push(StepResult {
                call: ToolCall {
                    tool: name,
                    short,
                    arguments,
                },
                outcome: outcome_of(&text_of(result.get("content")).unwrap_or_default()),
            });
        }
        if !unanswered.is_empty() {
            return Err(ApiError::invalid(
                format!("messages.[{}].role", last_user + 1 + offset),
                format!(
                    "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                    unanswered.join(", ")
                ),
            ));
        }
    }
    Ok((question, done))
}

/// A message's text: a string, or its text parts joined.
fn text_of(content: Option<&Value>) -> Option<String> {
    match content? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

/// How a tool message reports its call. The app relays what its MCP client got:
/// - a JSON object with `error` (a string, or an object with `message`; one with a JSON-RPC
///   `code`, or a message starting `mcpgate:`, is a rejection, else a tool error);
/// - a bare JSON-RPC error object `{"code": <int>, "message": …}` (a rejection);
/// - a tool result object with `isError: true` (a tool error; its text content is the message);
/// - text starting `mcpgate:` or saying "denied by policy" (a rejection), or `Error:` (a tool error);
/// - anything else is the tool's output.
pub fn outcome_of(content: &str) -> Outcome {
    let trimmed = content.trim();
    let failed = |kind, message: String| Outcome::Failed(Failure { kind, message });
    if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(trimmed) {
        if let Some(error) = object.get("error").filter(|e| !e.is_null()) {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .or(error.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| error.to_string());
            let kind = if error.get("code").is_some() || message.starts_with("mcpgate:") {
                FailureKind::Rejected
            } else {
                FailureKind::ToolError
            };
            return failed(kind, message);
        }
        if let (Some(_), Some(message)) = (
            object.get("code").and_then(Value::as_i64),
            object.get("message").and_then(Value::as_str),
        ) {
            if object
                .keys()
                .all(|k| ["code", "message", "data"].contains(&k.as_str()))
            {
                return failed(FailureKind::Rejected, message.to_owned());
            }
        }
        if object.get("isError").and_then(Value::as_bool) == Some(true) {
            let message = text_of(object.get("content")).unwrap_or_default();
            return failed(FailureKind::ToolError, message);
        }
        return Outcome::Output(content.to_owned());
    }
    if trimmed.starts_with("mcpgate:") || trimmed.contains("denied by policy") {
        return failed(FailureKind::Rejected, trimmed.to_owned());
    }
    if trimmed
        .get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("error:"))
    {
        return failed(FailureKind::ToolError, trimmed[6..].trim().to_owned());
    }
    Outcome::Output(content.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_json(v: Value) -> Result<ChatRequest, ApiError> {
        parse(v.to_string().as_bytes())
    }

    fn tools(names: &[&str]) -> Value {
        Value::Array(
            names
                .iter()
                .map(|n| json!({"type": "function", "function": {"name": n, "description": "d", "parameters": {"type": "object"}}}))
                .collect(),
        )
    }

    #[test]
    fn first_round_asks_for_the_tool() {
        let r = parse_json(json!({
            "model": "standin-1",
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "Sales by year?"}],
            "tools": tools(&["sqlite__list_tables", "sqlite__query"])
        }))
        .unwrap();
        let Reply::Call(call) = reply(&r) else {
            panic!()
        };
        assert_eq!(call.tool, "sqlite__query");
        assert_eq!(call.arguments["sql"], playbook::SALES_BY_YEAR_SQL);
    }

    #[test]
    fn multi_step_rules_go_one_call_per_round() {
        let mut messages = vec![
            json!({"role": "user", "content": "earlier question"}),
            json!({"role": "assistant", "content": "earlier answer"}),
            json!({"role": "user", "content": [{"type": "text", "text": "What do my notes say about onboarding?"}]}),
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "notes__search", "arguments": "{\"query\":\"onboarding\"}"}}]}),
            json!({"role": "tool", "tool_call_id": "call_1", "content": "{\"results\":[{\"id\":\"n-4\",\"title\":\"Onboarding\",\"url\":\"http://n/4\"}]}"}),
        ];
        let body = |m: &Vec<Value>| json!({"model": "standin-1", "messages": m, "tools": tools(&["notes__search", "notes__fetch"])});
        let Reply::Call(call) = reply(&parse_json(body(&messages)).unwrap()) else {
            panic!()
        };
        assert_eq!(call.tool, "notes__fetch");
        assert_eq!(call.arguments["id"], "n-4");

        messages.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_2", "type": "function", "function": {"name": "notes__fetch", "arguments": "{\"id\":\"n-4\"}"}}]}));
        messages.push(json!({"role": "tool", "tool_call_id": "call_2", "content": "{\"id\":\"n-4\",\"title\":\"Onboarding\",\"text\":\"Day one: laptop.\",\"url\":\"http://n/4\"}"}));
        let Reply::Text(text) = reply(&parse_json(body(&messages)).unwrap()) else {
            panic!()
        };
        assert_eq!(
            text,
            "Your notes have a page on this: [Onboarding](http://n/4).\n\n> Day one: laptop."
        );
    }

    #[test]
    fn the_final_round_reports_a_denial() {
        let r = parse_json(json!({
            "model": "standin-1",
            "messages": [
                {"role": "user", "content": "list the salaries"},
                {"role": "assistant", "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "sqlite__query", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_9", "content": "{\"error\":{\"code\":-32001,\"message\":\"mcpgate: tools/call 'query' denied by policy (request 3)\",\"data\":{\"reason\":\"no\"}}}"}
            ],
            "tools": tools(&["sqlite__query"])
        }))
        .unwrap();
        assert_eq!(
            reply(&r),
            Reply::Text("The gateway refused the call to `query`: mcpgate: tools/call 'query' denied by policy (request 3)".into())
        );
    }

    #[test]
    fn unanswered_tool_calls_are_an_error_like_openais() {
        let e = parse_json(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "sales by year"},
                {"role": "assistant", "tool_calls": [{"id": "call_x", "type": "function", "function": {"name": "query", "arguments": "{}"}}]}
            ]
        }))
        .unwrap_err();
        assert!(e.message.contains("call_x"));
        assert_eq!(e.param.as_deref(), Some("messages.[1].role"));
    }

    #[test]
    fn bad_requests_name_the_field() {
        let param = |v: Value| parse_json(v).unwrap_err().param;
        assert_eq!(
            param(json!({"messages": [{"role": "user", "content": "x"}]})),
            Some("model".into())
        );
        assert_eq!(param(json!({"model": "m"})), Some("messages".into()));
        assert_eq!(
            param(json!({"model": "m", "messages": [{"content": "x"}]})),
            Some("messages[0].role".into())
        );
        assert_eq!(
            param(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search"}]})
            ),
            Some("tools[0].type".into())
        );
    }

    #[test]
    fn tool_message_contents_are_read_as_outcomes() {
        let rejected = |m: &str| {
            Outcome::Failed(Failure {
                kind: FailureKind::Rejected,
                message: m.into(),
            })
        };
        let tool_error = |m: &str| {
            Outcome::Failed(Failure {
                kind: FailureKind::ToolError,
                message: m.into(),
            })
        };
        assert_eq!(
            outcome_of(r#"{"rows":[]}"#),
            Outcome::Output(r#"{"rows":[]}"#.into())
        );
        assert_eq!(outcome_of("Echo: hi"), Outcome::Output("Echo: hi".into()));
        assert_eq!(
            outcome_of(r#"{"error":"refused: writes"}"#),
            tool_error("refused: writes")
        );
        assert_eq!(
            outcome_of(r#"{"error":"mcpgate: denied"}"#),
            rejected("mcpgate: denied")
        );
        assert_eq!(
            outcome_of(r#"{"code":-32001,"message":"mcpgate: no","data":{}}"#),
            rejected("mcpgate: no")
        );
        assert_eq!(
            outcome_of(r#"{"isError":true,"content":[{"type":"text","text":"bad sql"}]}"#),
            tool_error("bad sql")
        );
        assert_eq!(
            outcome_of("mcpgate: tools/call 'x' denied by policy"),
            rejected("mcpgate: tools/call 'x' denied by policy")
        );
        assert_eq!(
            outcome_of("Error: the notes provider refused the token"),
            tool_error("the notes provider refused the token")
        );
    }
}
