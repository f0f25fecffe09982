//! A server route's upstream credentials: `x-mcpgate-assertion`, and the user's upstream token on
//! routes with upstream OAuth, from the shared-data cache or one `POST /internal/v1/credentials`
//! call-out (the body keeps being read meanwhile), and what the token service's refusals turn
//! into.

use std::rc::Rc;

use mcpgate_config::paths;
use proxy_wasm::types::{Action, LogLevel};

use super::headers::set_request_header;
use super::http::{Call, Creds, Http, Rejection, State};
use super::internal_api::{call_body, NO_INTERNAL_API};
use super::server_route::Decision;
use super::{call_status, log, now_secs};
use crate::challenge;
use crate::credentials::{self, CacheKey, Credentials, CredentialsAnswer};

/// `error_description` when the token service refuses a token the filter accepted.
const REFUSED_BY_TOKEN_SERVICE: &str = "the access token is not valid";

impl Http {
    /// The upstream credentials for an accepted token: from the shared cache (headers set at
    /// once) or a call-out ([`Creds::Pending`]). `Some(action)` when answered locally.
    pub(super) fn start_credentials(&mut self, route: usize, token: &str) -> Option<Action> {
        let vm_rc = self.vm.clone()?;
        let mut vm = vm_rc.borrow_mut();
        if vm.internal.is_none() {
            self.creds = Creds::NotNeeded;
            return None;
        }
        let config = Rc::clone(&vm.config);
        let (Some(r), Some(now), true) = (config.routes.get(route), self.now, vm.internal_ready())
        else {
            vm.metrics.unavailable.bump();
            drop(vm);
            return Some(self.respond_reason(
                &challenge::unavailable(NO_INTERNAL_API),
                "credentials_unavailable",
            ));
        };
        let key = credentials::cache_key(&vm.cache_scope, &r.resource, &self.token_hash);
        if r.upstream_oauth {
            self.rejection = Some(Rejection {
                route,
                token: token.to_owned(),
            });
        }
        // Without the caller's identity (not reached: accepted first) no cached upstream token
        // is trusted.
        let disconnected_at = match &self.request {
            Some(request) => vm
                .revocations
                .list
                .disconnected_at(&request.identity.user, &r.resource),
            None => Some(u64::MAX),
        };
        if let Some(cached) = vm.cached_credentials(&key, now, r.upstream_oauth, disconnected_at) {
            vm.bump_labelled("mcpgate_credentials_total", "cache_hit", "");
            drop(vm);
            if self.install_credentials(&cached, r.upstream_oauth) {
                return None;
            }
            return Some(self.respond(&challenge::unavailable(
                "the request could not be processed",
            )));
        }
        let body = credentials::request_body(&r.resource, token);
        match vm.dispatch_internal("POST", paths::INTERNAL_CREDENTIALS, Some(&body), None) {
            Ok(id) => {
                self.call = Some((
                    id,
                    Call::Credentials {
                        route,
                        key,
                        fetched_at: now,
                    },
                ));
                self.creds = Creds::Pending;
                None
            }
            Err(e) => {
                vm.note_internal_failure("credentials", &e);
                vm.bump_labelled("mcpgate_credentials_total", "failed", "");
                vm.metrics.unavailable.bump();
                drop(vm);
                Some(self.respond_reason(
                    &challenge::unavailable(NO_INTERNAL_API),
                    "credentials_unavailable",
                ))
            }
        }
    }

    /// `x-mcpgate-assertion`, and the upstream token on routes with upstream OAuth.
    fn install_credentials(&mut self, creds: &Credentials, upstream_oauth: bool) -> bool {
        if !set_request_header(paths::ASSERTION_HEADER, &creds.assertion) {
            return false;
        }
        if upstream_oauth {
            let Some(token) = &creds.upstream_token else {
                return false;
            };
            if !set_request_header("authorization", &format!("Bearer {token}")) {
                return false;
            }
        }
        self.creds = Creds::Ready;
        true
    }

    /// The credentials call-out answered.
    pub(super) fn on_credentials_answer(
        &mut self,
        route: usize,
        key: CacheKey,
        fetched_at: u64,
        body_size: usize,
    ) {
        let Some(vm_rc) = self.vm.clone() else { return };
        let mut vm = vm_rc.borrow_mut();
        let config = Rc::clone(&vm.config);
        let Some(r) = config.routes.get(route) else {
            drop(vm);
            if !self.answered() {
                self.respond(&challenge::unavailable("route configuration changed"));
            }
            return;
        };
        let status = call_status();
        let answer = credentials::parse_credentials_answer(
            status.as_deref(),
            &call_body(body_size),
            r.upstream_oauth,
        );
        let now = now_secs().unwrap_or(0);
        match answer {
            CredentialsAnswer::Granted(creds) => {
                vm.internal_ok();
                vm.bump_labelled("mcpgate_credentials_total", "granted", "");
                vm.store_credentials(&key, &creds, fetched_at, now);
                drop(vm);
                if self.answered() {
                    return;
                }
                if !self.install_credentials(&creds, r.upstream_oauth) {
                    self.respond(&challenge::unavailable(
                        "the request could not be processed",
                    ));
                    return;
                }
                if matches!(self.state, State::Allowed) {
                    self.state = State::Forwarded;
                    self.resume_request();
                }
                // Still reading: the body decision resumes the request.
            }
            CredentialsAnswer::InvalidToken => {
                vm.internal_ok();
                vm.bump_labelled("mcpgate_credentials_total", "invalid_token", "");
                let decision = Self::reject(&vm, route, Some(REFUSED_BY_TOKEN_SERVICE));
                drop(vm);
                if let (false, Decision::Respond(response, reason)) = (self.answered(), decision) {
                    self.respond_reason(&response, reason);
                }
            }
            CredentialsAnswer::UpstreamAuthorizationRequired { connect_url } => {
                vm.internal_ok();
                vm.bump_labelled(
                    "mcpgate_credentials_total",
                    "upstream_authorization_required",
                    "",
                );
                drop(vm);
                if !self.answered() {
                    let connect_url = connect_url.as_deref().unwrap_or(&r.connect_url);
                    self.respond_reason(
                        &credentials::upstream_authorization_required(
                            &r.resource_metadata_url,
                            connect_url,
                        ),
                        "upstream_authorization_required",
                    );
                }
            }
            CredentialsAnswer::UpstreamUnavailable { description } => {
                vm.internal_ok();
                vm.bump_labelled("mcpgate_credentials_total", "upstream_unavailable", "");
                drop(vm);
                log(
                    LogLevel::Info,
                    &format!(
                        "mcpgate: route {}: upstream provider unavailable: {description}",
                        r.name
                    ),
                );
                match self.state {
                    State::Allowed => self.answer_upstream_unavailable(&description),
                    State::Answered => {}
                    _ => self.creds = Creds::Unavailable(description),
                }
            }
            CredentialsAnswer::Failed(reason) => {
                vm.note_internal_failure("credentials", &reason);
                vm.bump_labelled("mcpgate_credentials_total", "failed", "");
                vm.metrics.unavailable.bump();
                drop(vm);
                if !self.answered() {
                    self.respond_reason(
                        &challenge::unavailable(NO_INTERNAL_API),
                        "credentials_unavailable",
                    );
                }
            }
        }
    }

    /// The body is allowed but the provider is down: a JSON-RPC error per request (503 JSON
    /// without a body to answer).
    pub(super) fn answer_upstream_unavailable(&mut self, description: &str) {
        let request_id = self.request_id();
        let response =
            credentials::upstream_unavailable(self.request_ids.as_ref(), description, &request_id);
        self.respond_reason(&response, "upstream_unavailable");
    }
}
