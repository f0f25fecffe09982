//! The answers to a forwarded body's list requests (`tools/list`…), filtered by the route's
//! policy: a JSON answer buffered then replaced, an SSE answer rewritten chunk by chunk
//! ([`crate::list_response`] does the filtering).

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use super::headers::Headers;
use super::http::{Http, State};
use super::log;
use crate::list_response::Plan;

impl Http {
    /// Response headers of a forwarded request with list requests: choose how to filter the
    /// body, and drop the headers the new body would contradict.
    pub(super) fn plan_list_response(&mut self, end_of_stream: bool) -> Action {
        let Some(list) = self.list.as_mut() else {
            return Action::Continue;
        };
        if end_of_stream || !matches!(self.state, State::Forwarded) {
            return Action::Continue;
        }
        let headers = Headers::read(MapType::HttpResponseHeaders);
        self.plan = list.plan(
            headers.get("content-type").as_deref(),
            headers.get("content-encoding").as_deref(),
        );
        if self.plan != Plan::PassThrough && headers.has("content-length") {
            let _ = hostcalls::remove_map_value(MapType::HttpResponseHeaders, "content-length");
        }
        if list.is_encoded() {
            let _ = hostcalls::remove_map_value(MapType::HttpResponseHeaders, "content-encoding");
        }
        Action::Continue
    }

    pub(super) fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(list), Some(request)) = (self.list.as_mut(), self.request.as_ref()) else {
            return Action::Continue;
        };
        match self.plan {
            Plan::PassThrough => Action::Continue,
            Plan::Buffer => {
                self.response_seen = body_size;
                if !end_of_stream {
                    return Action::Pause;
                }
                let body = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                if let Some(new) = list.filter_json(&body, &request.route.policy, &request.identity)
                {
                    replace_response_body(body_size, &new);
                }
                self.plan = Plan::PassThrough;
                Action::Continue
            }
            Plan::Stream => {
                let chunk = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let policy = &request.route.policy;
                let identity = &request.identity;
                let mut out = list.push_sse(&chunk, policy, identity);
                if end_of_stream {
                    out.extend(list.finish_sse(policy, identity));
                }
                if out != chunk {
                    replace_response_body(body_size, &out);
                }
                Action::Continue
            }
        }
    }
}

fn replace_response_body(old_size: usize, new: &[u8]) {
    if let Err(status) = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, old_size, new) {
        log(
            LogLevel::Error,
            &format!("mcpgate: cannot replace a list response body: {status:?}"),
        );
    }
}
