//! A client route: the browser's session cookie buys the app its user's TE and assertion (from
//! the shared-data cache or one `POST /internal/v1/session` call-out, the request held
//! meanwhile); without a usable session a browser is sent to sign in, anything else gets 401.
//! The body is never read.

use std::rc::Rc;

use mcpgate_config::{paths, FilterConfig};

use super::call_status;
use super::exchange::{set_audit, Call, Exchange, State};
use super::headers::{remove_request_header, set_request_header};
use super::host::{Action, Host, LogLevel, Side};
use super::internal_api::{call_body, NO_INTERNAL_API};
use super::trace_context;
use crate::access_token;
use crate::challenge;
use crate::client_session::{self, Session, SessionAnswer};
use crate::credentials::{self, CacheKey};
use crate::decision::Verdict;
use crate::token_cache::hash_token;

impl Exchange {
    /// A request to a client route: the session cookie buys the app a TE and an assertion.
    pub(super) fn on_client_route<H: Host>(
        &mut self,
        host: &H,
        config: &FilterConfig,
        authority: &str,
        path: &str,
    ) -> Action {
        let Some((index, route)) = config.match_client_route(authority, path).and_then(|m| {
            config
                .client_routes
                .iter()
                .enumerate()
                .find(|(_, r)| std::ptr::eq(*r, m))
        }) else {
            return Action::Continue;
        };
        let Some(vm_rc) = self.vm.clone() else {
            return Action::Continue;
        };
        set_audit(
            host,
            "mcpgate_request_id",
            &self.headers.get("x-request-id").unwrap_or_default(),
        );
        set_audit(host, "mcpgate_route", &route.name);
        if !self.strip_gateway_headers(host) {
            return self.respond(
                host,
                &challenge::unavailable("the request could not be processed"),
            );
        }
        let cookies: Vec<&[u8]> = self.headers.all("cookie").collect();
        let Some(session) = client_session::find_session(&cookies).map(str::to_owned) else {
            self.vm_bump("mcpgate_session_total", "no_session");
            return self.sign_in(
                host,
                config,
                &route.scheme,
                authority,
                path,
                "sign_in_required",
            );
        };
        let mut vm = vm_rc.borrow_mut();
        let (Some(now), true) = (host.now(), vm.internal_ready()) else {
            vm.metrics.unavailable.bump();
            drop(vm);
            return self.respond_reason(
                host,
                &challenge::unavailable(NO_INTERNAL_API),
                "session_unavailable",
            );
        };
        let key = credentials::cache_key(&vm.cache_scope, &route.url, &hash_token(&session));
        if let Some(cached) = vm
            .cached_session(host, &key, now)
            .filter(|s| !s.is_revoked(&vm.revocations.list))
        {
            vm.bump_labelled("mcpgate_session_total", "cache_hit", "");
            drop(vm);
            return if self.install_session(host, &cached) {
                Action::Continue
            } else {
                self.respond(
                    host,
                    &challenge::unavailable("the request could not be processed"),
                )
            };
        }
        let body = client_session::request_body(&session, &route.url);
        let trace = self.trace_context();
        match vm.dispatch_internal(
            host,
            "POST",
            paths::INTERNAL_SESSION,
            Some(&body),
            &trace_context::pairs(&trace),
        ) {
            Ok(id) => {
                self.call = Some((id, Call::Session { route: index, key }));
                self.state = State::WaitingForSession;
                Action::Pause
            }
            Err(e) => {
                drop(vm);
                self.session_failed(host, &e)
            }
        }
    }

    /// The session call-out could not be sent, or failed: 503.
    fn session_failed<H: Host>(&mut self, host: &H, reason: &str) -> Action {
        if let Some(vm) = &self.vm {
            let mut vm = vm.borrow_mut();
            vm.note_internal_failure(host, "session", reason);
            vm.bump_labelled("mcpgate_session_total", "failed", "");
            vm.metrics.unavailable.bump();
        }
        self.respond_reason(
            host,
            &challenge::unavailable(NO_INTERNAL_API),
            "session_unavailable",
        )
    }

    /// No usable session: a browser goes to sign in, anything else gets 401.
    fn sign_in<H: Host>(
        &mut self,
        host: &H,
        config: &FilterConfig,
        scheme: &str,
        authority: &str,
        path: &str,
        reason: &str,
    ) -> Action {
        let method = self.headers.get(":method").unwrap_or_default();
        let accept = self.headers.get("accept");
        let return_to = client_session::request_url(scheme, authority, path);
        let response =
            client_session::sign_in(&config.sign_in_url, &method, accept.as_deref(), &return_to);
        self.respond_reason(host, &response, reason)
    }

    /// The app's headers: its user's TE, the assertion, and the cookies minus the session.
    fn install_session<H: Host>(&mut self, host: &H, session: &Session) -> bool {
        if !set_request_header(host, "authorization", &format!("Bearer {}", session.token))
            || !set_request_header(host, paths::ASSERTION_HEADER, &session.assertion)
        {
            return false;
        }
        let cookies: Vec<&[u8]> = self.headers.all("cookie").collect();
        let forwarded = client_session::strip_session(&cookies);
        if !cookies.is_empty() && !remove_request_header(host, "cookie", "Cookie") {
            return false;
        }
        if let Some(forwarded) = forwarded {
            if let Err(e) = host.add_header(Side::Request, "cookie", &forwarded) {
                host.log(
                    LogLevel::Error,
                    &format!("mcpgate: cannot set the Cookie header: {e}"),
                );
                return false;
            }
        }
        let claims = access_token::claims_json(&session.token);
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
        };
        set_audit(host, "mcpgate_sub", text("sub"));
        set_audit(host, "mcpgate_email", text("email"));
        set_audit(host, "mcpgate_client_id", text("client_id"));
        set_audit(host, "mcpgate_decision", Verdict::Allow.as_str());
        set_audit(host, "mcpgate_reason", "session");
        true
    }

    /// The session call-out answered.
    pub(super) fn on_session_answer<H: Host>(
        &mut self,
        host: &H,
        route: usize,
        key: CacheKey,
        body_size: usize,
    ) {
        if !matches!(self.state, State::WaitingForSession) {
            return;
        }
        let Some(vm_rc) = self.vm.clone() else { return };
        let mut vm = vm_rc.borrow_mut();
        let config = Rc::clone(&vm.config);
        let status = call_status(host);
        let answer =
            client_session::parse_session_answer(status.as_deref(), &call_body(host, body_size));
        let Some(r) = config.client_routes.get(route) else {
            drop(vm);
            self.respond(host, &challenge::unavailable("route configuration changed"));
            return;
        };
        match answer {
            SessionAnswer::Granted(session) => {
                vm.internal_ok();
                vm.bump_labelled("mcpgate_session_total", "granted", "");
                vm.store_session(host, &key, &session, host.now().unwrap_or(0));
                drop(vm);
                if self.install_session(host, &session) {
                    // The caller lets the held headers go on.
                    self.state = State::Idle;
                } else {
                    self.respond(
                        host,
                        &challenge::unavailable("the request could not be processed"),
                    );
                }
            }
            SessionAnswer::Invalid => {
                vm.internal_ok();
                vm.bump_labelled("mcpgate_session_total", "invalid_session", "");
                drop(vm);
                let authority = self.headers.authority();
                let path = self.headers.get(":path").unwrap_or_default();
                self.sign_in(
                    host,
                    &config,
                    &r.scheme,
                    &authority,
                    &path,
                    "invalid_session",
                );
            }
            SessionAnswer::Failed(reason) => {
                drop(vm);
                self.session_failed(host, &reason);
            }
        }
    }
}
