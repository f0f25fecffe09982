use super::*;
use mcpgate_protocol::jsonrpc::{self, Limits};
use serde_json::{json, Value};

use crate::audit::Redaction;
use crate::decision::{decide_body, DecisionContext};

const LIST: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"admin_reset"}],"nextCursor":"c=="}}"#;

fn policy() -> Policy {
    Policy::compile(&json!({"deny": {"and": [{"mcp_tool": {"starts_with": "admin_"}}]}})).unwrap()
}

fn identity() -> Identity {
    Identity {
        user: "u".into(),
        ..Identity::default()
    }
}

/// Runs `f` with a decision context for the test policy and identity.
fn with_context<R>(protocol_version: &str, f: impl FnOnce(&DecisionContext<'_>) -> R) -> R {
    let policy = policy();
    let identity = identity();
    let redaction = Redaction::default();
    f(&DecisionContext {
        policy: &policy,
        identity: &identity,
        request_id: "r",
        protocol_version: Some(protocol_version),
        redaction: &redaction,
    })
}

/// The list requests of a forwarded body, as the decision module records them.
fn requests(body: &str) -> ListRequests {
    with_context("2025-03-26", |ctx| {
        decide_body(ctx, jsonrpc::parse(body.as_bytes(), &Limits::default()))
            .lists
            .unwrap()
    })
}

fn tools_list() -> ListResponse {
    ListResponse::new(requests(
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#,
    ))
}

fn names(json: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(json).unwrap();
    v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn json_list_is_filtered() {
    let mut list = tools_list();
    assert_eq!(list.plan(Some("application/json"), None), Plan::Buffer);
    let out = list
        .filter_json(LIST.as_bytes(), &policy(), &identity())
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(names(&out), vec!["echo"]);
    assert!(out.contains(r#""nextCursor":"c==""#));
    // Nothing to remove: left as it is.
    let open = Policy::default();
    assert!(list
        .filter_json(LIST.as_bytes(), &open, &identity())
        .is_none());
    // An error response passes.
    let error = br#"{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"x"}}"#;
    assert!(list.filter_json(error, &policy(), &identity()).is_none());
}

#[test]
fn unreadable_json_list_fails_closed() {
    let list = tools_list();
    for bad in [
        &br#"{"jsonrpc":"2.0","id":7,"result":{"tools":{}}}"#[..],
        b"not json",
        b"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"\xff\"}]}}",
    ] {
        let out = list.filter_json(bad, &policy(), &identity()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["error"]["code"], INTERNAL_ERROR);
    }
}

#[test]
fn other_content_types_are_read_as_json() {
    let mut list = tools_list();
    assert_eq!(list.plan(Some("text/html"), None), Plan::Buffer);
    assert_eq!(list.plan(None, None), Plan::Buffer);
}

fn stream(input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut list = tools_list();
    assert_eq!(list.plan(Some("text/event-stream"), None), Plan::Stream);
    let mut out = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(start, input.len());
        out.extend(list.push_sse(&input[start..cut], &policy(), &identity()));
        start = cut;
    }
    out.extend(list.finish_sse(&policy(), &identity()));
    out
}

#[test]
fn sse_list_is_filtered_in_awkward_chunks() {
    let input = format!(
        ": comment\r\nevent: message\r\nid: e1\r\ndata: {LIST}\r\n\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{}}}}\n\n"
    );
    let bytes = input.as_bytes();
    let whole = stream(bytes, &[]);
    let text = String::from_utf8(whole.clone()).unwrap();
    assert!(!text.contains("admin_reset"), "{text}");
    assert!(text.contains("\"echo\""));
    assert!(text.contains("id: e1"));
    assert!(text.contains("notifications/progress"));
    // Every two-way split, and byte-by-byte, give the same output.
    for cut in 0..=bytes.len() {
        assert_eq!(stream(bytes, &[cut]), whole, "cut at {cut}");
    }
    let every: Vec<usize> = (1..bytes.len()).collect();
    assert_eq!(stream(bytes, &every), whole);
}

#[test]
fn sse_chunks_hold_back_only_the_unfinished_event() {
    let mut list = tools_list();
    list.plan(Some("text/event-stream"), None);
    let event = format!("data: {LIST}\n\n");
    let (a, b) = event.as_bytes().split_at(10);
    assert!(list.push_sse(a, &policy(), &identity()).is_empty());
    let out = list.push_sse(b, &policy(), &identity());
    assert!(String::from_utf8(out).unwrap().ends_with("\n\n"));
    // A priming event (empty data) passes as is.
    let out = list.push_sse(b"id: 1\ndata:\n\n", &policy(), &identity());
    assert_eq!(out, b"id: 1\ndata:\n\n");
}

#[test]
fn unreadable_sse_event_ends_the_stream() {
    let mut list = tools_list();
    list.plan(Some("text/event-stream"), None);
    let out = list.push_sse(b"data: {\"broken\n\n", &policy(), &identity());
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("event: message\ndata: {"), "{text}");
    assert!(text.contains("-32603"));
    assert!(list.failed());
    assert!(list
        .push_sse(
            format!("data: {LIST}\n\n").as_bytes(),
            &policy(),
            &identity()
        )
        .is_empty());
    assert!(list.finish_sse(&policy(), &identity()).is_empty());
}

#[test]
fn mixed_list_kinds_use_the_strictest_answer() {
    let policy = Policy::compile(&json!({"deny": {"and": [
        {"mcp_method": {"is": "prompts/get"}}, {"mcp_tool": {"is": "shared"}}
    ]}}))
    .unwrap();
    let list = ListResponse::new(requests(
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"prompts/list"}]"#,
    ));
    let body = r#"[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"shared"},{"name":"t"}]}},{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"shared"},{"name":"p"}]}}]"#;
    let out = list
        .filter_json(body.as_bytes(), &policy, &identity())
        .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["result"]["tools"], json!([{"name": "t"}]));
    assert_eq!(v[1]["result"]["prompts"], json!([{"name": "p"}]));
}

#[test]
fn resource_templates_use_resources_read() {
    assert_eq!(entry_method(ListKind::ResourceTemplates), "resources/read");
    assert_eq!(entry_method(ListKind::Tools), "tools/call");
    assert_eq!(entry_method(ListKind::Prompts), "prompts/get");
}

#[test]
fn list_replayed_on_a_get_stream_is_filtered() {
    let requests = with_context("2025-06-18", |ctx| {
        crate::decision::decide_without_body(ctx, "GET")
            .lists
            .unwrap()
    });
    let mut list = ListResponse::new(requests);
    assert_eq!(list.plan(Some("text/event-stream"), None), Plan::Stream);
    let stream = format!("id: 9\nevent: message\ndata: {LIST}\n\n");
    let out = list.push_sse(stream.as_bytes(), &policy(), &identity());
    let out = String::from_utf8(out).unwrap();
    let data = out.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    assert_eq!(names(data), vec!["echo".to_string()]);
}

#[test]
fn unreadable_list_answers_are_replaced_not_passed_on() {
    let mut list = tools_list();
    assert_eq!(
        list.plan(Some("application/json"), Some("gzip")),
        Plan::Buffer
    );
    assert!(list.is_encoded());
    let out = list
        .filter_json(b"\x1f\x8b binary", &policy(), &identity())
        .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("gzip"),
        "{v}"
    );

    let mut list = tools_list();
    assert_eq!(
        list.plan(Some("text/plain"), Some("identity")),
        Plan::Buffer
    );
    let out = list
        .filter_json(LIST.as_bytes(), &policy(), &identity())
        .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(names(&v.to_string()), vec!["echo".to_string()]);
}
