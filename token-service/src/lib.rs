//! mcpgate token service: the OAuth 2.1 authorization server MCP clients use in front of the
//! gateway's server routes, the upstream OAuth client that keeps users' provider tokens, and the
//! internal API the filter calls. See docs/architecture.md and docs/delegation.md.
//!
//! | module               | what it is                                                          |
//! |----------------------|---------------------------------------------------------------------|
//! | [`state`]            | the state one version of the gateway file gives every request       |
//! | [`clock`]            | unix seconds                                                        |
//! | [`http`]             | the HTTP surface: router, health, pages, request parameters         |
//! | [`oauth`]            | the OAuth protocol: authorize, token, revocation, metadata, tokens  |
//! | [`clients`]          | OAuth clients: static, registered, client ID metadata documents     |
//! | [`identity`]         | who the user is: user directory, OIDC providers, sessions, sign-in  |
//! | [`upstream`]         | upstream OAuth: providers, the connect flow, stored upstream tokens |
//! | [`internal_api`]     | the API only the filter calls, and the identity assertion           |
//! | [`service_accounts`] | callers that are not people                                         |
//! | [`store`]            | the database: every SQL statement                                   |
//! | [`runtime`]          | serving, signing keys, key files, watching and reloading the file   |
//! | [`telemetry`]        | metrics, logs and traces                                            |
//! | [`cli`]              | the command line                                                    |

pub mod cli;
pub mod clients;
pub mod clock;
pub mod http;
pub mod identity;
pub mod internal_api;
pub mod oauth;
pub mod runtime;
pub mod service_accounts;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod upstream;
