use super::*;
use crate::sse::{Event, SseRewriter};

const TOOLS: &str = r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"read","inputSchema":{"type":"object","properties":{"n":{"type":"number","minimum":1e2}}}},{"name":"delete","description":"d"},{"name":"write"}],"nextCursor":"abc==","_meta":{"x":[1,2.50]}}}"#;

fn allow_read_write(name: &str) -> bool {
    name == "read" || name == "write"
}

#[test]
fn removes_denied_items_and_keeps_everything_else() {
    let f =
        filter_list_response(TOOLS, ListKind::Tools, &Limits::default(), allow_read_write).unwrap();
    assert_eq!((f.kept, f.removed), (2, 1));
    let body = f.body.unwrap();
    assert_eq!(
        body,
        r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"read","inputSchema":{"type":"object","properties":{"n":{"type":"number","minimum":1e2}}}},{"name":"write"}],"nextCursor":"abc==","_meta":{"x":[1,2.50]}}}"#
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["nextCursor"], "abc==");
}

#[test]
fn nothing_removed_means_unchanged() {
    let f = filter_list_response(TOOLS, ListKind::Tools, &Limits::default(), |_| true).unwrap();
    assert_eq!(
        f,
        Filtered {
            body: None,
            kept: 3,
            removed: 0
        }
    );
    let f = filter_list_response(TOOLS, ListKind::Tools, &Limits::default(), |_| false).unwrap();
    let v: serde_json::Value = serde_json::from_str(&f.body.unwrap()).unwrap();
    assert_eq!(v["result"]["tools"], serde_json::json!([]));
    assert_eq!(v["result"]["_meta"]["x"][1], 2.5);
}

#[test]
fn every_list_kind_uses_its_key() {
    let cases = [
        (
            ListKind::Prompts,
            "prompts/list",
            r#"{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"ok"},{"name":"no"}]}}"#,
            "ok",
        ),
        (
            ListKind::Resources,
            "resources/list",
            r#"{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"ok","name":"no"},{"uri":"no","name":"ok"}]}}"#,
            "ok",
        ),
        (
            ListKind::ResourceTemplates,
            "resources/templates/list",
            r#"{"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[{"uriTemplate":"ok","name":"no"},{"uriTemplate":"no","name":"ok"}]}}"#,
            "ok",
        ),
    ];
    for (kind, method, body, kept_key) in cases {
        assert_eq!(ListKind::from_method(method), Some(kind));
        assert_eq!(kind.method(), method);
        let f = filter_list_response(body, kind, &Limits::default(), |k| k == "ok").unwrap();
        assert_eq!((f.kept, f.removed), (1, 1), "{method}");
        let v: serde_json::Value = serde_json::from_str(&f.body.unwrap()).unwrap();
        let items = v["result"][kind.items_field()].as_array().unwrap().clone();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0][kind.key_field()], kept_key);
    }
    assert_eq!(ListKind::from_method("tools/call"), None);
}

#[test]
fn items_without_a_string_key_are_removed() {
    let body = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"title":"no name"},{"name":7},"str",null,{"name":"a\u0062"}]}}"#;
    let f = filter_list_response(body, ListKind::Tools, &Limits::default(), |_| true).unwrap();
    assert_eq!((f.kept, f.removed), (2, 4));
    // The predicate sees decoded names.
    let seen = std::cell::RefCell::new(Vec::new());
    filter_list_response(body, ListKind::Tools, &Limits::default(), |n| {
        seen.borrow_mut().push(n.to_owned());
        true
    })
    .unwrap();
    assert_eq!(seen.into_inner(), ["a", "ab"]);
}

#[test]
fn malformed_list_results_fail_closed() {
    for (body, reason) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            "invalid_list_result",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"x"}}}"#,
            "invalid_list_result",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x","name":"y"}]}}"#,
            "duplicate_key",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}"#,
            "truncated",
        ),
        (
            r#"[{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}]"#,
            "batch",
        ),
    ] {
        let e =
            filter_list_response(body, ListKind::Tools, &Limits::default(), |_| true).unwrap_err();
        assert_eq!(e.reason(), reason, "{body}");
    }
    // Error responses pass unchanged.
    let err = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"m"}}"#;
    let f = filter_list_response(err, ListKind::Tools, &Limits::default(), |_| false).unwrap();
    assert_eq!(f.body, None);
}

#[test]
fn tracker_matches_by_id() {
    let request = br#"[{"jsonrpc":"2.0","id":"t","method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}},{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":3,"method":"prompts/list"}]"#;
    let body = jsonrpc::parse(request, &Limits::default()).unwrap();
    let mut tracker = ResponseTracker::new();
    tracker.record_body(&body);
    assert_eq!(tracker.len(), 3);

    // Response to "t" (id written with an escape): filtered as tools/list.
    let tools =
        r#"{"jsonrpc":"2.0","id":"\u0074","result":{"tools":[{"name":"read"},{"name":"delete"}]}}"#;
    let f = tracker
        .filter_body(tools, &Limits::default(), allow_read_write)
        .unwrap();
    assert_eq!(
        f.body.unwrap(),
        r#"{"jsonrpc":"2.0","id":"\u0074","result":{"tools":[{"name":"read"}]}}"#
    );
    // Response to the tools/call (id 2) is not a list even if it has a "tools" member.
    let call = r#"{"jsonrpc":"2.0","id":2,"result":{"content":[],"tools":[{"name":"delete"}]}}"#;
    assert_eq!(
        tracker
            .filter_body(call, &Limits::default(), allow_read_write)
            .unwrap()
            .body,
        None
    );
    // id 3 asked prompts/list: its prompts are filtered.
    let prompts = r#"{"jsonrpc":"2.0","id":3,"result":{"prompts":[{"name":"read"},{"name":"p"}]}}"#;
    let f = tracker
        .filter_body(prompts, &Limits::default(), allow_read_write)
        .unwrap();
    assert_eq!((f.kept, f.removed), (1, 1));
    // String "3" is not number 3: unknown id, recognised by shape instead.
    let unknown =
        r#"{"jsonrpc":"2.0","id":"3","result":{"tools":[{"name":"delete"}],"nextCursor":"c"}}"#;
    let f = tracker
        .filter_body(unknown, &Limits::default(), allow_read_write)
        .unwrap();
    assert_eq!(
        f.body.unwrap(),
        r#"{"jsonrpc":"2.0","id":"3","result":{"tools":[],"nextCursor":"c"}}"#
    );
    // Requests and notifications in a response stream are not touched.
    let req = r#"{"jsonrpc":"2.0","id":9,"method":"sampling/createMessage","params":{"tools":[]}}"#;
    assert_eq!(
        tracker
            .filter_body(req, &Limits::default(), |_| false)
            .unwrap()
            .body,
        None
    );
    // Empty data (an SSE priming event) passes; garbage does not.
    assert_eq!(
        tracker
            .filter_body(" \n", &Limits::default(), |_| false)
            .unwrap(),
        Filtered::default()
    );
    assert_eq!(
        tracker
            .filter_body("not json", &Limits::default(), |_| false)
            .unwrap_err()
            .reason(),
        "invalid_json"
    );
}

#[test]
fn tracker_rewrites_batch_responses_element_wise() {
    let mut tracker = ResponseTracker::new();
    tracker.record_id(IdKey::Number(1), Some(ListKind::Tools));
    tracker.record_id(IdKey::Number(2), None);
    let body = r#"[ {"jsonrpc":"2.0","id":2,"result":{"content":[]}} , {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"},{"name":"delete"}]}} ]"#;
    let f = tracker
        .filter_body(body, &Limits::default(), allow_read_write)
        .unwrap();
    assert_eq!(
        f.body.unwrap(),
        r#"[{"jsonrpc":"2.0","id":2,"result":{"content":[]}},{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"}]}}]"#
    );
}

#[test]
fn filtered_tools_list_over_sse_split_at_every_offset() {
    let mut tracker = ResponseTracker::new();
    tracker.record_id(IdKey::Number(5), Some(ListKind::Tools));
    let stream = format!(
        "id: ev-1\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progress\":1}}}}\n\nevent: message\nid: ev-2\ndata: {TOOLS}\r\n\r\n: bye\n\n"
    );
    let want = format!(
        "id: ev-1\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progress\":1}}}}\n\nevent: message\nid: ev-2\ndata: {}\n\n: bye\n\n",
        r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"read","inputSchema":{"type":"object","properties":{"n":{"type":"number","minimum":1e2}}}},{"name":"write"}],"nextCursor":"abc==","_meta":{"x":[1,2.50]}}}"#
    );
    let bytes = stream.as_bytes();
    for cut in 0..=bytes.len() {
        let mut rewriter = SseRewriter::default();
        let rewrite = |e: &Event| {
            tracker
                .filter_body(&e.data, &Limits::default(), allow_read_write)
                .map(|f| f.body)
        };
        let mut out = rewriter.push(&bytes[..cut], rewrite).unwrap();
        out.extend(rewriter.push(&bytes[cut..], rewrite).unwrap());
        out.extend(rewriter.finish(rewrite).unwrap());
        assert_eq!(String::from_utf8(out).unwrap(), want, "split at {cut}");
    }
}

#[test]
fn a_repeated_id_cannot_shield_a_list_response() {
    for order in [[Some(ListKind::Tools), None], [None, Some(ListKind::Tools)]] {
        let mut tracker = ResponseTracker::new();
        for kind in order {
            tracker.record_id(IdKey::Number(1), kind);
        }
        let tools =
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"read"},{"name":"delete"}]}}"#;
        let f = tracker
            .filter_body(tools, &Limits::default(), allow_read_write)
            .unwrap();
        assert_eq!(f.removed, 1);
        let call = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
        assert_eq!(
            tracker
                .filter_body(call, &Limits::default(), allow_read_write)
                .unwrap()
                .body,
            None
        );
    }
}
