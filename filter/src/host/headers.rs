//! The request headers, read once per request, and the changes the filter makes to them.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType};

use super::http::Http;
use super::log;
use crate::request;

/// A header map read with one host call. In V8 every host call that returns data costs a few
/// microseconds (the host calls back into the module to allocate), so a request's headers are
/// read once and looked up here instead of one `get_map_value` per header.
#[derive(Default)]
pub(super) struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    pub(super) fn read(map: MapType) -> Self {
        Headers(hostcalls::get_map_bytes(map).unwrap_or_default())
    }

    fn raw(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `name`, as the host's `get_map_value` answers.
    pub(super) fn get(&self, name: &str) -> Option<String> {
        self.raw(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    /// Every value of `name`.
    pub(super) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// `:authority`, or `Host`.
    pub(super) fn authority(&self) -> String {
        self.get(":authority")
            .or_else(|| self.get("host"))
            .unwrap_or_default()
    }
}

/// Sets (replaces) a request header; false (logged) when the host refuses.
pub(super) fn set_request_header(name: &str, value: &str) -> bool {
    match hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)) {
        Ok(()) => true,
        Err(status) => {
            log(
                LogLevel::Error,
                &format!("mcpgate: cannot set the {name} header: {status:?}"),
            );
            false
        }
    }
}

impl Http {
    /// Remove the client's `Authorization` and every `x-mcpgate-*` header it sent: only the
    /// filter sets those.
    pub(super) fn strip_gateway_headers(&mut self) -> bool {
        let mut gateway: Vec<&str> = self
            .headers
            .0
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| request::is_gateway_header(name))
            .collect();
        gateway.dedup();
        for name in gateway {
            if let Err(status) = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name) {
                log(
                    LogLevel::Error,
                    &format!("mcpgate: cannot remove the {name} header: {status:?}"),
                );
                return false;
            }
        }
        match hostcalls::remove_map_value(MapType::HttpRequestHeaders, "authorization") {
            Ok(()) => true,
            Err(status) => {
                log(
                    LogLevel::Error,
                    &format!("mcpgate: cannot remove the Authorization header: {status:?}"),
                );
                false
            }
        }
    }

    /// Strip the client's credentials before the request goes upstream.
    pub(super) fn strip_credentials(&mut self) -> bool {
        // Also ask the MCP server for uncompressed answers: list answers must be readable to be
        // filtered (an encoded one is replaced by an error). Failing to remove it is harmless.
        if self.headers.has("accept-encoding") {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, "accept-encoding");
        }
        self.strip_gateway_headers()
    }
}
