//! A local stand-in for OpenAI's API, for demos and tests with no hosted model in reach. It
//! answers the Responses API with remote MCP tools the way a hosted model does (it connects to
//! the MCP servers it is handed, with the credentials it is handed, lists and calls their tools)
//! and chat completions for apps that run the tool loop themselves. Which tools it calls and what
//! it answers follows a fixed playbook, so runs are repeatable.

pub mod api;
pub mod api_error;
pub mod chat;
pub mod ids;
pub mod mcp;
pub mod playbook;
pub mod responses;
