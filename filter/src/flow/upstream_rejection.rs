//! An MCP server refusing the user's upstream token (401, or 403 `insufficient_scope`) on a route
//! with upstream OAuth: the cached credentials are dropped, the token service hears of it
//! (`POST /internal/v1/upstream_rejected`, the response held meanwhile), and the client gets the
//! reconnect challenge instead of the refusal.

use std::rc::Rc;

use mcpgate_config::paths;

use super::call_status;
use super::exchange::{Call, Exchange, Rejection};
use super::headers::Headers;
use super::host::{Action, Host, LogLevel, Side};
use super::trace_context;
use crate::challenge;
use crate::credentials;

impl Exchange {
    /// Response headers on a route with upstream OAuth: did the MCP server refuse the user's
    /// upstream token? Then forget it (here and in the token service) and ask the user to
    /// reconnect instead of passing the refusal on. `Some(action)` when so.
    pub(super) fn check_upstream_rejection<H: Host>(
        &mut self,
        host: &H,
        rejection: Rejection,
    ) -> Option<Action> {
        let headers = Headers::read(host, Side::Response);
        let status = headers.get(":status")?;
        let status = status.as_str();
        if status != "401" && status != "403" {
            return None;
        }
        if !credentials::is_upstream_rejection(Some(status), headers.all("www-authenticate")) {
            return None;
        }
        let vm_rc = self.vm.clone()?;
        let mut vm = vm_rc.borrow_mut();
        let config = Rc::clone(&vm.config);
        let route = rejection.route;
        let r = config.routes.get(route)?;
        let key = credentials::cache_key(&vm.cache_scope, &r.resource, &self.token_hash);
        vm.drop_credentials(host, &key);
        vm.bump_labelled(
            "mcpgate_upstream_rejected_total",
            if status == "401" {
                "status_401"
            } else {
                "status_403"
            },
            "",
        );
        host.log(
            LogLevel::Info,
            &format!(
                "mcpgate: route {}: the MCP server refused the upstream token ({status}); the \
                 user must reconnect",
                r.name
            ),
        );
        let body = credentials::request_body(&r.resource, &rejection.token);
        drop(rejection);
        let trace = self.trace_context();
        match vm.dispatch_internal(
            host,
            "POST",
            paths::INTERNAL_UPSTREAM_REJECTED,
            Some(&body),
            &trace_context::pairs(&trace),
        ) {
            Ok(id) => {
                self.call = Some((id, Call::UpstreamRejected { route }));
                self.response_paused = true;
                Some(Action::Pause)
            }
            Err(e) => {
                vm.note_internal_failure(host, "upstream rejection", &e);
                drop(vm);
                Some(self.respond_upstream_rejected(host, r))
            }
        }
    }

    fn respond_upstream_rejected<H: Host>(
        &mut self,
        host: &H,
        route: &mcpgate_config::FilterRoute,
    ) -> Action {
        self.response_paused = false;
        self.respond_reason(
            host,
            &credentials::upstream_authorization_required(
                &route.resource_metadata_url,
                &route.connect_url,
            ),
            "upstream_rejected",
        )
    }

    /// The token service heard of the upstream rejection (or did not answer in time).
    pub(super) fn on_upstream_rejected_answer<H: Host>(&mut self, host: &H, route: usize) {
        let status = call_status(host);
        if status.as_deref() != Some("204") {
            let reason = credentials::unexpected_status(status.as_deref(), "");
            if let Some(vm) = &self.vm {
                vm.borrow_mut()
                    .note_internal_failure(host, "upstream rejection", &reason);
            }
        }
        let Some(config) = self.vm.as_ref().map(|vm| Rc::clone(&vm.borrow().config)) else {
            return;
        };
        match config.routes.get(route) {
            Some(r) => {
                self.respond_upstream_rejected(host, r);
            }
            None => {
                self.response_paused = false;
                self.respond(host, &challenge::unavailable("route configuration changed"));
            }
        }
    }
}
