//! Upstream OAuth: a server route's own OAuth provider, the browser's trip through it, and the
//! upstream tokens kept (encrypted) for each user.

pub mod connect;
pub mod mcp_routes;
pub mod provider;
pub mod tokens;
