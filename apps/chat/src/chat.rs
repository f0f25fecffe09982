//! One turn of the conversation (`POST /api/chat`): the user's servers from the gateway, then the
//! chosen model in its mode, every outcome an event.

use std::collections::HashMap;

use serde_json::Value;

use crate::chat_completions::ChatCompletions;
use crate::conversation::{resolve_servers, EnabledServer, Message, ServerChoice};
use crate::events::{ChatEvent, ToolOutcome};
use crate::gateway::{Gateway, GatewayToken};
use crate::mcp::{dial_url, McpSession};
use crate::models::{Api, Model};
use crate::tool_loop::{self, ToolCaller};

/// What a turn needs besides the request.
pub struct Turn<'a> {
    pub http: &'a reqwest::Client,
    pub gateway: &'a Gateway,
    pub mcp_base: Option<&'a str>,
    pub model: &'a Model,
    pub token: &'a GatewayToken,
}

impl Turn<'_> {
    /// Runs the turn; every result, including every failure, reaches `emit`.
    pub async fn run(
        &self,
        messages: &[Message],
        choices: &[ServerChoice],
        emit: &mut impl FnMut(ChatEvent),
    ) {
        let routes = match self.gateway.routes(self.token).await {
            Ok(routes) => routes,
            Err(e) => return emit(error(e)),
        };
        let servers = match resolve_servers(choices, &routes) {
            Ok(servers) => servers,
            Err(e) => return emit(error(e)),
        };
        let result = match self.model.api {
            Api::Responses => {
                crate::responses::run(self.http, self.model, messages, &servers, self.token, emit)
                    .await
            }
            Api::ChatCompletions => self.tool_loop(messages, &servers, emit).await,
        };
        if let Err(e) = result {
            emit(error(e));
        }
    }

    async fn tool_loop(
        &self,
        messages: &[Message],
        servers: &[EnabledServer],
        emit: &mut impl FnMut(ChatEvent),
    ) -> Result<(), crate::responses::ModelCallError> {
        let connects = servers.iter().map(|server| async move {
            let dial = dial_url(&server.url, self.gateway.origin(), self.mcp_base);
            let session = McpSession::connect(&dial, self.token).await;
            let tools = match &session {
                Ok(session) => session.tools().await,
                Err(e) => Err(e.clone()),
            };
            (server, session, tools)
        });
        let mut sessions = HashMap::new();
        let mut offered = Vec::new();
        for (server, session, tools) in futures_util::future::join_all(connects).await {
            match (session, tools) {
                (Ok(session), Ok(tools)) => {
                    let enabled = tools
                        .into_iter()
                        .filter(|t| server.tools.contains(&t.name))
                        .collect();
                    offered.push((server.name.clone(), server.url.clone(), enabled));
                    sessions.insert(server.url.clone(), session);
                }
                (session, tools) => {
                    let reason = tools.err().map(|e| e.to_string()).unwrap_or_default();
                    if let Ok(session) = session {
                        session.close().await;
                    }
                    emit(ChatEvent::Error {
                        message: format!(
                            "The server '{}' {reason}; the model will answer without it.",
                            server.name
                        ),
                    });
                }
            }
        }
        let functions = tool_loop::function_tools(&offered);
        let model = ChatCompletions {
            http: self.http,
            model: self.model,
        };
        let caller = Sessions { sessions };
        let result = tool_loop::run(&model, &caller, &functions, messages, emit).await;
        for (_, session) in caller.sessions {
            session.close().await;
        }
        result
    }
}

/// The open MCP sessions of a turn, by server URL.
struct Sessions {
    sessions: HashMap<String, McpSession>,
}

impl ToolCaller for Sessions {
    async fn call(&self, server_url: &str, tool: &str, arguments: Value) -> ToolOutcome {
        match self.sessions.get(server_url) {
            Some(session) => session.call(tool, arguments).await,
            None => ToolOutcome::Failed {
                message: "the app has no session with this server".into(),
            },
        }
    }
}

fn error(e: impl std::fmt::Display) -> ChatEvent {
    ChatEvent::Error {
        message: e.to_string(),
    }
}
