use super::*;
use crate::json::ValueKind;

/// Parses `s` and checks that [`parse_str_shallow`] agrees, so every body in these tests is also a
/// case for the shallow parse.
fn p(s: &str) -> Result<Body<'_>, Error> {
    let full = parse(s.as_bytes(), &Limits::default());
    assert_shallow_agrees(s, &Limits::default(), &full);
    full
}

/// [`parse_str_shallow`] at any level count gives `full`'s error, or messages classified alike
/// (the whole tree when every level is built).
fn assert_shallow_agrees(s: &str, limits: &Limits, full: &Result<Body<'_>, Error>) {
    for levels in [0, 1, 2, 3, 4, 5, usize::MAX] {
        let shallow = parse_str_shallow(s, limits, levels);
        match (full, &shallow) {
            (Ok(f), Ok(b)) if levels == usize::MAX => assert_eq!(f, b),
            (Ok(f), Ok(b)) => {
                assert_eq!(f.is_batch(), b.is_batch());
                assert_eq!(f.messages().len(), b.messages().len());
                for (x, y) in f.messages().iter().zip(b.messages()) {
                    assert_eq!(
                        (x.kind(), x.id(), x.method(), x.target(), x.target_kind()),
                        (y.kind(), y.id(), y.method(), y.target(), y.target_kind())
                    );
                    assert_eq!(x.raw(), y.raw());
                    let raw = |v: Option<&crate::json::Value<'_>>| v.map(|v| v.raw().as_ptr());
                    assert_eq!(raw(x.params()), raw(y.params()));
                    assert_eq!(raw(x.arguments()), raw(y.arguments()));
                    assert_eq!(raw(x.result()), raw(y.result()));
                    assert_eq!(raw(x.error()), raw(y.error()));
                }
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "{s:?} at {levels} levels"),
            _ => panic!("{s:?} at {levels} levels: {full:?} vs {shallow:?}"),
        }
    }
}

fn single(s: &str) -> Message<'_> {
    match p(s) {
        Ok(Body::Single(m)) => m,
        other => panic!("expected one message for {s}: {other:?}"),
    }
}

fn reason(s: &str) -> &'static str {
    match p(s) {
        Ok(b) => panic!("expected an error for {s}, got {b:?}"),
        Err(e) => e.reason(),
    }
}

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"send_email","arguments":{"to":"a@b.c","n":[1,2,{"x":null}]}}}"#;

#[test]
fn request_fields() {
    let m = single(CALL);
    assert_eq!(m.kind(), Kind::Request);
    assert_eq!(m.method(), Some("tools/call"));
    assert_eq!(m.id().unwrap().raw(), "7");
    assert_eq!(m.id().unwrap().to_key(), IdKey::Number(7));
    assert_eq!(m.target(), Some("send_email"));
    assert_eq!(m.target_kind(), Some(TargetKind::Tool));
    let args = m.arguments().unwrap();
    assert_eq!(args.get("to").unwrap().as_str(), Some("a@b.c"));
    assert_eq!(
        args.raw(),
        r#"{"to":"a@b.c","n":[1,2,{"x":null}]}"#,
        "raw text kept"
    );
    assert_eq!(
        args.to_serde_json().unwrap(),
        serde_json::json!({"to":"a@b.c","n":[1,2,{"x":null}]})
    );
    assert!(m.params().is_some());
    assert!(m.result().is_none() && m.error().is_none());
    assert_eq!(m.raw(), CALL);
}

#[test]
fn notification_and_responses() {
    let n = single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    assert_eq!(n.kind(), Kind::Notification);
    assert!(n.id().is_none());
    assert!(n.target().is_none());

    let r = single(r#"{"jsonrpc":"2.0","id":"a","result":{"tools":[]}}"#);
    assert_eq!(r.kind(), Kind::Response);
    assert_eq!(r.id().unwrap().value(), IdRef::String("a"));
    assert!(r.result().is_some());
    assert!(r.method().is_none());

    let e = single(r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"no"}}"#);
    assert_eq!(e.kind(), Kind::Response);
    assert!(e.error().is_some());
    // An error response may carry a null or no id (the request's id could not be read).
    let e = single(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#);
    assert!(e.id().is_none());
    let e = single(r#"{"jsonrpc":"2.0","error":{"code":-32700,"message":"x"}}"#);
    assert!(e.id().is_none());
}

#[test]
fn targets_per_method() {
    let m = single(
        r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","arguments":{"a":"b"}}}"#,
    );
    assert_eq!(
        (m.target(), m.target_kind()),
        (Some("p"), Some(TargetKind::Prompt))
    );
    for method in [
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
    ] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"uri":"file:///x"}}}}"#
        );
        let m = single(&body);
        assert_eq!(m.target(), Some("file:///x"));
        assert_eq!(m.target_kind(), Some(TargetKind::Resource));
        let missing = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{}}}}"#);
        assert_eq!(reason(&missing), "missing_resource_uri");
    }
    let m = single(
        r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"a","value":"v"}}}"#,
    );
    assert_eq!(
        (m.target(), m.target_kind()),
        (Some("p"), Some(TargetKind::Prompt))
    );
    let m = single(
        r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"u://x"}}}"#,
    );
    assert_eq!(
        (m.target(), m.target_kind()),
        (Some("u://x"), Some(TargetKind::Resource))
    );
    assert_eq!(
        reason(
            r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/other","name":"p"}}}"#
        ),
        "missing_completion_ref"
    );
    assert_eq!(
        reason(r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{}}"#),
        "missing_completion_ref"
    );
    let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"c"}}"#);
    assert!(m.target().is_none());
}

#[test]
fn tool_name_and_arguments_errors() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":null}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["x"]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"name":"x"}}}"#,
        // a notification is checked the same way
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":{}}}"#,
    ] {
        assert_eq!(reason(body), "missing_tool_name", "{body}");
    }
    assert_eq!(
        reason(r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":1}}"#),
        "missing_prompt_name"
    );
    for args in ["[]", "\"x\"", "1", "null", "true"] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{args}}}}}"#
        );
        assert_eq!(reason(&body), "invalid_arguments", "{body}");
    }
    for params in ["[]", "\"x\"", "1", "null"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{params}}}"#);
        assert_eq!(reason(&body), "invalid_params", "{body}");
    }
    // A notification carrying tools/call is still checked and still exposes its target.
    let n = single(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"t"}}"#);
    assert_eq!((n.kind(), n.target()), (Kind::Notification, Some("t")));
}

#[test]
fn ids_of_every_json_type() {
    let id = |raw: &str| format!(r#"{{"jsonrpc":"2.0","id":{raw},"method":"ping"}}"#);
    for (raw, key) in [
        (r#""abc""#, IdKey::String("abc".into())),
        (r#""""#, IdKey::String(String::new())),
        (r#""\u0061\n""#, IdKey::String("a\n".into())),
        ("0", IdKey::Number(0)),
        ("-0", IdKey::Number(0)),
        ("42", IdKey::Number(42)),
        ("-42", IdKey::Number(-42)),
        ("9007199254740991", IdKey::Number(9_007_199_254_740_991)),
        ("-9007199254740991", IdKey::Number(-9_007_199_254_740_991)),
    ] {
        let body = id(raw);
        let m = single(&body);
        let got = m.id().unwrap();
        assert_eq!(got.raw(), raw, "raw id echoed exactly");
        assert_eq!(got.to_key(), key);
    }
    for raw in [
        "null",
        "true",
        "false",
        "{}",
        r#"{"a":1}"#,
        "[]",
        "[1]",
        "1.5",
        "1.0",
        "1e3",
        "1E3",
        "-2.5e-3",
        "9007199254740992",
        "-9007199254740992",
        "123456789012345678901234567890",
    ] {
        assert_eq!(reason(&id(raw)), "invalid_id", "id {raw}");
    }
    // Responses: same rules, but an error response may have a null id.
    assert_eq!(
        reason(r#"{"jsonrpc":"2.0","id":null,"result":{}}"#),
        "invalid_id"
    );
    assert_eq!(reason(r#"{"jsonrpc":"2.0","result":{}}"#), "invalid_id");
    assert_eq!(
        reason(r#"{"jsonrpc":"2.0","id":1.5,"error":{"code":1,"message":"m"}}"#),
        "invalid_id"
    );
}

#[test]
fn message_shape_errors() {
    assert_eq!(reason(r#"{"id":1,"method":"ping"}"#), "invalid_version");
    assert_eq!(
        reason(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#),
        "invalid_version"
    );
    assert_eq!(
        reason(r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#),
        "invalid_version"
    );
    assert_eq!(
        reason(r#"{"jsonrpc":"2.0","id":1,"method":7}"#),
        "invalid_method"
    );
    assert_eq!(
        reason(r#"{"jsonrpc":"2.0","id":1,"method":null}"#),
        "invalid_method"
    );
    assert_eq!(reason(r#"{"jsonrpc":"2.0","id":1}"#), "invalid_message");
    assert_eq!(reason(r#"{"jsonrpc":"2.0"}"#), "invalid_message");
    assert_eq!(
        reason(r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}"#),
        "invalid_message"
    );
    assert_eq!(
        reason(r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#),
        "invalid_message"
    );
    assert_eq!(
        reason(r#"{"jsonrpc":"2.0","id":1,"result":[]}"#),
        "invalid_message"
    );
    assert_eq!(
        reason(r#"{"jsonrpc":"2.0","id":1,"error":"x"}"#),
        "invalid_message"
    );
    for top in ["1", "\"s\"", "null", "true"] {
        assert_eq!(reason(top), "not_an_object", "{top}");
    }
    assert_eq!(
        reason(r#"[{"jsonrpc":"2.0","method":"a"},2]"#),
        "not_an_object"
    );
    assert_eq!(reason(""), "empty");
    assert_eq!(reason(" \r\n\t"), "empty");
}

#[test]
fn unicode_escapes_are_decoded_before_deciding() {
    let m = single(
        r#"{"jsonrpc":"2.0","id":1,"\u006dethod":"\u0074ools/call","params":{"n\u0061me":"send\u005femail"}}"#,
    );
    assert_eq!(m.method(), Some("tools/call"));
    assert_eq!(m.target(), Some("send_email"));
    // Escaped non-BMP characters (surrogate pairs) and escaped slashes.
    let m = single(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"\ud83d\ude00x"}}"#,
    );
    assert_eq!(m.method(), Some("tools/call"));
    assert_eq!(m.target(), Some("\u{1F600}x"));
}

#[test]
fn look_alike_names_are_not_normalised() {
    for name in [
        "send_emaіl",         // Cyrillic і
        "Send_Email",         // case
        "send_email ",        // trailing space
        "send\u{200b}_email", // zero-width space
        "ｓｅｎｄ_email",     // full width
        "e\u{301}",           // combining accent, not NFC-composed
    ] {
        let mut escaped = String::new();
        crate::json::write_string(&mut escaped, name);
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":{escaped}}}}}"#
        );
        assert_eq!(single(&body).target(), Some(name));
        // The same name written with \u escapes decodes to the same string.
        let mut u = String::from("\"");
        for unit in name.encode_utf16() {
            u.push_str(&format!("\\u{unit:04x}"));
        }
        u.push('"');
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":{u}}}}}"#);
        assert_eq!(single(&body).target(), Some(name));
    }
    // A method in another case is another method (no target checks), not tools/call.
    let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{}}"#);
    assert_eq!((m.method(), m.target()), (Some("Tools/Call"), None));
}

#[test]
fn duplicate_keys_at_any_depth() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","\u006dethod":"x"}"#,
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ok","name":"denied"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ok","n\u0061me":"denied"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"x":1,"x":2}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":[{"deep":{"k":1,"k":1}}]}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"},"params":{"name":"u"}}"#,
        r#"[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","method":"b","method":"c"}]"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[{"name":"x"}]}}"#,
    ] {
        assert_eq!(reason(body), "duplicate_key", "{body}");
    }
    // Large objects (sorted check) too, wherever the duplicate is.
    for dup_at in [0, 15, 16, 17, 99] {
        let mut obj = String::from("{");
        for i in 0..100 {
            obj.push_str(&format!("\"k{i}\":{i},"));
        }
        obj.push_str(&format!("\"k{dup_at}\":0}}"));
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{obj}}}}}"#
        );
        match p(&body) {
            Err(Error::DuplicateKey { key, .. }) => assert_eq!(key, format!("k{dup_at}")),
            other => panic!("{other:?}"),
        }
    }
    // The same key in sibling objects is fine.
    single(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":{"x":1},"b":{"x":1}}}}"#,
    );
}

#[test]
fn large_bodies_parse() {
    // About 1 MiB: a wide object (sorted duplicate check), then one duplicate at the end.
    let mut obj = String::from("{");
    let mut i = 0;
    while obj.len() < 900_000 {
        obj.push_str(&format!("\"key{i}\":[{i},\"v\"],"));
        i += 1;
    }
    obj.push_str("\"last\":0}");
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{obj}}}}}"#
    );
    assert!(body.len() < DEFAULT_MAX_BYTES);
    let m = single(&body);
    assert_eq!(m.arguments().unwrap().as_object().unwrap().len(), i + 1);
    let dup = body.replacen("\"last\"", "\"key7\"", 1);
    assert_eq!(reason(&dup), "duplicate_key");
}

#[test]
fn duplicate_key_message_is_short() {
    let long = "k".repeat(10_000);
    let body = format!(r#"{{"{long}":1,"{long}":2}}"#);
    let e = p(&body).unwrap_err();
    assert_eq!(e.reason(), "duplicate_key");
    assert!(e.to_string().len() < 200, "{e}");
}

#[test]
fn batches() {
    let b = p(r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":"r","result":{}}]"#).unwrap();
    assert!(b.is_batch());
    let kinds: Vec<Kind> = b.messages().iter().map(Message::kind).collect();
    assert_eq!(kinds, [Kind::Request, Kind::Notification, Kind::Response]);
    assert_eq!(b.messages()[0].target(), Some("a"));
    assert_eq!(b.clone().into_single().unwrap_err().reason(), "batch");
    assert_eq!(reason("[]"), "empty_batch");
    assert_eq!(reason(" [ ] "), "empty_batch");
    // One bad element refuses the whole batch.
    assert_eq!(
        reason(
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call"}]"#
        ),
        "missing_tool_name"
    );
    assert_eq!(
        reason(r#"[[{"jsonrpc":"2.0","method":"a"}]]"#),
        "not_an_object"
    );
    // Two requests with one id (also when written differently) are refused; responses and
    // notifications do not count.
    assert_eq!(
        reason(
            r#"[{"jsonrpc":"2.0","id":"a","method":"tools/list"},{"jsonrpc":"2.0","id":"\u0061","method":"ping"}]"#
        ),
        "invalid_id"
    );
    assert_eq!(
        reason(
            r#"[{"jsonrpc":"2.0","id":0,"method":"tools/list"},{"jsonrpc":"2.0","id":-0,"method":"ping"}]"#
        ),
        "invalid_id"
    );
    assert!(p(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":"1","method":"ping"},{"jsonrpc":"2.0","id":1,"result":{}}]"#).is_ok());
    let single_body = p(CALL).unwrap();
    assert!(!single_body.is_batch());
    assert_eq!(single_body.messages().len(), 1);
    assert!(single_body.into_single().is_ok());
}

#[test]
fn batch_allowed_per_protocol_version() {
    assert!(batches_allowed(Some("2025-03-26")));
    assert!(batches_allowed(None));
    assert!(!batches_allowed(Some("2025-06-18")));
    assert!(!batches_allowed(Some("2025-11-25")));
    assert!(!batches_allowed(Some("2024-11-05")));
    assert!(!batches_allowed(Some("garbage")));
}

fn nested(depth: usize) -> String {
    // A request whose arguments nest so that the whole message has `depth` levels.
    let inner = depth - 3; // message, params, arguments
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{{"a":{}{}}}}}}}"#,
        "[".repeat(inner),
        "]".repeat(inner)
    )
}

#[test]
fn depth_limit_at_the_boundary() {
    let limits = Limits {
        max_depth: 10,
        ..Limits::default()
    };
    assert!(parse(nested(10).as_bytes(), &limits).is_ok());
    assert!(matches!(
        parse(nested(11).as_bytes(), &limits),
        Err(Error::TooDeep { limit: 10, .. })
    ));
    assert!(p(&nested(DEFAULT_MAX_DEPTH)).is_ok());
    assert_eq!(reason(&nested(DEFAULT_MAX_DEPTH + 1)), "too_deep");
    // Far deeper than any stack: refused, no overflow. Also unterminated.
    let deep = "[".repeat(1_000_000);
    assert_eq!(reason(&deep), "too_deep");
    let deep = "{\"a\":".repeat(200_000);
    assert_eq!(reason(&deep), "too_deep");
    // A huge configured limit is clamped, so the stack stays bounded.
    let huge = Limits {
        max_depth: usize::MAX,
        max_bytes: usize::MAX,
    };
    assert!(matches!(
        parse("[".repeat(100_000).as_bytes(), &huge),
        Err(Error::TooDeep {
            limit: crate::json::MAX_DEPTH_CAP,
            ..
        })
    ));
}

#[test]
fn truncated_at_every_byte_offset() {
    let bodies = [
        CALL.to_string(),
        r#"{"jsonrpc":"2.0","id":"x\u00e9\ud83d\ude00","method":"tools/call","params":{"name":"é😀","arguments":{"t":true,"f":false,"n":null,"x":-1.5e+3,"s":"a\"b\\c\/\b\f\n\r\t"}}}"#.to_string(),
        format!("[{CALL},{}]", CALL.replace("\"id\":7", "\"id\":8")),
        " \n{\"jsonrpc\" : \"2.0\" , \"method\" : \"x\" } ".to_string(),
    ];
    for body in &bodies {
        assert!(p(body).is_ok(), "{body}");
        let bytes = body.as_bytes();
        let trimmed_end = body.trim_end().len();
        let start = body.len() - body.trim_start().len();
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            let r = parse(prefix, &Limits::default());
            if cut >= trimmed_end {
                assert!(r.is_ok(), "cut at {cut}");
            } else if cut <= start {
                assert_eq!(r.unwrap_err().reason(), "empty", "cut at {cut}");
            } else {
                assert_eq!(
                    r.unwrap_err().reason(),
                    "truncated",
                    "cut at {cut}: {:?}",
                    String::from_utf8_lossy(prefix)
                );
            }
        }
    }
}

#[test]
fn trailing_data() {
    for body in [
        format!("{CALL}x"),
        format!("{CALL}{CALL}"),
        format!("{CALL} {{}}"),
        format!("{CALL}\n\0"),
        format!("[{CALL}]]"),
    ] {
        assert_eq!(reason(&body), "trailing_data", "{body}");
    }
    assert!(p(&format!("\n\t {CALL} \r\n")).is_ok());
}

#[test]
fn invalid_utf8() {
    let mut bytes = CALL.as_bytes().to_vec();
    let at = CALL.find("send_email").unwrap();
    bytes[at] = 0xff;
    assert_eq!(
        parse(&bytes, &Limits::default()).unwrap_err(),
        Error::InvalidUtf8 { offset: at }
    );
    // An overlong encoding and a UTF-8-encoded surrogate are invalid too.
    for bad in [&[0xc0u8, 0xaf][..], &[0xed, 0xa0, 0x80]] {
        let mut body = br#"{"jsonrpc":"2.0","method":""#.to_vec();
        body.extend_from_slice(bad);
        body.extend_from_slice(br#""}"#);
        assert_eq!(
            parse(&body, &Limits::default()).unwrap_err().reason(),
            "invalid_utf8"
        );
    }
}

#[test]
fn invalid_json() {
    for body in [
        r#"{"jsonrpc":"2.0","method":"a",}"#,
        r#"{"jsonrpc":"2.0","method":'a'}"#,
        r#"{jsonrpc:"2.0"}"#,
        r#"{"jsonrpc":"2.0","method":"a"/*c*/}"#,
        r#"{"jsonrpc":"2.0","id":NaN,"method":"a"}"#,
        r#"{"jsonrpc":"2.0","id":01,"method":"a"}"#,
        r#"{"jsonrpc":"2.0","id":+1,"method":"a"}"#,
        r#"{"jsonrpc":"2.0","id":1.,"method":"a"}"#,
        r#"{"jsonrpc":"2.0","id":.5,"method":"a"}"#,
        r#"{"jsonrpc":"2.0","id":1e,"method":"a"}"#,
        r#"{"jsonrpc":"2.0","id":-,"method":"a"}"#,
        r#"{"jsonrpc":"2.0","method":"a\x"}"#,
        r#"{"jsonrpc":"2.0","method":"\u12G4"}"#,
        r#"{"jsonrpc":"2.0","method":"\ud800"}"#,
        r#"{"jsonrpc":"2.0","method":"\ud800\u0041"}"#,
        r#"{"jsonrpc":"2.0","method":"\udc00"}"#,
        r#"{"jsonrpc":"2.0","method":"\ud800x"}"#,
        "{\"jsonrpc\":\"2.0\",\"method\":\"a\tb\"}",
        "{\"jsonrpc\":\"2.0\",\"method\":\"a\nb\"}",
        "\u{feff}{\"jsonrpc\":\"2.0\",\"method\":\"a\"}",
        r#"{"jsonrpc":"2.0","method":"a","x":tru}"#,
        r#"{"jsonrpc":"2.0","method":"a","x":nul }"#,
        r#"{"jsonrpc":"2.0" "method":"a"}"#,
        r#"{"jsonrpc":"2.0","method"="a"}"#,
        r#"{"jsonrpc":"2.0","method":"a","x":[1 2]}"#,
        r#"{"jsonrpc":"2.0","method":"a","x":[1,]}"#,
        "{\"jsonrpc\":\"2.0\",\u{a0}\"method\":\"a\"}",
    ] {
        assert_eq!(reason(body), "invalid_json", "{body}");
    }
}

#[test]
fn numbers_and_strings_kept_exactly() {
    let m = single(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"big":123456789012345678901234567890,"f":1.000e-400,"z":-0.0,"s":"\u00e9"}}}"#,
    );
    let args = m.arguments().unwrap();
    assert_eq!(
        args.get("big").unwrap().kind(),
        &ValueKind::Number("123456789012345678901234567890")
    );
    assert_eq!(args.get("f").unwrap().raw(), "1.000e-400");
    assert_eq!(args.get("z").unwrap().raw(), "-0.0");
    assert_eq!(args.get("s").unwrap().as_str(), Some("é"));
    assert_eq!(args.get("s").unwrap().raw(), r#""\u00e9""#);
}

#[test]
fn size_limit() {
    let limits = Limits {
        max_bytes: CALL.len(),
        ..Limits::default()
    };
    assert!(parse(CALL.as_bytes(), &limits).is_ok());
    let limits = Limits {
        max_bytes: CALL.len() - 1,
        ..Limits::default()
    };
    assert_eq!(
        parse(CALL.as_bytes(), &limits).unwrap_err(),
        Error::TooLarge {
            limit: CALL.len() - 1
        }
    );
    assert_eq!(parse_str(CALL, &limits).unwrap_err().reason(), "too_large");
}

#[test]
fn error_response_echoes_id() {
    let m =
        single(r#"{"jsonrpc":"2.0","id":"a\u0062","method":"tools/call","params":{"name":"x"}}"#);
    let reply = error_response(m.id().map(|i| i.raw()), -32001, "tool \"x\" denied\n");
    assert_eq!(
        reply,
        r#"{"jsonrpc":"2.0","id":"a\u0062","error":{"code":-32001,"message":"tool \"x\" denied\n"}}"#
    );
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["id"], "ab");
    assert_eq!(
        error_response(None, -32700, "bad"),
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#
    );
    let e = p("[]").unwrap_err();
    assert_eq!(e.jsonrpc_code(), -32600);
    assert_eq!(p("{").unwrap_err().jsonrpc_code(), -32700);
    assert_eq!(
        p(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#)
            .unwrap_err()
            .jsonrpc_code(),
        -32602
    );
}

#[test]
fn every_reason_is_distinct_snake_case() {
    let errors = [
        Error::TooLarge { limit: 1 },
        Error::Empty,
        Error::Batch,
        Error::EmptyBatch,
        Error::DuplicateKey {
            key: "k".into(),
            offset: 0,
        },
        Error::InvalidUtf8 { offset: 0 },
        Error::TooDeep {
            limit: 1,
            offset: 0,
        },
        Error::Truncated { offset: 0 },
        Error::TrailingData { offset: 0 },
        Error::NotAnObject { what: "body" },
        Error::InvalidJson {
            offset: 0,
            what: "x",
        },
        Error::InvalidVersion,
        Error::InvalidMethod,
        Error::InvalidId { what: "x" },
        Error::InvalidMessage { what: "x" },
        Error::InvalidParams,
        Error::MissingToolName,
        Error::MissingPromptName,
        Error::MissingResourceUri {
            method: "resources/read",
        },
        Error::MissingCompletionRef,
        Error::InvalidArguments,
        Error::ContentType { found: "x".into() },
        Error::ContentEncoding { found: "x".into() },
        Error::EventTooLarge { limit: 1 },
        Error::InvalidListResult {
            method: "tools/list",
            what: "x",
        },
    ];
    let mut reasons: Vec<&str> = errors.iter().map(Error::reason).collect();
    for r in &reasons {
        assert!(
            r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{r}"
        );
    }
    for e in &errors {
        assert!(!e.to_string().is_empty());
    }
    reasons.sort_unstable();
    reasons.dedup();
    assert_eq!(reasons.len(), errors.len());
}

#[test]
fn shallow_parse_classifies_alike() {
    // The helper `p` checks agreement for every body in this file; these add what the other
    // tests parse with other limits, and bodies whose deciding parts are below the built levels.
    let limits = Limits {
        max_depth: 10,
        ..Limits::default()
    };
    for depth in 8..12 {
        let body = nested(depth);
        let full = parse_str(&body, &limits);
        assert_shallow_agrees(&body, &limits, &full);
        let batch = format!("[{body}]");
        assert_shallow_agrees(&batch, &limits, &parse_str(&batch, &limits));
    }
    let small = Limits {
        max_bytes: 10,
        ..Limits::default()
    };
    assert_shallow_agrees(CALL, &small, &parse_str(CALL, &small));
    for body in [
        format!(" \n\t[{CALL}]"),
        format!("[ {CALL} , {{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{{\"a\":[[[{{}}]]]}}}} ]"),
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":[]}}]"#.to_owned(),
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":{"b":[1,{"c":2,"c":3}]}}}}]"#.to_owned(),
        r#"[{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"}}}]"#.to_owned(),
        r#"[{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":["ref/prompt"]}}]"#.to_owned(),
        r#"[{"jsonrpc":"2.0","id":[1],"result":{}}]"#.to_owned(),
        r#"[{"jsonrpc":"2.0","id":{"a":1},"method":"x"}]"#.to_owned(),
        r#"[{"jsonrpc":"2.0","id":1,"error":{"code":1,"data":{"d":[{"x":"\ud800"}]}}}]"#.to_owned(),
        r#"[{"jsonrpc":"2.0","id":null,"error":{"code":1,"data":{"d":[{"x":1e999}]}}}]"#.to_owned(),
    ] {
        let _ = p(&body);
    }
}
