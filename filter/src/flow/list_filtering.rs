//! The answers to a forwarded body's list requests (`tools/list`…), filtered by the route's
//! policy: a JSON answer buffered then replaced, an SSE answer rewritten chunk by chunk
//! ([`crate::list_response`] does the filtering).

use super::exchange::{Exchange, State};
use super::headers::Headers;
use super::host::{Action, Host, LogLevel, Side};
use super::param_headers;
use crate::list_response::Plan;

impl Exchange {
    /// Response headers of a forwarded request with list requests: choose how to filter the
    /// body, and drop the headers the new body would contradict.
    pub(super) fn plan_list_response<H: Host>(&mut self, host: &H, end_of_stream: bool) -> Action {
        let Some(list) = self.list.as_mut() else {
            return Action::Continue;
        };
        if end_of_stream || !matches!(self.state, State::Forwarded) {
            return Action::Continue;
        }
        let headers = Headers::read(host, Side::Response);
        self.plan = list.plan(
            headers.get("content-type").as_deref(),
            headers.get("content-encoding").as_deref(),
        );
        if self.plan != Plan::PassThrough && headers.has("content-length") {
            let _ = host.remove_header(Side::Response, "content-length");
        }
        if list.is_encoded() {
            let _ = host.remove_header(Side::Response, "content-encoding");
        }
        Action::Continue
    }

    pub(super) fn on_list_body<H: Host>(
        &mut self,
        host: &H,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
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
                let body = host.body(Side::Response, 0, body_size).unwrap_or_default();
                if let Some(new) = list.filter_json(&body, &request.route.policy, &request.identity)
                {
                    replace_response_body(host, body_size, &new);
                }
                list.learn_json(&body);
                param_headers::store(host, &request.route.param_key_prefix, list.take_learned());
                self.plan = Plan::PassThrough;
                Action::Continue
            }
            Plan::Stream => {
                let chunk = host.body(Side::Response, 0, body_size).unwrap_or_default();
                let policy = &request.route.policy;
                let identity = &request.identity;
                let mut out = list.push_sse(&chunk, policy, identity);
                if end_of_stream {
                    out.extend(list.finish_sse(policy, identity));
                }
                if out != chunk {
                    replace_response_body(host, body_size, &out);
                }
                param_headers::store(host, &request.route.param_key_prefix, list.take_learned());
                Action::Continue
            }
        }
    }
}

fn replace_response_body<H: Host>(host: &H, old_size: usize, new: &[u8]) {
    if let Err(e) = host.replace_response_body(0, old_size, new) {
        host.log(
            LogLevel::Error,
            &format!("mcpgate: cannot replace a list response body: {e}"),
        );
    }
}
