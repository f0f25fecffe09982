//! Every criterion and every matcher, matching and not matching.

use mcpgate_policy::{Identity, Policy, Request};
use serde_json::{json, Value};

fn policy(yaml: &str) -> Policy {
    let value: Value = serde_yaml_ng::from_str(yaml).unwrap();
    Policy::compile(&value).unwrap_or_else(|e| panic!("{yaml}\n-> {e}"))
}

/// A policy that allows exactly when `criterion` (one YAML flow mapping) matches.
fn allow_if(criterion: &str) -> Policy {
    policy(&format!("allow:\n  and:\n    - {criterion}\n"))
}

fn alice() -> Identity {
    Identity {
        user: "u-alice".into(),
        email: Some("alice@company.com".into()),
        groups: vec!["staff".into(), "db-admins".into()],
        claims: json!({
            "family_name": "Smith",
            "org": {"team": "platform", "level": 3},
            "roles": ["db-reader", "viewer"],
            "https://example.com/tier": "gold",
            "verified": true,
            "score": 1.0,
        }),
    }
}

fn nobody() -> Identity {
    Identity {
        user: "u-anon".into(),
        ..Identity::default()
    }
}

fn check_identity(criterion: &str, identity: &Identity) -> bool {
    let p = allow_if(criterion);
    let d = p.evaluate(&Request::new(identity).method("tools/list"));
    d.allowed
}

#[track_caller]
fn yes(criterion: &str) {
    assert!(
        check_identity(criterion, &alice()),
        "{criterion} should match alice"
    );
}

#[track_caller]
fn no(criterion: &str) {
    assert!(
        !check_identity(criterion, &alice()),
        "{criterion} should not match alice"
    );
}

#[test]
fn email() {
    yes("email: {is: alice@company.com}");
    no("email: {is: Alice@company.com}"); // exact
    yes("email: alice@company.com"); // PPL shorthand
    no("email: bob@company.com");
    yes("email: {ends_with: '@company.com'}");
    no("email: {ends_with: '@other.com'}");
    yes("email: {starts_with: 'alice@'}");
    no("email: {starts_with: 'bob@'}");
    yes("email: {contains: '@comp'}");
    no("email: {contains: 'xyz'}");
    yes("email: {in: [bob@company.com, alice@company.com]}");
    no("email: {in: [bob@company.com]}");
    yes("email: {not_in: [bob@company.com]}");
    no("email: {not_in: [alice@company.com]}");
    yes("email: {matches: 'a*@*.com'}");
    no("email: {matches: 'b*'}");
    // Several operators: all must hold.
    yes("email: {starts_with: alice, ends_with: company.com}");
    no("email: {starts_with: alice, ends_with: other.com}");
    // No email: nothing matches, not even not_in.
    assert!(!check_identity("email: {not_in: [x@y.z]}", &nobody()));
    assert!(!check_identity("email: {matches: '*'}", &nobody()));
}

#[test]
fn domain() {
    yes("domain: {is: company.com}");
    yes("domain: {is: COMPANY.com}"); // case-insensitive
    no("domain: {is: other.com}");
    no("domain: {is: pany.com}");
    yes("domain: company.com");
    yes("domain: {ends_with: Pany.COM}");
    yes("domain: {in: [a.com, Company.Com]}");
    yes("domain: {matches: 'COMP*'}");
    let shouty = Identity {
        email: Some("ALICE@Company.COM".into()),
        ..alice()
    };
    assert!(check_identity("domain: {is: company.com}", &shouty));
    // The domain is after the last `@`.
    let tricky = Identity {
        email: Some("\"x@company.com\"@evil.com".into()),
        ..alice()
    };
    assert!(!check_identity("domain: {is: company.com}", &tricky));
    let no_at = Identity {
        email: Some("company.com".into()),
        ..alice()
    };
    assert!(!check_identity("domain: {is: company.com}", &no_at));
    assert!(!check_identity("domain: {not_in: [x.com]}", &nobody()));
}

#[test]
fn user() {
    yes("user: {is: u-alice}");
    no("user: {is: u-bob}");
    yes("user: u-alice");
    yes("user: {in: [u-bob, u-alice]}");
    no("user: {in: [u-bob]}");
}

#[test]
fn groups() {
    yes("groups: {has: staff}");
    yes("groups: db-admins");
    no("groups: {has: Staff}");
    no("groups: {has: contractors}");
    assert!(!check_identity("groups: {has: staff}", &nobody()));
}

#[test]
fn claim_path_form() {
    yes("claim: {path: family_name, is: Smith}");
    no("claim: {path: family_name, is: smith}");
    yes("claim: {path: org.team, is: platform}");
    yes("claim: {path: $.org.team, is: platform}");
    yes("claim: {path: org.level, is: 3}");
    yes("claim: {path: org.level, is: 3.0}"); // numbers by value
    no("claim: {path: org.level, is: '3'}"); // a string is not a number
    yes("claim: {path: score, is: 1}");
    yes("claim: {path: verified, is: true}");
    yes("claim: {path: 'roles[1]', is: viewer}");
    yes("claim: {path: roles, is: db-reader}"); // array claim containing the value
    no("claim: {path: roles, is: admin}");
    yes("claim: {path: roles, is: [db-reader, viewer]}"); // whole-array equality
    no("claim: {path: roles, is: [db-reader]}");
    yes("claim: {path: roles, in: [admin, viewer]}");
    no("claim: {path: roles, in: [admin]}");
    yes("claim: {path: roles, not_in: [admin]}");
    no("claim: {path: roles, not_in: [viewer]}");
    yes("claim: {path: roles, starts_with: db-}");
    no("claim: {path: roles, starts_with: admin-}");
    yes("claim: {path: org.team, ends_with: form}");
    yes("claim: {path: org.team, contains: atf}");
    yes("claim: {path: org.team, matches: 'pl*m'}");
    no("claim: {path: org.level, starts_with: '3'}"); // string ops need strings
    yes("claim: {path: '$[\"https://example.com/tier\"]', in: [gold, silver]}");
    // Missing claims never match, not_in included.
    no("claim: {path: org.missing, not_in: [x]}");
    no("claim: {path: 'roles[5]', is: viewer}");
}

#[test]
fn claim_ppl_form() {
    yes("claim/family_name: Smith");
    no("claim/family_name: Jones");
    yes("claim/verified: true");
    yes("claim/roles: viewer");
    yes("claim/https://example.com/tier: gold"); // the sub-path is a literal claim name
    yes("claim/https://example.com/tier: {in: [gold]}");
    yes("claim/family_name: {starts_with: Sm}");
    no("claim/org.team: platform"); // literal name, not a path
    no("claim/missing: {not_in: [x]}");
}

#[test]
fn constant_criteria() {
    yes("accept: true");
    yes("authenticated_user: true");
    no("reject: true");
}

/// (allowed, reason code) for a request by alice.
fn call(p: &Policy, method: &str, target: Option<&str>) -> (bool, &'static str) {
    let id = alice();
    let mut req = Request::new(&id).method(method);
    if let Some(t) = target {
        req = req.target(t);
    }
    let d = p.evaluate(&req);
    (d.allowed, d.reason.code())
}

#[test]
fn mcp_method() {
    let p = allow_if("mcp_method: {is: tools/call}");
    assert!(call(&p, "tools/call", Some("x")).0);
    assert!(!call(&p, "tools/list", None).0);
    let p = allow_if("mcp_method: {in: [initialize, tools/list]}");
    assert!(call(&p, "initialize", None).0);
    assert!(!call(&p, "tools/call", Some("x")).0);
    let p = allow_if("mcp_method: {starts_with: 'resources/'}");
    assert!(call(&p, "resources/list", None).0);
    assert!(!call(&p, "prompts/list", None).0);
    let p = allow_if("mcp_method: {matches: 'notifications/*'}");
    assert!(call(&p, "notifications/initialized", None).0);
    assert!(!call(&p, "ping", None).0);
    let p = allow_if("mcp_method: {not_in: [tools/call]}");
    assert!(call(&p, "ping", None).0);
    assert!(!call(&p, "tools/call", Some("x")).0);
    // A request without a JSON-RPC method matches no mcp_method criterion.
    let id = alice();
    assert!(!p.evaluate(&Request::new(&id)).allowed);
}

#[test]
fn mcp_tool_matchers() {
    let cases: &[(&str, &str, bool)] = &[
        ("is: query", "query", true),
        ("is: query", "Query", false),
        ("in: [query, list_tables]", "list_tables", true),
        ("in: [query, list_tables]", "drop", false),
        ("not_in: [query, list_tables]", "drop", true),
        ("not_in: [query, list_tables]", "query", false),
        ("starts_with: admin_", "admin_reset", true),
        ("starts_with: admin_", "reset_admin_", false),
        ("ends_with: _delete", "db_delete", true),
        ("ends_with: _delete", "db_delete_all", false),
        ("contains: drop", "db_drop_table", true),
        ("contains: drop", "db_table", false),
        ("matches: 'db_*_read'", "db_users_read", true),
        ("matches: 'db_*_read'", "db_users_write", false),
        ("matches: 'get_?'", "get_x", true),
        ("matches: 'get_?'", "get_xy", false),
    ];
    for (matcher, tool, expected) in cases {
        let p = allow_if(&format!("mcp_tool: {{{matcher}}}"));
        assert_eq!(
            call(&p, "tools/call", Some(tool)).0,
            *expected,
            "mcp_tool {{{matcher}}} on {tool}"
        );
    }
}

#[test]
fn mcp_tool_targets_per_method() {
    let p = allow_if("mcp_tool: {is: summarize}");
    assert!(call(&p, "tools/call", Some("summarize")).0);
    assert!(call(&p, "prompts/get", Some("summarize")).0);
    let p = allow_if("mcp_tool: {starts_with: 'file:///public/'}");
    for method in [
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
    ] {
        assert!(call(&p, method, Some("file:///public/a.txt")).0, "{method}");
        assert!(!call(&p, method, Some("file:///etc/passwd")).0, "{method}");
    }
}

#[test]
fn mcp_tool_on_nameless_methods_never_matches() {
    // Under allow: nameless methods are not allowed by an mcp_tool criterion (any operator).
    for matcher in ["is: x", "not_in: [x]", "matches: '*'", "contains: ''"] {
        let p = allow_if(&format!("mcp_tool: {{{matcher}}}"));
        for method in [
            "initialize",
            "tools/list",
            "ping",
            "notifications/initialized",
        ] {
            assert!(!call(&p, method, None).0, "{matcher} / {method}");
        }
    }
    // Under deny: nameless methods are never blocked by it, not even by not_in.
    let p = policy(
        "allow: {and: [{domain: {is: company.com}}]}\ndeny: {and: [{mcp_tool: {not_in: [query, list_tables]}}]}",
    );
    for method in ["initialize", "tools/list", "resources/list", "ping"] {
        assert!(call(&p, method, None).0, "{method}");
    }
    assert!(call(&p, "tools/call", Some("query")).0);
    assert!(!call(&p, "tools/call", Some("drop_table")).0);
}

#[test]
fn named_method_without_name_is_denied() {
    for p in [
        Policy::default(),
        allow_if("accept: true"),
        policy("deny: {and: [{mcp_tool: {is: admin}}]}"),
    ] {
        for method in mcpgate_policy::TARGETED_METHODS {
            assert_eq!(
                call(&p, method, None),
                (false, "missing_target"),
                "{method}"
            );
        }
    }
}

fn args_check(criterion: &str, args: Option<Value>) -> bool {
    let p = allow_if(criterion);
    let id = alice();
    let mut req = Request::new(&id).method("tools/call").target("t");
    if let Some(a) = args.as_ref() {
        req = req.arguments(a);
    }
    p.evaluate(&req).allowed
}

#[test]
fn mcp_argument() {
    let args = json!({
        "sql": "SELECT * FROM users; DROP TABLE users",
        "limit": 50,
        "ratio": 0.5,
        "env": "prod",
        "flags": ["force", "verbose", 3],
        "options": {"nested": [{"x": true}]},
        "dry_run": false,
        "file.name": "a.txt",
        "count_str": "7",
    });
    let t = |c: &str| args_check(c, Some(args.clone()));
    // equals
    assert!(t("mcp_argument: {path: env, equals: prod}"));
    assert!(!t("mcp_argument: {path: env, equals: dev}"));
    assert!(t("mcp_argument: {path: limit, equals: 50}"));
    assert!(t("mcp_argument: {path: limit, equals: 50.0}"));
    assert!(!t("mcp_argument: {path: limit, equals: '50'}"));
    assert!(t("mcp_argument: {path: dry_run, equals: false}"));
    assert!(t(
        "mcp_argument: {path: options, equals: {nested: [{x: true}]}}"
    ));
    assert!(!t("mcp_argument: {path: options, equals: {nested: []}}"));
    // in
    assert!(t("mcp_argument: {path: env, in: [prod, production]}"));
    assert!(!t("mcp_argument: {path: env, in: [dev]}"));
    assert!(t("mcp_argument: {path: limit, in: [10, 50]}"));
    // contains
    assert!(t("mcp_argument: {path: sql, contains: DROP}"));
    assert!(!t("mcp_argument: {path: sql, contains: drop}"));
    assert!(t("mcp_argument: {path: flags, contains: force}"));
    assert!(t("mcp_argument: {path: flags, contains: 3}"));
    assert!(!t("mcp_argument: {path: flags, contains: forc}")); // elements, not substrings
    assert!(!t("mcp_argument: {path: limit, contains: 5}"));
    // matches (regex, unanchored)
    assert!(t(
        r"mcp_argument: {path: sql, matches: '(?i)\bdrop\s+table\b'}"
    ));
    assert!(!t(r"mcp_argument: {path: sql, matches: '^DROP'}"));
    assert!(!t(r"mcp_argument: {path: limit, matches: '5'}")); // numbers are not strings
                                                               // numeric
    assert!(t("mcp_argument: {path: limit, gt: 10}"));
    assert!(!t("mcp_argument: {path: limit, gt: 50}"));
    assert!(t("mcp_argument: {path: limit, gte: 50}"));
    assert!(t("mcp_argument: {path: limit, lt: 50.5}"));
    assert!(!t("mcp_argument: {path: limit, lt: 50}"));
    assert!(t("mcp_argument: {path: limit, lte: 50}"));
    assert!(t("mcp_argument: {path: ratio, lt: 1}"));
    assert!(t("mcp_argument: {path: limit, gt: 10, lt: 100}"));
    assert!(!t("mcp_argument: {path: limit, gt: 10, lt: 20}"));
    assert!(!t("mcp_argument: {path: count_str, gt: 1}")); // a numeric string is no number
                                                           // paths
    assert!(t(
        "mcp_argument: {path: '$.options.nested[0].x', equals: true}"
    ));
    assert!(t(
        "mcp_argument: {path: 'options.nested[0].x', equals: true}"
    ));
    assert!(t("mcp_argument: {path: 'flags[1]', equals: verbose}"));
    assert!(t("mcp_argument: {path: '$[\"file.name\"]', equals: a.txt}"));
    assert!(!t("mcp_argument: {path: $, contains: force}"));
    // Missing paths and missing arguments never match.
    assert!(!t("mcp_argument: {path: missing, equals: null}"));
    assert!(!t("mcp_argument: {path: 'flags[9]', equals: force}"));
    assert!(!t("mcp_argument: {path: env.x, equals: prod}"));
    assert!(!args_check("mcp_argument: {path: env, equals: prod}", None));
    // `$` is the arguments value itself.
    assert!(args_check(
        "mcp_argument: {path: $, contains: x}",
        Some(json!(["x", "y"]))
    ));
}
