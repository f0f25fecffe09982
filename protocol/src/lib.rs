//! The MCP protocol layer of mcpgate: plain Rust, no host calls, built natively (tests, fuzzing,
//! the token service) and for `wasm32-wasip1` (the proxy-wasm filter).
//!
//! # Fail closed
//!
//! A gateway that decides on a different message than the server executes is no gateway. The
//! gateways in use today let a denied tool through when the body is larger than their parser
//! reads, is a JSON-RPC batch, repeats a key, is compressed or has another content type. Here,
//! anything that cannot be parsed completely and unambiguously is an [`Error`] (with a stable
//! [`Error::reason`] for metrics), and the caller refuses the message:
//!
//! | refused | reason | why |
//! |---|---|---|
//! | body over the limit (1 MiB default), checked per chunk | `too_large` | the part not read could hold the call |
//! | `Content-Type` other than `application/json` (UTF-8) | `content_type` | the server may decode it differently |
//! | `Content-Encoding` other than `identity` | `content_encoding` | the parser would see compressed bytes |
//! | invalid UTF-8 | `invalid_utf8` | decoders disagree on replacement |
//! | a repeated key at any depth, compared after unescaping | `duplicate_key` | parsers keep the first or the last: the policy and the server could see different tools |
//! | nesting deeper than the limit (64 default) | `too_deep` | bounded stack, inside Wasm too |
//! | input ending inside a value | `truncated` | |
//! | anything after the value | `trailing_data` | some parsers stop at the first value |
//! | non-JSON (RFC 8259 only: no comments, NaN, trailing commas, lone surrogates, BOM) | `invalid_json` | |
//! | empty body, empty batch, non-object message | `empty`, `empty_batch`, `not_an_object` | |
//! | `jsonrpc` not `"2.0"`, `method` not a string, bad `id`, `params` not an object | `invalid_version`, `invalid_method`, `invalid_id`, `invalid_params` | |
//! | `tools/call` without a string `params.name` (and the like for prompts, resources, completion) | `missing_tool_name`, … | nothing to decide on |
//! | a batch where the protocol version forbids one ([`jsonrpc::batches_allowed`]) | `batch` | |
//!
//! Names are decided on exactly as the server will read them: after JSON unescaping
//! (`"\u0074ools/call"` is `tools/call`), without any other normalisation.
//!
//! # Modules
//!
//! - [`json`]: the strict JSON parser (borrowed values that keep their raw text).
//! - [`jsonrpc`]: one complete body → validated JSON-RPC message(s), MCP targets and arguments.
//! - [`body`]: incremental request body accumulation with an immediate size limit.
//! - [`request_checks`]: `Content-Type`, `Content-Encoding`, `Content-Length` checks.
//! - [`request_metadata`]: the protocol version of a request and the 2026-07-28 header checks
//!   (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*` against the body).
//! - [`sse`]: incremental Server-Sent Events parsing and per-event rewriting.
//! - [`list_filter`]: filtering list responses by policy, matched to requests by id.
//!
//! Nothing here panics on any input: the crate denies `unwrap`, `expect`, `panic!` and slice
//! indexing, and property tests feed arbitrary bytes and chunkings.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::string_slice
    )
)]

pub mod body;
pub mod error;
pub mod json;
pub mod jsonrpc;
pub mod list_filter;
pub mod request_checks;
pub mod request_metadata;
pub mod sse;

pub use error::Error;
