//! mcpgate proxy-wasm HTTP filter.
//!
//! On every request to a server route it verifies the MCP client's access token (a JWT from
//! mcpgate's token service, `typ: at+jwt`) locally, refuses revoked ones (the token service's
//! revocation list, polled by one VM at a time and shared), answers 401 challenges and CORS
//! preflights, strips the client's credentials and `x-mcpgate-*` headers, parses the MCP JSON-RPC
//! body in full and decides it by the route's policy (fail closed), gets the upstream credentials
//! (the user assertion, and the user's upstream OAuth token on routes with one) from a shared
//! cache or the token service's internal API, filters list answers (JSON and SSE, as they
//! stream), turns an MCP server's refusal of the upstream token into a reconnect challenge, and
//! records the decision for the access log. On a client route it trades the browser's session
//! cookie for the user's TE and assertion, or sends the browser to sign in.
//!
//! The protocol logic lives in plain modules without host calls, unit-tested natively:
//! [`jwks`], [`access_token`], [`token_cache`], [`challenge`], [`request`], [`refresh`],
//! [`revocation`], [`credentials`], [`client_session`], [`decision`], [`audit`],
//! [`list_response`]. [`flow`] is the request flow built on them, host-free behind a small
//! host trait (tested natively through a mock host); [`host`] is the thin proxy-wasm adapter.
//! Nothing here may panic: a panic traps the worker's VM.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![cfg_attr(test, allow(clippy::arithmetic_side_effects, clippy::string_slice))]

pub mod access_token;
pub mod audit;
pub mod challenge;
pub mod client_session;
pub mod credentials;
pub mod decision;
pub mod flow;
pub mod host;
pub mod jwks;
pub mod list_response;
pub mod refresh;
pub mod request;
pub mod revocation;
pub mod token_cache;

#[cfg(test)]
mod test_support;

// The Wasm entry point. Only built for Wasm: natively the crate is a library for the tests.
#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(host::Root::new(context_id))
    });
}}
