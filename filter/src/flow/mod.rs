//! The filter's request flow, host-free: every decision the filter takes on a request and its
//! response, and the VM-wide state behind them (keys, revocation list, caches, counters),
//! written against the small [`Host`] trait instead of proxy-wasm host calls. The Wasm build
//! drives it from `crate::host` with a `Host` over `proxy_wasm::hostcalls`; the native tests
//! drive it through a recording mock host, event by event.
//!
//! A server-route request goes: token verified (and not revoked) → upstream credentials from the
//! shared-data cache or one internal API call-out → the body read and decided → the request
//! goes on or gets a local answer. How long the headers are held meanwhile is the header mode
//! (see [`exchange`]). A client-route request goes: session cookie → cached TE and assertion or
//! one call-out → headers set and resumed (its body is never read).
//!
//! | module | what |
//! |---|---|
//! | `host` | the [`Host`] trait: the host operations the flow uses |
//! | `vm` | per-VM state, compiled routes, counters, the tick |
//! | `shared_document` | a document one VM at a time fetches for all, through shared data |
//! | `jwks_refresh` | the signing keys: fetch, publish, adopt |
//! | `revocation_poll` | the revocation list: poll, publish, adopt |
//! | `internal_api` | call-outs to the token service's internal API; the credentials and session caches |
//! | `exchange` | one request's state machine: its states, the events, the header modes, local answers, audit fields |
//! | `headers` | the request headers, read once; header removals and replacements |
//! | `server_route` | a server route's header phase: the token check, waiting for keys |
//! | `upstream_credentials` | a server route's assertion and upstream token |
//! | `request_body` | a server route's body: header checks, reading, the policy decision |
//! | `body_arrival` | the guard answering a held request whose body never comes |
//! | `list_filtering` | filtering the answers to list requests |
//! | `upstream_rejection` | an MCP server refusing the user's upstream token |
//! | `client_route` | a client route: session cookie → TE and assertion, or sign-in |
//! | `trace_context` | the request's W3C `traceparent`/`tracestate`, copied onto its call-outs |

mod body_arrival;
mod client_route;
mod exchange;
mod headers;
mod host;
mod internal_api;
mod jwks_refresh;
mod list_filtering;
mod param_headers;
mod request_body;
mod revocation_poll;
mod server_route;
mod shared_document;
mod trace_context;
mod upstream_credentials;
mod upstream_rejection;
mod vm;

#[cfg(test)]
mod client_route_tests;
#[cfg(test)]
mod exchange_tests;
#[cfg(test)]
mod mcp2026_tests;
#[cfg(test)]
mod mock_host;
#[cfg(test)]
mod response_tests;
#[cfg(test)]
mod test_gateway;
#[cfg(test)]
mod trace_context_tests;

pub use exchange::Exchange;
pub use host::{Action, CallOut, Host, HostError, LogLevel, Side};
pub use vm::{RouteRuntime, SharedVm, Vm};

/// A failure's log line: a warning when `warn` (the first of a run, see
/// [`crate::refresh::FailureRun`]), debug otherwise.
fn log_failure<H: Host>(host: &H, warn: bool, message: &str) {
    host.log(
        if warn {
            LogLevel::Warn
        } else {
            LogLevel::Debug
        },
        message,
    );
}

/// `:status` of the call-out answer being handled (`None`: no answer, timeout or reset).
fn call_status<H: Host>(host: &H) -> Option<String> {
    host.call_answer_header(":status")
        .map(|s| String::from_utf8_lossy(&s).into_owned())
}
