//! MCP 2026-07-28 through the mock host: a tool's `x-mcp-header` annotations are learned from a
//! `tools/list` answer (kept in shared data) and a later `tools/call` whose `Mcp-Param-*` header
//! disagrees with its argument is refused; the list answer becomes `cacheScope: "private"`.

use super::host::Action::{Continue, Pause};
use super::test_gateway::{json_body, Gateway};

const V2026: (&str, &str) = ("mcp-protocol-version", "2026-07-28");
const LIST: &[u8] = br#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
const ANSWER: &str = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"execute_sql","inputSchema":{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}},{"name":"admin_reset"}],"ttlMs":1000,"cacheScope":"public","resultType":"complete"}}"#;
const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{"name":"execute_sql","arguments":{"region":"us-west1"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

fn call(gw: &Gateway, region: &str) -> (super::host::Action, Vec<crate::challenge::LocalResponse>) {
    gw.post(
        "/everything/mcp",
        &gw.token(),
        &[
            V2026,
            ("mcp-method", "tools/call"),
            ("mcp-name", "execute_sql"),
            ("mcp-param-region", region),
        ],
    );
    let ex = gw.exchange();
    gw.headers(&ex, false);
    let action = gw.body(&ex, CALL, true);
    (action, gw.host.sent())
}

#[test]
fn annotations_learned_from_a_list_answer_check_later_calls() {
    let gw = Gateway::mode(mcpgate_config::HeaderMode::HoldHeaders);
    // Before the tool was listed, its Mcp-Param headers are not recognised: forwarded.
    let (action, sent) = call(&gw, "eu-west1");
    assert_eq!((action, sent.len()), (Continue, 0));

    gw.post(
        "/everything/mcp",
        &gw.token(),
        &[V2026, ("mcp-method", "tools/list")],
    );
    let ex = gw.exchange();
    gw.headers(&ex, false);
    assert_eq!(gw.body(&ex, LIST, true), Continue);
    gw.host
        .set_response(&[(":status", "200"), ("content-type", "application/json")]);
    assert_eq!(
        ex.borrow_mut().on_response_headers(&gw.host, false),
        Continue
    );
    let size = gw.host.push_response_body(ANSWER.as_bytes());
    assert_eq!(
        ex.borrow_mut().on_response_body(&gw.host, size, true),
        Continue
    );
    let answer = json_body(&gw.host.response_body());
    assert_eq!(answer["result"]["cacheScope"], "private");
    assert_eq!(answer["result"]["tools"].as_array().unwrap().len(), 1);

    let (action, sent) = call(&gw, "us-west1");
    assert_eq!((action, sent.len()), (Continue, 0), "{sent:?}");
    let (action, sent) = call(&gw, "eu-west1");
    assert_eq!(action, Pause);
    assert_eq!(sent[0].status, 400);
    let body = json_body(&sent[0].body);
    assert_eq!(
        (body["id"].as_str(), body["error"]["code"].as_i64()),
        (Some("c"), Some(-32020))
    );
    assert_eq!(
        gw.host.property("mcpgate_method").as_deref(),
        Some("tools/call")
    );
    assert_eq!(
        gw.host.property("mcpgate_target").as_deref(),
        Some("execute_sql")
    );
    assert_eq!(
        gw.host.property("mcpgate_reason").as_deref(),
        Some("header_mismatch")
    );
}
