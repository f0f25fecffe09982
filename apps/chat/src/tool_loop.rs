//! Mode `chat_completions`: the app runs the tool loop. The model sees each enabled tool as a
//! function `<server>__<tool>`; the app executes the calls it asks for through the gateway, feeds
//! the results (denials included) back, and repeats until the model answers or
//! [`MAX_ROUNDS`] tool rounds have passed. Plain Rust over two traits, so it is tested with a
//! scripted model and a fake caller.

use std::future::Future;

use serde_json::{json, Value};

use crate::conversation::{Message, SYSTEM_PROMPT};
use crate::events::{ChatEvent, ToolOutcome};
use crate::mcp::ToolInfo;
use crate::responses::ModelCallError;

/// Tool rounds before the app stops a model that keeps calling tools.
pub const MAX_ROUNDS: usize = 8;
/// OpenAI's limit on function names.
pub const MAX_FUNCTION_NAME: usize = 64;

/// A tool offered to the model as a function.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionTool {
    pub function: String,
    pub server: String,
    pub server_url: String,
    pub tool: String,
    pub description: Option<String>,
    pub parameters: Value,
}

impl FunctionTool {
    /// The `tools[]` entry of a chat completions request.
    pub fn declaration(&self) -> Value {
        let mut parameters = self.parameters.clone();
        if !parameters.is_object() {
            parameters = json!({"type": "object", "properties": {}});
        }
        json!({"type": "function", "function": {
            "name": self.function,
            "description": self.description.clone().unwrap_or_else(|| format!("{} on {}", self.tool, self.server)),
            "parameters": parameters,
        }})
    }
}

/// `text` made into an identifier: `[a-zA-Z0-9_-]`, other characters as `_`, at most `max`.
pub fn identifier(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.trim().chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c
        } else {
            '_'
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    let out: String = out.trim_matches('_').chars().take(max).collect();
    if out.is_empty() {
        "x".into()
    } else {
        out
    }
}

/// The functions for the enabled tools of each server: `(server name, server url, tools)`.
pub fn function_tools(servers: &[(String, String, Vec<ToolInfo>)]) -> Vec<FunctionTool> {
    let mut functions: Vec<FunctionTool> = Vec::new();
    for (server, url, tools) in servers {
        for tool in tools {
            let tool_part = identifier(&tool.name, MAX_FUNCTION_NAME - 3);
            let server_part = identifier(server, MAX_FUNCTION_NAME - 2 - tool_part.len());
            let base = format!("{server_part}__{tool_part}");
            let mut function = base.clone();
            let mut n = 2;
            while functions.iter().any(|f| f.function == function) {
                let suffix = format!("_{n}");
                let keep = MAX_FUNCTION_NAME - suffix.len();
                function = format!("{}{suffix}", base.chars().take(keep).collect::<String>());
                n += 1;
            }
            functions.push(FunctionTool {
                function,
                server: server.clone(),
                server_url: url.clone(),
                tool: tool.name.clone(),
                description: tool.description.clone(),
                parameters: tool.input_schema.clone(),
            });
        }
    }
    functions
}

/// What the model answered: text, function calls, or both.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Completion {
    pub content: Option<String>,
    pub tool_calls: Vec<FunctionCall>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionCall {
    pub id: String,
    pub name: String,
    /// JSON text, as the model wrote it.
    pub arguments: String,
}

/// A chat completions model.
pub trait LanguageModel: Sync {
    /// `messages` in the chat completions shape; `tools` the function declarations.
    fn complete(
        &self,
        messages: &[Value],
        tools: &[Value],
    ) -> impl Future<Output = Result<Completion, ModelCallError>> + Send;
}

/// Executes a tool call through the gateway.
pub trait ToolCaller: Sync {
    fn call(
        &self,
        server_url: &str,
        tool: &str,
        arguments: Value,
    ) -> impl Future<Output = ToolOutcome> + Send;
}

/// Runs the loop for `conversation`, emitting tool calls, their results and the answer.
pub async fn run<M: LanguageModel, C: ToolCaller>(
    model: &M,
    caller: &C,
    functions: &[FunctionTool],
    conversation: &[Message],
    emit: &mut impl FnMut(ChatEvent),
) -> Result<(), ModelCallError> {
    let declarations: Vec<Value> = functions.iter().map(FunctionTool::declaration).collect();
    let mut messages = vec![json!({"role": "system", "content": SYSTEM_PROMPT})];
    messages.extend(
        conversation
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content})),
    );
    for round in 0..=MAX_ROUNDS {
        let completion = model.complete(&messages, &declarations).await?;
        let text = completion.content.clone().filter(|t| !t.is_empty());
        if let Some(text) = &text {
            emit(ChatEvent::Text {
                delta: text.clone(),
            });
        }
        if completion.tool_calls.is_empty() {
            emit(ChatEvent::Done);
            return Ok(());
        }
        if round == MAX_ROUNDS {
            break;
        }
        messages.push(json!({
            "role": "assistant",
            "content": text,
            "tool_calls": completion.tool_calls.iter().map(|c| json!({
                "id": c.id, "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            })).collect::<Vec<_>>(),
        }));
        for call in &completion.tool_calls {
            let reply = execute(caller, functions, call, emit).await;
            messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": reply}));
        }
    }
    emit(ChatEvent::Error {
        message: format!(
            "The model was still calling tools after {MAX_ROUNDS} rounds, so the app stopped it."
        ),
    });
    Ok(())
}

/// One function call: what the model is told back.
async fn execute<C: ToolCaller>(
    caller: &C,
    functions: &[FunctionTool],
    call: &FunctionCall,
    emit: &mut impl FnMut(ChatEvent),
) -> String {
    let Some(function) = functions.iter().find(|f| f.function == call.name) else {
        let known: Vec<&str> = functions.iter().map(|f| f.function.as_str()).collect();
        return format!(
            "Error: there is no function named `{}`. The functions are: {}.",
            call.name,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let parsed = if call.arguments.trim().is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_str::<Value>(&call.arguments)
    };
    emit(ChatEvent::ToolCall {
        id: call.id.clone(),
        server: function.server.clone(),
        server_url: function.server_url.clone(),
        tool: function.tool.clone(),
        arguments: parsed
            .as_ref()
            .cloned()
            .unwrap_or_else(|_| Value::String(call.arguments.clone())),
    });
    let outcome = match parsed {
        Ok(arguments) => {
            caller
                .call(&function.server_url, &function.tool, arguments)
                .await
        }
        Err(e) => ToolOutcome::Failed {
            message: format!("the arguments are not JSON ({e})"),
        },
    };
    let reply = outcome.for_model();
    emit(ChatEvent::ToolResult {
        id: call.id.clone(),
        server: function.server.clone(),
        tool: function.tool.clone(),
        outcome,
    });
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::denial::Denial;
    use std::sync::Mutex;

    /// Answers from a script, recording what it was sent.
    struct ScriptedModel {
        script: Mutex<Vec<Completion>>,
        seen: Mutex<Vec<Vec<Value>>>,
    }

    impl ScriptedModel {
        fn new(mut script: Vec<Completion>) -> Self {
            script.reverse();
            Self {
                script: Mutex::new(script),
                seen: Mutex::new(vec![]),
            }
        }
        fn seen(&self) -> Vec<Vec<Value>> {
            self.seen.lock().expect("lock").clone()
        }
    }

    impl LanguageModel for ScriptedModel {
        async fn complete(
            &self,
            messages: &[Value],
            _tools: &[Value],
        ) -> Result<Completion, ModelCallError> {
            self.seen.lock().expect("lock").push(messages.to_vec());
            Ok(self
                .script
                .lock()
                .expect("lock")
                .pop()
                .expect("script long enough"))
        }
    }

    /// Answers `query` with a table; anything touching `employees` is denied.
    struct FakeCaller {
        calls: Mutex<Vec<(String, String, Value)>>,
    }

    impl ToolCaller for FakeCaller {
        async fn call(&self, server_url: &str, tool: &str, arguments: Value) -> ToolOutcome {
            self.calls.lock().expect("lock").push((
                server_url.into(),
                tool.into(),
                arguments.clone(),
            ));
            if arguments.to_string().contains("employees") {
                ToolOutcome::Denied {
                    denial: Denial {
                        reason: Some("salaries are HR-only".into()),
                        message: "mcpgate: tools/call 'query' denied by policy (request 1)".into(),
                    },
                }
            } else {
                ToolOutcome::Ok {
                    result: json!({"columns": ["year", "sales"], "rows": [["2024", 10.5]]}),
                }
            }
        }
    }

    fn caller() -> FakeCaller {
        FakeCaller {
            calls: Mutex::new(vec![]),
        }
    }

    fn functions() -> Vec<FunctionTool> {
        function_tools(&[(
            "Sales database".into(),
            "http://gw/sqlite".into(),
            vec![ToolInfo {
                name: "query".into(),
                description: Some("Run SQL".into()),
                input_schema: json!({"type": "object", "properties": {"sql": {"type": "string"}}}),
            }],
        )])
    }

    fn call(id: &str, name: &str, arguments: &str) -> Completion {
        Completion {
            content: None,
            tool_calls: vec![FunctionCall {
                id: id.into(),
                name: name.into(),
                arguments: arguments.into(),
            }],
        }
    }

    fn answer(text: &str) -> Completion {
        Completion {
            content: Some(text.into()),
            tool_calls: vec![],
        }
    }

    async fn run_script(model: &ScriptedModel, caller: &FakeCaller) -> Vec<ChatEvent> {
        let mut events = vec![];
        run(
            model,
            caller,
            &functions(),
            &[Message::user("What were our sales by year?")],
            &mut |e| events.push(e),
        )
        .await
        .expect("model answers");
        events
    }

    #[test]
    fn function_names_are_sanitised_bounded_and_unique() {
        assert_eq!(functions()[0].function, "Sales_database__query");
        let long = "t".repeat(80);
        let tools = |names: &[&str]| {
            names
                .iter()
                .map(|n| ToolInfo {
                    name: n.to_string(),
                    description: None,
                    input_schema: json!({}),
                })
                .collect::<Vec<_>>()
        };
        let fs = function_tools(&[
            (
                "Notes (wiki)".into(),
                "u1".into(),
                tools(&["search", long.as_str()]),
            ),
            ("Notes wiki".into(), "u2".into(), tools(&["search"])),
        ]);
        assert_eq!(fs[0].function, "Notes_wiki__search");
        assert!(
            fs[1].function.len() <= MAX_FUNCTION_NAME && fs[1].function.starts_with("N__t"),
            "{}",
            fs[1].function
        );
        assert_eq!(fs[2].function, "Notes_wiki__search_2");
        assert!(fs.iter().all(|f| f
            .function
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')));
    }

    #[tokio::test]
    async fn a_tool_round_then_an_answer() {
        let model = ScriptedModel::new(vec![
            call("c1", "Sales_database__query", r#"{"sql":"SELECT year"}"#),
            answer("| Year | Sales |"),
        ]);
        let caller = caller();
        let events = run_script(&model, &caller).await;
        assert_eq!(
            events,
            vec![
                ChatEvent::ToolCall {
                    id: "c1".into(),
                    server: "Sales database".into(),
                    server_url: "http://gw/sqlite".into(),
                    tool: "query".into(),
                    arguments: json!({"sql": "SELECT year"}),
                },
                ChatEvent::ToolResult {
                    id: "c1".into(),
                    server: "Sales database".into(),
                    tool: "query".into(),
                    outcome: ToolOutcome::Ok {
                        result: json!({"columns": ["year", "sales"], "rows": [["2024", 10.5]]})
                    },
                },
                ChatEvent::Text {
                    delta: "| Year | Sales |".into()
                },
                ChatEvent::Done,
            ]
        );
        assert_eq!(caller.calls.lock().expect("lock")[0].0, "http://gw/sqlite");
        let second = &model.seen()[1];
        assert_eq!(second[0]["role"], "system");
        assert_eq!(
            second[2]["tool_calls"][0]["function"]["name"],
            "Sales_database__query"
        );
        assert_eq!(
            second[3],
            json!({"role": "tool", "tool_call_id": "c1",
            "content": r#"{"columns":["year","sales"],"rows":[["2024",10.5]]}"#})
        );
    }

    #[tokio::test]
    async fn a_denial_is_fed_back_to_the_model() {
        let model = ScriptedModel::new(vec![
            call(
                "c1",
                "Sales_database__query",
                r#"{"sql":"SELECT salary FROM employees"}"#,
            ),
            answer("The gateway refused the call."),
        ]);
        let events = run_script(&model, &caller()).await;
        assert!(
            matches!(&events[1], ChatEvent::ToolResult { outcome: ToolOutcome::Denied { denial }, .. }
            if denial.reason.as_deref() == Some("salaries are HR-only"))
        );
        let told = model.seen()[1][3]["content"]
            .as_str()
            .expect("text")
            .to_string();
        assert!(
            told.contains("denied by policy") && told.contains("salaries are HR-only"),
            "{told}"
        );
        assert_eq!(events.last(), Some(&ChatEvent::Done));
    }

    #[tokio::test]
    async fn the_round_limit_stops_the_loop() {
        let script = (0..=MAX_ROUNDS)
            .map(|i| call(&format!("c{i}"), "Sales_database__query", "{}"))
            .collect();
        let model = ScriptedModel::new(script);
        let caller = caller();
        let events = run_script(&model, &caller).await;
        assert_eq!(model.seen().len(), MAX_ROUNDS + 1);
        assert_eq!(caller.calls.lock().expect("lock").len(), MAX_ROUNDS);
        assert!(
            matches!(events.last(), Some(ChatEvent::Error { message }) if message.contains("after 8 rounds"))
        );
        assert!(!events.contains(&ChatEvent::Done));
    }

    #[tokio::test]
    async fn unknown_function_and_bad_arguments_are_reported_to_the_model() {
        let model = ScriptedModel::new(vec![
            Completion {
                content: Some("Let me look.".into()),
                tool_calls: vec![
                    FunctionCall {
                        id: "a".into(),
                        name: "drop_tables".into(),
                        arguments: "{}".into(),
                    },
                    FunctionCall {
                        id: "b".into(),
                        name: "Sales_database__query".into(),
                        arguments: "{sql:".into(),
                    },
                ],
            },
            answer("Sorry."),
        ]);
        let caller = caller();
        let events = run_script(&model, &caller).await;
        assert!(caller.calls.lock().expect("lock").is_empty());
        let told = &model.seen()[1];
        assert_eq!(told[2]["content"], "Let me look.");
        assert!(told[3]["content"]
            .as_str()
            .expect("text")
            .contains("no function named `drop_tables`"));
        assert!(told[3]["content"]
            .as_str()
            .expect("text")
            .contains("Sales_database__query"));
        assert!(told[4]["content"]
            .as_str()
            .expect("text")
            .contains("not JSON"));
        assert_eq!(
            events[0],
            ChatEvent::Text {
                delta: "Let me look.".into()
            }
        );
        assert!(matches!(
            &events[2],
            ChatEvent::ToolResult {
                outcome: ToolOutcome::Failed { .. },
                ..
            }
        ));
    }
}
