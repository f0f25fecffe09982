//! Mode `responses`: the model's API calls the MCP servers itself. The app sends each enabled
//! server as a `{"type": "mcp"}` tool carrying the user's gateway token, reads the streamed
//! Responses events and turns them into the app's own events.

use std::collections::{HashMap, HashSet};

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::conversation::{EnabledServer, Message, SYSTEM_PROMPT};
use crate::denial;
use crate::event_stream::SseReader;
use crate::events::{result_value, ChatEvent, ToolOutcome};
use crate::gateway::GatewayToken;
use crate::models::Model;

/// A server as the model's API knows it (`server_label`) and as the app shows it.
#[derive(Debug, Clone)]
struct Labelled {
    name: String,
    url: String,
}

/// `server_label`s must be short identifiers; each server gets its name made into one, unique.
pub fn server_labels(servers: &[EnabledServer]) -> Vec<String> {
    let mut seen = HashSet::new();
    servers
        .iter()
        .map(|s| {
            let base = crate::tool_loop::identifier(&s.name, 48);
            let mut label = base.clone();
            let mut n = 2;
            while !seen.insert(label.clone()) {
                label = format!("{base}_{n}");
                n += 1;
            }
            label
        })
        .collect()
}

/// The body of `POST <base_url>/responses`.
pub fn request_body(
    model: &Model,
    messages: &[Message],
    servers: &[EnabledServer],
    token: &GatewayToken,
) -> Value {
    let labels = server_labels(servers);
    let tools: Vec<Value> = servers
        .iter()
        .zip(&labels)
        .map(|(server, label)| {
            let mut tool = json!({
                "type": "mcp",
                "server_label": label,
                "server_url": server.url,
                "headers": {"Authorization": format!("Bearer {}", token.expose())},
                "require_approval": "never",
                "allowed_tools": server.tools,
            });
            if let Some(description) = server.description.as_deref().filter(|d| !d.is_empty()) {
                tool["server_description"] = json!(description);
            }
            tool
        })
        .collect();
    let input: Vec<Value> = messages
        .iter()
        .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
        .collect();
    json!({
        "model": model.id,
        "stream": true,
        "instructions": SYSTEM_PROMPT,
        "input": input,
        "tools": tools,
    })
}

#[derive(Debug, Default)]
struct Call {
    label: String,
    tool: String,
    arguments: String,
    started: bool,
}

/// Turns a Responses event stream into the app's events. Feed every event in order to
/// [`ResponsesMapper::on_event`], then call [`ResponsesMapper::finish`].
pub struct ResponsesMapper {
    servers: HashMap<String, Labelled>,
    calls: HashMap<String, Call>,
    /// Message items whose text arrived as deltas (their `done` item repeats it).
    streamed: HashSet<String>,
    ended: bool,
}

impl ResponsesMapper {
    pub fn new(servers: &[EnabledServer]) -> Self {
        let servers = server_labels(servers)
            .into_iter()
            .zip(servers)
            .map(|(label, s)| {
                (
                    label,
                    Labelled {
                        name: s.name.clone(),
                        url: s.url.clone(),
                    },
                )
            })
            .collect();
        Self {
            servers,
            calls: HashMap::new(),
            streamed: HashSet::new(),
            ended: false,
        }
    }

    /// `sse_name`: the SSE `event:` field (used when the data has no `type`).
    pub fn on_event(&mut self, sse_name: &str, data: &Value) -> Vec<ChatEvent> {
        let kind = data.get("type").and_then(Value::as_str).unwrap_or(sse_name);
        let text = |key: &str| {
            data.get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        match kind {
            "response.output_item.added" => {
                let item = data.get("item").unwrap_or(&Value::Null);
                if item_type(item) != "mcp_call" {
                    return vec![];
                }
                let Some(id) = item.get("id").and_then(Value::as_str) else {
                    return vec![];
                };
                let call = self.calls.entry(id.to_string()).or_default();
                call.label = str_of(item, "server_label");
                call.tool = str_of(item, "name");
                call.arguments = str_of(item, "arguments");
                if call.arguments.trim().is_empty() {
                    return vec![];
                }
                self.start(id).into_iter().collect()
            }
            "response.mcp_call_arguments.done" => {
                let id = text("item_id");
                if let Some(call) = self.calls.get_mut(&id) {
                    call.arguments = text("arguments");
                }
                self.start(&id).into_iter().collect()
            }
            "response.output_item.done" => {
                let item = data.get("item").unwrap_or(&Value::Null);
                match item_type(item) {
                    "mcp_call" => self.call_done(item),
                    "mcp_list_tools" => self.list_tools_done(item),
                    "message" => self.message_done(item),
                    _ => vec![],
                }
            }
            "response.output_text.delta" => {
                self.streamed.insert(text("item_id"));
                let delta = text("delta");
                if delta.is_empty() {
                    vec![]
                } else {
                    vec![ChatEvent::Text { delta }]
                }
            }
            "response.completed" => {
                self.ended = true;
                vec![ChatEvent::Done]
            }
            "response.failed" => {
                self.ended = true;
                let error = data.pointer("/response/error").unwrap_or(&Value::Null);
                let message =
                    denial::reported_text(error).unwrap_or_else(|| "no reason given".to_string());
                vec![ChatEvent::Error {
                    message: format!("The language model failed to answer: {message}"),
                }]
            }
            "response.incomplete" => {
                self.ended = true;
                let reason = data
                    .pointer("/response/incomplete_details/reason")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given");
                vec![
                    ChatEvent::Error {
                        message: format!("The language model stopped before finishing ({reason})."),
                    },
                    ChatEvent::Done,
                ]
            }
            "error" => {
                self.ended = true;
                let message = denial::reported_text(data.get("error").unwrap_or(data))
                    .unwrap_or_else(|| "no reason given".to_string());
                vec![ChatEvent::Error {
                    message: format!("The language model reported an error: {message}"),
                }]
            }
            _ => vec![],
        }
    }

    /// Events owed when the stream ended: an error when the model never said it was done.
    pub fn finish(&mut self) -> Vec<ChatEvent> {
        if self.ended {
            return vec![];
        }
        self.ended = true;
        vec![ChatEvent::Error {
            message: "The language model's answer ended before it was complete.".into(),
        }]
    }

    /// The `tool_call` event for a call not yet announced.
    fn start(&mut self, id: &str) -> Option<ChatEvent> {
        let call = self.calls.get_mut(id)?;
        if call.started {
            return None;
        }
        call.started = true;
        let server = self.servers.get(&call.label);
        Some(ChatEvent::ToolCall {
            id: id.to_string(),
            server: server.map_or_else(|| call.label.clone(), |s| s.name.clone()),
            server_url: server.map(|s| s.url.clone()).unwrap_or_default(),
            tool: call.tool.clone(),
            arguments: arguments_value(&call.arguments),
        })
    }

    fn call_done(&mut self, item: &Value) -> Vec<ChatEvent> {
        let Some(id) = item.get("id").and_then(Value::as_str) else {
            return vec![];
        };
        let call = self.calls.entry(id.to_string()).or_default();
        for (field, slot) in [
            ("server_label", &mut call.label),
            ("name", &mut call.tool),
            ("arguments", &mut call.arguments),
        ] {
            let value = str_of(item, field);
            if !value.is_empty() {
                *slot = value;
            }
        }
        let mut events: Vec<ChatEvent> = self.start(id).into_iter().collect();
        let outcome = match item.get("error").filter(|e| !e.is_null()) {
            Some(error) => match denial::from_reported(error) {
                Some(denial) => ToolOutcome::Denied { denial },
                None => ToolOutcome::Failed {
                    message: denial::reported_text(error).unwrap_or_else(|| error.to_string()),
                },
            },
            None => match item.get("output") {
                Some(Value::String(output)) => ToolOutcome::Ok {
                    result: result_value(output),
                },
                Some(Value::Null) | None => ToolOutcome::Ok {
                    result: Value::Null,
                },
                Some(other) => ToolOutcome::Ok {
                    result: other.clone(),
                },
            },
        };
        let call = &self.calls[id];
        events.push(ChatEvent::ToolResult {
            id: id.to_string(),
            server: self
                .servers
                .get(&call.label)
                .map_or_else(|| call.label.clone(), |s| s.name.clone()),
            tool: call.tool.clone(),
            outcome,
        });
        events
    }

    fn list_tools_done(&self, item: &Value) -> Vec<ChatEvent> {
        let Some(error) = item.get("error").filter(|e| !e.is_null()) else {
            return vec![];
        };
        let label = str_of(item, "server_label");
        let name = self.servers.get(&label).map_or(label, |s| s.name.clone());
        let reason = denial::reported_text(error).unwrap_or_else(|| error.to_string());
        vec![ChatEvent::Error {
            message: format!("The model could not list the tools of the server '{name}': {reason}"),
        }]
    }

    fn message_done(&self, item: &Value) -> Vec<ChatEvent> {
        let id = str_of(item, "id");
        if self.streamed.contains(&id) {
            return vec![];
        }
        let text: String = item
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|part| item_type(part) == "output_text")
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect();
        if text.is_empty() {
            vec![]
        } else {
            vec![ChatEvent::Text { delta: text }]
        }
    }
}

fn item_type(item: &Value) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or("")
}

fn str_of(item: &Value, key: &str) -> String {
    item.get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Arguments arrive as a JSON string; shown as JSON when they are.
fn arguments_value(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()))
}

/// Why a call to the model's API did not produce a stream.
#[derive(Debug, thiserror::Error)]
pub enum ModelCallError {
    #[error("The language model at {base_url} could not be reached ({reason}).")]
    Unreachable { base_url: String, reason: String },
    #[error("The language model at {base_url} answered HTTP {status}: {message}")]
    Status {
        base_url: String,
        status: u16,
        message: String,
    },
    #[error("The language model at {base_url} sent an answer the app cannot read: {reason}")]
    BadAnswer { base_url: String, reason: String },
}

/// The `error.message` of an OpenAI-style error body, or the start of the body.
pub fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(message) = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|e| e.get("message").and_then(Value::as_str).or(e.as_str()))
    {
        return message.to_string();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "no details".into()
    } else {
        text.chars().take(300).collect()
    }
}

/// Sends the conversation and streams the mapped events into `emit`.
pub async fn run(
    http: &reqwest::Client,
    model: &Model,
    messages: &[Message],
    servers: &[EnabledServer],
    token: &GatewayToken,
    emit: &mut impl FnMut(ChatEvent),
) -> Result<(), ModelCallError> {
    let base_url = model.base_url.clone();
    let unreachable = |e: reqwest::Error| ModelCallError::Unreachable {
        base_url: base_url.clone(),
        reason: crate::gateway::describe(&e),
    };
    let mut request = http
        .post(format!("{}/responses", model.base_url))
        .header("accept", "text/event-stream")
        .json(&request_body(model, messages, servers, token));
    if let Some(key) = &model.api_key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.bytes().await.unwrap_or_default();
        return Err(ModelCallError::Status {
            base_url,
            status: status.as_u16(),
            message: error_message(&body),
        });
    }
    let mut mapper = ResponsesMapper::new(servers);
    let mut reader = SseReader::default();
    let mut body = response.bytes_stream();
    let bad = |reason: String| ModelCallError::BadAnswer {
        base_url: model.base_url.clone(),
        reason,
    };
    let mut handle = |sse: crate::event_stream::SseEvent, emit: &mut dyn FnMut(ChatEvent)| {
        if sse.data.trim() == "[DONE]" {
            return Ok(());
        }
        let data: Value = serde_json::from_str(&sse.data)
            .map_err(|e| bad(format!("an event is not JSON ({e})")))?;
        for event in mapper.on_event(&sse.event, &data) {
            emit(event);
        }
        Ok(())
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ModelCallError::Unreachable {
            base_url: model.base_url.clone(),
            reason: format!("the stream broke: {}", crate::gateway::describe(&e)),
        })?;
        for sse in reader.push(&chunk).map_err(|e| bad(e.to_string()))? {
            handle(sse, emit)?;
        }
    }
    if let Some(sse) = reader.finish() {
        handle(sse, emit)?;
    }
    for event in mapper.finish() {
        emit(event);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::denial::Denial;

    fn servers() -> Vec<EnabledServer> {
        vec![
            EnabledServer {
                name: "Sales database".into(),
                url: "http://localhost:18080/sqlite".into(),
                description: Some("Orders".into()),
                tools: vec!["query".into()],
            },
            EnabledServer {
                name: "Sales database".into(),
                url: "http://localhost:18080/sqlite2".into(),
                description: None,
                tools: vec![],
            },
        ]
    }

    /// Feeds `(event, data)` pairs as a stream would deliver them.
    fn map(events: &[Value]) -> Vec<ChatEvent> {
        let mut mapper = ResponsesMapper::new(&servers());
        let mut out: Vec<ChatEvent> = events
            .iter()
            .flat_map(|data| mapper.on_event("", data))
            .collect();
        out.extend(mapper.finish());
        out
    }

    #[test]
    fn labels_are_identifiers_and_unique() {
        assert_eq!(
            server_labels(&servers()),
            vec!["Sales_database", "Sales_database_2"]
        );
    }

    #[test]
    fn request_carries_the_token_only_in_each_mcp_tool() {
        let model = crate::models::parse(
            "models: [{id: m1, label: M, api: responses, base_url: 'http://127.0.0.1:1/v1'}]",
            |_| None,
        )
        .expect("model")
        .remove(0);
        let messages = vec![Message::user("What were our sales by year?")];
        let body = request_body(
            &model,
            &messages,
            &servers()[..1],
            &GatewayToken::new("te-1"),
        );
        assert_eq!(
            body["tools"],
            json!([{"type": "mcp", "server_label": "Sales_database",
                    "server_url": "http://localhost:18080/sqlite",
                    "server_description": "Orders",
                    "headers": {"Authorization": "Bearer te-1"},
                    "require_approval": "never", "allowed_tools": ["query"]}])
        );
        assert_eq!(body["model"], "m1");
        assert_eq!(body["stream"], true);
        assert_eq!(
            body["input"],
            json!([{"role": "user", "content": "What were our sales by year?"}])
        );
    }

    #[test]
    fn a_tool_call_then_streamed_text() {
        let events = map(&[
            json!({"type": "response.created", "response": {"id": "r1"}}),
            json!({"type": "response.output_item.added", "output_index": 0,
                   "item": {"type": "mcp_list_tools", "id": "l1", "server_label": "Sales_database", "tools": []}}),
            json!({"type": "response.output_item.done", "output_index": 0,
                   "item": {"type": "mcp_list_tools", "id": "l1", "server_label": "Sales_database", "tools": []}}),
            json!({"type": "response.output_item.added", "output_index": 1,
                   "item": {"type": "mcp_call", "id": "mcp_1", "server_label": "Sales_database", "name": "query", "arguments": ""}}),
            json!({"type": "response.mcp_call.in_progress", "item_id": "mcp_1", "output_index": 1}),
            json!({"type": "response.mcp_call_arguments.delta", "item_id": "mcp_1", "delta": "{\"sql\":"}),
            json!({"type": "response.mcp_call_arguments.done", "item_id": "mcp_1", "arguments": "{\"sql\":\"SELECT 1\"}"}),
            json!({"type": "response.mcp_call.completed", "item_id": "mcp_1", "output_index": 1}),
            json!({"type": "response.output_item.done", "output_index": 1,
                   "item": {"type": "mcp_call", "id": "mcp_1", "server_label": "Sales_database", "name": "query",
                            "arguments": "{\"sql\":\"SELECT 1\"}", "output": "{\"columns\":[\"x\"],\"rows\":[[1]]}", "error": null}}),
            json!({"type": "response.output_item.added", "output_index": 2, "item": {"type": "message", "id": "msg_1", "content": []}}),
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Sales "}),
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "delta": "by year"}),
            json!({"type": "response.output_item.done", "output_index": 2,
                   "item": {"type": "message", "id": "msg_1", "content": [{"type": "output_text", "text": "Sales by year"}]}}),
            json!({"type": "response.completed", "response": {"id": "r1"}}),
        ]);
        assert_eq!(
            events,
            vec![
                ChatEvent::ToolCall {
                    id: "mcp_1".into(),
                    server: "Sales database".into(),
                    server_url: "http://localhost:18080/sqlite".into(),
                    tool: "query".into(),
                    arguments: json!({"sql": "SELECT 1"}),
                },
                ChatEvent::ToolResult {
                    id: "mcp_1".into(),
                    server: "Sales database".into(),
                    tool: "query".into(),
                    outcome: ToolOutcome::Ok {
                        result: json!({"columns": ["x"], "rows": [[1]]})
                    },
                },
                ChatEvent::Text {
                    delta: "Sales ".into()
                },
                ChatEvent::Text {
                    delta: "by year".into()
                },
                ChatEvent::Done,
            ]
        );
    }

    #[test]
    fn a_denied_call_and_a_failed_call() {
        let denied = "mcpgate: tools/call 'query' denied by policy (request 9)";
        let events = map(&[
            // No argument events: the call is announced by its done item.
            json!({"type": "response.output_item.done",
                   "item": {"type": "mcp_call", "id": "c1", "server_label": "Sales_database", "name": "query",
                            "arguments": "{\"sql\":\"SELECT salary FROM employees\"}", "output": null,
                            "error": {"code": -32001, "message": denied, "data": {"reason": "salaries are HR-only"}}}}),
            json!({"type": "response.output_item.done",
                   "item": {"type": "mcp_call", "id": "c2", "server_label": "Sales_database", "name": "query",
                            "arguments": "{}", "output": null, "error": "refused: only read-only statements are allowed"}}),
            json!({"type": "response.completed"}),
        ]);
        assert_eq!(events.len(), 5);
        assert_eq!(
            events[1],
            ChatEvent::ToolResult {
                id: "c1".into(),
                server: "Sales database".into(),
                tool: "query".into(),
                outcome: ToolOutcome::Denied {
                    denial: Denial {
                        reason: Some("salaries are HR-only".into()),
                        message: denied.into()
                    }
                },
            }
        );
        assert!(matches!(&events[2], ChatEvent::ToolCall { id, .. } if id == "c2"));
        assert!(
            matches!(&events[3], ChatEvent::ToolResult { outcome: ToolOutcome::Failed { message }, .. }
            if message == "refused: only read-only statements are allowed")
        );
        assert_eq!(events[4], ChatEvent::Done);
    }

    #[test]
    fn a_relayed_denial_string_and_unstreamed_message_text() {
        let events = map(&[
            json!({"type": "response.output_item.added",
                   "item": {"type": "mcp_call", "id": "c1", "server_label": "Sales_database", "name": "query", "arguments": "{\"sql\":\"x\"}"}}),
            json!({"type": "response.output_item.done",
                   "item": {"type": "mcp_call", "id": "c1", "error": "Error calling tool: mcpgate: tools/call 'query' denied by policy (request 1)"}}),
            json!({"type": "response.output_item.done",
                   "item": {"type": "message", "id": "m", "content": [{"type": "output_text", "text": "Refused."}]}}),
            json!({"type": "response.completed"}),
        ]);
        assert!(
            matches!(&events[0], ChatEvent::ToolCall { arguments, .. } if *arguments == json!({"sql": "x"}))
        );
        assert!(
            matches!(&events[1], ChatEvent::ToolResult { outcome: ToolOutcome::Denied { denial }, tool, .. }
            if denial.reason.is_none() && tool == "query")
        );
        assert_eq!(
            events[2],
            ChatEvent::Text {
                delta: "Refused.".into()
            }
        );
    }

    #[test]
    fn failures_of_the_model_and_a_cut_stream() {
        let events = map(&[json!({"type": "response.failed",
            "response": {"error": {"code": "server_error", "message": "overloaded"}}})]);
        assert_eq!(
            events,
            vec![ChatEvent::Error {
                message: "The language model failed to answer: overloaded".into()
            }]
        );
        let events = map(&[json!({"type": "error", "code": "x", "message": "bad key"})]);
        assert_eq!(
            events,
            vec![ChatEvent::Error {
                message: "The language model reported an error: bad key".into()
            }]
        );
        let events =
            map(&[json!({"type": "response.output_text.delta", "item_id": "m", "delta": "Hal"})]);
        assert_eq!(
            events,
            vec![
                ChatEvent::Text {
                    delta: "Hal".into()
                },
                ChatEvent::Error {
                    message: "The language model's answer ended before it was complete.".into()
                },
            ]
        );
        let events = map(&[
            json!({"type": "response.output_item.done",
            "item": {"type": "mcp_list_tools", "server_label": "Sales_database", "error": {"message": "HTTP 502"}}}),
            json!({"type": "response.completed"}),
        ]);
        assert_eq!(
            events[0],
            ChatEvent::Error {
                message:
                    "The model could not list the tools of the server 'Sales database': HTTP 502"
                        .into()
            }
        );
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_message(br#"{"error":{"message":"Incorrect API key"}}"#),
            "Incorrect API key"
        );
        assert_eq!(error_message(b"  "), "no details");
        assert_eq!(error_message(b"Bad Gateway"), "Bad Gateway");
    }
}
