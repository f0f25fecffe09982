//! What the request flow needs from the proxy: the operations a proxy-wasm host offers, reduced
//! to the ones the filter uses. The Wasm build implements it over `proxy_wasm::hostcalls`
//! (`crate::host`); the native tests over a recording mock.
//!
//! Every method takes `&self`: a host is a handle, not state the flow owns, and the flow keeps
//! its own borrows (headers read once, the VM) while it calls out.

use std::fmt;
use std::time::Duration;

use crate::challenge::LocalResponse;

/// What a callback tells the host to do with the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Headers: stop iteration; body: stop and buffer.
    Pause,
}

/// Which direction of the exchange a header map or body belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// The host refused an operation (its status, for a log line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError(pub String);

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An HTTP call-out to a cluster; its answer comes back to the context that sent it.
#[derive(Debug, Clone)]
pub struct CallOut<'a> {
    pub cluster: &'a str,
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: Option<&'a [u8]>,
    pub timeout: Duration,
}

/// The host operations the request flow and the VM-wide documents use.
pub trait Host {
    fn log(&self, level: LogLevel, message: &str);
    /// Unix time in seconds from the host clock; `None` when the host cannot tell.
    fn now(&self) -> Option<u64>;

    /// A whole header map in one call.
    fn headers(&self, side: Side) -> Vec<(String, Vec<u8>)>;
    /// Replaces every value of `name`.
    fn set_header(&self, side: Side, name: &str, value: &[u8]) -> Result<(), HostError>;
    /// Adds a value of `name` next to any there are.
    fn add_header(&self, side: Side, name: &str, value: &[u8]) -> Result<(), HostError>;
    fn remove_header(&self, side: Side, name: &str) -> Result<(), HostError>;

    /// `len` bytes of the buffered body from `start` (fewer when the body is shorter).
    fn body(&self, side: Side, start: usize, len: usize) -> Result<Vec<u8>, HostError>;
    /// Replaces `len` bytes of the buffered response body from `start` with `new`.
    fn replace_response_body(&self, start: usize, len: usize, new: &[u8]) -> Result<(), HostError>;

    /// Answers the request locally; the upstream request, if one was opened, is reset.
    fn send_response(&self, response: &LocalResponse) -> Result<(), HostError>;
    /// Lets a request the header callback paused go on.
    fn resume_request(&self) -> Result<(), HostError>;

    /// Sends a call-out; `Ok(token)` identifies its answer.
    fn dispatch(&self, call: &CallOut<'_>) -> Result<u32, HostError>;
    /// A header of the call-out answer being handled (`:status` among them).
    fn call_answer_header(&self, name: &str) -> Option<Vec<u8>>;
    /// The first `len` bytes of the call-out answer being handled.
    fn call_answer_body(&self, len: usize) -> Result<Vec<u8>, HostError>;

    /// Writes a filter-state property (`wasm.<name>` in Envoy's access log).
    fn set_property(&self, name: &str, value: &[u8]) -> Result<(), HostError>;

    /// A shared-data entry (shared by every VM of the process) and its CAS.
    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError>;
    /// Writes a shared-data entry; with `cas`, only if it is still at that CAS.
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;

    /// Defines a counter (`wasmcustom.<name>` in Envoy); its id for [`Host::add_to_counter`].
    fn define_counter(&self, name: &str) -> Result<u32, HostError>;
    fn add_to_counter(&self, id: u32, delta: u64) -> Result<(), HostError>;
}
