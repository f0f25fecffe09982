//! A client route through the mock host: the session cookie buys the app its user's TE and
//! assertion (a call-out, then the shared cache), or the browser is sent to sign in. The same in
//! both header modes: the body of a client-route request is never read.

use mcpgate_config::HeaderMode::{self, HoldBody, HoldHeaders};
use serde_json::{json, Value};

use super::host::Action::{Continue, Pause};
use super::test_gateway::{Gateway, Setup, APP, SIGN_IN};
use crate::test_support::NOW;

const MODES: [HeaderMode; 2] = [HoldHeaders, HoldBody];

fn app_request(gw: &Gateway, cookie: Option<&str>, accept: &str) {
    let mut headers = vec![
        (":method", "POST"),
        (":path", "/app/api/call"),
        (":authority", "localhost:18080"),
        ("accept", accept),
        ("content-type", "application/json"),
        ("authorization", "Bearer forged"),
        ("x-mcpgate-assertion", "forged"),
    ];
    if let Some(cookie) = cookie {
        headers.push(("cookie", cookie));
    }
    gw.host.new_request(&headers);
}

fn session_answer(gw: &Gateway) -> String {
    json!({
        "token": gw.token_for(APP),
        "assertion": "app-assertion",
        "cache_until": NOW + 60,
    })
    .to_string()
}

#[test]
fn a_session_cookie_buys_the_app_its_users_token() {
    for mode in MODES {
        let gw = Gateway::new(Setup::new(mode).internal());
        app_request(
            &gw,
            Some("theme=dark; mcpgate_session=s-1; lang=en"),
            "application/json",
        );
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), Pause);
        let call = gw.last_call();
        assert_eq!(call.header(":path"), Some("/internal/v1/session"));
        let asked: Value = serde_json::from_slice(call.body.as_deref().unwrap()).unwrap();
        assert_eq!(asked, json!({"session": "s-1", "route": APP}));
        // The body waits with the headers; it is not read.
        assert_eq!(gw.body(&ex, b"{}", true), Pause);
        let answer = session_answer(&gw);
        gw.answer(&ex, Some("200"), &answer);
        assert_eq!(gw.host.resumes(), 1, "{mode:?}");
        assert_eq!(
            gw.host.request_header("authorization"),
            Some(format!("Bearer {}", gw.token_for(APP)))
        );
        assert_eq!(
            gw.host.request_header("x-mcpgate-assertion").as_deref(),
            Some("app-assertion")
        );
        assert_eq!(
            gw.host.request_header_values("cookie"),
            ["theme=dark; lang=en"]
        );
        assert_eq!(
            gw.host.property("mcpgate_reason").as_deref(),
            Some("session")
        );
        assert_eq!(gw.host.property("mcpgate_sub").as_deref(), Some("user-1"));

        // The next request with the same cookie uses the cache.
        app_request(&gw, Some("mcpgate_session=s-1"), "application/json");
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), Continue);
        assert!(gw.host.calls().is_empty());
        assert_eq!(
            gw.host.request_header_values("cookie"),
            Vec::<String>::new()
        );
        assert_eq!(gw.body(&ex, b"{}", true), Continue);
    }
}

#[test]
fn without_a_usable_session_a_browser_goes_to_sign_in() {
    for mode in MODES {
        let gw = Gateway::new(Setup::new(mode).internal());
        app_request(&gw, None, "text/html");
        gw.host.state.borrow_mut().request_headers[0].1 = b"GET".to_vec();
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, true), Pause);
        let sent = gw.host.sent();
        assert_eq!(sent[0].status, 302);
        assert!(sent[0].header("location").unwrap().starts_with(SIGN_IN));

        app_request(&gw, Some("mcpgate_session=stale"), "application/json");
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), Pause);
        gw.answer(&ex, Some("401"), r#"{"error":"invalid_session"}"#);
        let sent = gw.host.sent();
        assert_eq!(sent[0].status, 401);
        assert_eq!(
            gw.host.property("mcpgate_reason").as_deref(),
            Some("invalid_session")
        );
        assert_eq!(gw.host.resumes(), 0);
    }
}

#[test]
fn a_session_call_out_that_fails_is_a_503() {
    let gw = Gateway::new(Setup::new(HoldBody).internal());
    app_request(&gw, Some("mcpgate_session=s-1"), "application/json");
    let ex = gw.exchange();
    assert_eq!(gw.headers(&ex, false), Pause);
    gw.answer(&ex, None, "");
    assert_eq!(gw.host.sent()[0].status, 503);
    assert_eq!(
        gw.host.property("mcpgate_reason").as_deref(),
        Some("session_unavailable")
    );
    assert_eq!(gw.host.resumes(), 0);
}
