//! Each kind of mistake is a compile error naming the field.

use mcpgate_policy::{Policy, PolicyError};
use serde_json::Value;

fn error(yaml: &str) -> PolicyError {
    let value: Value = serde_yaml_ng::from_str(yaml).unwrap();
    match Policy::compile(&value) {
        Ok(p) => panic!("expected an error for\n{yaml}\ngot {p:?}"),
        Err(e) => e,
    }
}

#[track_caller]
fn check(yaml: &str, field: &str, reason_contains: &str) {
    let e = error(yaml);
    assert_eq!(e.field, field, "{yaml}\n-> {e}");
    assert!(
        e.reason.contains(reason_contains),
        "{yaml}\n-> reason `{}` lacks `{reason_contains}`",
        e.reason
    );
    assert_eq!(e.to_string(), format!("{field}: {}", e.reason));
}

#[test]
fn wrong_top_level() {
    let e = error("42");
    assert_eq!(e.field, "");
    assert!(e.reason.contains("expected a mapping"));
    assert_eq!(e.to_string(), e.reason);
    check("- 1", "[0]", "expected a rule");
    check("allowed: {}", "allowed", "unknown action `allowed`");
    check(
        "[{allow: {}}, {permit: {}}]",
        "[1].permit",
        "unknown action",
    );
}

#[test]
fn wrong_block() {
    check("allow: true", "allow", "expected a mapping with `and`");
    check("allow: ~", "allow", "found null");
    check("deny: {xor: []}", "deny.xor", "unknown operator `xor`");
    check(
        "allow: {and: {email: x}}",
        "allow.and",
        "expected a list of criteria",
    );
    check("allow: [{and: []}, 3]", "allow[1]", "expected a mapping");
    check(
        "allow: {and: [email]}",
        "allow.and[0]",
        "expected a criterion",
    );
    check("allow: {and: [{}]}", "allow.and[0]", "empty criterion");
    check(
        "allow: {and: [{email: a@b.c, domain: b.c}]}",
        "allow.and[0]",
        "exactly one key",
    );
    check(
        "allow: {or: [{and: 3}]}",
        "allow.or[0].and",
        "expected a list",
    );
}

#[test]
fn unknown_criteria() {
    check(
        "allow: {and: [{http_method: {is: GET}}]}",
        "allow.and[0].http_method",
        "unknown criterion `http_method`",
    );
    check(
        "allow: {and: [{mcp_tools: {is: x}}]}",
        "allow.and[0].mcp_tools",
        "unknown criterion",
    );
    check(
        "allow: {and: [{email/x: a}]}",
        "allow.and[0].email/x",
        "unknown criterion",
    );
    check(
        "allow: {and: [{claim/: a}]}",
        "allow.and[0].claim/",
        "unknown criterion",
    );
    check(
        "allow: {or: [{not: [{device: {type: any}}]}]}",
        "allow.or[0].not[0].device",
        "unknown criterion",
    );
}

#[test]
fn unknown_matchers() {
    check(
        "allow: {and: [{email: {equals: x}}]}",
        "allow.and[0].email.equals",
        "unknown matcher `equals`",
    );
    check(
        "allow: {and: [{mcp_tool: {regex: x}}]}",
        "allow.and[0].mcp_tool.regex",
        "unknown matcher",
    );
    check(
        "allow: {and: [{groups: {is: x}}]}",
        "allow.and[0].groups.is",
        "expected `has`",
    );
    check(
        "allow: {and: [{claim: {path: a, equals: x}}]}",
        "allow.and[0].claim.equals",
        "unknown matcher",
    );
    check(
        "allow: {and: [{claim/a: {has: x}}]}",
        "allow.and[0].claim/a.has",
        "unknown matcher",
    );
    check(
        "deny: {and: [{mcp_argument: {path: a, is: x}}]}",
        "deny.and[0].mcp_argument.is",
        "unknown matcher `is`",
    );
    check(
        "allow: {and: [{email: {}}]}",
        "allow.and[0].email",
        "no matcher given",
    );
    check(
        "allow: {and: [{groups: {}}]}",
        "allow.and[0].groups",
        "no matcher given",
    );
    check(
        "allow: {and: [{claim: {path: a}}]}",
        "allow.and[0].claim",
        "no matcher given",
    );
    check(
        "deny: {and: [{mcp_argument: {path: a}}]}",
        "deny.and[0].mcp_argument",
        "no matcher given",
    );
}

#[test]
fn wrong_value_types() {
    check(
        "allow: {and: [{email: {is: 3}}]}",
        "allow.and[0].email.is",
        "expected a string",
    );
    check(
        "allow: {and: [{email: 3}]}",
        "allow.and[0].email",
        "expected a string matcher",
    );
    check(
        "allow: {and: [{email: [a, b]}]}",
        "allow.and[0].email",
        "found a list",
    );
    check(
        "allow: {and: [{user: {in: u1}}]}",
        "allow.and[0].user.in",
        "expected a list of strings",
    );
    check(
        "allow: {and: [{mcp_tool: {not_in: [a, 1]}}]}",
        "allow.and[0].mcp_tool.not_in[1]",
        "expected a string",
    );
    check(
        "allow: {and: [{groups: [a]}]}",
        "allow.and[0].groups",
        "expected a list matcher",
    );
    check(
        "allow: {and: [{groups: {has: [a]}}]}",
        "allow.and[0].groups.has",
        "expected a string",
    );
    check(
        "allow: {and: [{claim: x}]}",
        "allow.and[0].claim",
        "expected a mapping with `path`",
    );
    check(
        "allow: {and: [{claim: {is: x}}]}",
        "allow.and[0].claim",
        "missing `path`",
    );
    check(
        "allow: {and: [{claim: {path: 3, is: x}}]}",
        "allow.and[0].claim.path",
        "expected a string",
    );
    check(
        "allow: {and: [{claim: {path: a, in: x}}]}",
        "allow.and[0].claim.in",
        "expected a list",
    );
    check(
        "allow: {and: [{claim/a: [x]}]}",
        "allow.and[0].claim/a",
        "found a list",
    );
    check(
        "deny: {and: [{mcp_argument: x}]}",
        "deny.and[0].mcp_argument",
        "expected a mapping",
    );
    check(
        "deny: {and: [{mcp_argument: {equals: 1}}]}",
        "deny.and[0].mcp_argument",
        "missing `path`",
    );
    check(
        "deny: {and: [{mcp_argument: {path: a, gt: '5'}}]}",
        "deny.and[0].mcp_argument.gt",
        "expected a number",
    );
    check(
        "deny: {and: [{mcp_argument: {path: a, lte: ~}}]}",
        "deny.and[0].mcp_argument.lte",
        "expected a number",
    );
    check(
        "deny: {and: [{mcp_argument: {path: a, in: 5}}]}",
        "deny.and[0].mcp_argument.in",
        "expected a list",
    );
    check(
        "deny: {and: [{mcp_argument: {path: a, matches: 5}}]}",
        "deny.and[0].mcp_argument.matches",
        "expected a string",
    );
}

#[test]
fn invalid_patterns_and_paths() {
    check(
        "allow: {and: [{accept: true}, {accept: true}, {mcp_argument: {path: a, matches: '(unclosed'}}]}",
        "allow.and[2].mcp_argument.matches",
        "invalid regex",
    );
    check(
        "deny: {and: [{mcp_argument: {path: a, matches: 'a{99999}{99999}'}}]}",
        "deny.and[0].mcp_argument.matches",
        "invalid regex",
    );
    check(
        "deny: {and: [{mcp_tool: {matches: 'admin\\'}}]}",
        "deny.and[0].mcp_tool.matches",
        "invalid glob",
    );
    check(
        "deny: {and: [{mcp_argument: {path: 'a..b', equals: 1}}]}",
        "deny.and[0].mcp_argument.path",
        "invalid path",
    );
    check(
        "deny: {and: [{mcp_argument: {path: '', equals: 1}}]}",
        "deny.and[0].mcp_argument.path",
        "empty path",
    );
    check(
        "deny: {and: [{mcp_argument: {path: 'a[x]', equals: 1}}]}",
        "deny.and[0].mcp_argument.path",
        "not an array index",
    );
    check(
        "allow: {and: [{claim: {path: 'a[', is: 1}}]}",
        "allow.and[0].claim.path",
        "not closed",
    );
}

#[test]
fn nesting_limit() {
    let mut inner = "{accept: true}".to_string();
    for _ in 0..mcpgate_policy::MAX_NESTING {
        inner = format!("{{and: [{inner}]}}");
    }
    // MAX_NESTING levels below the block's own operator: one too many.
    let e = error(&format!("allow: {{and: [{inner}]}}"));
    assert!(e.reason.contains("nested more than"), "{e}");
    assert!(e.field.starts_with("allow.and[0].and[0]"), "{e}");
    // One level less compiles.
    let mut ok = "{accept: true}".to_string();
    for _ in 1..mcpgate_policy::MAX_NESTING {
        ok = format!("{{and: [{ok}]}}");
    }
    let value: Value = serde_yaml_ng::from_str(&format!("allow: {{and: [{ok}]}}")).unwrap();
    assert!(Policy::compile(&value).is_ok());
}
