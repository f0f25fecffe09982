//! A server route's upstream credentials: `x-mcpgate-assertion`, and the user's upstream token on
//! routes with upstream OAuth, from the shared-data cache or one `POST /internal/v1/credentials`
//! call-out (the body keeps being read meanwhile), and what the token service's refusals turn
//! into.

use std::rc::Rc;

use mcpgate_config::paths;

use super::call_status;
use super::exchange::{Call, Creds, Exchange, Rejection, State};
use super::headers::set_request_header;
use super::host::{Host, LogLevel};
use super::internal_api::{call_body, NO_INTERNAL_API};
use super::server_route::Decision;
use super::trace_context;
use crate::challenge;
use crate::credentials::{self, CacheKey, Credentials, CredentialsAnswer};

/// `error_description` when the token service refuses a token the filter accepted.
const REFUSED_BY_TOKEN_SERVICE: &str = "the access token is not valid";

impl Exchange {
    /// The upstream credentials for an accepted token: from the shared cache (headers set at
    /// once) or a call-out ([`Creds::Pending`]). True when answered locally.
    pub(super) fn start_credentials<H: Host>(
        &mut self,
        host: &H,
        route: usize,
        token: &str,
    ) -> bool {
        let Some(vm_rc) = self.vm.clone() else {
            return false;
        };
        let mut vm = vm_rc.borrow_mut();
        if vm.internal.is_none() {
            self.creds = Creds::NotNeeded;
            return false;
        }
        let config = Rc::clone(&vm.config);
        let (Some(r), Some(now), true) = (config.routes.get(route), self.now, vm.internal_ready())
        else {
            vm.metrics.unavailable.bump();
            drop(vm);
            self.respond_reason(
                host,
                &challenge::unavailable(NO_INTERNAL_API),
                "credentials_unavailable",
            );
            return true;
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
        if let Some(cached) =
            vm.cached_credentials(host, &key, now, r.upstream_oauth, disconnected_at)
        {
            vm.bump_labelled("mcpgate_credentials_total", "cache_hit", "");
            drop(vm);
            if self.install_credentials(host, &cached, r.upstream_oauth) {
                return false;
            }
            self.respond(
                host,
                &challenge::unavailable("the request could not be processed"),
            );
            return true;
        }
        let body = credentials::request_body(&r.resource, token);
        let trace = self.trace_context();
        match vm.dispatch_internal(
            host,
            "POST",
            paths::INTERNAL_CREDENTIALS,
            Some(&body),
            &trace_context::pairs(&trace),
        ) {
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
                false
            }
            Err(e) => {
                vm.note_internal_failure(host, "credentials", &e);
                vm.bump_labelled("mcpgate_credentials_total", "failed", "");
                vm.metrics.unavailable.bump();
                drop(vm);
                self.respond_reason(
                    host,
                    &challenge::unavailable(NO_INTERNAL_API),
                    "credentials_unavailable",
                );
                true
            }
        }
    }

    /// `x-mcpgate-assertion`, and the upstream token on routes with upstream OAuth.
    fn install_credentials<H: Host>(
        &mut self,
        host: &H,
        creds: &Credentials,
        upstream_oauth: bool,
    ) -> bool {
        if !set_request_header(host, paths::ASSERTION_HEADER, &creds.assertion) {
            return false;
        }
        if upstream_oauth {
            let Some(token) = &creds.upstream_token else {
                return false;
            };
            if !set_request_header(host, "authorization", &format!("Bearer {token}")) {
                return false;
            }
        }
        self.creds = Creds::Ready;
        true
    }

    /// The credentials call-out answered.
    pub(super) fn on_credentials_answer<H: Host>(
        &mut self,
        host: &H,
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
                self.respond(host, &challenge::unavailable("route configuration changed"));
            }
            return;
        };
        let status = call_status(host);
        let answer = credentials::parse_credentials_answer(
            status.as_deref(),
            &call_body(host, body_size),
            r.upstream_oauth,
        );
        let now = host.now().unwrap_or(0);
        match answer {
            CredentialsAnswer::Granted(creds) => {
                vm.internal_ok();
                vm.bump_labelled("mcpgate_credentials_total", "granted", "");
                vm.store_credentials(host, &key, &creds, fetched_at, now);
                drop(vm);
                if self.answered() {
                    return;
                }
                if !self.install_credentials(host, &creds, r.upstream_oauth) {
                    self.respond(
                        host,
                        &challenge::unavailable("the request could not be processed"),
                    );
                    return;
                }
                if matches!(self.state, State::Allowed) {
                    self.state = State::Forwarded;
                }
                // Held headers go on now (the caller); a body still being read goes on with its
                // decision.
            }
            CredentialsAnswer::InvalidToken => {
                vm.internal_ok();
                vm.bump_labelled("mcpgate_credentials_total", "invalid_token", "");
                let decision = Self::reject(&vm, route, Some(REFUSED_BY_TOKEN_SERVICE));
                drop(vm);
                if let (false, Decision::Respond(response, reason)) = (self.answered(), decision) {
                    self.respond_reason(host, &response, reason);
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
                        host,
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
                host.log(
                    LogLevel::Info,
                    &format!(
                        "mcpgate: route {}: upstream provider unavailable: {description}",
                        r.name
                    ),
                );
                match self.state {
                    State::Allowed => self.answer_upstream_unavailable(host, &description),
                    State::Answered => {}
                    // Answered once the body is parsed, with its requests' ids.
                    _ => self.creds = Creds::Unavailable(description),
                }
            }
            CredentialsAnswer::Failed(reason) => {
                vm.note_internal_failure(host, "credentials", &reason);
                vm.bump_labelled("mcpgate_credentials_total", "failed", "");
                vm.metrics.unavailable.bump();
                drop(vm);
                if !self.answered() {
                    self.respond_reason(
                        host,
                        &challenge::unavailable(NO_INTERNAL_API),
                        "credentials_unavailable",
                    );
                }
            }
        }
    }

    /// The body is allowed but the provider is down: a JSON-RPC error per request (503 JSON
    /// without a body to answer).
    pub(super) fn answer_upstream_unavailable<H: Host>(&mut self, host: &H, description: &str) {
        let request_id = self.request_id();
        let response =
            credentials::upstream_unavailable(self.request_ids.as_ref(), description, &request_id);
        self.respond_reason(host, &response, "upstream_unavailable");
    }
}
