//! A server route's header phase: route match, CORS preflight, the access token (verified with
//! the cached claims or the JWKS, fetched and waited for when missing or stale), then the
//! credentials and the body checks; a request that is not for a server route goes to
//! [`super::client_route`].

use std::rc::Rc;

use mcpgate_policy::Identity;

use super::exchange::{set_audit, Call, Exchange, RequestInfo, State};
use super::headers::Headers;
use super::host::{Action, Host, LogLevel, Side};
use super::vm::Vm;
use crate::access_token::{self, TokenError};
use crate::challenge::{self, LocalResponse};
use crate::request;
use crate::token_cache::{hash_token, TokenHash};

const NO_KEYS: &str = "the gateway's signing keys are not available";

/// What the token check decided.
pub(super) enum Decision {
    Accept(Rc<Identity>),
    /// A local answer and its audit reason.
    Respond(LocalResponse, &'static str),
    FetchKeys,
}

impl Exchange {
    pub(super) fn reject(vm: &Vm, route: usize, error: Option<&str>) -> Decision {
        vm.metrics.rejected.bump();
        let (metadata_url, scopes) = match vm.config.routes.get(route) {
            Some(r) => (r.resource_metadata_url.as_str(), r.scopes.as_slice()),
            None => ("", &[][..]),
        };
        Decision::Respond(
            challenge::unauthorized(metadata_url, scopes, error),
            "unauthenticated",
        )
    }

    fn unavailable(vm: &Vm, description: &str) -> Decision {
        vm.metrics.unavailable.bump();
        Decision::Respond(challenge::unavailable(description), "unavailable")
    }

    /// Verify `token` for route index `route` at `now` (Unix seconds; `None`: no clock).
    /// `may_fetch`: a JWKS fetch may still help.
    fn decide<H: Host>(
        host: &H,
        vm: &mut Vm,
        token: &str,
        hash: &TokenHash,
        route: usize,
        now: Option<u64>,
        may_fetch: bool,
    ) -> Decision {
        let Some(now) = now else {
            return Self::unavailable(vm, "the gateway clock is unavailable");
        };
        let config = Rc::clone(&vm.config);
        let Some(resource) = config.routes.get(route).map(|r| r.resource.as_str()) else {
            return Self::unavailable(vm, "route configuration changed");
        };
        let leeway = config.leeway_seconds;
        if let Some(claims) = vm.cache.get(hash, now, leeway) {
            let result = claims.identity_for_route(resource, now, leeway, &vm.revocations.list);
            vm.metrics.cache_hits.bump();
            return Self::finish(host, vm, route, result);
        }
        if vm.jwks.keys.is_none() {
            vm.sync_keys(host);
        }
        let Some(keys) = vm.jwks.keys.clone() else {
            return if may_fetch {
                Decision::FetchKeys
            } else {
                Self::unavailable(vm, NO_KEYS)
            };
        };
        match access_token::verify_signed(token, &keys, &vm.params(), now) {
            Ok(claims) => {
                let result = claims.identity_for_route(resource, now, leeway, &vm.revocations.list);
                vm.cache.insert(*hash, claims, now, leeway);
                Self::finish(host, vm, route, result)
            }
            Err(TokenError::UnknownKeyId) if may_fetch => {
                // Maybe another VM already has the new keys; otherwise refresh, rate limited.
                vm.sync_keys(host);
                if vm.jwks.keys.as_ref().is_some_and(|k| !Rc::ptr_eq(k, &keys)) {
                    return Self::decide(host, vm, token, hash, route, Some(now), false);
                }
                if vm.jwks.refresher.try_force(now) {
                    Decision::FetchKeys
                } else {
                    Self::finish(host, vm, route, Err(TokenError::UnknownKeyId))
                }
            }
            Err(e) => Self::finish(host, vm, route, Err(e)),
        }
    }

    fn finish<H: Host>(
        host: &H,
        vm: &Vm,
        route: usize,
        result: Result<Rc<Identity>, TokenError>,
    ) -> Decision {
        match result {
            Ok(identity) => {
                vm.metrics.accepted.bump();
                Decision::Accept(identity)
            }
            Err(e) => {
                let name = vm
                    .config
                    .routes
                    .get(route)
                    .map(|r| r.name.as_str())
                    .unwrap_or("?");
                host.log(
                    LogLevel::Debug,
                    &format!("mcpgate: route {name}: rejected token: {e}"),
                );
                match (Self::reject(vm, route, Some(e.description())), e) {
                    (Decision::Respond(response, _), TokenError::Revoked) => {
                        vm.metrics.revoked.bump();
                        Decision::Respond(response, "token_revoked")
                    }
                    (decision, _) => decision,
                }
            }
        }
    }

    pub(super) fn on_headers<H: Host>(&mut self, host: &H, end_of_stream: bool) -> Action {
        let Some(vm_rc) = self.vm.clone() else {
            return Action::Continue;
        };
        let config = Rc::clone(&vm_rc.borrow().config);
        self.headers = Headers::read(host, Side::Request);
        let authority = self.headers.authority();
        let path = self.headers.get(":path").unwrap_or_default();
        let Some(route) = config
            .match_route(&authority, &path)
            .and_then(|matched| config.routes.iter().position(|r| std::ptr::eq(r, matched)))
        else {
            // Not a server route: a client route, or nothing of ours (reserved paths belong to
            // the token service).
            return self.on_client_route(host, &config, &authority, &path);
        };
        self.route = Some(route);
        let mut vm = vm_rc.borrow_mut();
        vm.metrics.requests.bump();
        self.has_body = !end_of_stream;

        let method = self.headers.get(":method").unwrap_or_default();
        if request::is_preflight(&method, self.headers.has("access-control-request-method")) {
            drop(vm);
            return self.respond(host, &challenge::preflight());
        }
        let request_id = self.headers.get("x-request-id").unwrap_or_default();
        set_audit(host, "mcpgate_request_id", &request_id);
        if let Some(route) = config.routes.get(route) {
            set_audit(host, "mcpgate_route", &route.name);
        }

        let values: Vec<&[u8]> = self.headers.all("authorization").collect();
        let token = match request::bearer_token(&values) {
            Ok(token) => token.to_owned(),
            Err(e) => {
                let decision = Self::reject(&vm, route, e.description());
                drop(vm);
                return self.act_on_headers(host, decision, route, "");
            }
        };
        self.token_hash = hash_token(&token);
        // One clock read for the token check and the credentials cache.
        self.now = host.now();
        let decision = Self::decide(
            host,
            &mut vm,
            &token,
            &self.token_hash,
            route,
            self.now,
            true,
        );
        if let Decision::FetchKeys = decision {
            if let Ok(id) = vm.dispatch_fetch(host) {
                self.call = Some((id, Call::Keys));
                self.state = State::WaitingForKeys { token, route };
                return Action::Pause;
            }
            let fallback = if vm.jwks.keys.is_some() {
                Self::finish(host, &vm, route, Err(TokenError::UnknownKeyId))
            } else {
                Self::unavailable(&vm, NO_KEYS)
            };
            drop(vm);
            return self.act_on_headers(host, fallback, route, &token);
        }
        drop(vm);
        self.act_on_headers(host, decision, route, &token)
    }

    fn act_on_headers<H: Host>(
        &mut self,
        host: &H,
        decision: Decision,
        route: usize,
        token: &str,
    ) -> Action {
        match decision {
            Decision::Accept(identity) => {
                self.after_token(host, identity, route, token);
                self.header_action()
            }
            Decision::Respond(response, reason) => self.respond_reason(host, &response, reason),
            // Not reached: callers dispatch the fetch themselves; fail closed all the same.
            Decision::FetchKeys => self.respond(host, &challenge::unavailable(NO_KEYS)),
        }
    }

    /// The token is accepted: credentials stripped, the upstream credentials set or asked for,
    /// and a body-less request decided or a body's headers checked (or a local answer).
    fn after_token<H: Host>(
        &mut self,
        host: &H,
        identity: Rc<Identity>,
        route: usize,
        token: &str,
    ) {
        if !self.accept(host, identity, route) {
            self.respond(
                host,
                &challenge::unavailable("the request could not be processed"),
            );
            return;
        }
        if self.start_credentials(host, route, token) {
            return; // answered
        }
        self.check_request_headers(host);
    }

    /// The token is good: strip it, remember who is calling and write the identity fields.
    fn accept<H: Host>(&mut self, host: &H, identity: Rc<Identity>, route: usize) -> bool {
        if !self.strip_credentials(host) {
            return false;
        }
        let Some(runtime) = self
            .vm
            .as_ref()
            .and_then(|vm| vm.borrow().routes.get(route).cloned())
        else {
            return false;
        };
        set_audit(host, "mcpgate_sub", &identity.user);
        set_audit(
            host,
            "mcpgate_email",
            identity.email.as_deref().unwrap_or_default(),
        );
        set_audit(
            host,
            "mcpgate_client_id",
            identity
                .claims
                .get("client_id")
                .and_then(|v| v.as_str())
                .unwrap_or_default(),
        );
        self.request = Some(RequestInfo {
            route: runtime,
            identity,
            request_id: self.headers.get("x-request-id").unwrap_or_default(),
            protocol_version: self.headers.get("mcp-protocol-version"),
            metadata: self.headers.request_metadata(),
            http_method: self.headers.get(":method").unwrap_or_default(),
        });
        true
    }

    /// The keys call-out answered.
    pub(super) fn on_keys_answer<H: Host>(&mut self, host: &H, body_size: usize) {
        let State::WaitingForKeys { token, route } =
            std::mem::replace(&mut self.state, State::Answered)
        else {
            return;
        };
        let Some(vm_rc) = self.vm.clone() else { return };
        let decision = {
            let mut vm = vm_rc.borrow_mut();
            let _ = vm.accept_fetch(host, body_size);
            self.now = host.now();
            Self::decide(
                host,
                &mut vm,
                &token,
                &self.token_hash,
                route,
                self.now,
                false,
            )
        };
        match decision {
            Decision::Accept(identity) => {
                self.state = State::Idle;
                self.resume_after_keys(host, identity, route, &token);
            }
            Decision::Respond(response, reason) => {
                self.respond_reason(host, &response, reason);
            }
            Decision::FetchKeys => {
                self.respond(host, &challenge::unavailable(NO_KEYS));
            }
        }
    }

    /// The keys arrived for a request that waited: finish what its headers could not. The
    /// caller lets the headers go on when the header phase would have.
    fn resume_after_keys<H: Host>(
        &mut self,
        host: &H,
        identity: Rc<Identity>,
        route: usize,
        token: &str,
    ) {
        self.after_token(host, identity, route, token);
        if matches!(self.state, State::Reading(_)) && self.holds_headers {
            let (seen, complete) = self.waiting_body;
            // The rest of the body still comes through the body callback.
            if self.read_body_or_reject(host, seen) && complete {
                self.decide_body(host);
            }
        }
    }
}
