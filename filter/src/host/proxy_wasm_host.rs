//! The flow's [`Host`] over `proxy_wasm::hostcalls`: one host call per operation, through the
//! functions that return `Result` (the SDK convenience methods unwrap internally and would trap
//! the VM on an unexpected status).

use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel as Level, MapType, MetricType, Status};

use crate::challenge::LocalResponse;
use crate::flow::{CallOut, Host, HostError, LogLevel, Side};

/// The host of the context whose callback is running (or the effective context set by the
/// root).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyWasmHost;

fn error(status: Status) -> HostError {
    HostError(format!("{status:?}"))
}

fn header_map(side: Side) -> MapType {
    match side {
        Side::Request => MapType::HttpRequestHeaders,
        Side::Response => MapType::HttpResponseHeaders,
    }
}

impl Host for ProxyWasmHost {
    fn log(&self, level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Debug => Level::Debug,
            LogLevel::Info => Level::Info,
            LogLevel::Warn => Level::Warn,
            LogLevel::Error => Level::Error,
        };
        let _ = hostcalls::log(level, message);
    }

    fn now(&self) -> Option<u64> {
        hostcalls::get_current_time()
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    }

    fn headers(&self, side: Side) -> Vec<(String, Vec<u8>)> {
        hostcalls::get_map_bytes(header_map(side)).unwrap_or_default()
    }

    fn set_header(&self, side: Side, name: &str, value: &[u8]) -> Result<(), HostError> {
        hostcalls::set_map_value_bytes(header_map(side), name, Some(value)).map_err(error)
    }

    fn add_header(&self, side: Side, name: &str, value: &[u8]) -> Result<(), HostError> {
        hostcalls::add_map_value_bytes(header_map(side), name, value).map_err(error)
    }

    fn remove_header(&self, side: Side, name: &str) -> Result<(), HostError> {
        hostcalls::remove_map_value(header_map(side), name).map_err(error)
    }

    fn body(&self, side: Side, start: usize, len: usize) -> Result<Vec<u8>, HostError> {
        let buffer = match side {
            Side::Request => BufferType::HttpRequestBody,
            Side::Response => BufferType::HttpResponseBody,
        };
        hostcalls::get_buffer(buffer, start, len)
            .map(Option::unwrap_or_default)
            .map_err(error)
    }

    fn replace_response_body(&self, start: usize, len: usize, new: &[u8]) -> Result<(), HostError> {
        hostcalls::set_buffer(BufferType::HttpResponseBody, start, len, new).map_err(error)
    }

    fn send_response(&self, response: &LocalResponse) -> Result<(), HostError> {
        hostcalls::send_http_response(
            response.status,
            response.header_pairs(),
            Some(&response.body),
        )
        .map_err(error)
    }

    fn resume_request(&self) -> Result<(), HostError> {
        hostcalls::resume_http_request().map_err(error)
    }

    fn dispatch(&self, call: &CallOut<'_>) -> Result<u32, HostError> {
        hostcalls::dispatch_http_call(
            call.cluster,
            call.headers.clone(),
            call.body,
            vec![],
            call.timeout,
        )
        .map_err(error)
    }

    fn call_answer_header(&self, name: &str) -> Option<Vec<u8>> {
        hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
            .ok()
            .flatten()
    }

    fn call_answer_body(&self, len: usize) -> Result<Vec<u8>, HostError> {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, len)
            .map(Option::unwrap_or_default)
            .map_err(error)
    }

    fn set_property(&self, name: &str, value: &[u8]) -> Result<(), HostError> {
        hostcalls::set_property(vec![name], Some(value)).map_err(error)
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        hostcalls::get_shared_data(key).map_err(error)
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(error)
    }

    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        hostcalls::define_metric(MetricType::Counter, name).map_err(error)
    }

    fn add_to_counter(&self, id: u32, delta: u64) -> Result<(), HostError> {
        hostcalls::increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX)).map_err(error)
    }
}
