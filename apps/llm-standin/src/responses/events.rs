//! The Responses API's response object, output items and streaming events, as OpenAI documents
//! them (API reference "Responses" and "Streaming events"; field names as in the official SDKs'
//! generated types). Optional documented fields are sent as `null` rather than left out, as
//! OpenAI does, so a client sees one stable shape.

use serde::Serialize;
use serde_json::Value;

/// The response object (`object: "response"`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Response {
    pub id: String,
    pub object: &'static str,
    pub created_at: u64,
    pub status: Status,
    pub completed_at: Option<u64>,
    pub error: Option<Value>,
    pub incomplete_details: Option<Value>,
    pub instructions: Option<String>,
    pub max_output_tokens: Option<u64>,
    pub model: String,
    pub output: Vec<OutputItem>,
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<String>,
    pub temperature: f64,
    pub text: Value,
    pub tool_choice: Value,
    /// The request's tools, echoed without credentials.
    pub tools: Vec<Value>,
    pub top_p: f64,
    pub truncation: &'static str,
    pub usage: Option<Usage>,
    pub metadata: Value,
}

impl Response {
    /// A response that has just been created: in progress, no output yet.
    pub fn started(
        id: String,
        created_at: u64,
        model: String,
        instructions: Option<String>,
        previous_response_id: Option<String>,
        tools: Vec<Value>,
    ) -> Self {
        Response {
            id,
            object: "response",
            created_at,
            status: Status::InProgress,
            completed_at: None,
            error: None,
            incomplete_details: None,
            instructions,
            max_output_tokens: None,
            model,
            output: Vec::new(),
            parallel_tool_calls: true,
            previous_response_id,
            temperature: 1.0,
            text: serde_json::json!({ "format": { "type": "text" } }),
            tool_choice: Value::String("auto".into()),
            tools,
            top_p: 1.0,
            truncation: "disabled",
            usage: None,
            metadata: Value::Object(Default::default()),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    InProgress,
    Completed,
    Failed,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Usage {
    pub input_tokens: u64,
    pub input_tokens_details: InputTokensDetails,
    pub output_tokens: u64,
    pub output_tokens_details: OutputTokensDetails,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InputTokensDetails {
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutputTokensDetails {
    pub reasoning_tokens: u64,
}

impl Usage {
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Usage {
            input_tokens,
            input_tokens_details: InputTokensDetails {
                cached_tokens: 0,
                cache_write_tokens: 0,
            },
            output_tokens,
            output_tokens_details: OutputTokensDetails {
                reasoning_tokens: 0,
            },
            total_tokens: input_tokens + output_tokens,
        }
    }
}

/// One item of `output`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputItem {
    McpListTools(McpListTools),
    McpCall(McpCall),
    Message(Message),
}

impl OutputItem {
    pub fn id(&self) -> &str {
        match self {
            OutputItem::McpListTools(item) => &item.id,
            OutputItem::McpCall(item) => &item.id,
            OutputItem::Message(item) => &item.id,
        }
    }
}

/// The tools an MCP server listed (`type: "mcp_list_tools"`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct McpListTools {
    pub id: String,
    pub server_label: String,
    pub tools: Vec<McpTool>,
    /// Why the tools could not be listed.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct McpTool {
    pub name: String,
    pub description: Option<String>,
    pub input_schema: Value,
    pub annotations: Option<Value>,
}

/// A tool call on an MCP server (`type: "mcp_call"`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct McpCall {
    pub id: String,
    pub server_label: String,
    pub name: String,
    /// The arguments as a JSON string.
    pub arguments: String,
    pub approval_request_id: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub status: CallStatus,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    InProgress,
    Completed,
    Failed,
}

/// The assistant's message (`type: "message"`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Message {
    pub id: String,
    pub role: &'static str,
    pub status: Status,
    pub content: Vec<OutputText>,
}

/// An `output_text` content part.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutputText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
    pub annotations: Vec<Value>,
    pub logprobs: Vec<Value>,
}

impl OutputText {
    pub fn new(text: String) -> Self {
        OutputText {
            kind: "output_text",
            text,
            annotations: Vec::new(),
            logprobs: Vec::new(),
        }
    }
}

/// A streaming event; `type` names it, `sequence_number` orders it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type")]
pub enum Event {
    #[serde(rename = "response.created")]
    Created {
        response: Response,
        sequence_number: u64,
    },
    #[serde(rename = "response.in_progress")]
    InProgress {
        response: Response,
        sequence_number: u64,
    },
    #[serde(rename = "response.completed")]
    Completed {
        response: Response,
        sequence_number: u64,
    },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded {
        output_index: usize,
        item: OutputItem,
        sequence_number: u64,
    },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone {
        output_index: usize,
        item: OutputItem,
        sequence_number: u64,
    },
    #[serde(rename = "response.mcp_list_tools.in_progress")]
    McpListToolsInProgress(ItemProgress),
    #[serde(rename = "response.mcp_list_tools.completed")]
    McpListToolsCompleted(ItemProgress),
    #[serde(rename = "response.mcp_list_tools.failed")]
    McpListToolsFailed(ItemProgress),
    #[serde(rename = "response.mcp_call.in_progress")]
    McpCallInProgress(ItemProgress),
    #[serde(rename = "response.mcp_call_arguments.delta")]
    McpCallArgumentsDelta {
        item_id: String,
        output_index: usize,
        delta: String,
        sequence_number: u64,
    },
    #[serde(rename = "response.mcp_call_arguments.done")]
    McpCallArgumentsDone {
        item_id: String,
        output_index: usize,
        arguments: String,
        sequence_number: u64,
    },
    #[serde(rename = "response.mcp_call.completed")]
    McpCallCompleted(ItemProgress),
    #[serde(rename = "response.mcp_call.failed")]
    McpCallFailed(ItemProgress),
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded {
        item_id: String,
        output_index: usize,
        content_index: usize,
        part: OutputText,
        sequence_number: u64,
    },
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        item_id: String,
        output_index: usize,
        content_index: usize,
        delta: String,
        logprobs: Vec<Value>,
        sequence_number: u64,
    },
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        item_id: String,
        output_index: usize,
        content_index: usize,
        text: String,
        logprobs: Vec<Value>,
        sequence_number: u64,
    },
    #[serde(rename = "response.content_part.done")]
    ContentPartDone {
        item_id: String,
        output_index: usize,
        content_index: usize,
        part: OutputText,
        sequence_number: u64,
    },
}

/// The body of the MCP progress events: which item, where, when.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ItemProgress {
    pub item_id: String,
    pub output_index: usize,
    pub sequence_number: u64,
}

impl Event {
    /// The event as a server-sent event: its `type` (the SSE `event:` name) and its JSON, fields
    /// in declaration order (`type` first, as OpenAI sends them).
    pub fn to_sse(&self) -> (String, String) {
        let kind = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        let data = serde_json::to_string(self).unwrap_or_default();
        (kind, data)
    }

    /// Whether this event carries a piece of the answer's text.
    pub fn is_text_delta(&self) -> bool {
        matches!(self, Event::OutputTextDelta { .. })
    }
}
