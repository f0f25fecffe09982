//! mcpgate-server-whoami: a reference MCP server whose one tool tells the caller who the gateway
//! says they are. Every request must carry a valid identity assertion.

pub mod http;
pub mod server;
pub mod whoami;
