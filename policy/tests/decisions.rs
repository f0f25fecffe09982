//! Operators, rule forms, the allow/deny decision, reasons, and the listing helpers.

use mcpgate_policy::{list_entry_method, Identity, Policy, Reason, Request};
use serde_json::{json, Value};

fn policy(yaml: &str) -> Policy {
    let value: Value = serde_yaml_ng::from_str(yaml).unwrap();
    Policy::compile(&value).unwrap_or_else(|e| panic!("{yaml}\n-> {e}"))
}

fn user(email: &str, groups: &[&str]) -> Identity {
    Identity {
        user: format!("id-{email}"),
        email: Some(email.into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        claims: json!({}),
    }
}

fn allowed(p: &Policy, id: &Identity, method: &str, target: Option<&str>) -> bool {
    let mut req = Request::new(id).method(method);
    if let Some(t) = target {
        req = req.target(t);
    }
    p.evaluate(&req).allowed
}

fn reason(p: &Policy, id: &Identity, method: &str, target: Option<&str>) -> String {
    let mut req = Request::new(id).method(method);
    if let Some(t) = target {
        req = req.target(t);
    }
    p.evaluate(&req).reason.to_string()
}

fn b(v: bool) -> &'static str {
    if v {
        "accept: true"
    } else {
        "reject: true"
    }
}

/// Truth tables of the four operators over two items, per Pomerium's definitions.
#[test]
fn operator_truth_tables() {
    let id = user("a@x.com", &[]);
    for a in [false, true] {
        for c in [false, true] {
            let eval = |op: &str| {
                let p = policy(&format!(
                    "allow:\n  {op}:\n    - {}\n    - {}\n",
                    b(a),
                    b(c)
                ));
                allowed(&p, &id, "ping", None)
            };
            assert_eq!(eval("and"), a && c, "and {a} {c}");
            assert_eq!(eval("or"), a || c, "or {a} {c}");
            assert_eq!(eval("not"), !a && !c, "not {a} {c}");
            assert_eq!(eval("nor"), !a || !c, "nor {a} {c}");
        }
        // With one item, not and nor are both plain negation.
        let one = |op: &str| {
            let p = policy(&format!("allow:\n  {op}:\n    - {}\n", b(a)));
            allowed(&p, &id, "ping", None)
        };
        assert_eq!(one("not"), !a);
        assert_eq!(one("nor"), !a);
        assert_eq!(one("and"), a);
        assert_eq!(one("or"), a);
    }
}

#[test]
fn operators_over_real_criteria() {
    // The example of Pomerium's PPL docs, with every operator.
    let cases = [
        ("and", [false, false, false, true]),
        ("or", [false, true, true, true]),
        ("not", [true, false, false, false]),
        ("nor", [true, true, true, false]),
    ];
    let people = [
        user("a@other.com", &[]),
        user("b@other.com", &["admin"]),
        user("c@example.com", &[]),
        user("d@example.com", &["admin"]),
    ];
    for (op, expected) in cases {
        let p = policy(&format!(
            "allow:\n  {op}:\n    - domain:\n        is: example.com\n    - groups:\n        has: admin\n"
        ));
        for (person, want) in people.iter().zip(expected) {
            assert_eq!(
                allowed(&p, person, "tools/list", None),
                want,
                "{op} {person:?}"
            );
        }
    }
}

#[test]
fn nesting() {
    let p = policy(
        r#"
allow:
  or:
    - groups: {has: admins}
    - and:
        - domain: {is: company.com}
        - not:
            - groups: {has: contractors}
        - or:
            - mcp_method: {in: [initialize, tools/list]}
            - mcp_tool: {starts_with: read_}
"#,
    );
    let admin = user("root@elsewhere.org", &["admins"]);
    let staff = user("s@company.com", &[]);
    let contractor = user("c@company.com", &["contractors"]);
    let outsider = user("o@other.com", &[]);
    assert!(allowed(&p, &admin, "tools/call", Some("drop")));
    assert!(allowed(&p, &staff, "tools/call", Some("read_rows")));
    assert!(allowed(&p, &staff, "initialize", None));
    assert!(!allowed(&p, &staff, "tools/call", Some("drop")));
    assert!(!allowed(&p, &contractor, "tools/call", Some("read_rows")));
    assert!(!allowed(&p, &outsider, "tools/list", None));
    assert_eq!(
        reason(&p, &staff, "tools/call", Some("read_rows")),
        "allowed by policy.allow.or[1].and"
    );
    assert_eq!(
        reason(&p, &admin, "tools/call", Some("drop")),
        "allowed by policy.allow.or[0]"
    );
}

#[test]
fn empty_lists_never_match() {
    let id = user("a@x.com", &[]);
    for op in ["and", "or", "not", "nor"] {
        let p = policy(&format!("allow:\n  {op}: []\n"));
        assert!(!allowed(&p, &id, "ping", None), "allow {op}: []");
        let p = policy(&format!("deny:\n  {op}: []\n"));
        assert!(allowed(&p, &id, "ping", None), "deny {op}: []");
        let p = policy(&format!("allow:\n  or:\n    - {op}: []\n"));
        assert!(!allowed(&p, &id, "ping", None), "nested {op}: []");
    }
}

#[test]
fn operators_in_one_block_are_ored() {
    // Pomerium's "multiple operators in a rule" example.
    let p = policy(
        r#"
allow:
  and:
    - claim/family_name: Smith
  or:
    - domain: {is: domain1.com}
    - domain: {is: domain2.com}
"#,
    );
    let smith = Identity {
        claims: json!({"family_name": "Smith"}),
        ..user("s@nowhere.com", &[])
    };
    assert!(allowed(&p, &smith, "ping", None));
    assert!(allowed(&p, &user("x@domain2.com", &[]), "ping", None));
    assert!(!allowed(&p, &user("x@domain3.com", &[]), "ping", None));
}

#[test]
fn list_of_rules() {
    let p = policy(
        r#"
- allow:
    or:
      - email: {is: alice@company.com}
- allow:
    and:
      - groups: {has: db-admins}
  deny:
    and:
      - mcp_tool: {is: drop_database}
"#,
    );
    let alice = user("alice@company.com", &[]);
    let dba = user("dba@company.com", &["db-admins"]);
    let bob = user("bob@company.com", &[]);
    assert!(allowed(&p, &alice, "tools/call", Some("query")));
    assert!(allowed(&p, &dba, "tools/call", Some("query")));
    assert!(!allowed(&p, &bob, "tools/call", Some("query")));
    // A deny in any rule applies to everyone.
    assert!(!allowed(&p, &alice, "tools/call", Some("drop_database")));
    assert_eq!(
        reason(&p, &alice, "tools/call", Some("drop_database")),
        "denied by policy[1].deny.and[0]"
    );
    assert_eq!(
        reason(&p, &dba, "tools/call", Some("query")),
        "allowed by policy[1].allow.and[0]"
    );
    assert_eq!(
        reason(&p, &bob, "tools/call", Some("query")),
        "no allow rule matched (policy[0].allow.or[0] did not match)"
    );
}

#[test]
fn action_value_may_be_a_list_of_blocks() {
    let p = policy(
        r#"
allow:
  - and: [{domain: {is: a.com}}]
  - and: [{domain: {is: b.com}}]
"#,
    );
    assert!(allowed(&p, &user("x@a.com", &[]), "ping", None));
    assert!(allowed(&p, &user("x@b.com", &[]), "ping", None));
    assert!(!allowed(&p, &user("x@c.com", &[]), "ping", None));
    assert_eq!(
        reason(&p, &user("x@b.com", &[]), "ping", None),
        "allowed by policy.allow[1].and[0]"
    );
}

#[test]
fn deny_wins() {
    let p = policy(
        r#"
allow:
  or:
    - accept: true
deny:
  or:
    - email: {is: mallory@company.com}
"#,
    );
    assert!(allowed(&p, &user("alice@company.com", &[]), "ping", None));
    let mallory = user("mallory@company.com", &[]);
    assert!(!allowed(&p, &mallory, "ping", None));
    assert_eq!(
        reason(&p, &mallory, "ping", None),
        "denied by policy.deny.or[0]"
    );
}

#[test]
fn no_allow_block_allows_signed_in_users() {
    let id = user("a@x.com", &[]);
    for text in ["{}", "[]", "~", "[{}]"] {
        let p = policy(text);
        assert!(p.is_unrestricted(), "{text}");
        let d = p.evaluate(&Request::new(&id).method("tools/call").target("anything"));
        assert!(d.allowed, "{text}");
        assert_eq!(d.reason, Reason::NoPolicy);
        assert!(p.allows_identity(&id));
        assert!(p.allows_target(&id, "tools/call", "anything"));
    }
    assert!(Policy::default().is_unrestricted());
    assert!(Policy::compile_optional(None).unwrap().is_unrestricted());
    assert!(
        !Policy::compile_optional(Some(&json!({"deny": {"or": [{"reject": true}]}})))
            .unwrap()
            .is_unrestricted()
    );

    // Deny-only: everyone the deny does not catch.
    let p = policy("deny: {and: [{mcp_tool: {starts_with: admin_}}]}");
    let d = p.evaluate(&Request::new(&id).method("tools/call").target("query"));
    assert!(d.allowed);
    assert_eq!(d.reason, Reason::NoDenyRuleMatched);
    assert!(!allowed(&p, &id, "tools/call", Some("admin_x")));
}

#[test]
fn empty_allow_block_denies_everyone() {
    let p = policy("allow: {}");
    let id = user("a@x.com", &[]);
    let d = p.evaluate(&Request::new(&id).method("ping"));
    assert!(!d.allowed);
    assert_eq!(d.reason, Reason::NoAllowRuleMatched("policy.allow"));
    assert!(!p.allows_identity(&id));
}

#[test]
fn reasons_name_the_deciding_rule() {
    let p = policy(
        r#"
allow:
  and:
    - domain: {is: company.com}
    - groups: {has: staff}
deny:
  or:
    - mcp_tool: {is: a}
    - and:
        - mcp_tool: {is: b}
        - mcp_argument: {path: force, equals: true}
  not:
    - email: {ends_with: company.com}
"#,
    );
    let staff = user("s@company.com", &["staff"]);
    let d = p.evaluate(&Request::new(&staff).method("tools/call").target("q"));
    assert_eq!(d.reason, Reason::AllowRule("policy.allow.and"));
    assert_eq!(d.reason.code(), "allow_rule");
    assert_eq!(d.reason.rule(), Some("policy.allow.and"));
    let d = p.evaluate(&Request::new(&staff).method("tools/call").target("a"));
    assert_eq!(d.reason, Reason::DenyRule("policy.deny.or[0]"));
    let args = json!({"force": true});
    let d = p.evaluate(
        &Request::new(&staff)
            .method("tools/call")
            .target("b")
            .arguments(&args),
    );
    assert_eq!(d.reason, Reason::DenyRule("policy.deny.or[1].and"));
    assert!(allowed(&p, &staff, "tools/call", Some("b")));
    let outsider = user("o@other.com", &["staff"]);
    let d = p.evaluate(&Request::new(&outsider).method("ping"));
    assert_eq!(d.reason, Reason::DenyRule("policy.deny.not"));
    let not_staff = user("n@company.com", &[]);
    let d = p.evaluate(&Request::new(&not_staff).method("ping"));
    assert_eq!(d.reason, Reason::NoAllowRuleMatched("policy.allow.and[1]"));
    assert_eq!(
        d.reason.to_string(),
        "no allow rule matched (policy.allow.and[1] did not match)"
    );
    assert_eq!(Reason::MissingTarget.rule(), None);
}

#[test]
fn allows_identity_uses_identity_criteria_only() {
    let p = policy(
        r#"
allow:
  and:
    - domain: {is: company.com}
    - mcp_tool: {in: [query]}
deny:
  or:
    - mcp_method: {is: tools/call}
    - email: {is: mallory@company.com}
"#,
    );
    assert!(p.allows_identity(&user("alice@company.com", &[])));
    assert!(!p.allows_identity(&user("bob@other.com", &[])));
    assert!(!p.allows_identity(&user("mallory@company.com", &[])));
    // not/nor over unknowns stay unknown, so they do not exclude either.
    let p = policy("allow: {not: [{mcp_tool: {is: x}}]}\ndeny: {nor: [{mcp_method: {is: ping}}]}");
    assert!(p.allows_identity(&user("a@b.c", &[])));
    // But known identity facts under not/nor do.
    let p = policy("allow: {not: [{groups: {has: banned}}, {mcp_tool: {is: x}}]}");
    assert!(!p.allows_identity(&user("a@b.c", &["banned"])));
    assert!(p.allows_identity(&user("a@b.c", &[])));
}

#[test]
fn allows_target_for_list_filtering() {
    let p = policy(
        r#"
allow:
  and:
    - domain: {is: company.com}
deny:
  or:
    - mcp_tool: {starts_with: admin_}
    - and:
        - mcp_tool: {is: run_sql}
        - mcp_argument: {path: sql, matches: '(?i)drop'}
    - and:
        - mcp_method: {is: prompts/get}
        - mcp_tool: {is: secret_prompt}
"#,
    );
    let alice = user("alice@company.com", &[]);
    let m = |list| list_entry_method(list).unwrap();
    assert!(p.allows_target(&alice, m("tools/list"), "query"));
    assert!(!p.allows_target(&alice, m("tools/list"), "admin_reset"));
    // Denied only for some argument values: still listed.
    assert!(p.allows_target(&alice, m("tools/list"), "run_sql"));
    assert!(!p.allows_target(&alice, m("prompts/list"), "secret_prompt"));
    assert!(p.allows_target(&alice, m("tools/list"), "secret_prompt"));
    assert!(p.allows_target(&alice, m("resources/list"), "file:///a"));
    assert!(!p.allows_target(&user("bob@other.com", &[]), m("tools/list"), "query"));
    assert_eq!(list_entry_method("initialize"), None);
}

#[test]
fn evaluation_of_requests_without_method() {
    // An HTTP request with no JSON-RPC message (GET for the SSE stream, DELETE of a session).
    let p =
        policy("allow: {and: [{domain: {is: company.com}}]}\ndeny: {and: [{mcp_tool: {is: x}}]}");
    let alice = user("alice@company.com", &[]);
    assert!(p.evaluate(&Request::new(&alice)).allowed);
    assert!(!p.evaluate(&Request::new(&user("b@o.com", &[]))).allowed);
}

#[test]
fn policy_is_shareable() {
    fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
    assert_traits::<Policy>();
    let p = policy("allow: {and: [{email: {ends_with: '@company.com'}}]}");
    let clone = p.clone();
    let handle = std::thread::spawn(move || clone.allows_identity(&user("a@company.com", &[])));
    assert!(handle.join().unwrap());
    assert!(format!("{p:?}").contains("Policy"));
}
