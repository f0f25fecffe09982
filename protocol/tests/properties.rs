//! Property tests: no input or chunking makes the parsers panic, results do not depend on how a
//! stream is chunked, and the strict JSON parser agrees with `serde_json` wherever both accept.
//! Case counts are bounded so the whole file runs in seconds.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::string_slice
)]

use mcpgate_protocol::body::BodyAccumulator;
use mcpgate_protocol::json;
use mcpgate_protocol::jsonrpc::{self, Limits};
use mcpgate_protocol::list_filter::{ListKind, ResponseTracker};
use mcpgate_protocol::sse::{SseParser, SseRewriter};
use mcpgate_protocol::Error;
use proptest::prelude::*;

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"send_email","arguments":{"to":"a@b.c","n":[1,-2.5e3,{"x":null,"y":true}],"s":"\u00e9\"\\"}}}"#;

/// 256 cases from a fixed seed (deterministic in CI). To explore locally, set
/// `MCPGATE_PROPTEST_SEED=<u64>` and optionally `MCPGATE_PROPTEST_CASES=<n>`.
fn config() -> ProptestConfig {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    ProptestConfig {
        cases: env("MCPGATE_PROPTEST_CASES").map_or(256, |n| n as u32),
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(
            env("MCPGATE_PROPTEST_SEED").unwrap_or(0x6d63_7067),
        ),
        ..ProptestConfig::default()
    }
}

/// Arbitrary JSON values (as serde_json builds them: no duplicate keys).
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<u64>().prop_map(|n| serde_json::json!(n)),
        (-1e300f64..1e300).prop_map(|f| serde_json::json!(f)),
        any::<String>().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Splits `bytes` at the given (sorted, clamped) cut points.
fn chunks<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts {
        out.push(&bytes[start..c]);
        start = c;
    }
    out.push(&bytes[start..]);
    out
}

/// SSE-ish byte streams: mostly field lines and line ends, some garbage.
fn sse_stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"data".to_vec()),
        Just(b"id: 1".to_vec()),
        Just(b"event: e".to_vec()),
        Just(b"retry: 10".to_vec()),
        Just(b": c".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just("\u{feff}".as_bytes().to_vec()),
        Just("é😀".as_bytes().to_vec()),
        Just(
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"b"}]}}"#.to_vec()
        ),
        "[a-z :]{0,6}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..4),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn jsonrpc_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = jsonrpc::parse(&bytes, &Limits::default());
    }

    #[test]
    fn jsonrpc_never_panics_on_mutated_messages(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = CALL.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let at = at % (bytes.len() + 1);
            match op {
                0 => bytes.insert(at, byte),
                1 if at < bytes.len() => { bytes.remove(at); }
                _ if at < bytes.len() => bytes[at] = byte,
                _ => {}
            }
        }
        if let Ok(body) = jsonrpc::parse(&bytes, &Limits::default()) {
            // Whatever we accept, serde_json reads the same way (when it can represent it).
            let ours = body.messages()[0].value().to_serde_json();
            let theirs: Result<serde_json::Value, _> = serde_json::from_slice(&bytes);
            if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
                prop_assert_eq!(ours, theirs);
            }
        }
    }

    #[test]
    fn json_agrees_with_serde_json(value in json_value(), pretty in any::<bool>()) {
        let text = if pretty {
            serde_json::to_string_pretty(&value).unwrap()
        } else {
            serde_json::to_string(&value).unwrap()
        };
        let parsed = json::parse(&text, 64).unwrap();
        prop_assert_eq!(parsed.raw(), text.trim());
        // Compared with serde_json's own reading of the text: without its `float_roundtrip`
        // feature serde_json does not read back every float it writes bit-exactly.
        let theirs: serde_json::Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(parsed.to_serde_json().unwrap(), theirs);
        if !text.contains(['.', 'e']) {
            prop_assert_eq!(parsed.to_serde_json().unwrap(), value);
        }
    }

    #[test]
    fn json_never_accepts_what_serde_json_rejects(text in "[\\[\\]{}\",:0-9a-z\\\\. \\-+eE]{0,40}") {
        // Whatever we accept (and serde_json can represent: not numbers beyond f64), serde_json
        // accepts too and reads the same way.
        if let Ok(ours) = json::parse(&text, 64).and_then(|v| v.to_serde_json()) {
            let theirs: Result<serde_json::Value, _> = serde_json::from_str(&text);
            prop_assert_eq!(Some(ours), theirs.ok());
        }
    }

    #[test]
    fn every_prefix_of_a_valid_message_is_refused(value in json_value(), cut in any::<usize>()) {
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "t", "arguments": {"v": value}},
        })
        .to_string();
        let cut = cut % body.len();
        let e = jsonrpc::parse(&body.as_bytes()[..cut], &Limits::default()).unwrap_err();
        prop_assert!(matches!(e, Error::Truncated { .. } | Error::Empty), "{:?}", e);
    }

    #[test]
    fn body_accumulator_is_chunking_independent(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        limit in 0usize..700,
    ) {
        let mut acc = BodyAccumulator::new(limit);
        let mut failed = false;
        for piece in chunks(&bytes, &cuts) {
            if acc.push(piece).is_err() {
                failed = true;
            }
        }
        prop_assert_eq!(failed, bytes.len() > limit);
        let whole = jsonrpc::parse(&bytes, &Limits { max_bytes: limit, ..Limits::default() });
        prop_assert_eq!(acc.parse(&Limits::default()).map_err(|e| e.reason()), whole.map_err(|e| e.reason()));
    }

    #[test]
    fn body_accumulator_accepts_valid_bodies_in_any_chunking(
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let mut acc = BodyAccumulator::default();
        for piece in chunks(CALL.as_bytes(), &cuts) {
            acc.push(piece).unwrap();
        }
        let body = acc.parse(&Limits::default()).unwrap();
        prop_assert_eq!(body.messages()[0].target(), Some("send_email"));
    }

    #[test]
    fn sse_is_chunking_independent(
        stream in prop_oneof![sse_stream(), prop::collection::vec(any::<u8>(), 0..300)],
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        limit in prop_oneof![Just(1usize << 20), 1usize..64],
    ) {
        let run = |pieces: &[&[u8]]| -> Result<Vec<_>, Error> {
            let mut parser = SseParser::new(limit);
            let mut events = Vec::new();
            for piece in pieces {
                events.extend(parser.push(piece)?);
            }
            events.extend(parser.finish()?);
            Ok(events)
        };
        let whole = run(&[&stream]);
        let split = run(&chunks(&stream, &cuts));
        if limit >= stream.len() {
            // Without the limit in play, chunking changes nothing (events or error).
            prop_assert_eq!(whole, split);
        }
    }

    #[test]
    fn sse_rewriter_passes_through_and_rewrites_consistently(
        stream in sse_stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        // Identity rewriter: output is the input, however chunked (or the same error).
        let run = |pieces: &[&[u8]], rewrite: &dyn Fn(&mcpgate_protocol::sse::Event) -> Result<Option<String>, Error>| {
            let mut rewriter = SseRewriter::default();
            let mut out = Vec::new();
            for piece in pieces {
                out.extend(rewriter.push(piece, rewrite)?);
            }
            out.extend(rewriter.finish(rewrite)?);
            Ok::<_, Error>(out)
        };
        let keep = |_: &mcpgate_protocol::sse::Event| Ok(None);
        let pieces = chunks(&stream, &cuts);
        match run(&pieces, &keep) {
            Ok(out) => prop_assert_eq!(out, stream.clone()),
            Err(e) => prop_assert_eq!(Err(e), run(&[&stream], &keep)),
        }
        // Filtering rewriter: chunking does not change the parsed result.
        let mut tracker = ResponseTracker::new();
        tracker.record_id(jsonrpc::IdKey::Number(1), Some(ListKind::Tools));
        let filter = |e: &mcpgate_protocol::sse::Event| {
            Ok(tracker.filter_body(&e.data, &Limits::default(), |n| n == "a").map(|f| f.body).unwrap_or(None))
        };
        let a = run(&pieces, &filter);
        let b = run(&[&stream], &filter);
        let parse_all = |bytes: &[u8]| {
            let mut p = SseParser::default();
            let mut ev = p.push(bytes).unwrap_or_default();
            ev.extend(p.finish().unwrap_or_default());
            ev
        };
        if let (Ok(a), Ok(b)) = (&a, &b) {
            prop_assert_eq!(parse_all(a), parse_all(b));
        } else {
            prop_assert_eq!(a.is_err(), b.is_err());
        }
    }

    #[test]
    fn list_filter_never_panics(value in json_value(), tools in prop::collection::vec(json_value(), 0..5)) {
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": 1,
            "result": {"tools": tools, "nextCursor": value},
        })
        .to_string();
        let f = mcpgate_protocol::list_filter::filter_list_response(&body, ListKind::Tools, &Limits::default(), |n| n.len() % 2 == 0);
        if let Ok(f) = f {
            if let Some(new) = f.body {
                let v: serde_json::Value = serde_json::from_str(&new).unwrap();
                prop_assert_eq!(v["result"]["tools"].as_array().unwrap().len(), f.kept);
            }
        }
    }
}
