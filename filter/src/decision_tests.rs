use super::*;
use mcpgate_protocol::jsonrpc::{self, Limits};
use serde_json::json;

fn policy() -> Policy {
    Policy::compile(&json!({"deny": {"and": [{"mcp_tool": {"starts_with": "admin_"}}]}})).unwrap()
}

fn alice() -> Identity {
    Identity {
        user: "u-1".into(),
        email: Some("alice@example.com".into()),
        groups: vec!["dev".into()],
        claims: json!({"sub": "u-1", "client_id": "c-1"}),
    }
}

fn redaction() -> Redaction {
    Redaction::compile(&["password".to_string()], 2048).unwrap()
}

fn run(body: &str, version: Option<&str>) -> Outcome {
    let policy = policy();
    let identity = alice();
    let redaction = redaction();
    let ctx = DecisionContext {
        policy: &policy,
        identity: &identity,
        request_id: "rid-1",
        protocol_version: version,
        redaction: &redaction,
    };
    decide_body(&ctx, jsonrpc::parse(body.as_bytes(), &Limits::default()))
}

fn body_json(outcome: &Outcome) -> Value {
    serde_json::from_slice(&outcome.response.as_ref().unwrap().body).unwrap()
}

const V: Option<&str> = Some("2025-06-18");

#[test]
fn allowed_call_is_forwarded_with_audit_fields() {
    let o = run(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi","password":"p"}}}"#,
        V,
    );
    assert_eq!(o.verdict, Verdict::Allow);
    assert!(o.response.is_none());
    assert!(o.lists.is_none());
    assert_eq!(o.metric_method, "tools_call");
    assert_eq!(
        o.audit,
        AuditFields {
            method: "tools/call".into(),
            target: "echo".into(),
            arguments: r#"{"password":"[redacted]","text":"hi"}"#.into(),
            reason: "no_deny_rule_matched".into(),
        }
    );
}

#[test]
fn denied_call_echoes_the_raw_id() {
    for (raw, expected) in [
        (r#""abc-\u0031""#, json!("abc-1")),
        ("42", json!(42)),
        ("-0", serde_json::from_str::<Value>("-0").unwrap()),
    ] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{raw},"method":"tools/call","params":{{"name":"admin_reset"}}}}"#
        );
        let o = run(&body, V);
        assert_eq!(o.verdict, Verdict::Deny);
        let response = o.response.as_ref().unwrap();
        assert_eq!(response.status, 200);
        let text = String::from_utf8(response.body.clone()).unwrap();
        assert!(text.contains(&format!(r#""id":{raw},"#)), "{text}");
        let v = body_json(&o);
        assert_eq!(v["id"], expected);
        assert_eq!(v["error"]["code"], POLICY_DENIED_CODE);
        assert_eq!(
            v["error"]["message"],
            "mcpgate: tools/call 'admin_reset' denied by policy (request rid-1)"
        );
        assert_eq!(v["error"]["data"]["request_id"], "rid-1");
        assert_eq!(v["error"]["data"]["reason"], "policy.deny.and[0]");
        assert_eq!(o.audit.reason, "policy.deny.and[0]");
        assert_eq!(o.audit.target, "admin_reset");
    }
}

#[test]
fn denied_notification_is_403() {
    let o = run(
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"admin_x"}}"#,
        V,
    );
    assert_eq!(o.verdict, Verdict::Deny);
    assert_eq!(o.response.as_ref().unwrap().status, 403);
    let v = body_json(&o);
    assert_eq!(v["error"], "forbidden");
    assert_eq!(v["request_id"], "rid-1");
}

#[test]
fn list_requests_are_tracked() {
    let o = run(r#"{"jsonrpc":"2.0","id":"l","method":"tools/list"}"#, V);
    assert_eq!(o.verdict, Verdict::Allow);
    let lists = o.lists.unwrap();
    assert_eq!(lists.kinds, vec![ListKind::Tools]);
    assert_eq!(lists.tracker.len(), 1);
    assert!(run(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
        V
    )
    .lists
    .is_none());
}

#[test]
fn batches_follow_the_protocol_version() {
    let ok = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#;
    let bad = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"admin_x"}},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
    for version in [None, Some("2025-06-18"), Some("2025-11-25"), Some("junk")] {
        let o = run(ok, version);
        assert_eq!(o.verdict, Verdict::Reject, "{version:?}");
        assert_eq!(o.response.as_ref().unwrap().status, 400);
        assert_eq!(o.reject_reason, Some("batch"));
        let v = body_json(&o);
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["code"], -32600);
    }
    let old = Some("2025-03-26");
    let o = run(ok, old);
    assert_eq!(o.verdict, Verdict::Allow);
    assert_eq!(o.metric_method, "batch");
    assert_eq!(o.audit.method, "tools/call,tools/list");
    assert_eq!(o.lists.unwrap().kinds, vec![ListKind::Tools]);

    let o = run(bad, old);
    assert_eq!(o.verdict, Verdict::Deny);
    assert_eq!(o.response.as_ref().unwrap().status, 200);
    let v = body_json(&o);
    let errors = v.as_array().unwrap();
    assert_eq!(
        errors.len(),
        2,
        "one error per request, none for the notification"
    );
    assert_eq!(errors[0]["id"], 1);
    assert_eq!(
        errors[0]["error"]["message"],
        "mcpgate: batch denied by policy: tools/call 'admin_x' is denied (request rid-1)"
    );
    assert_eq!(errors[1]["id"], "x");
    assert_eq!(
        errors[1]["error"]["message"],
        "mcpgate: tools/call 'admin_x' denied by policy (request rid-1)"
    );
    assert_eq!(o.audit.reason, "policy.deny.and[0]");

    let notifications = r#"[{"jsonrpc":"2.0","method":"tools/call","params":{"name":"admin_x"}},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
    assert_eq!(run(notifications, old).response.unwrap().status, 403);
}

#[test]
fn rejections_map_to_status_and_code() {
    let cases: [(&str, u32, i64, &str); 7] = [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"admin_x"}}"#,
            400,
            -32700,
            "duplicate_key",
        ),
        (r#"{"jsonrpc":"2.0","id":1,"#, 400, -32700, "truncated"),
        ("", 400, -32700, "empty"),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"x"} x"#,
            400,
            -32700,
            "trailing_data",
        ),
        (
            r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            400,
            -32600,
            "invalid_version",
        ),
        (r#"[1]"#, 400, -32600, "not_an_object"),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            400,
            -32602,
            "missing_tool_name",
        ),
    ];
    for (body, status, code, reason) in cases {
        let o = run(body, Some("2025-03-26"));
        assert_eq!(o.verdict, Verdict::Reject, "{body}");
        assert_eq!(o.response.as_ref().unwrap().status, status, "{body}");
        assert_eq!(o.reject_reason, Some(reason), "{body}");
        assert_eq!(o.audit.reason, reason);
        let v = body_json(&o);
        assert_eq!(v["id"], Value::Null);
        assert_eq!(v["error"]["code"], code, "{body}");
        assert_eq!(v["error"]["data"]["reason"], reason);
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("(request rid-1)"));
    }
    let invalid_utf8 = decide_body(
        &DecisionContext {
            policy: &policy(),
            identity: &alice(),
            request_id: "r",
            protocol_version: V,
            redaction: &redaction(),
        },
        jsonrpc::parse(b"{\"a\":\"\xff\"}", &Limits::default()),
    );
    assert_eq!(invalid_utf8.reject_reason, Some("invalid_utf8"));

    let too_large = reject(&Error::TooLarge { limit: 10 }, "r");
    assert_eq!(too_large.response.unwrap().status, 413);
    let content_type = reject(
        &Error::ContentType {
            found: "text/plain".into(),
        },
        "r",
    );
    assert_eq!(content_type.response.unwrap().status, 415);
    let encoding = reject(
        &Error::ContentEncoding {
            found: "gzip".into(),
        },
        "r",
    );
    assert_eq!(encoding.response.as_ref().unwrap().status, 415);
    assert_eq!(encoding.reject_reason, Some("content_encoding"));
}

#[test]
fn bodyless_requests_are_decided_on_identity() {
    let redaction = redaction();
    let identity = alice();
    let open = policy();
    let ctx = DecisionContext {
        policy: &open,
        identity: &identity,
        request_id: "r",
        protocol_version: None,
        redaction: &redaction,
    };
    let o = decide_without_body(&ctx, "GET");
    assert_eq!(o.verdict, Verdict::Allow);
    assert!(o.response.is_none());
    let closed =
        Policy::compile(&json!({"allow": {"and": [{"domain": {"is": "other.com"}}]}})).unwrap();
    let o = decide_without_body(
        &DecisionContext {
            policy: &closed,
            ..ctx
        },
        "DELETE",
    );
    assert_eq!(o.verdict, Verdict::Deny);
    let response = o.response.unwrap();
    assert_eq!(response.status, 403);
    let v: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(
        v["error_description"],
        "mcpgate: DELETE denied by policy (request r)"
    );
}

#[test]
fn claims_and_arguments_reach_the_policy() {
    let policy = Policy::compile(&json!({"deny": {"or": [
        {"mcp_argument": {"path": "env", "equals": "prod"}},
        {"claim": {"path": "client_id", "is": "evil"}}
    ]}}))
    .unwrap();
    let redaction = redaction();
    let mut identity = alice();
    let ctx = |identity: &Identity, body: &str| {
        decide_body(
            &DecisionContext {
                policy: &policy,
                identity,
                request_id: "r",
                protocol_version: V,
                redaction: &redaction,
            },
            jsonrpc::parse(body.as_bytes(), &Limits::default()),
        )
        .verdict
    };
    let prod = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","arguments":{"env":"prod"}}}"#;
    let dev = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","arguments":{"env":"dev"}}}"#;
    assert_eq!(ctx(&identity, prod), Verdict::Deny);
    assert_eq!(ctx(&identity, dev), Verdict::Allow);
    identity.claims = json!({"client_id": "evil"});
    assert_eq!(ctx(&identity, dev), Verdict::Deny);
}

#[test]
fn metric_labels_are_bounded() {
    assert_eq!(metric_method(Some("tools/call")), "tools_call");
    assert_eq!(
        metric_method(Some("resources/templates/list")),
        "resources_templates_list"
    );
    assert_eq!(metric_method(Some("made/up")), "other");
    assert_eq!(metric_method(None), "none");
}
