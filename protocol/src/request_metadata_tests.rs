use super::*;
use crate::jsonrpc::{parse_for, Limits, Revision};

fn parsed(body: &str) -> Message<'_> {
    parse_for(body.as_bytes(), &Limits::default(), Revision::Stateless)
        .unwrap()
        .into_single()
        .unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> RequestHeaders {
    RequestHeaders::from_pairs(pairs.iter().copied())
}

const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"execute_sql","arguments":{"region":"us-west1","query":"SELECT 1","opts":{"limit":42,"dry":true},"greeting":"Hello, 世界"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

fn call_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("MCP-Protocol-Version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("Mcp-Name", "execute_sql"),
        ("Mcp-Param-Region", "us-west1"),
        ("mcp-param-limit", "42"),
        ("Mcp-Param-Dry", "true"),
        ("Mcp-Param-Greeting", "=?base64?SGVsbG8sIOS4lueVjA==?="),
    ]
}

fn sql_params() -> Vec<ParamHeader> {
    let tool = crate::json::parse(
        r#"{"name":"execute_sql","inputSchema":{"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},
            "query":{"type":"string"},
            "opts":{"type":"object","properties":{"limit":{"type":"integer","x-mcp-header":"Limit"},"dry":{"type":"boolean","x-mcp-header":"Dry"}}},
            "greeting":{"type":"string","x-mcp-header":"Greeting"},
            "absent":{"type":"string","x-mcp-header":"Absent"}}}}"#,
        64,
    )
    .unwrap();
    param_headers(&tool).unwrap()
}

fn check(body: &str, pairs: &[(&str, &str)]) -> Result<(), Error> {
    check_headers(&parsed(body), &headers(pairs), Some(&sql_params()))
}

fn detail(r: Result<(), Error>) -> String {
    match r {
        Err(Error::HeaderMismatch { detail }) => detail,
        other => panic!("expected a header mismatch, got {other:?}"),
    }
}

#[test]
fn versions_that_require_header_validation() {
    assert!(requires_header_validation(Some("2026-07-28")));
    assert!(requires_header_validation(Some(" 2027-01-01 ")));
    for v in [
        None,
        Some("2025-11-25"),
        Some("2025-06-18"),
        Some("2025-03-26"),
        Some("draft"),
        Some("2026-7-28"),
    ] {
        assert!(!requires_header_validation(v), "{v:?}");
    }
    assert_eq!(Revision::of(Some("2026-07-28")), Revision::Stateless);
    assert_eq!(Revision::of(Some("2025-11-25")), Revision::Legacy);
}

#[test]
fn the_version_comes_from_the_header_else_from_meta() {
    let m = parsed(CALL);
    assert_eq!(meta_protocol_version(&m), Some("2026-07-28"));
    assert_eq!(protocol_version(None, Some(&m)), Some("2026-07-28"));
    assert_eq!(
        protocol_version(Some("2025-11-25"), Some(&m)),
        Some("2025-11-25")
    );
    assert_eq!(protocol_version(None, None), None);
}

#[test]
fn x_mcp_header_annotations_through_properties_only() {
    let params = sql_params();
    let names: Vec<_> = params
        .iter()
        .map(|p| (p.name.as_str(), p.path.join(".")))
        .collect();
    assert_eq!(
        names,
        [
            ("Region", "region".to_owned()),
            ("Limit", "opts.limit".to_owned()),
            ("Dry", "opts.dry".to_owned()),
            ("Greeting", "greeting".to_owned()),
            ("Absent", "absent".to_owned()),
        ]
    );
    // Under `items` (or any other keyword) an annotation is not reachable: not collected.
    let tool = crate::json::parse(
        r#"{"name":"t","inputSchema":{"properties":{"xs":{"type":"array","items":{"x-mcp-header":"X"}}}}}"#,
        64,
    )
    .unwrap();
    assert_eq!(param_headers(&tool), Some(vec![]));
    // Invalid and repeated names make the tool invalid.
    for bad in [
        r#"{"inputSchema":{"properties":{"a":{"x-mcp-header":"has space"}}}}"#,
        r#"{"inputSchema":{"properties":{"a":{"x-mcp-header":""}}}}"#,
        r#"{"inputSchema":{"properties":{"a":{"x-mcp-header":1}}}}"#,
        r#"{"inputSchema":{"properties":{"a":{"x-mcp-header":"A"},"b":{"x-mcp-header":"a"}}}}"#,
    ] {
        let tool = crate::json::parse(bad, 64).unwrap();
        assert_eq!(param_headers(&tool), None, "{bad}");
    }
}

#[test]
fn matching_headers_pass() {
    check(CALL, &call_headers()).unwrap();
    // Integers compare numerically.
    let mut h = call_headers();
    h[4] = ("Mcp-Param-Limit", "42.0");
    check(CALL, &h).unwrap();
    // Unrecognised Mcp-Param headers are forwarded unchecked.
    let mut h = call_headers();
    h.push(("Mcp-Param-Other", "anything"));
    check(CALL, &h).unwrap();
}

#[test]
fn each_header_mismatch_is_refused() {
    let cases: [(usize, (&str, &str), &str); 6] = [
        (
            1,
            ("Mcp-Method", "tools/list"),
            "Mcp-Method header value 'tools/list' does not match body value 'tools/call'",
        ),
        (
            2,
            ("Mcp-Name", "drop_db"),
            "Mcp-Name header value 'drop_db' does not match body value 'execute_sql'",
        ),
        (
            3,
            ("Mcp-Param-Region", "eu-west1"),
            "Mcp-Param-Region header value 'eu-west1' does not match body value '\"us-west1\"'",
        ),
        (
            4,
            ("Mcp-Param-Limit", "43"),
            "Mcp-Param-Limit header value '43' does not match body value '42'",
        ),
        (
            5,
            ("Mcp-Param-Dry", "True"),
            "Mcp-Param-Dry header value 'True' does not match body value 'true'",
        ),
        (
            6,
            ("Mcp-Param-Greeting", "=?base64?SGVsbG8=?="),
            "Mcp-Param-Greeting header value 'Hello' does not match body value '\"Hello, 世界\"'",
        ),
    ];
    for (i, replacement, expected) in cases {
        let mut h = call_headers();
        h[i] = replacement;
        assert_eq!(detail(check(CALL, &h)), expected);
    }
    let mut h = call_headers();
    h[0] = ("MCP-Protocol-Version", "2027-01-01");
    assert_eq!(
        detail(check(CALL, &h)),
        "MCP-Protocol-Version header value '2027-01-01' does not match body value '2026-07-28'"
    );
}

#[test]
fn missing_headers_are_refused() {
    for (i, expected) in [
        (0, "the MCP-Protocol-Version header is missing"),
        (1, "the Mcp-Method header is missing"),
        (2, "the Mcp-Name header is missing"),
        (3, "the Mcp-Param-Region header is missing"),
    ] {
        let mut h = call_headers();
        h.remove(i);
        assert_eq!(detail(check(CALL, &h)), expected);
    }
    // A header without a body value (null or absent) is a mismatch too.
    let mut h = call_headers();
    h.push(("Mcp-Param-Absent", "x"));
    assert!(detail(check(CALL, &h)).contains("Mcp-Param-Absent"));
    let body = CALL.replace(r#""region":"us-west1""#, r#""region":null"#);
    assert!(detail(check(&body, &call_headers())).contains("Mcp-Param-Region"));
    let mut h = call_headers();
    h.remove(3);
    check(&body, &h).unwrap();
}

#[test]
fn base64_sentinel_values() {
    let body = r#"{"jsonrpc":"2.0","id":"a","method":"resources/read","params":{"uri":"file:///é t.txt"}}"#;
    let pairs = |name: &'static str| {
        vec![
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "resources/read"),
            ("Mcp-Name", name),
        ]
    };
    check(body, &pairs("=?base64?ZmlsZTovLy/DqSB0LnR4dA==?=")).unwrap();
    assert!(detail(check(body, &pairs("file:///e t.txt"))).contains("does not match"));
    // Broken Base64, non-UTF-8 and non-ASCII raw values are refused.
    for bad in [
        "=?base64?ZmlsZ?=",
        "=?base64?/w==?=",
        "=?base64?Zm=x?=",
        "fïle",
    ] {
        let d = detail(check(body, &pairs(bad)));
        assert!(d.starts_with("Mcp-Name header"), "{bad}: {d}");
    }
    // The sentinel markers are case-sensitive: an upper-case one is a plain value.
    let literal =
        r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"=?BASE64?eA==?="}}"#;
    check(
        literal,
        &[
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "prompts/get"),
            ("Mcp-Name", "=?BASE64?eA==?="),
        ],
    )
    .unwrap();
    assert_eq!(
        decode_value("Mcp-Param-Val", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=").unwrap(),
        "=?base64?literal?="
    );
    assert_eq!(decode_value("x", "=?base64??=").unwrap(), "");
}

#[test]
fn without_the_tool_mapping_param_headers_are_not_checked() {
    let mut h = call_headers();
    h[3] = ("Mcp-Param-Region", "eu-west1");
    check_headers(&parsed(CALL), &headers(&h), None).unwrap();
}

#[test]
fn notifications_and_other_methods() {
    let note = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{}}"#;
    check(note, &[("MCP-Protocol-Version", "2026-07-28")]).unwrap();
    assert!(detail(check(
        note,
        &[("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", "x")]
    ))
    .contains("Mcp-Method"));
    let discover = r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}"#;
    check(
        discover,
        &[
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "server/discover"),
        ],
    )
    .unwrap();
}

#[test]
fn the_error_is_header_mismatch() {
    let e = check(CALL, &[]).unwrap_err();
    assert_eq!(e.reason(), "header_mismatch");
    assert_eq!(e.jsonrpc_code(), -32020);
    assert_eq!(
        e.to_string(),
        "Header mismatch: the MCP-Protocol-Version header is missing"
    );
}

#[test]
fn removed_methods_are_not_shape_checked_under_2026() {
    let sub = br#"{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{}}"#;
    let m = parse_for(sub, &Limits::default(), Revision::Stateless)
        .unwrap()
        .into_single()
        .unwrap();
    assert_eq!(m.target(), None);
    let with_uri = br#"{"jsonrpc":"2.0","id":3,"method":"resources/unsubscribe","params":{"uri":"file:///a"}}"#;
    let m = parse_for(with_uri, &Limits::default(), Revision::Stateless)
        .unwrap()
        .into_single()
        .unwrap();
    assert_eq!(m.target(), Some("file:///a"));
    assert_eq!(
        crate::jsonrpc::parse(sub, &Limits::default()).unwrap_err(),
        Error::MissingResourceUri {
            method: "resources/subscribe"
        }
    );
}

#[test]
fn salvage_reads_the_id_of_a_refused_body() {
    use crate::jsonrpc::salvage;
    let body = br#"{"jsonrpc":"2.0","id":"r-9","method":"tools/call","params":{"arguments":{}}}"#;
    assert!(crate::jsonrpc::parse(body, &Limits::default()).is_err());
    let s = salvage(body, &Limits::default()).unwrap();
    assert_eq!(s.id_raw.as_deref(), Some(r#""r-9""#));
    assert_eq!(s.method.as_deref(), Some("tools/call"));
    assert_eq!(s.target, None);
    let s = salvage(
        br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"x","arguments":[]}}"#,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        (s.id_raw.as_deref(), s.target.as_deref()),
        (Some("4"), Some("x"))
    );
    // An invalid id is not echoed; unparsable JSON gives nothing.
    let s = salvage(br#"{"id":null,"method":"m"}"#, &Limits::default()).unwrap();
    assert_eq!(s.id_raw, None);
    let s = salvage(br#"{"id":1.5}"#, &Limits::default()).unwrap();
    assert_eq!(s.id_raw, None);
    assert_eq!(salvage(br#"{"id":1,"#, &Limits::default()), None);
    assert_eq!(salvage(br#"[{"id":1}]"#, &Limits::default()), None);
}

#[test]
fn annotations_are_read_from_a_tools_list_answer() {
    let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","inputSchema":{"properties":{"r":{"x-mcp-header":"R"}}}},{"name":"b"},{"name":"c","inputSchema":{"properties":{"x":{"x-mcp-header":"bad name"}}}}],"cacheScope":"public","ttlMs":0}}"#;
    let learned = tools_param_headers(answer);
    assert_eq!(
        learned,
        vec![
            (
                "a".to_owned(),
                Some(vec![ParamHeader {
                    name: "R".into(),
                    path: vec!["r".into()]
                }])
            ),
            ("b".to_owned(), Some(vec![])),
            ("c".to_owned(), None),
        ]
    );
    // Older answers (no cacheScope, no annotation) are not parsed at all.
    assert!(
        tools_param_headers(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}}"#)
            .is_empty()
    );
    assert!(tools_param_headers("not json cacheScope").is_empty());
}
