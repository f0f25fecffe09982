//! The response side through the mock host: list answers filtered (JSON buffered, SSE chunk by
//! chunk) in both header modes, and an MCP server refusing the user's upstream token.

use mcpgate_config::HeaderMode::{self, HoldBody, HoldHeaders};
use serde_json::Value;

use super::host::Action::{Continue, Pause};
use super::test_gateway::{json_body, Gateway, Setup, GITHUB, TOOLS_LIST};

const MODES: [HeaderMode; 2] = [HoldHeaders, HoldBody];

const TOOLS: &str = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo","inputSchema":{}},{"name":"admin_reset","inputSchema":{}}],"nextCursor":"c2"}}"#;

fn names(answer: &Value) -> Vec<&str> {
    answer["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect()
}

/// A forwarded `tools/list` on the policy route.
fn listed(gw: &Gateway) -> std::rc::Rc<std::cell::RefCell<super::exchange::Exchange>> {
    gw.post("/everything/mcp", &gw.token(), &[]);
    let ex = gw.exchange();
    gw.headers(&ex, false);
    assert_eq!(gw.body(&ex, TOOLS_LIST, true), Continue);
    ex
}

#[test]
fn a_json_list_answer_is_buffered_and_filtered() {
    for mode in MODES {
        let gw = Gateway::mode(mode);
        let ex = listed(&gw);
        gw.host.set_response(&[
            (":status", "200"),
            ("content-type", "application/json"),
            ("content-length", &TOOLS.len().to_string()),
        ]);
        assert_eq!(
            ex.borrow_mut().on_response_headers(&gw.host, false),
            Continue
        );
        assert_eq!(
            gw.host.response_header("content-length"),
            None,
            "the size changes"
        );
        let (head, tail) = TOOLS.as_bytes().split_at(30);
        let size = gw.host.push_response_body(head);
        assert_eq!(
            ex.borrow_mut().on_response_body(&gw.host, size, false),
            Pause
        );
        let size = gw.host.push_response_body(tail);
        assert_eq!(
            ex.borrow_mut().on_response_body(&gw.host, size, true),
            Continue
        );
        let answer = json_body(&gw.host.response_body());
        assert_eq!(names(&answer), ["echo"], "{mode:?}");
        assert_eq!(answer["result"]["nextCursor"], "c2");
    }
}

#[test]
fn a_json_list_answer_ending_with_trailers_is_filtered_in_the_trailers_callback() {
    let gw = Gateway::mode(HoldBody);
    let ex = listed(&gw);
    gw.host
        .set_response(&[(":status", "200"), ("content-type", "application/json")]);
    assert_eq!(
        ex.borrow_mut().on_response_headers(&gw.host, false),
        Continue
    );
    let size = gw.host.push_response_body(TOOLS.as_bytes());
    assert_eq!(
        ex.borrow_mut().on_response_body(&gw.host, size, false),
        Pause
    );
    assert_eq!(ex.borrow_mut().on_response_trailers(&gw.host), Continue);
    assert_eq!(names(&json_body(&gw.host.response_body())), ["echo"]);
}

#[test]
fn an_sse_list_answer_is_rewritten_chunk_by_chunk() {
    for mode in MODES {
        let gw = Gateway::mode(mode);
        let ex = listed(&gw);
        gw.host
            .set_response(&[(":status", "200"), ("content-type", "text/event-stream")]);
        assert_eq!(
            ex.borrow_mut().on_response_headers(&gw.host, false),
            Continue
        );
        let event = format!("event: message\ndata: {TOOLS}\n\n");
        let (head, tail) = event.as_bytes().split_at(40);
        let size = gw.host.set_response_body(head);
        assert_eq!(
            ex.borrow_mut().on_response_body(&gw.host, size, false),
            Continue
        );
        assert!(
            gw.host.response_body().is_empty(),
            "a partial event is held back"
        );
        let size = gw.host.set_response_body(tail);
        assert_eq!(
            ex.borrow_mut().on_response_body(&gw.host, size, true),
            Continue
        );
        let out = String::from_utf8(gw.host.response_body()).unwrap();
        let data = out
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("a data line");
        assert_eq!(
            names(&serde_json::from_str(data).unwrap()),
            ["echo"],
            "{mode:?}"
        );
    }
}

#[test]
fn an_answer_to_an_ordinary_call_streams_untouched() {
    let gw = Gateway::mode(HoldBody);
    gw.post("/everything/mcp", &gw.token(), &[]);
    let ex = gw.exchange();
    gw.headers(&ex, false);
    gw.body(&ex, super::test_gateway::ALLOWED, true);
    gw.host
        .set_response(&[(":status", "200"), ("content-type", "application/json")]);
    assert_eq!(
        ex.borrow_mut().on_response_headers(&gw.host, false),
        Continue
    );
    let size = gw.host.set_response_body(TOOLS.as_bytes());
    assert_eq!(
        ex.borrow_mut().on_response_body(&gw.host, size, true),
        Continue
    );
    assert_eq!(gw.host.response_body(), TOOLS.as_bytes());
}

#[test]
fn an_mcp_server_refusing_the_upstream_token_becomes_the_reconnect_challenge() {
    for mode in MODES {
        let gw = Gateway::new(Setup::new(mode).internal());
        let token = gw.token_for(GITHUB);
        gw.post("/github/mcp", &token, &[]);
        let ex = gw.exchange();
        gw.headers(&ex, false);
        if mode == HoldHeaders {
            gw.body(&ex, super::test_gateway::ALLOWED, true);
            gw.grant(&ex, Some("gho_user"));
        } else {
            gw.grant(&ex, Some("gho_user"));
            gw.body(&ex, super::test_gateway::ALLOWED, true);
        }
        gw.host.set_response(&[
            (":status", "401"),
            ("www-authenticate", "Bearer error=\"invalid_token\""),
        ]);
        assert_eq!(ex.borrow_mut().on_response_headers(&gw.host, false), Pause);
        let call = gw.last_call();
        assert_eq!(call.header(":path"), Some("/internal/v1/upstream_rejected"));
        let told: Value = serde_json::from_slice(call.body.as_deref().unwrap()).unwrap();
        assert_eq!(told["route"], GITHUB);
        assert_eq!(told["token"], token.as_str());
        // The response body is held while the token service hears of it.
        assert_eq!(ex.borrow_mut().on_response_body(&gw.host, 10, false), Pause);
        gw.answer(&ex, Some("204"), "");
        let sent = gw.host.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].status, 401);
        assert!(sent[0]
            .header("www-authenticate")
            .unwrap()
            .contains("resource_metadata="));
        assert_eq!(
            gw.host.property("mcpgate_reason").as_deref(),
            Some("upstream_rejected")
        );
        assert_eq!(gw.counter("mcpgate_upstream_rejected_total.status_401"), 1);

        // The cached credentials were dropped: the next call asks again.
        gw.post("/github/mcp", &token, &[]);
        let ex = gw.exchange();
        assert_eq!(gw.headers(&ex, false), Pause);
        assert_eq!(
            gw.last_call().header(":path"),
            Some("/internal/v1/credentials")
        );
    }
}

#[test]
fn a_403_without_insufficient_scope_is_the_servers_own_answer() {
    let gw = Gateway::new(Setup::new(HoldBody).internal());
    let token = gw.token_for(GITHUB);
    gw.post("/github/mcp", &token, &[]);
    let ex = gw.exchange();
    gw.headers(&ex, false);
    gw.grant(&ex, Some("gho_user"));
    gw.body(&ex, super::test_gateway::ALLOWED, true);
    gw.host
        .set_response(&[(":status", "403"), ("content-type", "application/json")]);
    assert_eq!(
        ex.borrow_mut().on_response_headers(&gw.host, false),
        Continue
    );
    assert!(gw.host.sent().is_empty());
}
