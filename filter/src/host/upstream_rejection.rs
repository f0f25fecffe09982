//! An MCP server refusing the user's upstream token (401, or 403 `insufficient_scope`) on a route
//! with upstream OAuth: the cached credentials are dropped, the token service hears of it
//! (`POST /internal/v1/upstream_rejected`, the response held meanwhile), and the client gets the
//! reconnect challenge instead of the refusal.

use std::rc::Rc;

use mcpgate_config::paths;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, LogLevel, MapType};

use super::headers::Headers;
use super::http::{Call, Http, Rejection};
use super::{call_status, log};
use crate::challenge;
use crate::credentials;

impl Http {
    /// Response headers on a route with upstream OAuth: did the MCP server refuse the user's
    /// upstream token? Then forget it (here and in the token service) and ask the user to
    /// reconnect instead of passing the refusal on. `Some(action)` when so.
    pub(super) fn check_upstream_rejection(&mut self, rejection: Rejection) -> Option<Action> {
        let status = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status")
            .ok()
            .flatten()?;
        let status = std::str::from_utf8(&status).ok()?;
        if status != "401" && status != "403" {
            return None;
        }
        let headers = Headers::read(MapType::HttpResponseHeaders);
        if !credentials::is_upstream_rejection(Some(status), headers.all("www-authenticate")) {
            return None;
        }
        let vm_rc = self.vm.clone()?;
        let mut vm = vm_rc.borrow_mut();
        let config = Rc::clone(&vm.config);
        let route = rejection.route;
        let r = config.routes.get(route)?;
        let key = credentials::cache_key(&vm.cache_scope, &r.resource, &self.token_hash);
        vm.drop_credentials(&key);
        vm.bump_labelled(
            "mcpgate_upstream_rejected_total",
            if status == "401" {
                "status_401"
            } else {
                "status_403"
            },
            "",
        );
        log(
            LogLevel::Info,
            &format!(
                "mcpgate: route {}: the MCP server refused the upstream token ({status}); the \
                 user must reconnect",
                r.name
            ),
        );
        let body = credentials::request_body(&r.resource, &rejection.token);
        drop(rejection);
        match vm.dispatch_internal("POST", paths::INTERNAL_UPSTREAM_REJECTED, Some(&body), None) {
            Ok(id) => {
                self.call = Some((id, Call::UpstreamRejected { route }));
                self.response_paused = true;
                Some(Action::Pause)
            }
            Err(e) => {
                vm.note_internal_failure("upstream rejection", &e);
                drop(vm);
                Some(self.respond_upstream_rejected(r))
            }
        }
    }

    fn respond_upstream_rejected(&mut self, route: &mcpgate_config::FilterRoute) -> Action {
        self.response_paused = false;
        self.respond_reason(
            &credentials::upstream_authorization_required(
                &route.resource_metadata_url,
                &route.connect_url,
            ),
            "upstream_rejected",
        )
    }

    /// The token service heard of the upstream rejection (or did not answer in time).
    pub(super) fn on_upstream_rejected_answer(&mut self, route: usize) {
        let status = call_status();
        if status.as_deref() != Some("204") {
            let reason = credentials::unexpected_status(status.as_deref(), "");
            if let Some(vm) = &self.vm {
                vm.borrow_mut()
                    .note_internal_failure("upstream rejection", &reason);
            }
        }
        let Some(config) = self.vm.as_ref().map(|vm| Rc::clone(&vm.borrow().config)) else {
            return;
        };
        match config.routes.get(route) {
            Some(r) => {
                self.respond_upstream_rejected(r);
            }
            None => {
                self.response_paused = false;
                self.respond(&challenge::unavailable("route configuration changed"));
            }
        }
    }
}
