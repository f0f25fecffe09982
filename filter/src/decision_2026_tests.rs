//! MCP 2026-07-28 in the decision: header checks, removed methods, ids and audit of rejections.

use super::*;
use mcpgate_protocol::jsonrpc::{self, Limits, Revision};
use mcpgate_protocol::request_metadata::{ParamHeader, RequestHeaders};
use serde_json::json;

const V2026: &str = "2026-07-28";

fn policy() -> Policy {
    Policy::compile(&json!({"deny": {"or": [
        {"mcp_tool": {"starts_with": "admin_"}},
        {"mcp_argument": {"path": "region", "equals": "forbidden-1"}}
    ]}}))
    .unwrap()
}

fn alice() -> Identity {
    Identity {
        user: "u-1".into(),
        email: Some("alice@example.com".into()),
        groups: vec![],
        claims: json!({"sub": "u-1"}),
    }
}

fn sql_params(tool: &str) -> Option<Vec<ParamHeader>> {
    (tool == "execute_sql").then(|| {
        vec![ParamHeader {
            name: "Region".into(),
            path: vec!["region".into()],
        }]
    })
}

fn run(body: &str, version: Option<&str>, headers: &[(&str, &str)]) -> Outcome {
    let policy = policy();
    let identity = alice();
    let redaction = Redaction::compile(&[], 2048).unwrap();
    let ctx = DecisionContext {
        policy: &policy,
        identity: &identity,
        request_id: "rid-9",
        protocol_version: version,
        redaction: &redaction,
    };
    let mut pairs = headers.to_vec();
    if let Some(v) = version {
        pairs.push(("MCP-Protocol-Version", v));
    }
    let metadata = RequestHeaders::from_pairs(pairs);
    let extras = RequestExtras {
        raw_body: body.as_bytes(),
        metadata: Some(&metadata),
        tool_params: Some(&sql_params),
    };
    let parsed = jsonrpc::parse_for(body.as_bytes(), &Limits::default(), Revision::of(version));
    decide_request(&ctx, parsed, &extras)
}

fn answer(o: &Outcome) -> (u32, Value) {
    let r = o.response.as_ref().unwrap();
    (r.status, serde_json::from_slice(&r.body).unwrap())
}

fn sql_call(region: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{{"name":"execute_sql","arguments":{{"region":"{region}","query":"SELECT 1"}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
    )
}

const SQL_HEADERS: [(&str, &str); 3] = [
    ("Mcp-Method", "tools/call"),
    ("Mcp-Name", "execute_sql"),
    ("Mcp-Param-Region", "us-west1"),
];

#[test]
fn matching_headers_are_allowed() {
    let o = run(&sql_call("us-west1"), Some(V2026), &SQL_HEADERS);
    assert_eq!(o.verdict, Verdict::Allow, "{:?}", o.response);
}

#[test]
fn a_header_mismatch_is_400_header_mismatch_with_the_id() {
    for (i, replacement) in [
        (0, ("Mcp-Method", "tools/list")),
        (1, ("Mcp-Name", "admin_x")),
        (2, ("Mcp-Param-Region", "=?base64?ZXUtd2VzdDE=?=")),
    ] {
        let mut headers = SQL_HEADERS.to_vec();
        headers[i] = replacement;
        let o = run(&sql_call("us-west1"), Some(V2026), &headers);
        assert_eq!(o.verdict, Verdict::Reject);
        let (status, body) = answer(&o);
        assert_eq!(status, 400);
        assert_eq!(body["id"], "c-1");
        assert_eq!(body["error"]["code"], -32020);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("mcpgate: Header mismatch: "),
            "{body}"
        );
        assert_eq!(body["error"]["data"]["reason"], "header_mismatch");
        assert_eq!(o.audit.method, "tools/call");
        assert_eq!(o.audit.target, "execute_sql");
        assert_eq!(o.reject_reason, Some("header_mismatch"));
    }
}

#[test]
fn the_version_in_meta_alone_requires_the_headers() {
    let o = run(&sql_call("us-west1"), None, &SQL_HEADERS);
    let (status, body) = answer(&o);
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32020))
    );
}

#[test]
fn older_versions_ignore_the_headers() {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
    for v in [None, Some("2025-11-25"), Some("2025-06-18")] {
        let o = run(
            body,
            v,
            &[("Mcp-Name", "something_else"), ("Mcp-Method", "x")],
        );
        assert_eq!(o.verdict, Verdict::Allow, "{v:?}");
    }
}

#[test]
fn the_policy_sees_a_mirrored_argument_like_any_argument() {
    let mut headers = SQL_HEADERS.to_vec();
    headers[2] = ("Mcp-Param-Region", "forbidden-1");
    let o = run(&sql_call("forbidden-1"), Some(V2026), &headers);
    assert_eq!(o.verdict, Verdict::Deny);
    let (status, body) = answer(&o);
    assert_eq!((status, body["id"].as_str()), (200, Some("c-1")));
}

#[test]
fn removed_methods_under_2026() {
    // With a URI: decided by the policy on it, then forwarded.
    let sub =
        r#"{"jsonrpc":"2.0","id":5,"method":"resources/subscribe","params":{"uri":"file:///a"}}"#;
    let o = run(sub, Some(V2026), &[("Mcp-Method", "resources/subscribe")]);
    assert_eq!(o.verdict, Verdict::Allow, "{:?}", o.response);
    // Without one: the answer the revision prescribes for a method no server has.
    let sub = r#"{"jsonrpc":"2.0","id":6,"method":"resources/unsubscribe","params":{}}"#;
    let o = run(sub, Some(V2026), &[("Mcp-Method", "resources/unsubscribe")]);
    let (status, body) = answer(&o);
    assert_eq!(status, 404);
    assert_eq!(
        (body["id"].as_i64(), body["error"]["code"].as_i64()),
        (Some(6), Some(-32601))
    );
    assert_eq!(o.audit.method, "resources/unsubscribe");
    // Older versions: refused as before.
    let o = run(sub, Some("2025-11-25"), &[]);
    let (status, body) = answer(&o);
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32602))
    );
    // Other removed or new methods go through the policy like any other.
    for method in [
        "ping",
        "logging/setLevel",
        "server/discover",
        "subscriptions/listen",
    ] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":7,"method":"{method}","params":{{}}}}"#);
        let o = run(&body, Some(V2026), &[("Mcp-Method", method)]);
        assert_eq!(o.verdict, Verdict::Allow, "{method}");
        assert_eq!(o.audit.method, method);
    }
    assert_eq!(metric_method(Some("server/discover")), "server_discover");
    assert_eq!(
        metric_method(Some("subscriptions/listen")),
        "subscriptions_listen"
    );
}

#[test]
fn rejections_carry_the_parsed_id_and_name_the_call() {
    let cases = [
        (
            r#"{"jsonrpc":"2.0","id":"x-1","method":"tools/call","params":{"arguments":{}}}"#,
            r#""x-1""#,
            -32602,
            ("tools/call", ""),
        ),
        (
            r#"{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"echo","arguments":[1]}}"#,
            "12",
            -32602,
            ("tools/call", "echo"),
        ),
        (
            r#"{"jsonrpc":"2.0","id":13,"method":"prompts/get","params":7}"#,
            "13",
            -32602,
            ("prompts/get", ""),
        ),
        (
            r#"{"jsonrpc":"1.0","id":14,"method":"tools/list"}"#,
            "14",
            -32600,
            ("tools/list", ""),
        ),
    ];
    for (body, id, code, (method, target)) in cases {
        let o = run(body, Some("2025-11-25"), &[]);
        let (status, answer) = answer(&o);
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["id"].to_string(), id, "{body}");
        assert_eq!(answer["error"]["code"], code, "{body}");
        assert_eq!(
            (o.audit.method.as_str(), o.audit.target.as_str()),
            (method, target)
        );
    }
    // Not JSON, or an id MCP does not allow: null, as JSON-RPC requires.
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call""#,
        r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call"}"#,
    ] {
        let o = run(body, Some("2025-11-25"), &[]);
        assert_eq!(answer(&o).1["id"], Value::Null, "{body}");
    }
}

#[test]
fn get_and_delete_are_not_part_of_2026_07_28() {
    let policy = policy();
    let identity = alice();
    let redaction = Redaction::compile(&[], 2048).unwrap();
    let ctx = |version| DecisionContext {
        policy: &policy,
        identity: &identity,
        request_id: "rid-9",
        protocol_version: version,
        redaction: &redaction,
    };
    for method in ["GET", "DELETE"] {
        let o = decide_without_body(&ctx(Some(V2026)), method);
        assert_eq!(o.verdict, Verdict::Reject, "{method}");
        let response = o.response.unwrap();
        assert_eq!(response.status, 405);
        assert_eq!(response.header("allow"), Some("POST"));
        let v: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(v["error"], "method_not_allowed");
        assert_eq!(o.audit.reason, "method_not_allowed");
        // Older revisions keep their GET stream and session DELETE.
        let older = decide_without_body(&ctx(Some("2025-11-25")), method);
        assert_eq!(older.verdict, Verdict::Allow, "{method}");
        assert!(older.response.is_none());
    }
}
