//! Builds a response step by step and yields, for each step, the streaming events OpenAI sends
//! for it, numbered in order. The finished response is the same whether it was streamed or not.

use super::events::{
    CallStatus, Event, ItemProgress, McpCall, McpListTools, McpTool, Message, OutputItem,
    OutputText, Response, Status, Usage,
};

pub struct ResponseBuilder {
    response: Response,
    next_sequence: u64,
}

impl ResponseBuilder {
    /// Starts from a response created with [`Response::started`].
    pub fn new(response: Response) -> Self {
        ResponseBuilder {
            response,
            next_sequence: 0,
        }
    }

    pub fn response(&self) -> &Response {
        &self.response
    }

    pub fn into_response(self) -> Response {
        self.response
    }

    fn seq(&mut self) -> u64 {
        let n = self.next_sequence;
        self.next_sequence += 1;
        n
    }

    fn progress(&mut self, index: usize) -> ItemProgress {
        ItemProgress {
            item_id: self.response.output[index].id().to_owned(),
            output_index: index,
            sequence_number: self.seq(),
        }
    }

    fn add(&mut self, item: OutputItem) -> (usize, Event) {
        let index = self.response.output.len();
        self.response.output.push(item.clone());
        let event = Event::OutputItemAdded {
            output_index: index,
            item,
            sequence_number: self.seq(),
        };
        (index, event)
    }

    fn done(&mut self, index: usize) -> Event {
        Event::OutputItemDone {
            output_index: index,
            item: self.response.output[index].clone(),
            sequence_number: self.seq(),
        }
    }

    /// `response.created`, `response.in_progress`.
    pub fn start(&mut self) -> Vec<Event> {
        vec![
            Event::Created {
                response: self.response.clone(),
                sequence_number: self.seq(),
            },
            Event::InProgress {
                response: self.response.clone(),
                sequence_number: self.seq(),
            },
        ]
    }

    /// A tool listing begins: its item is added with no tools yet.
    pub fn list_tools_started(&mut self, id: String, server_label: &str) -> (usize, Vec<Event>) {
        let (index, added) = self.add(OutputItem::McpListTools(McpListTools {
            id,
            server_label: server_label.to_owned(),
            tools: Vec::new(),
            error: None,
        }));
        let progress = self.progress(index);
        (index, vec![added, Event::McpListToolsInProgress(progress)])
    }

    /// The listing's tools, or why there are none.
    pub fn list_tools_finished(
        &mut self,
        index: usize,
        listed: Result<Vec<McpTool>, String>,
    ) -> Vec<Event> {
        let failed = listed.is_err();
        if let Some(OutputItem::McpListTools(item)) = self.response.output.get_mut(index) {
            match listed {
                Ok(tools) => item.tools = tools,
                Err(error) => item.error = Some(error),
            }
        }
        let progress = self.progress(index);
        let state = if failed {
            Event::McpListToolsFailed(progress)
        } else {
            Event::McpListToolsCompleted(progress)
        };
        vec![state, self.done(index)]
    }

    /// A tool call begins and its arguments are streamed.
    pub fn call_started(
        &mut self,
        id: String,
        server_label: &str,
        name: &str,
        arguments: String,
    ) -> (usize, Vec<Event>) {
        let (index, added) = self.add(OutputItem::McpCall(McpCall {
            id,
            server_label: server_label.to_owned(),
            name: name.to_owned(),
            arguments: String::new(),
            approval_request_id: None,
            output: None,
            error: None,
            status: CallStatus::InProgress,
        }));
        if let Some(OutputItem::McpCall(item)) = self.response.output.get_mut(index) {
            item.arguments = arguments.clone();
        }
        let in_progress = Event::McpCallInProgress(self.progress(index));
        let item_id = self.response.output[index].id().to_owned();
        let delta = Event::McpCallArgumentsDelta {
            item_id: item_id.clone(),
            output_index: index,
            delta: arguments.clone(),
            sequence_number: self.seq(),
        };
        let args_done = Event::McpCallArgumentsDone {
            item_id,
            output_index: index,
            arguments,
            sequence_number: self.seq(),
        };
        (index, vec![added, in_progress, delta, args_done])
    }

    /// The call's output, or its error.
    pub fn call_finished(&mut self, index: usize, result: Result<String, String>) -> Vec<Event> {
        let failed = result.is_err();
        if let Some(OutputItem::McpCall(item)) = self.response.output.get_mut(index) {
            match result {
                Ok(output) => {
                    item.output = Some(output);
                    item.status = CallStatus::Completed;
                }
                Err(error) => {
                    item.error = Some(error);
                    item.status = CallStatus::Failed;
                }
            }
        }
        let progress = self.progress(index);
        let state = if failed {
            Event::McpCallFailed(progress)
        } else {
            Event::McpCallCompleted(progress)
        };
        vec![state, self.done(index)]
    }

    /// The assistant's message, its text streamed in `chunks` (which concatenate to the text).
    pub fn message(&mut self, id: String, chunks: &[String]) -> Vec<Event> {
        let text: String = chunks.concat();
        let (index, added) = self.add(OutputItem::Message(Message {
            id: id.clone(),
            role: "assistant",
            status: Status::InProgress,
            content: Vec::new(),
        }));
        let mut events = vec![added];
        events.push(Event::ContentPartAdded {
            item_id: id.clone(),
            output_index: index,
            content_index: 0,
            part: OutputText::new(String::new()),
            sequence_number: self.seq(),
        });
        for chunk in chunks {
            events.push(Event::OutputTextDelta {
                item_id: id.clone(),
                output_index: index,
                content_index: 0,
                delta: chunk.clone(),
                logprobs: Vec::new(),
                sequence_number: self.seq(),
            });
        }
        events.push(Event::OutputTextDone {
            item_id: id.clone(),
            output_index: index,
            content_index: 0,
            text: text.clone(),
            logprobs: Vec::new(),
            sequence_number: self.seq(),
        });
        events.push(Event::ContentPartDone {
            item_id: id,
            output_index: index,
            content_index: 0,
            part: OutputText::new(text.clone()),
            sequence_number: self.seq(),
        });
        if let Some(OutputItem::Message(item)) = self.response.output.get_mut(index) {
            item.content = vec![OutputText::new(text)];
            item.status = Status::Completed;
        }
        events.push(self.done(index));
        events
    }

    /// `response.completed`, with the usage and completion time.
    pub fn complete(&mut self, usage: Usage, completed_at: u64) -> Vec<Event> {
        self.response.status = Status::Completed;
        self.response.usage = Some(usage);
        self.response.completed_at = Some(completed_at);
        vec![Event::Completed {
            response: self.response.clone(),
            sequence_number: self.seq(),
        }]
    }
}

/// Splits text into word-sized pieces (each word with the whitespace after it) for streaming;
/// the pieces concatenate back to the text.
pub fn word_chunks(text: &str) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut in_space = false;
    for c in text.chars() {
        let space = c.is_whitespace();
        if in_space && !space {
            chunks.push(std::mem::take(&mut current));
        }
        in_space = space;
        current.push(c);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::collections::{BTreeSet, HashMap};

    /// Each event's fields, from OpenAI's API reference (Responses → Streaming events).
    fn documented_fields(kind: &str) -> &'static [&'static str] {
        match kind {
            "response.created" | "response.in_progress" | "response.completed" => {
                &["type", "response", "sequence_number"]
            }
            "response.output_item.added" | "response.output_item.done" => {
                &["type", "output_index", "item", "sequence_number"]
            }
            "response.mcp_list_tools.in_progress"
            | "response.mcp_list_tools.completed"
            | "response.mcp_list_tools.failed"
            | "response.mcp_call.in_progress"
            | "response.mcp_call.completed"
            | "response.mcp_call.failed" => &["type", "item_id", "output_index", "sequence_number"],
            "response.mcp_call_arguments.delta" => &[
                "type",
                "item_id",
                "output_index",
                "delta",
                "sequence_number",
            ],
            "response.mcp_call_arguments.done" => &[
                "type",
                "item_id",
                "output_index",
                "arguments",
                "sequence_number",
            ],
            "response.content_part.added" | "response.content_part.done" => &[
                "type",
                "item_id",
                "output_index",
                "content_index",
                "part",
                "sequence_number",
            ],
            "response.output_text.delta" => &[
                "type",
                "item_id",
                "output_index",
                "content_index",
                "delta",
                "logprobs",
                "sequence_number",
            ],
            "response.output_text.done" => &[
                "type",
                "item_id",
                "output_index",
                "content_index",
                "text",
                "logprobs",
                "sequence_number",
            ],
            other => panic!("undocumented event type {other}"),
        }
    }

    /// Each output item's fields, from the API reference (the response object's `output`).
    fn documented_item_fields(kind: &str) -> &'static [&'static str] {
        match kind {
            "mcp_list_tools" => &["type", "id", "server_label", "tools", "error"],
            "mcp_call" => &[
                "type",
                "id",
                "server_label",
                "name",
                "arguments",
                "approval_request_id",
                "output",
                "error",
                "status",
            ],
            "message" => &["type", "id", "role", "status", "content"],
            other => panic!("undocumented item type {other}"),
        }
    }

    /// The response object's documented fields, and those it must have.
    const RESPONSE_FIELDS: &[&str] = &[
        "id",
        "object",
        "created_at",
        "status",
        "completed_at",
        "error",
        "incomplete_details",
        "instructions",
        "max_output_tokens",
        "model",
        "output",
        "parallel_tool_calls",
        "previous_response_id",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_p",
        "truncation",
        "usage",
        "metadata",
        "background",
        "conversation",
        "max_tool_calls",
        "prompt",
        "prompt_cache_key",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "top_logprobs",
        "user",
    ];
    const RESPONSE_REQUIRED: &[&str] = &[
        "id",
        "object",
        "created_at",
        "error",
        "incomplete_details",
        "instructions",
        "metadata",
        "model",
        "output",
        "parallel_tool_calls",
        "temperature",
        "tool_choice",
        "tools",
        "top_p",
    ];

    fn keys(value: &Value) -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    fn set(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn tool(name: &str) -> McpTool {
        McpTool {
            name: name.into(),
            description: Some(format!("the {name} tool")),
            input_schema: json!({"type": "object"}),
            annotations: Some(json!({"readOnlyHint": true})),
        }
    }

    /// A full turn: two listings (one failing), a completed and a failed call, the message.
    fn full_turn() -> (Vec<Event>, Response) {
        let started = Response::started(
            "resp_1".into(),
            1_700_000_000,
            "standin-1".into(),
            None,
            None,
            vec![json!({"type": "mcp", "server_label": "sales"})],
        );
        let mut b = ResponseBuilder::new(started);
        let mut events = b.start();
        let (i, e) = b.list_tools_started("mcpl_1".into(), "sales");
        events.extend(e);
        events.extend(b.list_tools_finished(i, Ok(vec![tool("query"), tool("list_tables")])));
        let (i, e) = b.list_tools_started("mcpl_2".into(), "notes");
        events.extend(e);
        events.extend(b.list_tools_finished(i, Err("Http status code: 401 (Unauthorized)".into())));
        let (i, e) = b.call_started(
            "mcp_1".into(),
            "sales",
            "query",
            r#"{"sql":"SELECT 1"}"#.into(),
        );
        events.extend(e);
        events.extend(b.call_finished(i, Ok(r#"{"rows":[[1]]}"#.into())));
        let (i, e) = b.call_started(
            "mcp_2".into(),
            "sales",
            "query",
            r#"{"sql":"SELECT 2"}"#.into(),
        );
        events.extend(e);
        events.extend(b.call_finished(i, Err("mcpgate: denied".into())));
        events.extend(b.message("msg_1".into(), &word_chunks("Here you are: two words")));
        events.extend(b.complete(Usage::new(120, 30), 1_700_000_001));
        (events, b.into_response())
    }

    #[test]
    fn a_streamed_turn_has_the_documented_events_in_order() {
        let (events, _) = full_turn();
        let kinds: Vec<String> = events.iter().map(|e| e.to_sse().0).collect();
        let listing_ok = [
            "response.output_item.added",
            "response.mcp_list_tools.in_progress",
            "response.mcp_list_tools.completed",
            "response.output_item.done",
        ];
        let listing_failed = [
            "response.output_item.added",
            "response.mcp_list_tools.in_progress",
            "response.mcp_list_tools.failed",
            "response.output_item.done",
        ];
        let call = |end: &'static str| {
            [
                "response.output_item.added",
                "response.mcp_call.in_progress",
                "response.mcp_call_arguments.delta",
                "response.mcp_call_arguments.done",
                end,
                "response.output_item.done",
            ]
        };
        let mut want = vec!["response.created", "response.in_progress"];
        want.extend(listing_ok);
        want.extend(listing_failed);
        want.extend(call("response.mcp_call.completed"));
        want.extend(call("response.mcp_call.failed"));
        want.extend(["response.output_item.added", "response.content_part.added"]);
        want.extend(["response.output_text.delta"; 5]);
        want.extend([
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]);
        assert_eq!(kinds, want);
    }

    #[test]
    fn sequence_numbers_increase_from_zero() {
        let (events, _) = full_turn();
        for (i, e) in events.iter().enumerate() {
            let v: Value = serde_json::from_str(&e.to_sse().1).unwrap();
            assert_eq!(v["sequence_number"], json!(i), "{v}");
        }
    }

    #[test]
    fn item_ids_and_output_indexes_agree() {
        let (events, response) = full_turn();
        let mut ids_by_index: HashMap<u64, String> = HashMap::new();
        for e in &events {
            let v: Value = serde_json::from_str(&e.to_sse().1).unwrap();
            let Some(index) = v["output_index"].as_u64() else {
                continue;
            };
            let id = v["item_id"]
                .as_str()
                .or(v["item"]["id"].as_str())
                .unwrap()
                .to_owned();
            let known = ids_by_index.entry(index).or_insert_with(|| id.clone());
            assert_eq!(*known, id, "{v}");
            assert_eq!(response.output[index as usize].id(), id);
        }
        assert_eq!(ids_by_index.len(), response.output.len());
    }

    #[test]
    fn every_event_has_exactly_the_documented_fields() {
        let (events, _) = full_turn();
        for e in &events {
            let (kind, data) = e.to_sse();
            let v: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(v["type"], json!(kind));
            assert_eq!(keys(&v), set(documented_fields(&kind)), "{kind}");
            if let Some(item) = v.get("item") {
                let item_kind = item["type"].as_str().unwrap();
                assert_eq!(
                    keys(item),
                    set(documented_item_fields(item_kind)),
                    "{item_kind}"
                );
            }
            if let Some(response) = v.get("response") {
                let got = keys(response);
                assert!(got.is_subset(&set(RESPONSE_FIELDS)), "{got:?}");
                assert!(set(RESPONSE_REQUIRED).is_subset(&got), "{got:?}");
            }
            if let Some(part) = v.get("part") {
                assert_eq!(
                    keys(part),
                    set(&["type", "text", "annotations", "logprobs"])
                );
            }
        }
    }

    #[test]
    fn the_finished_response_holds_every_item_done() {
        let (events, response) = full_turn();
        let Some(Event::Completed { response: last, .. }) = events.last() else {
            panic!("last event is not response.completed")
        };
        assert_eq!(*last, response);
        let v = serde_json::to_value(&response).unwrap();
        assert_eq!(v["status"], "completed");
        assert_eq!(v["object"], "response");
        assert_eq!(v["usage"]["total_tokens"], 150);
        let output = v["output"].as_array().unwrap();
        assert_eq!(output.len(), 5);
        assert_eq!(output[0]["type"], "mcp_list_tools");
        assert_eq!(output[0]["tools"][0]["name"], "query");
        assert_eq!(
            output[0]["tools"][0]["input_schema"],
            json!({"type": "object"})
        );
        assert_eq!(output[1]["error"], "Http status code: 401 (Unauthorized)");
        assert_eq!(output[1]["tools"], json!([]));
        assert_eq!(output[2]["arguments"], r#"{"sql":"SELECT 1"}"#);
        assert_eq!(output[2]["output"], r#"{"rows":[[1]]}"#);
        assert_eq!(output[2]["status"], "completed");
        assert_eq!(output[3]["error"], "mcpgate: denied");
        assert_eq!(output[3]["output"], Value::Null);
        assert_eq!(output[3]["status"], "failed");
        assert_eq!(output[4]["role"], "assistant");
        assert_eq!(output[4]["content"][0]["type"], "output_text");
        assert_eq!(output[4]["content"][0]["text"], "Here you are: two words");

        // The added snapshot is the item before it ran; done is the finished item.
        let added_call = events.iter().find_map(|e| match e {
            Event::OutputItemAdded {
                item: OutputItem::McpCall(c),
                ..
            } => Some(c),
            _ => None,
        });
        assert_eq!(added_call.unwrap().arguments, "");
        assert_eq!(added_call.unwrap().status, CallStatus::InProgress);
    }

    #[test]
    fn deltas_concatenate_to_the_text() {
        let (events, _) = full_turn();
        let deltas: String = events
            .iter()
            .filter_map(|e| match e {
                Event::OutputTextDelta { delta, .. } => Some(delta.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deltas, "Here you are: two words");
    }

    #[test]
    fn word_chunks_keep_every_character() {
        assert_eq!(word_chunks("a  b\n\nc "), vec!["a  ", "b\n\n", "c "]);
        assert_eq!(word_chunks(""), Vec::<String>::new());
        assert_eq!(word_chunks("  lead"), vec!["  ", "lead"]);
        let text = "| Year | Sales |\n|---|---:|";
        assert_eq!(word_chunks(text).concat(), text);
    }
}
