//! The conversation the browser sends to `POST /api/chat`, checked before anything is sent on:
//! roles, sizes, the chosen model, and the servers (only the user's own servers, as the gateway
//! lists them, ever receive the user's token).

use serde::Deserialize;

use crate::gateway::RouteEntry;

/// What the model is told about its situation.
pub const SYSTEM_PROMPT: &str = "You are the assistant of mcpgate chat. You answer the signed-in \
user's questions with the MCP tools you are given; every tool call goes through the mcpgate \
gateway, which applies the organisation's policy. When a tool call is denied or fails, say so \
plainly and quote the error. Answer in markdown.";

/// Limits on what one request may carry.
pub const MAX_MESSAGES: usize = 100;
pub const MAX_MESSAGE_CHARS: usize = 32_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

#[cfg(test)]
impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            content: content.into(),
        }
    }
}

/// `POST /api/chat`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    /// A model's `key`.
    pub model: String,
    #[serde(default)]
    pub servers: Vec<ServerChoice>,
}

/// A server the user switched on, with the tools switched on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerChoice {
    pub url: String,
    #[serde(default)]
    pub tools: Vec<String>,
}

/// A server the model may use this turn: listed by the gateway for this user, usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnabledServer {
    pub name: String,
    pub url: String,
    pub description: Option<String>,
    pub tools: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChatRequestError {
    #[error("messages: the conversation is empty")]
    NoMessages,
    #[error("messages: more than {MAX_MESSAGES} messages; start a new conversation")]
    TooManyMessages,
    #[error("messages[{0}].content: longer than {MAX_MESSAGE_CHARS} characters")]
    MessageTooLong(usize),
    #[error("messages: the last message must be the user's")]
    LastNotUser,
    #[error("servers[{index}].url: `{url}` is not one of your servers")]
    UnknownServer { index: usize, url: String },
    #[error("Connect the server '{0}' first (its Connect button), then ask again.")]
    NeedsConnect(String),
}

/// Checks the messages.
pub fn check_messages(messages: &[Message]) -> Result<(), ChatRequestError> {
    if messages.is_empty() {
        return Err(ChatRequestError::NoMessages);
    }
    if messages.len() > MAX_MESSAGES {
        return Err(ChatRequestError::TooManyMessages);
    }
    if let Some(i) = messages
        .iter()
        .position(|m| m.content.chars().count() > MAX_MESSAGE_CHARS)
    {
        return Err(ChatRequestError::MessageTooLong(i));
    }
    if messages.last().map(|m| m.role) != Some(Role::User) {
        return Err(ChatRequestError::LastNotUser);
    }
    Ok(())
}

/// The chosen servers, each matched to the gateway's list (exact URL): servers with no tool
/// switched on are dropped; a URL the gateway does not list for this user is refused, so the
/// token is never sent anywhere else.
pub fn resolve_servers(
    choices: &[ServerChoice],
    routes: &[RouteEntry],
) -> Result<Vec<EnabledServer>, ChatRequestError> {
    let mut enabled = Vec::new();
    for (index, choice) in choices.iter().enumerate() {
        let route = routes.iter().find(|r| r.url == choice.url).ok_or_else(|| {
            ChatRequestError::UnknownServer {
                index,
                url: choice.url.clone(),
            }
        })?;
        if choice.tools.is_empty() || enabled.iter().any(|e: &EnabledServer| e.url == route.url) {
            continue;
        }
        if route.needs_connect() {
            return Err(ChatRequestError::NeedsConnect(route.name.clone()));
        }
        let mut tools: Vec<String> = Vec::new();
        for tool in &choice.tools {
            if !tools.contains(tool) {
                tools.push(tool.clone());
            }
        }
        enabled.push(EnabledServer {
            name: route.name.clone(),
            url: route.url.clone(),
            description: route.description.clone(),
            tools,
        });
    }
    Ok(enabled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, url: &str, needs_oauth: bool, connected: bool) -> RouteEntry {
        RouteEntry {
            name: name.into(),
            url: url.into(),
            description: None,
            connected,
            needs_oauth,
            expires_at: None,
        }
    }

    fn choice(url: &str, tools: &[&str]) -> ServerChoice {
        ServerChoice {
            url: url.into(),
            tools: tools.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn messages() {
        assert_eq!(check_messages(&[]), Err(ChatRequestError::NoMessages));
        let assistant = Message {
            role: Role::Assistant,
            content: "hi".into(),
        };
        assert_eq!(
            check_messages(&[Message::user("a"), assistant]),
            Err(ChatRequestError::LastNotUser)
        );
        assert_eq!(
            check_messages(&[Message::user("x".repeat(MAX_MESSAGE_CHARS + 1))]),
            Err(ChatRequestError::MessageTooLong(0))
        );
        assert_eq!(check_messages(&[Message::user("hi")]), Ok(()));
    }

    #[test]
    fn servers_must_be_the_users_own() {
        let routes = vec![
            route("Sales database", "http://gw/sqlite", false, true),
            route("Notes", "http://gw/notes", true, false),
        ];
        let resolved = resolve_servers(
            &[
                choice("http://gw/sqlite", &["query", "query", "list_tables"]),
                choice("http://gw/notes", &[]),
            ],
            &routes,
        )
        .expect("ok");
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].name, "Sales database");
        assert_eq!(resolved[0].tools, vec!["query", "list_tables"]);
        assert_eq!(
            resolve_servers(&[choice("http://evil.example/mcp", &["x"])], &routes),
            Err(ChatRequestError::UnknownServer {
                index: 0,
                url: "http://evil.example/mcp".into()
            })
        );
        assert_eq!(
            resolve_servers(&[choice("http://gw/notes", &["search"])], &routes),
            Err(ChatRequestError::NeedsConnect("Notes".into()))
        );
    }
}
