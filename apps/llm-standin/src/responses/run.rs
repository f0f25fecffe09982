//! One Responses API turn, as a hosted model runs it: list each MCP server's tools (unless the
//! conversation already holds the listing), plan by the playbook over every listed tool, call the
//! planned tools, answer. Every step is reported to an [`EventSink`] as it happens.

use std::future::Future;

use serde_json::Value;

use super::builder::{word_chunks, ResponseBuilder};
use super::events::{Event, McpTool, Response, Usage};
use super::request::ResponsesRequest;
use crate::ids::{new_id, now};
use crate::mcp::{McpClient, McpSession};
use crate::playbook::{self, Failure, FailureKind, Outcome, StepResult};

/// Longest chain of calls one turn makes (the playbook needs two at most).
const MAX_CALLS: usize = 8;

/// Where the events of a turn go as they happen.
pub trait EventSink: Send {
    fn emit(&mut self, events: Vec<Event>) -> impl Future<Output = ()> + Send;
}

/// A non-streamed turn: only the finished response matters.
pub struct Discard;

impl EventSink for Discard {
    async fn emit(&mut self, _events: Vec<Event>) {}
}

impl EventSink for Vec<Event> {
    async fn emit(&mut self, events: Vec<Event>) {
        self.extend(events);
    }
}

/// A finished turn: the response, and the tool listings its context holds from now on.
pub struct Finished {
    pub response: Response,
    pub listings: Vec<(String, Vec<McpTool>)>,
}

/// Runs the turn. `known` are listings from the conversation so far (label → tools).
pub async fn run<C: McpClient>(
    client: &C,
    request: &ResponsesRequest,
    known: Vec<(String, Vec<McpTool>)>,
    started: Response,
    sink: &mut impl EventSink,
) -> Finished {
    let mut builder = ResponseBuilder::new(started);
    sink.emit(builder.start()).await;

    let mut listings = known;
    let mut sessions: Vec<Option<C::Session>> = Vec::new();
    // (server index, tool name) of every tool the plan may use, in listing order.
    let mut offered: Vec<(usize, String)> = Vec::new();
    // (label, error) of each server whose tools could not be listed.
    let mut unlisted: Vec<(String, String)> = Vec::new();
    for (i, spec) in request.servers.iter().enumerate() {
        let server = &spec.server;
        let known_tools = listings
            .iter()
            .find(|(label, _)| *label == server.label)
            .map(|(_, tools)| tools.clone());
        let tools = match known_tools {
            Some(tools) => {
                sessions.push(None);
                tools
            }
            None => {
                let (index, events) = builder.list_tools_started(new_id("mcpl_"), &server.label);
                sink.emit(events).await;
                tracing::info!(server = %server.label, url = %server.url, "listing MCP tools");
                let (session, listed) = match client.connect(server).await {
                    Ok(mut session) => {
                        let listed = session.list_tools().await;
                        (Some(session), listed)
                    }
                    Err(e) => (None, Err(e)),
                };
                let listed = listed
                    .map(|tools| {
                        tools
                            .into_iter()
                            .filter(|t| spec.allowed.admits(t))
                            .collect::<Vec<_>>()
                    })
                    .map_err(|e| {
                        tracing::warn!(server = %server.label, error = %e, "listing MCP tools failed");
                        unlisted.push((server.label.clone(), e.clone()));
                        format!(
                            "Error retrieving tool list from MCP server: '{}'. {e}",
                            server.label
                        )
                    });
                sink.emit(builder.list_tools_finished(index, listed.clone()))
                    .await;
                sessions.push(session);
                match listed {
                    Ok(tools) => {
                        listings.push((server.label.clone(), tools.clone()));
                        tools
                    }
                    Err(_) => Vec::new(),
                }
            }
        };
        offered.extend(
            tools
                .into_iter()
                .filter(|t| spec.allowed.admits(t))
                .map(|t| (i, t.name)),
        );
    }

    let names: Vec<String> = offered.iter().map(|(_, name)| name.clone()).collect();
    let plan = playbook::plan(&request.question, &names);
    let mut done: Vec<StepResult> = Vec::new();
    while let Some(call) = plan.next_call(&done) {
        if done.len() >= MAX_CALLS {
            break;
        }
        let Some(&(server_index, _)) = offered.iter().find(|(_, name)| *name == call.tool) else {
            break;
        };
        let server = &request.servers[server_index].server;
        let arguments = Value::Object(call.arguments.clone()).to_string();
        let (index, events) =
            builder.call_started(new_id("mcp_"), &server.label, &call.tool, arguments);
        sink.emit(events).await;
        tracing::info!(server = %server.label, tool = %call.tool, "calling MCP tool");

        let session = match sessions[server_index].take() {
            Some(session) => Ok(session),
            None => client.connect(server).await,
        };
        let outcome = match session {
            Ok(mut session) => {
                let outcome = session.call_tool(&call.tool, call.arguments.clone()).await;
                sessions[server_index] = Some(session);
                outcome
            }
            Err(message) => Outcome::Failed(Failure {
                kind: FailureKind::Transport,
                message,
            }),
        };
        let result = match &outcome {
            Outcome::Output(text) => Ok(text.clone()),
            Outcome::Failed(failure) => {
                tracing::info!(server = %server.label, tool = %call.tool, error = %failure.message, "MCP tool call failed");
                Err(failure.message.clone())
            }
        };
        sink.emit(builder.call_finished(index, result)).await;
        done.push(StepResult { call, outcome });
    }

    let answer = match playbook::unlisted_servers(&unlisted) {
        Some(note) => format!("{note}\n\n{}", plan.answer(&done)),
        None => plan.answer(&done),
    };
    sink.emit(builder.message(new_id("msg_"), &word_chunks(&answer)))
        .await;

    let usage = estimate_usage(request, builder.response(), &answer);
    sink.emit(builder.complete(usage, now())).await;

    for session in sessions.into_iter().flatten() {
        session.close().await;
    }
    Finished {
        response: builder.into_response(),
        listings,
    }
}

/// Roughly what a model would bill: a token per four characters read and written.
fn estimate_usage(request: &ResponsesRequest, response: &Response, answer: &str) -> Usage {
    let tokens = |chars: usize| (chars as u64).div_ceil(4);
    let items: usize = response
        .output
        .iter()
        .map(|item| serde_json::to_string(item).map_or(0, |s| s.len()))
        .sum();
    let input = tokens(request.input_chars + items) + 12;
    let output = tokens(answer.len()) + 1;
    Usage::new(input, output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::McpServer;
    use crate::responses::events::{OutputItem, Status};
    use crate::responses::request::{AllowedTools, ServerTool};
    use serde_json::{json, Map};
    use std::sync::{Arc, Mutex};

    /// A fake MCP world: servers by URL, each with tools and canned outcomes; records traffic.
    #[derive(Clone, Default)]
    struct Fake {
        servers: Vec<(&'static str, Vec<&'static str>)>,
        outcomes: Vec<(&'static str, Outcome)>,
        refuse_connect: Vec<&'static str>,
        log: Arc<Mutex<Vec<String>>>,
    }

    struct FakeSession {
        fake: Fake,
        url: String,
    }

    impl McpClient for Fake {
        type Session = FakeSession;
        async fn connect(&self, server: &McpServer) -> Result<FakeSession, String> {
            self.log
                .lock()
                .unwrap()
                .push(format!("connect {}", server.url));
            if self.refuse_connect.contains(&server.url.as_str()) {
                return Err("Http status code: 401 (Unauthorized)".into());
            }
            Ok(FakeSession {
                fake: self.clone(),
                url: server.url.clone(),
            })
        }
    }

    impl McpSession for FakeSession {
        async fn list_tools(&mut self) -> Result<Vec<McpTool>, String> {
            self.fake
                .log
                .lock()
                .unwrap()
                .push(format!("list {}", self.url));
            let (_, tools) = self
                .fake
                .servers
                .iter()
                .find(|(u, _)| *u == self.url)
                .unwrap();
            Ok(tools
                .iter()
                .map(|n| McpTool {
                    name: n.to_string(),
                    description: None,
                    input_schema: json!({"type": "object"}),
                    annotations: None,
                })
                .collect())
        }
        async fn call_tool(&mut self, name: &str, arguments: Map<String, Value>) -> Outcome {
            self.fake.log.lock().unwrap().push(format!(
                "call {} {name} {}",
                self.url,
                Value::Object(arguments)
            ));
            self.fake
                .outcomes
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, o)| o.clone())
                .unwrap_or(Outcome::Output("{}".into()))
        }
        async fn close(self) {
            self.fake
                .log
                .lock()
                .unwrap()
                .push(format!("close {}", self.url));
        }
    }

    fn server(label: &str, url: &str) -> ServerTool {
        ServerTool {
            server: McpServer {
                label: label.into(),
                url: url.into(),
                bearer: None,
                headers: Vec::new(),
            },
            allowed: AllowedTools::default(),
        }
    }

    fn request(question: &str, servers: Vec<ServerTool>) -> ResponsesRequest {
        ResponsesRequest {
            model: "standin-1".into(),
            question: question.into(),
            instructions: None,
            servers,
            stream: true,
            previous_response_id: None,
            listed_in_input: Vec::new(),
            echoed_tools: Vec::new(),
            input_chars: question.len(),
        }
    }

    fn started() -> Response {
        Response::started(
            "resp_t".into(),
            1,
            "standin-1".into(),
            None,
            None,
            Vec::new(),
        )
    }

    fn message_text(response: &Response) -> String {
        match response.output.last() {
            Some(OutputItem::Message(m)) => m.content[0].text.clone(),
            other => panic!("no message: {other:?}"),
        }
    }

    #[tokio::test]
    async fn lists_every_server_then_calls_the_planned_tool_on_its_server() {
        let fake = Fake {
            servers: vec![
                ("http://who/mcp", vec!["whoami"]),
                ("http://sales/mcp", vec!["list_tables", "query"]),
            ],
            outcomes: vec![(
                "query",
                Outcome::Output(r#"{"columns":["year","sales"],"rows":[["2024",1234.5]]}"#.into()),
            )],
            ..Default::default()
        };
        let req = request(
            "What were the sales by year?",
            vec![
                server("who", "http://who/mcp"),
                server("sales", "http://sales/mcp"),
            ],
        );
        let mut events = Vec::new();
        let done = run(&fake, &req, Vec::new(), started(), &mut events).await;
        let log = fake.log.lock().unwrap().clone();
        assert_eq!(
            log,
            vec![
                "connect http://who/mcp".to_owned(),
                "list http://who/mcp".into(),
                "connect http://sales/mcp".into(),
                "list http://sales/mcp".into(),
                format!(
                    "call http://sales/mcp query {}",
                    json!({ "sql": playbook::SALES_BY_YEAR_SQL })
                ),
                "close http://who/mcp".into(),
                "close http://sales/mcp".into(),
            ]
        );
        let r = &done.response;
        assert_eq!(r.status, Status::Completed);
        assert_eq!(r.output.len(), 4);
        let OutputItem::McpCall(call) = &r.output[2] else {
            panic!()
        };
        assert_eq!(call.server_label, "sales");
        assert!(call.output.as_deref().unwrap().contains("1234.5"));
        assert!(message_text(r).contains("| 2024 | 1,234.50 |"));
        assert_eq!(done.listings.len(), 2);
        assert!(matches!(events.last(), Some(Event::Completed { .. })));
    }

    #[tokio::test]
    async fn a_failed_listing_is_an_item_with_the_error_and_the_answer_goes_on() {
        let fake = Fake {
            servers: vec![("http://ok/mcp", vec!["echo"])],
            refuse_connect: vec!["http://denied/mcp"],
            ..Default::default()
        };
        let req = request(
            "hello",
            vec![
                server("denied", "http://denied/mcp"),
                server("ok", "http://ok/mcp"),
            ],
        );
        let done = run(&fake, &req, Vec::new(), started(), &mut Discard).await;
        let OutputItem::McpListTools(list) = &done.response.output[0] else {
            panic!()
        };
        assert_eq!(
            list.error.as_deref(),
            Some("Error retrieving tool list from MCP server: 'denied'. Http status code: 401 (Unauthorized)")
        );
        let text = message_text(&done.response);
        assert!(text.starts_with(
            "I could not get the tools of the MCP server `denied`: Http status code: 401 (Unauthorized)\n\n"
        ), "{text}");
        assert!(text.contains("`echo`"));
        assert_eq!(done.listings.len(), 1);
    }

    #[tokio::test]
    async fn a_denied_call_fails_its_item_and_the_answer_quotes_it() {
        let denial = "mcpgate: tools/call 'query' denied by policy (request 7)";
        let fake = Fake {
            servers: vec![("http://sales/mcp", vec!["query"])],
            outcomes: vec![(
                "query",
                Outcome::Failed(Failure {
                    kind: FailureKind::Rejected,
                    message: denial.into(),
                }),
            )],
            ..Default::default()
        };
        let req = request(
            "show the salaries",
            vec![server("sales", "http://sales/mcp")],
        );
        let mut events = Vec::new();
        let done = run(&fake, &req, Vec::new(), started(), &mut events).await;
        let OutputItem::McpCall(call) = &done.response.output[1] else {
            panic!()
        };
        assert_eq!(call.error.as_deref(), Some(denial));
        assert!(events.iter().any(|e| matches!(e, Event::McpCallFailed(_))));
        assert_eq!(
            message_text(&done.response),
            format!("The gateway refused the call to `query`: {denial}")
        );
    }

    #[tokio::test]
    async fn known_listings_are_not_fetched_again_and_allowed_tools_hold() {
        let fake = Fake {
            servers: vec![("http://notes/mcp", vec!["search", "fetch"])],
            outcomes: vec![
                (
                    "search",
                    Outcome::Output(
                        r#"{"results":[{"id":"n1","title":"T","url":"http://n/1"}]}"#.into(),
                    ),
                ),
                (
                    "fetch",
                    Outcome::Output(
                        r#"{"id":"n1","title":"T","text":"Body.","url":"http://n/1"}"#.into(),
                    ),
                ),
            ],
            ..Default::default()
        };
        let tool = |name: &str| McpTool {
            name: name.into(),
            description: None,
            input_schema: json!({}),
            annotations: None,
        };
        let known = vec![("notes".to_owned(), vec![tool("search"), tool("fetch")])];
        let req = request("notes about T?", vec![server("notes", "http://notes/mcp")]);
        let done = run(&fake, &req, known.clone(), started(), &mut Discard).await;
        let log = fake.log.lock().unwrap().clone();
        assert_eq!(log[0], "connect http://notes/mcp");
        assert!(log[1].starts_with("call http://notes/mcp search"));
        assert!(log[2].starts_with("call http://notes/mcp fetch {\"id\":\"n1\"}"));
        assert_eq!(done.response.output.len(), 3);
        assert!(message_text(&done.response).contains("[T](http://n/1)"));

        // With fetch not allowed, the notes rule cannot apply.
        let mut limited = server("notes", "http://notes/mcp");
        limited.allowed.names = Some(vec!["search".into()]);
        let req = request("notes about T?", vec![limited]);
        let done = run(&fake, &req, known, started(), &mut Discard).await;
        assert_eq!(done.response.output.len(), 1);
        assert!(message_text(&done.response).starts_with("I can use these tools: `search`."));
    }
}
