//! mcpgate-server-sqlite: a reference MCP server that answers read-only SQL over one SQLite
//! database (the demo's sales data), behind the mcpgate gateway.

pub mod database;
pub mod guard;
pub mod http;
pub mod server;
