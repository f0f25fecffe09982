use super::*;
use proptest::prelude::*;

/// The levels every agreement check tries (`usize::MAX`: everything built, as [`parse`]).
const LEVELS: [usize; 8] = [0, 1, 2, 3, 4, 5, 8, usize::MAX];

/// Checks that `shallow` is `full` with exactly the containers at depth `levels` or deeper left
/// unbuilt, and that an unbuilt one gives back the full tree on demand.
fn assert_same_tree(full: &Value<'_>, shallow: &Value<'_>, depth: usize, levels: usize) {
    assert_eq!(full.raw().as_ptr(), shallow.raw().as_ptr(), "same position");
    assert_eq!(full.raw(), shallow.raw());
    match (full.kind(), shallow.kind()) {
        (ValueKind::Object(_) | ValueKind::Array(_), ValueKind::Opaque) => {
            assert!(depth >= levels, "unbuilt at depth {depth} < {levels}");
            assert_eq!(&shallow.materialize().unwrap(), full);
            assert_eq!(shallow.check_numbers(), full.check_numbers());
            assert_eq!(shallow.to_serde_json(), full.to_serde_json());
        }
        (ValueKind::Object(a), ValueKind::Object(b)) => {
            assert!(depth < levels, "built at depth {depth} >= {levels}");
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert_eq!((&x.key, x.key_raw), (&y.key, y.key_raw));
                assert_same_tree(&x.value, &y.value, depth + 1, levels);
            }
        }
        (ValueKind::Array(a), ValueKind::Array(b)) => {
            assert!(depth < levels, "built at depth {depth} >= {levels}");
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert_same_tree(x, y, depth + 1, levels);
            }
        }
        (a, b) => assert_eq!(a, b),
    }
}

/// Parses `src` in full and at every level of [`LEVELS`]: the same error, or the same tree.
fn agree(src: &str, max_depth: usize) -> Result<Value<'_>, Error> {
    let full = parse(src, max_depth);
    for levels in LEVELS {
        let shallow = parse_shallow(src, max_depth, levels);
        match (&full, &shallow) {
            (Ok(f), Ok(s)) => assert_same_tree(f, s, 0, levels),
            (Err(a), Err(b)) => assert_eq!(a, b, "{src:?} at {levels} levels"),
            _ => panic!("{src:?} at {levels} levels: {full:?} vs {shallow:?}"),
        }
    }
    full
}

fn agree_err(src: &str) -> Error {
    match agree(src, 64) {
        Ok(v) => panic!("{src:?} accepted: {v:?}"),
        Err(e) => e,
    }
}

/// An object with `n` members `"k0"…`, then `tail` (members, raw).
fn wide_object(n: usize, tail: &str) -> String {
    let members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
    let sep = if tail.is_empty() { "" } else { "," };
    format!("{{{}{sep}{tail}}}", members.join(","))
}

/// `inner` placed three containers deep: below the levels a list filter builds for it.
fn deep(inner: &str) -> String {
    format!(r#"{{"a":[{{"b":{inner}}}],"z":0}}"#)
}

#[test]
fn duplicate_keys_deep_inside() {
    for inner in [
        r#"{"d":1,"d":2}"#,
        r#"{"name":1,"n\u0061me":2}"#,
        r#"{"\u006eame":1,"name":2}"#,
        r#"{"/":1,"\/":2}"#,
        r#"{"é":1,"\u00e9":2}"#,
        r#"{"😀":1,"\ud83d\ude00":2}"#,
        r#"{"x":{"y":[{"k":1,"k":1}]}}"#,
        r#"{"a":{},"b":[],"a":null}"#,
    ] {
        let src = deep(inner);
        let e = agree_err(&src);
        assert!(matches!(e, Error::DuplicateKey { .. }), "{src}: {e:?}");
    }
    // Equal keys in sibling or nested objects are not duplicates; neither are near misses.
    for inner in [
        r#"{"a":{"x":1},"b":{"x":1}}"#,
        r#"{"x":{"x":{"x":1}}}"#,
        r#"[{"k":1},{"k":1}]"#,
        r#"{"name":1,"Name":2,"name ":3,"n\u0061mf":4}"#,
        r#"{"":1,"\u0000":2}"#,
    ] {
        agree(&deep(inner), 64).unwrap();
    }
}

#[test]
fn duplicate_keys_in_wide_objects_deep_inside() {
    // Past 16 members the check sorts at the end of the object, so a nested error after the
    // duplicate comes first; both parses must report the same one.
    for tail in [
        r#""k3":0"#,
        r#""k17":0"#,
        r#""k\u0031\u0037":0"#,
        r#""k20":0,"k20":1,"k20":2"#,
        r#""k19":0,"k5":1,"k19":2"#,
        r#""k18":0,"x":{"y":1,"y":2}"#,
        r#""k18":0,"x":[01]"#,
        r#""k18":0,"x":1,"#,
        r#""x":"\ud800","k18":0"#,
    ] {
        for n in [15, 16, 17, 30] {
            let src = deep(&wide_object(n, tail));
            let r = agree(&src, 64);
            assert!(n < 30 || r.is_err(), "{src}: {r:?}");
        }
    }
    // The second occurrence of the smallest repeated key is reported, whatever the sort does
    // with three equal keys.
    let src = wide_object(20, r#""k9":0,"k12":0,"k12":1,"k9":1"#);
    let second_k12 = src.find(r#","k12":0"#).unwrap() + 1;
    assert_eq!(
        agree_err(&src),
        Error::DuplicateKey {
            key: "k12".into(),
            offset: second_k12
        }
    );
    let nested = deep(&src);
    assert_eq!(
        agree_err(&nested),
        Error::DuplicateKey {
            key: "k12".into(),
            offset: nested.find(&src).unwrap() + second_k12
        }
    );
}

#[test]
fn strings_deep_inside() {
    for inner in [
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\ud800\u0041""#,
        r#""\ud800x""#,
        r#""\ud800\""#,
        r#""\ud83d\ude00\udc00""#,
        r#""\x""#,
        r#""\u12G4""#,
        r#""\u00""#,
        "\"a\tb\"",
        "\"a\nb\"",
        "\"\u{1}\"",
        "\"\u{1f}\"",
        "\"\\u0041\u{0}\"",
        r#"{"\ud800":1}"#,
        r#"{"k\x":1}"#,
        "{\"a\nb\":1}",
    ] {
        let e = agree_err(&deep(inner));
        assert_eq!(e.reason(), "invalid_json", "{inner}: {e:?}");
    }
    for inner in [
        r#""\ud83d\ude00 \u00e9 \/ \b\f\n\r\t \" \\ \u0000""#,
        "\"\u{7f} é 😀\"",
        r#"{"\ud83d\ude00":"\u00e9"}"#,
    ] {
        agree(&deep(inner), 64).unwrap();
    }
}

#[test]
fn numbers_and_literals_deep_inside() {
    for inner in [
        "01",
        "-01",
        "+1",
        ".5",
        "1.",
        "1.e5",
        "1e",
        "1e+",
        "-",
        "--1",
        "0x10",
        "1_000",
        "NaN",
        "Infinity",
        "tru",
        "nul",
        "falsy",
        "True",
        "[1,]",
        "[,1]",
        "[1 2]",
        r#"{"a":1,}"#,
        r#"{"a" 1}"#,
        r#"{a:1}"#,
        r#"{"a":}"#,
        "[1]]",
        "{}}",
    ] {
        let e = agree_err(&deep(inner));
        assert!(
            matches!(e, Error::InvalidJson { .. }),
            "{inner}: {e:?} should be invalid JSON"
        );
    }
    for inner in [
        "-0",
        "0.0e-0",
        "1E+400",
        "123456789012345678901234567890",
        "true",
        "false",
        "null",
        "[]",
        "{}",
        " [ ] ",
    ] {
        agree(&deep(inner), 64).unwrap();
    }
    // An unbuilt number beyond f64 is found as in the built tree.
    let src = deep(r#"{"big":[1e400]}"#);
    let full = parse(&src, 64).unwrap();
    let shallow = parse_shallow(&src, 64, 1).unwrap();
    let a = shallow.get("a").unwrap();
    assert_eq!(a.kind(), &ValueKind::Opaque);
    assert!(a.as_array().is_none() && a.get("b").is_none());
    assert_eq!(a.check_numbers().unwrap_err().reason(), "invalid_json");
    assert_eq!(
        a.check_numbers(),
        full.get("a").unwrap().check_numbers(),
        "same error"
    );
    assert!(a.to_serde_json().is_err());
    assert_eq!(shallow.check_numbers(), full.check_numbers());
}

#[test]
fn depth_limit_applies_below_the_built_levels() {
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    for max_depth in [1, 2, 5, 64] {
        agree(&nested(max_depth), max_depth).unwrap();
        assert!(matches!(
            agree(&nested(max_depth + 1), max_depth),
            Err(Error::TooDeep { .. })
        ));
        let objects = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
        agree(&objects(max_depth), max_depth).unwrap();
        assert!(matches!(
            agree(&objects(max_depth + 1), max_depth),
            Err(Error::TooDeep { .. })
        ));
    }
    // Far beyond the cap: refused while skipping too, without overflowing the stack.
    assert!(matches!(
        agree(&"[".repeat(100_000), usize::MAX),
        Err(Error::TooDeep {
            limit: MAX_DEPTH_CAP,
            ..
        })
    ));
    assert!(matches!(
        agree(&"{\"a\":".repeat(100_000), 64),
        Err(Error::TooDeep { limit: 64, .. })
    ));
    // An unbuilt value at the cap is rebuilt within the cap.
    let src = nested(MAX_DEPTH_CAP);
    let v = parse_shallow(&src, MAX_DEPTH_CAP, 0).unwrap();
    assert_eq!(
        v.materialize().unwrap(),
        parse(&src, MAX_DEPTH_CAP).unwrap()
    );
}

const LIST: &str = r#"{"jsonrpc":"2.0","id":"l\u0031","result":{"tools":[{"name":"re\u0061d","inputSchema":{"type":"object","properties":{"n":{"type":"number","minimum":1e2,"enum":[1,-2.5E-3,true,false,null]},"s":{"pattern":"^\\d+\"\/$","title":"\ud83d\ude00 é"}},"required":["n"]}},{"name":"delete","description":"d\n"}],"nextCursor":"abc==","_meta":{"x":[1,2.50,{}],"y":[[]]}}}"#;

#[test]
fn every_prefix_and_every_byte_change_of_a_list_response() {
    agree(LIST, 64).unwrap();
    let batch = format!(" [ {LIST} ,\n{LIST} ] ");
    agree(&batch, 64).unwrap();
    for src in [LIST, batch.as_str()] {
        for cut in 0..src.len() {
            if let Some(prefix) = src.get(..cut) {
                let _ = agree(prefix, 64);
            }
        }
        // Every byte replaced by something that breaks or bends the grammar.
        for at in 0..src.len() {
            for with in [
                "\"", "\\", "}", "]", ",", ":", "\u{1}", "0", "-", "e", "{", "[", "x",
            ] {
                let (Some(head), Some(tail)) = (src.get(..at), src.get(at + 1..)) else {
                    continue;
                };
                let _ = agree(&format!("{head}{with}{tail}"), 64);
            }
        }
        // A tight depth limit, hit inside the unbuilt part.
        for max_depth in 1..8 {
            let _ = agree(src, max_depth);
        }
    }
}

#[test]
fn string_scan_finds_every_special_byte() {
    // Fillers around the word-at-a-time boundaries, including bytes next to the ones searched.
    let fillers = ["a", " ", "!", "#", "[", "]", "~", "\u{7f}", "é", "😀"];
    let specials = ["\\n", "\\\"", "\\u00e9", "\u{0}", "\u{1}", "\u{1f}", "\"x"];
    for filler in fillers {
        for special in specials {
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 31] {
                for at in 0..=len {
                    let content =
                        format!("{}{special}{}", filler.repeat(at), filler.repeat(len - at));
                    let src = format!("\"{content}\"");
                    let ours = agree(&src, 64);
                    let _ = agree(&format!("[[[{src}]]]"), 64);
                    match serde_json::from_str::<String>(&src) {
                        Ok(s) => assert_eq!(ours.unwrap().as_str(), Some(s.as_str())),
                        Err(_) => {
                            let special_at = 1 + at * filler.len();
                            let want = if special == "\"x" {
                                Error::TrailingData {
                                    offset: special_at + 1,
                                }
                            } else {
                                Error::InvalidJson {
                                    offset: special_at,
                                    what: "control character in string",
                                }
                            };
                            assert_eq!(ours.unwrap_err(), want, "{src:?}");
                        }
                    }
                }
            }
        }
    }
}

/// JSON-ish text: valid structure from few keys (so duplicates, also escaped ones, are common),
/// with some invalid leaves and some objects past the sorted-check size.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        8 => Just("null".to_owned()),
        4 => Just("-0.5e+3".to_owned()),
        4 => Just("\"\\ud83d\\ude00\\n\"".to_owned()),
        8 => "[a-z\u{e9} ]{0,12}".prop_map(|s| format!("\"{s}\"")),
        1 => Just("01".to_owned()),
        1 => Just("\"\\ud800\"".to_owned()),
        1 => Just("\"\u{1}\"".to_owned()),
        1 => Just("tru".to_owned()),
    ];
    let key = prop_oneof![
        Just("\"a\""),
        Just("\"\\u0061\""),
        Just("\"b\""),
        Just("\"name\""),
        Just("\"n\\u0061me\""),
        Just("\"c\""),
    ];
    let wide_key = (0..24u8).prop_map(|i| format!("\"w{i}\""));
    leaf.prop_recursive(6, 96, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key.clone(), inner.clone()), 0..5).prop_map(|m| {
                let m: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", m.join(","))
            }),
            prop::collection::vec((wide_key.clone(), inner), 17..22).prop_map(|m| {
                let m: Vec<String> = m.iter().map(|(k, v)| format!("{k} : {v}")).collect();
                format!("{{ {} }}", m.join(" , "))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x7368_616c),
        ..ProptestConfig::default()
    })]

    #[test]
    fn shallow_and_full_parse_agree(text in json_text(), cut in any::<prop::sample::Index>(), max_depth in 2usize..8) {
        let _ = agree(&text, 64);
        let _ = agree(&text, max_depth);
        let cut = cut.index(text.len() + 1);
        if let Some(prefix) = text.get(..cut) {
            let _ = agree(prefix, 64);
        }
    }
}
