//! The request state machine through the mock host, event by event as Envoy delivers them, in
//! both header modes: what each callback answers (continue or pause), what the host was asked
//! to do (headers, local replies, resumes, call-outs) and what the audit records.

use mcpgate_config::HeaderMode::{self, HoldBody, HoldHeaders};

use super::host::Action::{Continue, Pause};
use super::test_gateway::{
    json_body, Gateway, Setup, ALLOWED, DENIED, GITHUB, INTERNAL, SECRET, TOKEN_SERVICE,
};
use crate::test_support::NOW;

const MODES: [HeaderMode; 2] = [HoldHeaders, HoldBody];

/// What the header callback answers for a request with a body once its token is accepted and
/// nothing needs waiting for.
fn after_headers(mode: HeaderMode) -> super::host::Action {
    match mode {
        HoldHeaders => Pause,
        HoldBody => Continue,
    }
}

#[test]
fn a_request_outside_the_routes_streams_on_untouched() {
    for mode in MODES {
        let gw = Gateway::mode(mode);
        gw.host.new_request(&[
            (":method", "POST"),
            (":path", "/.mcpgate/oauth/token"),
            (":authority", "localhost:18080"),
            ("authorization", "Basic abc"),
        ]);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), Continue);
        assert_eq!(gw.body(&ex, b"grant_type=x", true), Continue);
        assert!(gw.host.sent().is_empty());
        assert_eq!(
            gw.host.request_header("authorization").as_deref(),
            Some("Basic abc")
        );
        assert_eq!(gw.held_requests(), 0);
    }
}

#[test]
fn without_a_token_the_header_phase_answers_the_challenge() {
    for mode in MODES {
        let gw = Gateway::mode(mode);
        gw.host.new_request(&[
            (":method", "POST"),
            (":path", "/everything/mcp"),
            (":authority", "localhost:18080"),
            ("content-type", "application/json"),
        ]);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), Pause, "{mode:?}");
        let sent = gw.host.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].status, 401);
        assert_eq!(
            sent[0].header("www-authenticate"),
            Some(
                "Bearer resource_metadata=\"http://localhost:18080/.well-known/oauth-protected-resource/everything\""
            )
        );
        // The body that follows does not slip past the answer.
        assert_eq!(gw.body(&ex, ALLOWED, true), Pause);
        assert_eq!(gw.host.resumes(), 0);
        assert_eq!(
            gw.host.property("mcpgate_decision").as_deref(),
            Some("reject")
        );
        assert_eq!(
            gw.host.property("mcpgate_reason").as_deref(),
            Some("unauthenticated")
        );
        assert_eq!(gw.counter("mcpgate_token_rejected_total"), 1);
    }
}

#[test]
fn a_bad_token_gets_401_naming_the_error() {
    for mode in MODES {
        let gw = Gateway::mode(mode);
        let other = gw.token_for("http://localhost:18080/other");
        gw.post("/everything/mcp", &other, &[]);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), Pause);
        let sent = gw.host.sent();
        assert_eq!(sent[0].status, 401);
        assert!(sent[0]
            .header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\""));
        assert_eq!(gw.host.resumes(), 0);
    }
}

#[test]
fn a_preflight_is_answered_without_a_token() {
    for mode in MODES {
        let gw = Gateway::mode(mode);
        gw.host.new_request(&[
            (":method", "OPTIONS"),
            (":path", "/everything/mcp"),
            (":authority", "localhost:18080"),
            ("access-control-request-method", "POST"),
        ]);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, true), Pause);
        assert_eq!(gw.host.sent()[0].status, 204);
    }
}

#[test]
fn an_allowed_call_goes_on_with_the_client_credentials_stripped() {
    for mode in MODES {
        let gw = Gateway::mode(mode);
        gw.post("/everything/mcp", &gw.token(), &[("x-mcpgate-other", "x")]);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), after_headers(mode), "{mode:?}");
        // Stripped in the header phase, before anything can go upstream.
        assert_eq!(gw.host.request_header("authorization"), None);
        assert_eq!(gw.host.request_header("x-mcpgate-assertion"), None);
        assert_eq!(gw.host.request_header("x-mcpgate-other"), None);
        assert_eq!(gw.host.request_header("accept-encoding"), None);
        assert_eq!(
            gw.host.request_header("content-type").as_deref(),
            Some("application/json")
        );
        let (head, tail) = ALLOWED.split_at(20);
        assert_eq!(
            gw.body(&ex, head, false),
            Pause,
            "{mode:?}: held until decided"
        );
        assert_eq!(gw.body(&ex, tail, true), Continue);
        assert!(gw.host.sent().is_empty());
        assert_eq!(
            gw.host.resumes(),
            0,
            "the body callback's Continue lets it go on"
        );
        assert_eq!(
            gw.host.property("mcpgate_decision").as_deref(),
            Some("allow")
        );
        assert_eq!(gw.host.property("mcpgate_target").as_deref(), Some("echo"));
        assert_eq!(gw.host.property("mcpgate_sub").as_deref(), Some("user-1"));
        assert_eq!(
            gw.host.property("mcpgate_route").as_deref(),
            Some("everything")
        );
        assert_eq!(gw.counter("mcpgate_mcp_requests_total.tools_call.allow"), 1);
        assert_eq!(gw.held_requests(), 0);
    }
}

#[test]
fn a_denied_call_gets_its_json_rpc_denial_and_no_body_goes_on() {
    for mode in MODES {
        let gw = Gateway::mode(mode);
        gw.post("/everything/mcp", &gw.token(), &[]);
        let ex = gw.exchange();
        // hold_headers: the upstream request is never opened; hold_body: it is (headers only)
        // and the local answer resets it.
        assert_eq!(gw.headers(&ex, false), after_headers(mode), "{mode:?}");
        assert_eq!(gw.body(&ex, DENIED, true), Pause);
        let sent = gw.host.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].status, 200);
        let answer = json_body(&sent[0].body);
        assert_eq!(answer["id"], "req-9");
        assert_eq!(answer["error"]["code"], -32001);
        assert_eq!(answer["error"]["data"]["request_id"], "rid-1");
        assert_eq!(gw.host.resumes(), 0);
        assert_eq!(
            gw.host.property("mcpgate_decision").as_deref(),
            Some("deny")
        );
        assert_eq!(
            gw.host.property("mcpgate_target").as_deref(),
            Some("admin_reset")
        );
        assert_eq!(gw.counter("mcpgate_mcp_requests_total.tools_call.deny"), 1);
        // Trailers after the answer stay held too.
        assert_eq!(gw.trailers(&ex), Pause);
    }
}

#[test]
fn a_malformed_body_is_rejected_in_the_body_phase() {
    for mode in MODES {
        let gw = Gateway::mode(mode);
        gw.post("/everything/mcp", &gw.token(), &[]);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), after_headers(mode));
        assert_eq!(
            gw.body(
                &ex,
                br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
                true
            ),
            Pause
        );
        let sent = gw.host.sent();
        assert_eq!(sent[0].status, 400);
        assert_eq!(json_body(&sent[0].body)["error"]["code"], -32700);
        assert_eq!(
            gw.host.property("mcpgate_decision").as_deref(),
            Some("reject")
        );
    }
}

#[test]
fn header_checks_answer_before_anything_goes_on() {
    for mode in MODES {
        for (extra, status) in [
            (vec![("content-type", "text/plain")], 415),
            (vec![("content-encoding", "gzip")], 415),
            (vec![("content-length", "99999999")], 413),
        ] {
            let gw = Gateway::mode(mode);
            gw.post("/everything/mcp", &gw.token(), &[]);
            for (name, value) in &extra {
                gw.host
                    .state
                    .borrow_mut()
                    .request_headers
                    .retain(|(n, _)| n != name);
                gw.host
                    .state
                    .borrow_mut()
                    .request_headers
                    .push(((*name).into(), value.as_bytes().to_vec()));
            }
            let ex = gw.exchange();
            assert_eq!(gw.headers(&ex, false), Pause, "{mode:?} {extra:?}");
            assert_eq!(gw.host.sent()[0].status, status);
            assert_eq!(gw.body(&ex, ALLOWED, true), Pause);
            assert_eq!(gw.host.sent().len(), 1);
        }
    }
}

#[test]
fn a_body_over_the_limit_is_refused_as_soon_as_it_passes_it() {
    for mode in MODES {
        let gw = Gateway::with(Setup::new(mode), |c| c.routes[0].max_request_bytes = 64);
        gw.post("/everything/mcp", &gw.token(), &[]);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), after_headers(mode));
        assert_eq!(gw.body(&ex, &[b' '; 40], false), Pause);
        assert!(gw.host.sent().is_empty());
        assert_eq!(gw.body(&ex, &[b' '; 40], false), Pause);
        assert_eq!(gw.host.sent()[0].status, 413);
        assert_eq!(gw.body(&ex, ALLOWED, true), Pause);
        assert_eq!(gw.host.sent().len(), 1);
    }
}

#[test]
fn a_body_ending_with_trailers_is_decided_in_the_trailers_callback() {
    for mode in MODES {
        for (body, allowed) in [(ALLOWED, true), (DENIED, false)] {
            let gw = Gateway::mode(mode);
            gw.post("/everything/mcp", &gw.token(), &[]);
            let ex = gw.exchange();
            assert_eq!(gw.headers(&ex, false), after_headers(mode));
            assert_eq!(gw.body(&ex, body, false), Pause);
            let action = gw.trailers(&ex);
            if allowed {
                assert_eq!(action, Continue);
                assert!(gw.host.sent().is_empty());
            } else {
                assert_eq!(action, Pause);
                assert_eq!(json_body(&gw.host.sent()[0].body)["id"], "req-9");
            }
        }
    }
}

#[test]
fn a_request_without_a_body_is_decided_on_identity_in_the_header_phase() {
    for mode in MODES {
        let gw = Gateway::mode(mode);
        gw.get("/everything/mcp", &gw.token());
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, true), Continue, "{mode:?}");
        assert_eq!(
            gw.host.property("mcpgate_reason").as_deref(),
            Some("identity_allowed")
        );
        assert_eq!(gw.host.request_header("authorization"), None);

        let token = gw.token_for("http://localhost:18080/admins");
        gw.get("/admins/mcp", &token);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, true), Pause);
        assert_eq!(gw.host.sent()[0].status, 403);
        assert_eq!(
            gw.host.property("mcpgate_decision").as_deref(),
            Some("deny")
        );
    }
}

#[test]
fn without_keys_the_request_waits_for_the_fetch_then_goes_on() {
    for mode in MODES {
        let gw = Gateway::new(Setup::new(mode).without_keys());
        gw.post("/everything/mcp", &gw.token(), &[]);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), Pause);
        let call = gw.last_call();
        assert_eq!(call.cluster, TOKEN_SERVICE);
        assert_eq!(call.header(":path"), Some("/.well-known/jwks.json"));
        let jwks = gw.jwks.clone();
        gw.answer(&ex, Some("200"), &jwks);
        match mode {
            // Still held for the body, which comes through the body callback.
            HoldHeaders => assert_eq!(gw.host.resumes(), 0),
            // The header phase is done: the headers go on, the body is held next.
            HoldBody => assert_eq!(gw.host.resumes(), 1),
        }
        assert_eq!(gw.host.request_header("authorization"), None);
        assert_eq!(gw.body(&ex, ALLOWED, true), Continue);
        assert!(gw.host.sent().is_empty());
        assert_eq!(gw.counter("mcpgate_jwks_refresh_total"), 1);
    }
}

#[test]
fn a_body_delivered_while_the_keys_are_fetched_is_decided_before_the_headers_go_on() {
    // A host that delivers the body to a filter holding headers (Envoy with
    // allow_on_headers_stop_iteration), in either mode.
    for mode in MODES {
        for (body, allowed) in [(ALLOWED, true), (DENIED, false)] {
            let gw = Gateway::new(Setup::new(mode).without_keys());
            gw.post("/everything/mcp", &gw.token(), &[]);
            let ex = gw.exchange();
            assert_eq!(gw.headers(&ex, false), Pause);
            assert_eq!(gw.body(&ex, body, true), Pause);
            let jwks = gw.jwks.clone();
            gw.answer(&ex, Some("200"), &jwks);
            if allowed {
                assert_eq!(gw.host.resumes(), 1, "{mode:?}");
                assert!(gw.host.sent().is_empty());
            } else {
                assert_eq!(gw.host.resumes(), 0, "{mode:?}: never resumed");
                assert_eq!(json_body(&gw.host.sent()[0].body)["id"], "req-9");
            }
        }
    }
}

#[test]
fn keys_that_cannot_be_had_fail_closed() {
    for mode in MODES {
        let gw = Gateway::new(Setup::new(mode).without_keys());
        gw.post("/everything/mcp", &gw.token(), &[]);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), Pause);
        gw.answer(&ex, None, "");
        assert_eq!(gw.host.sent()[0].status, 503);
        assert_eq!(gw.host.resumes(), 0);
        assert_eq!(gw.body(&ex, ALLOWED, true), Pause);

        // A key fetch that cannot even be sent: the same.
        let gw = Gateway::new(Setup::new(mode).without_keys());
        gw.host.state.borrow_mut().refuse_calls = true;
        gw.post("/everything/mcp", &gw.token(), &[]);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), Pause);
        assert_eq!(gw.host.sent()[0].status, 503);
    }
}

#[test]
fn the_credentials_call_out_holds_the_headers_until_the_assertion_is_set() {
    for mode in MODES {
        let gw = Gateway::new(Setup::new(mode).internal());
        gw.post("/everything/mcp", &gw.token(), &[]);
        let ex = gw.exchange();
        // Waiting for the credentials in either mode.
        assert_eq!(gw.headers(&ex, false), Pause);
        let call = gw.last_call();
        assert_eq!(call.cluster, INTERNAL);
        assert_eq!(call.header(":path"), Some("/internal/v1/credentials"));
        assert_eq!(
            call.header("authorization").map(str::to_owned),
            Some(format!("Bearer {SECRET}"))
        );
        match mode {
            HoldHeaders => {
                // The body is read meanwhile; allowed, it waits for the credentials.
                assert_eq!(gw.body(&ex, ALLOWED, true), Pause);
                gw.grant(&ex, None);
                assert_eq!(gw.host.resumes(), 1);
            }
            HoldBody => {
                // The host holds the body until the headers go on.
                gw.grant(&ex, None);
                assert_eq!(gw.host.resumes(), 1);
                assert_eq!(gw.body(&ex, ALLOWED, true), Continue);
            }
        }
        assert_eq!(
            gw.host.request_header("x-mcpgate-assertion").as_deref(),
            Some("assertion-1")
        );
        assert_eq!(gw.host.request_header("authorization"), None);
        assert!(gw.host.sent().is_empty());
    }
}

#[test]
fn cached_credentials_need_no_call_out() {
    for mode in MODES {
        let gw = Gateway::new(Setup::new(mode).internal());
        let token = gw.token();
        gw.post("/everything/mcp", &token, &[]);
        let ex = gw.exchange();
        gw.headers(&ex, false);
        gw.grant(&ex, None);

        gw.post("/everything/mcp", &token, &[]);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), after_headers(mode));
        assert!(gw.host.calls().is_empty());
        assert_eq!(
            gw.host.request_header("x-mcpgate-assertion").as_deref(),
            Some("assertion-1")
        );
        assert_eq!(gw.body(&ex, ALLOWED, true), Continue);
        assert_eq!(gw.counter("mcpgate_credentials_total.cache_hit"), 1);
    }
}

#[test]
fn a_denied_call_waiting_for_credentials_gets_its_denial_whatever_they_answer() {
    for mode in MODES {
        let gw = Gateway::new(Setup::new(mode).internal());
        gw.post("/everything/mcp", &gw.token(), &[]);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), Pause);
        if mode == HoldHeaders {
            assert_eq!(gw.body(&ex, DENIED, true), Pause);
            assert_eq!(json_body(&gw.host.sent()[0].body)["id"], "req-9");
            gw.grant(&ex, None);
        } else {
            gw.grant(&ex, None);
            assert_eq!(gw.body(&ex, DENIED, true), Pause);
            assert_eq!(json_body(&gw.host.sent()[0].body)["id"], "req-9");
        }
        assert_eq!(gw.host.sent().len(), 1);
        assert_eq!(gw.host.resumes(), if mode == HoldBody { 1 } else { 0 });
    }
}

#[test]
fn a_provider_outage_is_answered_in_json_rpc_with_the_request_id() {
    let outage = r#"{"error":"upstream_unavailable","error_description":"GitHub did not answer"}"#;
    for mode in MODES {
        let gw = Gateway::new(Setup::new(mode).internal());
        let token = gw.token_for(GITHUB);
        gw.post("/github/mcp", &token, &[]);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), Pause);
        if mode == HoldHeaders {
            gw.answer(&ex, Some("503"), outage);
            assert_eq!(gw.host.resumes(), 0);
        } else {
            // Known in the header phase; the answer needs the body's id, so the headers go on
            // (without credentials) and the body is held and answered.
            gw.answer(&ex, Some("503"), outage);
            assert_eq!(gw.host.resumes(), 1);
            assert_eq!(gw.host.request_header("x-mcpgate-assertion"), None);
            assert_eq!(gw.host.request_header("authorization"), None);
        }
        assert!(gw.host.sent().is_empty());
        assert_eq!(gw.body(&ex, ALLOWED, true), Pause);
        let sent = gw.host.sent();
        assert_eq!(sent.len(), 1, "{mode:?}");
        let answer = json_body(&sent[0].body);
        assert_eq!(answer["id"], 7);
        assert_eq!(answer["error"]["code"], -32003);
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("GitHub did not answer"));
        assert_eq!(
            gw.host.property("mcpgate_reason").as_deref(),
            Some("upstream_unavailable")
        );
    }
}

#[test]
fn the_token_service_refusing_the_credentials_answers_in_the_header_phase() {
    let cases = [
        (
            Some("401"),
            r#"{"error":"invalid_token"}"#,
            401,
            "unauthenticated",
        ),
        (
            Some("403"),
            r#"{"error":"upstream_authorization_required"}"#,
            401,
            "upstream_authorization_required",
        ),
        (Some("500"), "{}", 503, "credentials_unavailable"),
        (None, "", 503, "credentials_unavailable"),
    ];
    for mode in MODES {
        for (status, body, answered, reason) in cases {
            let gw = Gateway::new(Setup::new(mode).internal());
            let token = gw.token_for(GITHUB);
            gw.post("/github/mcp", &token, &[]);
            let ex = gw.exchange();
            assert_eq!(gw.headers(&ex, false), Pause);
            gw.answer(&ex, status, body);
            let sent = gw.host.sent();
            assert_eq!(sent.len(), 1, "{mode:?} {status:?}");
            assert_eq!(sent[0].status, answered, "{mode:?} {status:?}");
            assert_eq!(gw.host.property("mcpgate_reason").as_deref(), Some(reason));
            assert_eq!(gw.host.resumes(), 0, "never went on");
            assert_eq!(gw.body(&ex, ALLOWED, true), Pause);
        }
    }
}

#[test]
fn an_upstream_oauth_route_gets_the_users_provider_token() {
    for mode in MODES {
        let gw = Gateway::new(Setup::new(mode).internal());
        let token = gw.token_for(GITHUB);
        gw.post("/github/mcp", &token, &[]);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), Pause);
        let call = gw.last_call();
        let asked: serde_json::Value =
            serde_json::from_slice(call.body.as_deref().unwrap()).unwrap();
        assert_eq!(asked["route"], GITHUB);
        if mode == HoldHeaders {
            assert_eq!(gw.body(&ex, ALLOWED, true), Pause);
        }
        gw.grant(&ex, Some("gho_user"));
        assert_eq!(
            gw.host.request_header("authorization").as_deref(),
            Some("Bearer gho_user")
        );
        assert_eq!(gw.host.resumes(), 1);
        if mode == HoldBody {
            assert_eq!(gw.body(&ex, ALLOWED, true), Continue);
        }
    }
}

#[test]
fn a_body_delivered_while_the_credentials_are_awaited_keeps_the_headers_held() {
    // hold_body on a host that does deliver the body to a filter holding headers: resuming the
    // headers early would pass that buffered body on unread, so they wait for the decision.
    let gw = Gateway::new(Setup::new(HoldBody).internal());
    gw.post("/everything/mcp", &gw.token(), &[]);
    let ex = gw.exchange();
    assert_eq!(gw.headers(&ex, false), Pause);
    assert_eq!(gw.body(&ex, &ALLOWED[..10], false), Pause);
    gw.grant(&ex, None);
    assert_eq!(
        gw.host.resumes(),
        0,
        "not resumed before the body is decided"
    );
    assert_eq!(gw.body(&ex, &ALLOWED[10..], true), Continue);
    assert!(gw.host.sent().is_empty());

    let gw = Gateway::new(Setup::new(HoldBody).internal());
    gw.post("/everything/mcp", &gw.token(), &[]);
    let ex = gw.exchange();
    assert_eq!(gw.headers(&ex, false), Pause);
    assert_eq!(gw.body(&ex, ALLOWED, true), Pause);
    gw.grant(&ex, None);
    assert_eq!(
        gw.host.resumes(),
        1,
        "decided and allowed: resumed with its credentials"
    );
}

#[test]
fn a_body_less_request_waiting_for_credentials_goes_on_once_they_are_in() {
    for mode in MODES {
        let gw = Gateway::new(Setup::new(mode).internal());
        gw.get("/everything/mcp", &gw.token());
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, true), Pause);
        gw.grant(&ex, None);
        assert_eq!(gw.host.resumes(), 1);
        assert_eq!(
            gw.host.request_header("x-mcpgate-assertion").as_deref(),
            Some("assertion-1")
        );
    }
}

// The body-arrival guard.

fn held_without_body(gw: &Gateway) -> std::rc::Rc<std::cell::RefCell<super::exchange::Exchange>> {
    gw.post("/everything/mcp", &gw.token(), &[]);
    let ex = gw.exchange();
    assert_eq!(gw.headers(&ex, false), Pause);
    ex
}

#[test]
fn hold_headers_a_body_that_never_comes_is_answered_naming_the_setting() {
    let gw = Gateway::mode(HoldHeaders);
    let ex = held_without_body(&gw);
    assert_eq!(gw.held_requests(), 1);
    assert_eq!(gw.tick_at(NOW + 10), 0, "not before the full timeout");
    assert!(gw.host.sent().is_empty());
    assert_eq!(gw.tick_at(NOW + 11), 1);
    let sent = gw.host.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].status, 500);
    let answer = json_body(&sent[0].body);
    assert_eq!(answer["error"], "server_error");
    let description = answer["error_description"].as_str().unwrap();
    assert!(
        description.contains("allow_on_headers_stop_iteration"),
        "{description}"
    );
    assert!(
        description.contains("header_mode: hold_body"),
        "{description}"
    );
    assert!(description.contains("within 10 s"), "{description}");
    assert_eq!(
        gw.host.property("mcpgate_decision").as_deref(),
        Some("reject")
    );
    assert_eq!(
        gw.host.property("mcpgate_reason").as_deref(),
        Some("body_not_delivered")
    );
    assert_eq!(gw.counter("mcpgate_body_not_delivered_total"), 1);
    let warnings = gw.host.logs(super::host::LogLevel::Warn);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("allow_on_headers_stop_iteration"));
    assert!(warnings[0].contains("route everything"));
    assert_eq!(gw.held_requests(), 0);
    // The body the host releases later (if ever) finds the request answered.
    assert_eq!(gw.body(&ex, ALLOWED, true), Pause);
    assert_eq!(gw.host.sent().len(), 1);
    assert_eq!(gw.host.resumes(), 0);
}

#[test]
fn the_guard_warns_once_per_run_of_undelivered_bodies() {
    let gw = Gateway::mode(HoldHeaders);
    let first = held_without_body(&gw);
    gw.tick_at(NOW + 11);
    gw.host.set_now(NOW);
    let second = held_without_body(&gw);
    gw.tick_at(NOW + 11);
    assert_eq!(
        gw.host.logs(super::host::LogLevel::Warn).len(),
        0,
        "the second is a debug line"
    );
    assert_eq!(gw.host.sent()[0].status, 500);
    assert_eq!(gw.counter("mcpgate_body_not_delivered_total"), 2);
    drop((first, second));

    // A delivered body ends the run: the next undelivered one warns again.
    gw.host.set_now(NOW);
    let delivered = held_without_body(&gw);
    assert_eq!(gw.body(&delivered, ALLOWED, true), Continue);
    let third = held_without_body(&gw);
    gw.tick_at(NOW + 11);
    assert_eq!(gw.host.logs(super::host::LogLevel::Warn).len(), 1);
    drop(third);
}

#[test]
fn the_guard_lets_go_of_a_request_whose_body_comes_or_that_goes_away() {
    let gw = Gateway::mode(HoldHeaders);
    let ex = held_without_body(&gw);
    assert_eq!(gw.held_requests(), 1);
    assert_eq!(gw.body(&ex, &ALLOWED[..5], false), Pause);
    assert_eq!(
        gw.held_requests(),
        0,
        "a slow rest of the body is not the guard's business"
    );
    assert_eq!(gw.tick_at(NOW + 60), 0);
    assert_eq!(gw.body(&ex, &ALLOWED[5..], true), Continue);

    let ex = held_without_body(&gw);
    assert_eq!(gw.held_requests(), 1);
    drop(ex);
    assert_eq!(
        gw.held_requests(),
        0,
        "the client gave up: nothing left to answer"
    );
}

#[test]
fn the_guard_starts_once_the_keys_arrive() {
    let gw = Gateway::new(Setup::new(HoldHeaders).without_keys());
    let ex = held_without_body(&gw);
    assert_eq!(
        gw.held_requests(),
        0,
        "waiting for keys: the fetch has its own timeout"
    );
    gw.host.set_now(NOW + 3);
    let jwks = gw.jwks.clone();
    gw.answer(&ex, Some("200"), &jwks);
    assert_eq!(gw.held_requests(), 1);
    assert_eq!(gw.tick_at(NOW + 13), 0);
    assert_eq!(gw.tick_at(NOW + 14), 1);
    assert_eq!(gw.host.sent()[0].status, 500);
}

#[test]
fn the_guard_does_not_hold_requests_in_hold_body_mode() {
    let gw = Gateway::mode(HoldBody);
    gw.post("/everything/mcp", &gw.token(), &[]);
    let ex = gw.exchange();
    assert_eq!(gw.headers(&ex, false), Continue);
    assert_eq!(gw.held_requests(), 0);
    assert_eq!(gw.tick_at(NOW + 600), 0);

    let gw = Gateway::new(Setup::new(HoldBody).internal());
    gw.post("/everything/mcp", &gw.token(), &[]);
    let ex = gw.exchange();
    assert_eq!(gw.headers(&ex, false), Pause, "waiting for the credentials");
    assert_eq!(gw.held_requests(), 0, "the call-out has its own timeout");
    gw.grant(&ex, None);
    assert_eq!(gw.held_requests(), 0);
}

#[test]
fn the_guard_waits_while_the_credentials_are_awaited_too() {
    let gw = Gateway::new(Setup::new(HoldHeaders).internal());
    let ex = held_without_body(&gw);
    assert_eq!(gw.held_requests(), 1);
    gw.grant(&ex, None);
    assert_eq!(gw.held_requests(), 1, "still no body");
    assert_eq!(gw.tick_at(NOW + 11), 1);
    assert_eq!(gw.host.sent()[0].status, 500);
    assert_eq!(gw.host.resumes(), 0);
}
