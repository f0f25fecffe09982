//! mcpgate token service: the OAuth 2.1 authorization server MCP clients use in front of the
//! gateway's server routes, the upstream OAuth client that keeps users' provider tokens, and the
//! internal API the filter calls. See docs/architecture.md and docs/delegation.md.

pub mod access_token;
pub mod app;
pub mod assertion;
pub mod authorize;
pub mod cli;
pub mod client_metadata;
pub mod client_metadata_document;
pub mod clients;
pub mod config_reload;
pub mod config_watch;
pub mod connect;
pub mod internal_api;
pub mod key_files;
pub mod mcp_routes;
pub mod metadata;
pub mod oauth_error;
pub mod opaque_token;
pub mod pages;
pub mod pkce;
pub mod registration;
pub mod request_params;
pub mod resources;
pub mod revocation;
pub mod service_accounts;
pub mod session;
pub mod signing_keys;
pub mod store;
pub mod token_endpoint;
pub mod upstream_oauth;
pub mod upstream_tokens;
pub mod users;
