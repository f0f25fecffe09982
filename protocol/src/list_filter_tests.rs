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

/// [`filter_list_response`] as it was before the shallow parse: on the fully built tree.
fn filter_list_response_full_parse(
    body: &str,
    kind: ListKind,
    allow: impl Fn(&str) -> bool,
) -> Result<Filtered, Error> {
    let message = jsonrpc::parse_str(body, &Limits::default())?.into_single()?;
    let mut filtered = Filtered::default();
    filtered.body = filter_message(&message, kind, &allow, &mut filtered)?;
    Ok(filtered)
}

/// A tracker that knows ids 1 (tools/list), 2 (prompts/list), 3 (another method) and 4
/// (ambiguous); other ids are judged by shape.
fn mixed_tracker() -> ResponseTracker {
    let mut tracker = ResponseTracker::new();
    tracker.record_id(IdKey::Number(1), Some(ListKind::Tools));
    tracker.record_id(IdKey::Number(2), Some(ListKind::Prompts));
    tracker.record_id(IdKey::Number(3), None);
    tracker.record_id(IdKey::Number(4), Some(ListKind::Resources));
    tracker.record_id(IdKey::Number(4), None);
    tracker
}

/// Filters `body` with the shallow and the full parse under several predicates: the same result
/// (output bytes, counts, error) each time. Returns the result for [`allow_read_write`].
fn same_as_full_parse(tracker: &ResponseTracker, body: &str) -> Result<Filtered, Error> {
    let predicates: [fn(&str) -> bool; 4] =
        [allow_read_write, |_| true, |_| false, |n| n.len() % 2 == 0];
    for allow in predicates {
        assert_eq!(
            tracker.filter_body(body, &Limits::default(), allow),
            tracker.filter_body_full_parse(body, &Limits::default(), allow),
            "{body}"
        );
        for kind in ListKind::ALL {
            assert_eq!(
                filter_list_response(body, kind, &Limits::default(), allow),
                filter_list_response_full_parse(body, kind, allow),
                "{kind:?}: {body}"
            );
        }
    }
    tracker.filter_body(body, &Limits::default(), allow_read_write)
}

/// A `tools/list` result with `n` tools named like the gateway benchmark's.
fn many_tools(id: u32, n: usize) -> String {
    let tools: Vec<String> = (0..n)
        .map(|i| {
            let name = match i % 4 {
                0 | 1 => format!("admin_item_{i:02}"),
                2 => format!("search_item_{i:02}"),
                _ => format!("read_item_{i:02}"),
            };
            format!(
                r#"{{"name":"{name}","description":"Benchmark tool {i}: does one thing and reports back.","inputSchema":{{"type":"object","properties":{{"query":{{"type":"string","description":"What to look for"}},"limit":{{"type":"integer","minimum":1,"maximum":100}}}},"required":["query"]}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[{}]}}}}"#,
        tools.join(",")
    )
}

#[test]
fn shallow_parse_filters_like_the_full_parse() {
    let tracker = mixed_tracker();
    let deep_meta = r#"{ "x" : [ 1 , 2.50 , { "y" : [ [ ] , { } ] , "z" : "\u00e9\ud83d\ude00" } ] , "n" : -0.0e+0 }"#;
    let bodies = [
        TOOLS.to_owned(),
        many_tools(1, 100),
        many_tools(9, 100),
        // Whitespace everywhere; nextCursor and _meta (deep) kept byte-for-byte.
        format!(
            " {{ \"jsonrpc\" : \"2.0\" , \"id\" : 1 , \"result\" : {{ \"tools\" : [ {{ \"name\" : \"read\" , \"x\" : {{ \"a\" : [ 1 ] }} }} , {{ \"name\" : \"drop\" }} ] , \"nextCursor\" : \"c\\u0031\" , \"_meta\" : {deep_meta} }} }} \n"
        ),
        // Items that are not objects, or lack a string key, or have escaped or odd names.
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"title":"no name"},{"name":7},{"name":{"n":"read"}},{"name":["read"]},"read",null,[{"name":"read"}],{"name":"re\u0061d"},{"name":"wr\u0069te","inputSchema":{"$defs":{"a":{"b":[{"c":{}}]}}}},{"name":"\ud83d\ude00"}]}}"#.to_owned(),
        // Each list kind, by id and by shape.
        r#"{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"read","arguments":[{"name":"a","required":true}]},{"name":"p"}]}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":"r","result":{"resources":[{"uri":"read","name":"x","annotations":{"audience":["user"]}},{"uri":"u"}]}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":"t","result":{"resourceTemplates":[{"uriTemplate":"write","name":"read"},{"uriTemplate":"x/{id}"}]}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"read"},{"name":"x"}],"prompts":[]}}"#.to_owned(),
        // Not lists: another method's result, requests, notifications, errors.
        r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"x"}],"content":[{"type":"text","text":"t"}]}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"m","data":{"tools":[{"name":"x"}]}}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":9,"method":"sampling/createMessage","params":{"messages":[{"role":"user","content":{"type":"text","text":"hi"}}],"tools":[]}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"t","arguments":{"a":{"b":[1]}}}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1,"_meta":{"a":{"b":{}}}}}"#.to_owned(),
        // Malformed list results.
        r#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"x"}}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":"x"}}"#.to_owned(),
        // Refused wherever the fault is, also deep inside an item or _meta.
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x","inputSchema":{"properties":{"a":{},"a":{}}}}]}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x","inputSchema":{"properties":{"name":1,"n\u0061me":2}}}]}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x","inputSchema":{"d":"\udc00"}}]}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x","inputSchema":{"d":[1,01]}}]}}"#.to_owned(),
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"x\",\"inputSchema\":{\"d\":\"a\u{1}\"}}]}}".to_owned(),
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"_meta":{"a":[{"b":1,"b":2}]}}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x","name":"y"}]}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"x"}]}}x"#.to_owned(),
        "not json".to_owned(),
        " \n".to_owned(),
    ];
    let mut batch = String::from("[");
    for (i, body) in bodies
        .iter()
        .enumerate()
        .filter(|(_, b)| b.contains("\"result\""))
    {
        if i > 0 && batch.len() > 1 {
            batch.push_str(" ,\n ");
        }
        batch.push_str(body.trim());
        let _ = same_as_full_parse(&tracker, body);
    }
    batch.push(']');
    let r = same_as_full_parse(&tracker, &batch);
    assert!(r.is_err(), "one bad element refuses the batch");
    for body in &bodies {
        let _ = same_as_full_parse(&tracker, body);
    }
    // Only the valid list responses in a batch: rewritten element-wise, the others verbatim.
    let batch = format!(
        "[ {} , {} , {}, {} ]",
        bodies[1], bodies[3], bodies[10], bodies[12]
    );
    let f = same_as_full_parse(&tracker, &batch).unwrap();
    assert_eq!((f.kept, f.removed), (1, 101));
    let out = f.body.unwrap();
    // Members of a rewritten object are rejoined without whitespace; values are copied as written.
    assert!(out.contains(&format!("\"_meta\":{deep_meta}")), "{out}");
    assert!(out.contains(&bodies[10]) && out.contains(&bodies[12]));

    // The benchmark body: half the tools are admin tools.
    let f = tracker
        .filter_body(&many_tools(1, 100), &Limits::default(), |n| {
            !n.starts_with("admin_")
        })
        .unwrap();
    assert_eq!((f.kept, f.removed), (50, 50));
}

#[test]
fn shallow_parse_filters_like_the_full_parse_at_every_cut_and_depth_limit() {
    let tracker = mixed_tracker();
    let batch = format!("[{TOOLS},{}]", TOOLS.replace("\"id\":5", "\"id\":\"x\""));
    for body in [TOOLS, batch.as_str()] {
        for cut in 0..=body.len() {
            let _ = same_as_full_parse(&tracker, &body[..cut]);
        }
        for max_depth in 1..10 {
            let limits = Limits {
                max_depth,
                ..Limits::default()
            };
            assert_eq!(
                tracker.filter_body(body, &limits, allow_read_write),
                tracker.filter_body_full_parse(body, &limits, allow_read_write),
                "{max_depth}"
            );
        }
    }
}

#[test]
fn shallow_parse_filters_sse_events_like_the_full_parse() {
    let tracker = mixed_tracker();
    let stream = format!(
        "data: {}\n\nid: 2\ndata: {}\r\n\r\n: c\n\ndata:\ndata: {TOOLS}\n\ndata: [{TOOLS}, {}]\n\n",
        many_tools(1, 12),
        many_tools(7, 5),
        many_tools(2, 3).replace("tools", "prompts"),
    );
    let allow = |n: &str| n == "read" || n.starts_with("read_");
    let run = |full: bool| {
        let mut rewriter = SseRewriter::default();
        let rewrite = |e: &Event| {
            let r = if full {
                tracker.filter_body_full_parse(&e.data, &Limits::default(), allow)
            } else {
                tracker.filter_body(&e.data, &Limits::default(), allow)
            };
            r.map(|f| f.body)
        };
        let mut out = rewriter.push(stream.as_bytes(), rewrite).unwrap();
        out.extend(rewriter.finish(rewrite).unwrap());
        String::from_utf8(out).unwrap()
    };
    let shallow = run(false);
    assert_eq!(shallow, run(true));
    assert!(shallow.contains("read_item_03") && !shallow.contains("admin_item_00"));
}

const TOOLS_2026: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"resultType":"complete","tools":[{"name":"read"},{"name":"delete"}],"ttlMs":60000,"cacheScope":"public"}}"#;

#[test]
fn a_filtered_list_becomes_cache_scope_private() {
    // Items removed: both the items and the scope change, everything else is copied.
    let f = filter_list_response(
        TOOLS_2026,
        ListKind::Tools,
        &Limits::default(),
        allow_read_write,
    )
    .unwrap();
    assert_eq!(
        f.body.unwrap(),
        r#"{"jsonrpc":"2.0","id":7,"result":{"resultType":"complete","tools":[{"name":"read"}],"ttlMs":60000,"cacheScope":"private"}}"#
    );
    // Nothing removed: still decided for this user, so still private.
    let f =
        filter_list_response(TOOLS_2026, ListKind::Tools, &Limits::default(), |_| true).unwrap();
    assert_eq!(f.removed, 0);
    assert_eq!(
        f.body.unwrap(),
        r#"{"jsonrpc":"2.0","id":7,"result":{"resultType":"complete","tools":[{"name":"read"},{"name":"delete"}],"ttlMs":60000,"cacheScope":"private"}}"#
    );
}

#[test]
fn a_private_or_absent_cache_scope_is_left_alone() {
    let private = TOOLS_2026.replace("\"public\"", "\"private\"");
    let f = filter_list_response(&private, ListKind::Tools, &Limits::default(), |_| true).unwrap();
    assert_eq!(f.body, None);
    // Older revisions have no cacheScope: none is added.
    let f =
        filter_list_response(TOOLS, ListKind::Tools, &Limits::default(), allow_read_write).unwrap();
    assert!(!f.body.unwrap().contains("cacheScope"));
}

#[test]
fn a_tracked_list_response_becomes_cache_scope_private() {
    // The path every JSON body and SSE event of a list answer takes.
    let mut tracker = ResponseTracker::new();
    tracker.record_id(IdKey::Number(7), Some(ListKind::Tools));
    let f = tracker
        .filter_body(TOOLS_2026, &Limits::default(), allow_read_write)
        .unwrap();
    let out = f.body.unwrap();
    assert!(out.contains(r#""cacheScope":"private""#), "{out}");
    assert!(!out.contains(r#""name":"delete""#), "{out}");
}

#[test]
fn a_discover_answer_that_carries_tools_is_filtered_like_tools_list() {
    let mut tracker = ResponseTracker::new();
    let request = jsonrpc::parse(
        br#"{"jsonrpc":"2.0","id":9,"method":"server/discover","params":{}}"#,
        &Limits::default(),
    )
    .unwrap();
    tracker.record_body(&request);
    let with_tools = r#"{"jsonrpc":"2.0","id":9,"result":{"supportedVersions":["2026-07-28"],"capabilities":{},"tools":[{"name":"read"},{"name":"delete"}],"ttlMs":0,"cacheScope":"public"}}"#;
    let f = tracker
        .filter_body(with_tools, &Limits::default(), allow_read_write)
        .unwrap();
    assert_eq!(
        f.body.unwrap(),
        r#"{"jsonrpc":"2.0","id":9,"result":{"supportedVersions":["2026-07-28"],"capabilities":{},"tools":[{"name":"read"}],"ttlMs":0,"cacheScope":"private"}}"#
    );
    // A plain discover answer (the spec's shape) passes untouched, its scope the server's.
    let plain = r#"{"jsonrpc":"2.0","id":9,"result":{"supportedVersions":["2026-07-28"],"capabilities":{},"ttlMs":0,"cacheScope":"public"}}"#;
    let f = tracker
        .filter_body(plain, &Limits::default(), allow_read_write)
        .unwrap();
    assert_eq!(f.body, None);
}
