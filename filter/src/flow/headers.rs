//! The request headers, read once per request, and the changes the filter makes to them.

use super::exchange::Exchange;
use super::host::{Host, LogLevel, Side};
use crate::request;

/// A header map read with one host call. In V8 every host call that returns data costs a few
/// microseconds (the host calls back into the module to allocate), so a request's headers are
/// read once and looked up here instead of one `get_map_value` per header.
#[derive(Debug, Default)]
pub(super) struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    pub(super) fn read<H: Host>(host: &H, side: Side) -> Self {
        Headers(host.headers(side))
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

    /// The MCP request metadata headers (invalid UTF-8 becomes U+FFFD, which the checks
    /// refuse as an invalid character).
    pub(super) fn request_metadata(&self) -> mcpgate_protocol::request_metadata::RequestHeaders {
        let pairs: Vec<(&str, String)> = self
            .0
            .iter()
            .filter(|(n, _)| {
                let n = n.to_ascii_lowercase();
                n.starts_with("mcp-")
            })
            .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        mcpgate_protocol::request_metadata::RequestHeaders::from_pairs(
            pairs.iter().map(|(n, v)| (*n, v.as_str())),
        )
    }

    /// `:authority`, or `Host`.
    pub(super) fn authority(&self) -> String {
        self.get(":authority")
            .or_else(|| self.get("host"))
            .unwrap_or_default()
    }
}

/// Sets (replaces) a request header; false (logged) when the host refuses.
pub(super) fn set_request_header<H: Host>(host: &H, name: &str, value: &str) -> bool {
    match host.set_header(Side::Request, name, value.as_bytes()) {
        Ok(()) => true,
        Err(e) => {
            host.log(
                LogLevel::Error,
                &format!("mcpgate: cannot set the {name} header: {e}"),
            );
            false
        }
    }
}

/// Removes a request header; false (logged) when the host refuses.
pub(super) fn remove_request_header<H: Host>(host: &H, name: &str, what: &str) -> bool {
    match host.remove_header(Side::Request, name) {
        Ok(()) => true,
        Err(e) => {
            host.log(
                LogLevel::Error,
                &format!("mcpgate: cannot remove the {what} header: {e}"),
            );
            false
        }
    }
}

impl Exchange {
    /// Remove the client's `Authorization` and every `x-mcpgate-*` header it sent: only the
    /// filter sets those.
    pub(super) fn strip_gateway_headers<H: Host>(&mut self, host: &H) -> bool {
        let mut gateway: Vec<&str> = self
            .headers
            .0
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| request::is_gateway_header(name))
            .collect();
        gateway.dedup();
        for name in gateway {
            if !remove_request_header(host, name, name) {
                return false;
            }
        }
        remove_request_header(host, "authorization", "Authorization")
    }

    /// Strip the client's credentials before the request goes upstream.
    pub(super) fn strip_credentials<H: Host>(&mut self, host: &H) -> bool {
        // Also ask the MCP server for uncompressed answers: list answers must be readable to be
        // filtered (an encoded one is replaced by an error). Failing to remove it is harmless.
        if self.headers.has("accept-encoding") {
            let _ = host.remove_header(Side::Request, "accept-encoding");
        }
        self.strip_gateway_headers(host)
    }
}
