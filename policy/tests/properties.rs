//! Property tests: compiling never panics on any JSON; evaluating never panics on any input;
//! the listing helpers never hide what a full evaluation would allow.

use mcpgate_policy::{Identity, Policy, Request, TARGETED_METHODS};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const WORDS: &[&str] = &[
    "",
    "a",
    "b",
    "admin_x",
    "query",
    "tools/call",
    "tools/list",
    "prompts/get",
    "resources/read",
    "initialize",
    "company.com",
    "alice@company.com",
    "ALICE@Company.COM",
    "é",
    "*",
    "a*b?",
    "\\",
    "and",
    "or",
    "not",
    "nor",
    "allow",
    "deny",
    "path",
    "is",
    "in",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(WORDS).prop_map(String::from),
        1 => "\\PC{0,8}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((word(), inner), 0..4)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

const STRING_CRITERIA: &[&str] = &["email", "domain", "user", "mcp_method", "mcp_tool"];
const STRING_OPS: &[&str] = &[
    "is",
    "in",
    "not_in",
    "starts_with",
    "ends_with",
    "contains",
    "matches",
];
const PATHS: &[&str] = &[
    "a",
    "a.b",
    "$.a[0]",
    "$",
    "b[1].c",
    "$[\"k.x\"]",
    "roles",
    "org.team",
    "a..b",
];
const REGEXES: &[&str] = &["^a", "(?i)drop", "a|b", "[0-9]+$", "(", ".*"];

fn string_matcher() -> impl Strategy<Value = Value> {
    let op = (
        proptest::sample::select(STRING_OPS),
        word(),
        prop::collection::vec(word(), 0..3),
    )
        .prop_map(|(op, w, list)| {
            if op == "in" || op == "not_in" {
                (op.to_string(), json!(list))
            } else {
                (op.to_string(), json!(w))
            }
        });
    prop_oneof![
        word().prop_map(Value::String),
        prop::collection::vec(op, 1..3).prop_map(|ops| Value::Object(ops.into_iter().collect())),
    ]
}

fn criterion() -> impl Strategy<Value = Value> {
    let arg_op = prop_oneof![
        json_value().prop_map(|v| ("equals", v)),
        prop::collection::vec(json_value(), 0..3).prop_map(|v| ("in", json!(v))),
        json_value().prop_map(|v| ("contains", v)),
        proptest::sample::select(REGEXES).prop_map(|r| ("matches", json!(r))),
        (
            proptest::sample::select(&["lt", "lte", "gt", "gte"][..]),
            -100i64..100
        )
            .prop_map(|(op, n)| (op, json!(n))),
    ];
    prop_oneof![
        (proptest::sample::select(STRING_CRITERIA), string_matcher())
            .prop_map(|(name, m)| json!({ name: m })),
        word().prop_map(|g| json!({"groups": {"has": g}})),
        (proptest::sample::select(PATHS), json_value())
            .prop_map(|(p, v)| json!({"claim": {"path": p, "is": v}})),
        (word(), word()).prop_map(|(name, v)| json!({ format!("claim/{name}"): v })),
        (
            proptest::sample::select(PATHS),
            prop::collection::vec(arg_op, 1..3)
        )
            .prop_map(|(p, ops)| {
                let mut m = Map::new();
                m.insert("path".into(), json!(p));
                for (op, v) in ops {
                    m.insert(op.into(), v);
                }
                json!({"mcp_argument": m})
            }),
        Just(json!({"accept": true})),
        Just(json!({"reject": true})),
    ]
}

const OPS: &[&str] = &["and", "or", "not", "nor"];

fn node() -> impl Strategy<Value = Value> {
    criterion().prop_recursive(3, 24, 3, |inner| {
        (
            proptest::sample::select(OPS),
            prop::collection::vec(inner, 0..3),
        )
            .prop_map(|(op, items)| json!({ op: items }))
    })
}

fn block() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (
            proptest::sample::select(OPS),
            prop::collection::vec(node(), 0..3),
        ),
        0..3,
    )
    .prop_map(|ops| {
        Value::Object(
            ops.into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect(),
        )
    })
}

fn rule() -> impl Strategy<Value = Value> {
    (proptest::option::of(block()), proptest::option::of(block())).prop_map(|(allow, deny)| {
        let mut m = Map::new();
        if let Some(a) = allow {
            m.insert("allow".into(), a);
        }
        if let Some(d) = deny {
            m.insert("deny".into(), d);
        }
        Value::Object(m)
    })
}

fn policy_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => rule(),
        1 => prop::collection::vec(rule(), 0..3).prop_map(Value::Array),
    ]
}

fn identity() -> impl Strategy<Value = Identity> {
    (
        word(),
        proptest::option::of(word()),
        prop::collection::vec(word(), 0..3),
        json_value(),
    )
        .prop_map(|(user, email, groups, claims)| Identity {
            user,
            email,
            groups,
            claims,
        })
}

fn method() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        2 => proptest::sample::select(&["initialize", "tools/list", "tools/call", "prompts/get", "resources/read", "ping"][..])
            .prop_map(String::from),
        1 => word(),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn compile_never_panics_on_any_json(value in json_value()) {
        let _ = Policy::compile(&value);
        let _ = Policy::compile(&json!({"allow": {"and": [value.clone()]}}));
        let _ = Policy::compile(&json!({"deny": {"or": [{"mcp_argument": value}]}}));
    }

    #[test]
    fn compile_never_panics_on_policy_shaped_json(value in policy_value()) {
        let _ = Policy::compile(&value);
    }

    #[test]
    fn evaluation_never_panics_and_listings_over_approximate(
        value in policy_value(),
        id in identity(),
        method in method(),
        target in proptest::option::of(word()),
        args in proptest::option::of(json_value()),
    ) {
        let Ok(policy) = Policy::compile(&value) else { return Ok(()) };
        let request = Request {
            identity: &id,
            method: method.as_deref(),
            target: target.as_deref(),
            arguments: args.as_ref(),
        };
        let decision = policy.evaluate(&request);
        let _ = decision.reason.to_string();
        let by_identity = policy.allows_identity(&id);
        if decision.allowed {
            prop_assert!(by_identity, "evaluate allowed but allows_identity said no: {value}");
        }
        if let (Some(m), Some(t)) = (method.as_deref(), target.as_deref()) {
            let by_target = policy.allows_target(&id, m, t);
            if decision.allowed {
                prop_assert!(by_target, "evaluate allowed but allows_target said no: {value}");
            }
            if by_target {
                prop_assert!(by_identity, "allows_target but not allows_identity: {value}");
            }
        }
        if let Some(m) = method.as_deref() {
            if TARGETED_METHODS.contains(&m) && target.is_none() {
                prop_assert!(!decision.allowed);
            }
        }
    }
}
