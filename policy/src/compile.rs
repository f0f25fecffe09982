//! Turns the policy JSON (parsed from the gateway YAML) into the compiled tree that `eval` walks.
//!
//! Every error names the field it is about, relative to the route's `policy` value, e.g.
//! `allow.and[2].mcp_argument.matches`.

use serde_json::{Map, Value};

use crate::matchers::{
    ArgMatcher, ArgOp, ClaimMatcher, ClaimOp, Glob, JsonPath, StrOp, StringMatcher,
};
use crate::PolicyError;

/// Deepest nesting of `and`/`or`/`not`/`nor` lists accepted (keeps evaluation's recursion, and so
/// its stack use inside the wasm VM, small and bounded).
pub const MAX_NESTING: usize = 16;

/// Largest compiled size of one `matches` regex (regex-lite's own measure).
const REGEX_SIZE_LIMIT: usize = 64 * 1024;
const REGEX_NEST_LIMIT: u32 = 64;

#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    /// Every `allow` block, from every rule. The policy allows when any of them matches.
    pub(crate) allow: Vec<Block>,
    /// Every `deny` block, from every rule. The policy denies when any of them matches.
    pub(crate) deny: Vec<Block>,
}

/// The value of one `allow:`/`deny:` key: its operators are OR-ed together (as in Pomerium).
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub(crate) path: Box<str>,
    pub(crate) ops: Vec<Operator>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// All items match.
    And,
    /// At least one item matches.
    Or,
    /// No item matches: ¬A ∧ ¬B (PPL's `not`).
    Not,
    /// Not every item matches: ¬A ∨ ¬B (PPL's `nor`).
    Nor,
}

#[derive(Debug, Clone)]
pub(crate) struct Operator {
    pub(crate) kind: OpKind,
    pub(crate) path: Box<str>,
    pub(crate) items: Vec<Node>,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Op(Operator),
    Criterion(Criterion),
}

impl Block {
    pub(crate) fn uses_arguments(&self) -> bool {
        self.ops.iter().any(Operator::uses_arguments)
    }
}

impl Operator {
    fn uses_arguments(&self) -> bool {
        self.items.iter().any(|node| match node {
            Node::Op(op) => op.uses_arguments(),
            Node::Criterion(c) => matches!(c.kind, CriterionKind::McpArgument(..)),
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Criterion {
    pub(crate) path: Box<str>,
    pub(crate) kind: CriterionKind,
}

#[derive(Debug, Clone)]
pub(crate) enum CriterionKind {
    Accept,
    Reject,
    AuthenticatedUser,
    Email(StringMatcher),
    Domain(StringMatcher),
    User(StringMatcher),
    GroupsHas(Vec<Box<str>>),
    Claim(JsonPath, ClaimMatcher),
    McpMethod(StringMatcher),
    McpTool(StringMatcher),
    McpArgument(JsonPath, ArgMatcher),
}

/// A field path under construction (relative to the `policy` value).
fn key_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The stable id of a rule as the audit log shows it: `policy.deny.and[0]`, `policy[1].allow`.
fn rule_id(field: &str) -> Box<str> {
    if field.is_empty() {
        "policy".into()
    } else if field.starts_with('[') {
        format!("policy{field}").into()
    } else {
        format!("policy.{field}").into()
    }
}

fn err(field: &str, reason: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

pub(crate) fn compile(value: &Value) -> Result<Compiled, PolicyError> {
    let mut compiled = Compiled {
        allow: Vec::new(),
        deny: Vec::new(),
    };
    match value {
        Value::Null => {}
        Value::Object(rule) => compile_rule(rule, "", &mut compiled)?,
        Value::Array(rules) => {
            for (i, rule) in rules.iter().enumerate() {
                let field = index_path("", i);
                match rule {
                    Value::Object(rule) => compile_rule(rule, &field, &mut compiled)?,
                    other => {
                        return Err(err(
                            &field,
                            format!(
                                "expected a rule (a mapping with `allow` and/or `deny`), found {}",
                                type_name(other)
                            ),
                        ))
                    }
                }
            }
        }
        other => {
            return Err(err(
                "",
                format!(
                "expected a mapping with `allow` and/or `deny`, or a list of such rules, found {}",
                type_name(other)
            ),
            ))
        }
    }
    Ok(compiled)
}

fn compile_rule(
    rule: &Map<String, Value>,
    field: &str,
    out: &mut Compiled,
) -> Result<(), PolicyError> {
    for (key, value) in rule {
        let child = key_path(field, key);
        let target = match key.as_str() {
            "allow" => &mut out.allow,
            "deny" => &mut out.deny,
            _ => {
                return Err(err(
                    &child,
                    format!("unknown action `{key}`: a rule has only `allow` and `deny`"),
                ))
            }
        };
        match value {
            Value::Object(block) => target.push(compile_block(block, &child)?),
            // Our extension: `allow: [ {and: …}, {or: …} ]`, the same as several rules.
            Value::Array(blocks) => {
                for (i, block) in blocks.iter().enumerate() {
                    let item = index_path(&child, i);
                    match block {
                        Value::Object(block) => target.push(compile_block(block, &item)?),
                        other => {
                            return Err(err(
                                &item,
                                format!(
                                    "expected a mapping with `and`, `or`, `not` or `nor`, found {}",
                                    type_name(other)
                                ),
                            ))
                        }
                    }
                }
            }
            other => {
                return Err(err(
                    &child,
                    format!(
                        "expected a mapping with `and`, `or`, `not` or `nor`, found {}",
                        type_name(other)
                    ),
                ))
            }
        }
    }
    Ok(())
}

fn op_kind(key: &str) -> Option<OpKind> {
    match key {
        "and" => Some(OpKind::And),
        "or" => Some(OpKind::Or),
        "not" => Some(OpKind::Not),
        "nor" => Some(OpKind::Nor),
        _ => None,
    }
}

fn compile_block(block: &Map<String, Value>, field: &str) -> Result<Block, PolicyError> {
    let mut ops = Vec::with_capacity(block.len());
    for (key, value) in block {
        let child = key_path(field, key);
        let Some(kind) = op_kind(key) else {
            return Err(err(
                &child,
                format!("unknown operator `{key}`: expected `and`, `or`, `not` or `nor`"),
            ));
        };
        ops.push(compile_operator(kind, value, &child, 1)?);
    }
    Ok(Block {
        path: rule_id(field),
        ops,
    })
}

fn compile_operator(
    kind: OpKind,
    value: &Value,
    field: &str,
    depth: usize,
) -> Result<Operator, PolicyError> {
    if depth > MAX_NESTING {
        return Err(err(
            field,
            format!("operators are nested more than {MAX_NESTING} deep"),
        ));
    }
    let Value::Array(list) = value else {
        return Err(err(
            field,
            format!("expected a list of criteria, found {}", type_name(value)),
        ));
    };
    let mut items = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let item_field = index_path(field, i);
        let Value::Object(map) = item else {
            return Err(err(
                &item_field,
                format!(
                    "expected a criterion (a mapping with one key, e.g. `email: {{is: …}}`), found {}",
                    type_name(item)
                ),
            ));
        };
        let mut entries = map.iter();
        let (key, data) = match (entries.next(), entries.next()) {
            (Some(entry), None) => entry,
            (None, _) => return Err(err(&item_field, "empty criterion: expected one key")),
            (Some(_), Some(_)) => {
                let keys: Vec<String> = map.keys().map(|k| format!("`{k}`")).collect();
                return Err(err(
                    &item_field,
                    format!(
                        "a criterion has exactly one key, found {}: {}; write each as its own list item",
                        keys.len(),
                        keys.join(", ")
                    ),
                ));
            }
        };
        let child = key_path(&item_field, key);
        let node = match op_kind(key) {
            Some(nested) => Node::Op(compile_operator(nested, data, &child, depth + 1)?),
            None => Node::Criterion(compile_criterion(key, data, &child, &item_field)?),
        };
        items.push(node);
    }
    Ok(Operator {
        kind,
        path: rule_id(field),
        items,
    })
}

const CRITERIA: &str = "accept, reject, authenticated_user, email, domain, user, groups, claim, claim/<name>, mcp_method, mcp_tool, mcp_argument";

fn compile_criterion(
    key: &str,
    data: &Value,
    field: &str,
    item_field: &str,
) -> Result<Criterion, PolicyError> {
    let kind = match key {
        "accept" => CriterionKind::Accept,
        "reject" => CriterionKind::Reject,
        "authenticated_user" => CriterionKind::AuthenticatedUser,
        "email" => CriterionKind::Email(string_matcher(data, field, false)?),
        "domain" => CriterionKind::Domain(string_matcher(data, field, true)?),
        "user" => CriterionKind::User(string_matcher(data, field, false)?),
        "groups" => CriterionKind::GroupsHas(groups_matcher(data, field)?),
        "claim" => {
            let Value::Object(map) = data else {
                return Err(err(
                    field,
                    format!(
                        "expected a mapping with `path` and a matcher (or use the `claim/<name>: value` form), found {}",
                        type_name(data)
                    ),
                ));
            };
            let path = required_path(map, field)?;
            let matcher = claim_matcher(map, field, true)?;
            CriterionKind::Claim(path, matcher)
        }
        "mcp_method" => CriterionKind::McpMethod(string_matcher(data, field, false)?),
        "mcp_tool" => CriterionKind::McpTool(string_matcher(data, field, false)?),
        "mcp_argument" => {
            let Value::Object(map) = data else {
                return Err(err(
                    field,
                    format!(
                        "expected a mapping with `path` and a matcher, found {}",
                        type_name(data)
                    ),
                ));
            };
            let path = required_path(map, field)?;
            CriterionKind::McpArgument(path, arg_matcher(map, field)?)
        }
        _ => match key.split_once('/') {
            Some(("claim", name)) if !name.is_empty() => {
                let matcher = match data {
                    Value::Object(map) => claim_matcher(map, field, false)?,
                    Value::String(_) | Value::Number(_) | Value::Bool(_) => ClaimMatcher {
                        ops: vec![ClaimOp::Is(data.clone())],
                    },
                    other => {
                        return Err(err(
                            field,
                            format!(
                                "expected a value to compare the claim with, or a matcher mapping, found {}",
                                type_name(other)
                            ),
                        ))
                    }
                };
                CriterionKind::Claim(JsonPath::single_key(name), matcher)
            }
            _ => {
                return Err(err(
                    field,
                    format!("unknown criterion `{key}`; supported: {CRITERIA}"),
                ))
            }
        },
    };
    Ok(Criterion {
        path: rule_id(item_field),
        kind,
    })
}

fn required_path(map: &Map<String, Value>, field: &str) -> Result<JsonPath, PolicyError> {
    let path_field = key_path(field, "path");
    match map.get("path") {
        Some(Value::String(text)) => {
            JsonPath::parse(text).map_err(|reason| err(&path_field, reason))
        }
        Some(other) => Err(err(
            &path_field,
            format!("expected a string, found {}", type_name(other)),
        )),
        None => Err(err(field, "missing `path`")),
    }
}

fn expect_str<'v>(value: &'v Value, field: &str) -> Result<&'v str, PolicyError> {
    value.as_str().ok_or_else(|| {
        err(
            field,
            format!("expected a string, found {}", type_name(value)),
        )
    })
}

fn expect_str_list(value: &Value, field: &str) -> Result<Vec<Box<str>>, PolicyError> {
    let Value::Array(items) = value else {
        return Err(err(
            field,
            format!("expected a list of strings, found {}", type_name(value)),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| expect_str(item, &index_path(field, i)).map(Into::into))
        .collect()
}

const STRING_OPS: &str = "is, in, not_in, starts_with, ends_with, contains, matches";

/// Compiles one string operator, or returns `Ok(None)` when `key` is not a string operator.
fn str_op(key: &str, value: &Value, field: &str) -> Result<Option<StrOp>, PolicyError> {
    let op = match key {
        "is" => StrOp::Is(expect_str(value, field)?.into()),
        "in" => StrOp::In(expect_str_list(value, field)?),
        "not_in" => StrOp::NotIn(expect_str_list(value, field)?),
        "starts_with" => StrOp::StartsWith(expect_str(value, field)?.into()),
        "ends_with" => StrOp::EndsWith(expect_str(value, field)?.into()),
        "contains" => StrOp::Contains(expect_str(value, field)?.into()),
        "matches" => StrOp::Glob(
            Glob::compile(expect_str(value, field)?).map_err(|reason| err(field, reason))?,
        ),
        _ => return Ok(None),
    };
    Ok(Some(op))
}

fn string_matcher(
    data: &Value,
    field: &str,
    case_insensitive: bool,
) -> Result<StringMatcher, PolicyError> {
    let ops = match data {
        // PPL shorthand: `email: alice@example.com` is `email: {is: alice@example.com}`.
        Value::String(s) => vec![StrOp::Is(s.as_str().into())],
        Value::Object(map) => {
            if map.is_empty() {
                return Err(err(
                    field,
                    format!("no matcher given; expected one of: {STRING_OPS}"),
                ));
            }
            let mut ops = Vec::with_capacity(map.len());
            for (key, value) in map {
                let child = key_path(field, key);
                match str_op(key, value, &child)? {
                    Some(op) => ops.push(op),
                    None => {
                        return Err(err(
                            &child,
                            format!("unknown matcher `{key}`; expected one of: {STRING_OPS}"),
                        ))
                    }
                }
            }
            ops
        }
        other => {
            return Err(err(
                field,
                format!(
                    "expected a string matcher (e.g. `{{is: value}}`) or a string, found {}",
                    type_name(other)
                ),
            ))
        }
    };
    Ok(StringMatcher {
        ops,
        case_insensitive,
    })
}

fn groups_matcher(data: &Value, field: &str) -> Result<Vec<Box<str>>, PolicyError> {
    match data {
        Value::String(s) => Ok(vec![s.as_str().into()]),
        Value::Object(map) => {
            if map.is_empty() {
                return Err(err(field, "no matcher given; expected `has`"));
            }
            let mut all = Vec::with_capacity(map.len());
            for (key, value) in map {
                let child = key_path(field, key);
                match key.as_str() {
                    "has" => all.push(expect_str(value, &child)?.into()),
                    _ => {
                        return Err(err(
                            &child,
                            format!("unknown matcher `{key}`; expected `has`"),
                        ))
                    }
                }
            }
            Ok(all)
        }
        other => Err(err(
            field,
            format!(
                "expected a list matcher (`{{has: group}}`) or a string, found {}",
                type_name(other)
            ),
        )),
    }
}

const CLAIM_OPS: &str = "is, in, not_in, starts_with, ends_with, contains, matches";

fn claim_matcher(
    map: &Map<String, Value>,
    field: &str,
    has_path_key: bool,
) -> Result<ClaimMatcher, PolicyError> {
    let mut ops = Vec::with_capacity(map.len());
    for (key, value) in map {
        if has_path_key && key == "path" {
            continue;
        }
        let child = key_path(field, key);
        let op = match key.as_str() {
            "is" => ClaimOp::Is(value.clone()),
            "in" => ClaimOp::In(expect_list(value, &child)?),
            "not_in" => ClaimOp::NotIn(expect_list(value, &child)?),
            _ => match str_op(key, value, &child)? {
                Some(op) => ClaimOp::Str(op),
                None => {
                    return Err(err(
                        &child,
                        format!("unknown matcher `{key}`; expected one of: {CLAIM_OPS}"),
                    ))
                }
            },
        };
        ops.push(op);
    }
    if ops.is_empty() {
        return Err(err(
            field,
            format!("no matcher given; expected one of: {CLAIM_OPS}"),
        ));
    }
    Ok(ClaimMatcher { ops })
}

fn expect_list(value: &Value, field: &str) -> Result<Vec<Value>, PolicyError> {
    match value {
        Value::Array(items) => Ok(items.clone()),
        other => Err(err(
            field,
            format!("expected a list, found {}", type_name(other)),
        )),
    }
}

const ARG_OPS: &str = "equals, in, contains, matches, lt, lte, gt, gte";

fn arg_matcher(map: &Map<String, Value>, field: &str) -> Result<ArgMatcher, PolicyError> {
    let mut ops = Vec::with_capacity(map.len());
    for (key, value) in map {
        if key == "path" {
            continue;
        }
        let child = key_path(field, key);
        let number = || match value {
            Value::Number(n) => Ok(n.clone()),
            other => Err(err(
                &child,
                format!("expected a number, found {}", type_name(other)),
            )),
        };
        let op = match key.as_str() {
            "equals" => ArgOp::Equals(value.clone()),
            "in" => ArgOp::In(expect_list(value, &child)?),
            "contains" => ArgOp::Contains(value.clone()),
            "matches" => {
                let pattern = expect_str(value, &child)?;
                let re = regex_lite::RegexBuilder::new(pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .nest_limit(REGEX_NEST_LIMIT)
                    .build()
                    .map_err(|e| err(&child, format!("invalid regex: {e}")))?;
                ArgOp::Matches(re)
            }
            "lt" => ArgOp::Lt(number()?),
            "lte" => ArgOp::Lte(number()?),
            "gt" => ArgOp::Gt(number()?),
            "gte" => ArgOp::Gte(number()?),
            _ => {
                return Err(err(
                    &child,
                    format!("unknown matcher `{key}`; expected one of: {ARG_OPS}"),
                ))
            }
        };
        ops.push(op);
    }
    if ops.is_empty() {
        return Err(err(
            field,
            format!("no matcher given; expected one of: {ARG_OPS}"),
        ));
    }
    Ok(ArgMatcher { ops })
}
