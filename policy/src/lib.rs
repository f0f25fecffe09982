//! # mcpgate policy engine
//!
//! Each MCP server route in the gateway file may carry a `policy`. It is written in the
//! [Pomerium Policy Language] (PPL) with MCP criteria added, is compiled once when the
//! configuration loads ([`Policy::compile`]), and then decides every MCP JSON-RPC request to the
//! route ([`Policy::evaluate`]), which entries of `tools/list` / `prompts/list` /
//! `resources/list` a user sees ([`Policy::allows_target`]), and which routes the routes listing
//! shows a user ([`Policy::allows_identity`]). The same crate runs inside the proxy-wasm filter
//! (`wasm32-wasip1`) and natively in the token service.
//!
//! [Pomerium Policy Language]: https://www.pomerium.com/docs/internals/ppl
//!
//! ```yaml
//! routes:
//!   - from: https://db-mcp.example.com
//!     to: http://db-mcp:8080/mcp
//!     mcp: {server: {}}
//!     policy:
//!       allow:
//!         and:
//!           - domain: {is: company.com}
//!       deny:
//!         and:
//!           - mcp_tool: {starts_with: 'admin_'}
//! ```
//!
//! This policy lets anyone signed in with a `company.com` address use the server, except that no
//! one may call a tool whose name starts with `admin_`.
//!
//! ## Rules and actions
//!
//! A policy is a *rule* (a mapping with `allow` and/or `deny`) or a list of rules:
//!
//! ```yaml
//! policy:
//!   - allow:
//!       or:
//!         - email: {is: alice@company.com}
//!   - allow:
//!       and:
//!         - groups: {has: db-admins}
//!     deny:
//!       and:
//!         - mcp_tool: {is: drop_database}
//! ```
//!
//! The decision, in order:
//!
//! 1. If **any** `deny` block matches, the request is denied (deny always wins).
//! 2. Otherwise, if the policy has **no** `allow` block at all, the request is allowed.
//! 3. Otherwise the request is allowed if **at least one** `allow` block matches, and denied if
//!    none does.
//!
//! Consequences worth knowing:
//!
//! - `policy: {}`, `policy: []`, `policy: ~` and a route without `policy` all allow **every
//!   signed-in user** (the gateway never lets an unauthenticated request reach policy). This
//!   is how Pomerium's MCP examples use `policy: {}`.
//! - A policy with only `deny` blocks allows everyone the deny blocks do not catch. (Pomerium
//!   itself would deny everyone there; mcpgate follows the rule "no allow rule = any signed-in
//!   user", so that `policy: {deny: …}` reads as it looks.)
//! - `allow: {}` (an allow block with no operators) exists but matches nothing, so it denies
//!   everyone, as in Pomerium.
//!
//! ## Logical operators
//!
//! Each `allow`/`deny` block holds one or more operators, each a list of criteria:
//!
//! | operator | true when | logic |
//! |---|---|---|
//! | `and` | every item matches | A ∧ B |
//! | `or`  | at least one item matches | A ∨ B |
//! | `not` | **no** item matches | ¬A ∧ ¬B = ¬(A ∨ B) |
//! | `nor` | **not every** item matches | ¬A ∨ ¬B = ¬(A ∧ B) |
//!
//! `not` and `nor` follow Pomerium's definitions exactly (its docs and its Rego generator:
//! `NOT => (NOT A) AND (NOT B)`, `NOR => (NOT A) OR (NOT B)`). Beware that this is the reverse
//! of the Boolean-algebra names: PPL's `not` is what logicians call NOR, and PPL's `nor` is
//! NAND. With a single item both mean plain negation. When in doubt, write `not` with one item:
//!
//! ```yaml
//! deny:
//!   not:
//!     - groups: {has: staff}     # deny everyone who is not in `staff`
//! ```
//!
//! Further rules, all as in Pomerium:
//!
//! - Several operators in **one** block are OR-ed together, like separate rules:
//!   `allow: {and: [A], or: [B, C]}` allows when `A`, or `B`, or `C` matches. Pomerium
//!   recommends one operator per block; so do we.
//! - An empty list (`and: []`) never matches.
//! - Each list item is a mapping with **exactly one** key: a criterion, or (an mcpgate
//!   extension) a nested operator, up to 16 levels deep:
//!
//! ```yaml
//! allow:
//!   or:
//!     - groups: {has: admins}
//!     - and:
//!         - domain: {is: company.com}
//!         - mcp_method: {in: [initialize, tools/list, tools/call]}
//! ```
//!
//! - (mcpgate extension) the value of `allow`/`deny` may also be a list of blocks, each
//!   OR-ed with the others: `allow: [{and: [A, B]}, {and: [C]}]`.
//!
//! ## Criteria
//!
//! | criterion | tests | matcher |
//! |---|---|---|
//! | `email` | the user's email address (exact, case-sensitive) | string |
//! | `domain` | the part of the email after the last `@`, **ASCII case-insensitive** | string |
//! | `user` | the user id (the token subject) | string |
//! | `groups` | the user's groups | `has` |
//! | `claim` | a value in the token's claims | claim |
//! | `mcp_method` | the JSON-RPC method (`tools/call`, `initialize`, …) | string |
//! | `mcp_tool` | the tool name, prompt name or resource URI | string |
//! | `mcp_argument` | a value in the request's `arguments` | argument |
//! | `accept` | always matches (any value, e.g. `accept: true`) | — |
//! | `authenticated_user` | always matches: every evaluated request is signed in | — |
//! | `reject` | never matches | — |
//!
//! Any other criterion (including PPL's `http_method`, `device`, `source_ip`, …) is a compile
//! error, so a policy is never silently weaker than written.
//!
//! A value the request does not have (no email, a missing claim, a method without a tool name,
//! a missing argument) **never matches**, whatever the matcher — `not_in` included. (The
//! criterion is then false, so wrapping it in `not` makes that item true.)
//!
//! ### String matcher
//!
//! Used by `email`, `domain`, `user`, `mcp_method` and `mcp_tool`. A mapping of one or more
//! operators, **all** of which must hold; a bare string is shorthand for `is`.
//!
//! | operator | matches when the value… | example |
//! |---|---|---|
//! | `is` | equals the string | `email: {is: alice@company.com}` |
//! | `in` | equals one of the strings | `user: {in: [u-123, u-456]}` |
//! | `not_in` | equals none of the strings | `mcp_tool: {not_in: [query, list_tables]}` |
//! | `starts_with` | starts with the string | `mcp_tool: {starts_with: admin_}` |
//! | `ends_with` | ends with the string | `email: {ends_with: '@company.com'}` |
//! | `contains` | contains the string | `mcp_tool: {contains: delete}` |
//! | `matches` | matches the glob, whole string: `*` any run of characters (including `/`), `?` one character, `\` escapes | `mcp_tool: {matches: 'db_*_read'}` |
//!
//! ```yaml
//! allow:
//!   and:
//!     - email: alice@company.com                     # shorthand for {is: …}
//!     - domain: {is: Company.com}                    # matches alice@COMPANY.COM too
//!     - user: {in: [00u1abc, 00u2def]}
//!     - mcp_method: {starts_with: 'tools/'}
//!     - mcp_tool: {matches: 'read_*', ends_with: '_v2'}   # both must hold
//! ```
//!
//! Strings compare exactly, byte for byte: no Unicode normalisation and, except for `domain`
//! (ASCII case folding only), no case folding. Names are compared as the client sent them after
//! JSON unescaping (the filter decodes `\u0061dmin_x` to `admin_x` before asking).
//!
//! ### `groups`
//!
//! ```yaml
//! allow:
//!   or:
//!     - groups: {has: db-admins}
//!     - groups: analysts                 # shorthand for {has: analysts}
//! ```
//!
//! ### `claim`
//!
//! Two forms. The PPL form names a top-level claim literally (so URL-style claim names work)
//! and compares its value:
//!
//! ```yaml
//! allow:
//!   and:
//!     - claim/family_name: Smith
//!     - claim/https://example.com/roles: {in: [admin, dba]}
//! ```
//!
//! The mcpgate form takes a path into the claims JSON (the same syntax as `mcp_argument`):
//!
//! ```yaml
//! allow:
//!   and:
//!     - claim: {path: org.team, is: platform}
//!     - claim: {path: 'roles[0]', starts_with: db-}
//!     - claim: {path: '$["https://example.com/tier"]', in: [gold, 3]}
//! ```
//!
//! Claim operators: `is` (any JSON value; a string, number or boolean also matches an array
//! claim containing it, as Pomerium claims are often lists), `in`, `not_in` (lists of JSON
//! values, same rule), and the string operators `starts_with`, `ends_with`, `contains`,
//! `matches` (glob), which apply to a string claim or to any string element of an array claim.
//! Numbers compare by value (`1` equals `1.0`).
//!
//! ### `mcp_method`
//!
//! The JSON-RPC method of the request: `initialize`, `tools/list`, `tools/call`,
//! `prompts/get`, `resources/read`, `notifications/initialized`, …
//!
//! ```yaml
//! deny:
//!   and:
//!     - mcp_method: {in: [resources/read, resources/subscribe]}
//!     - nor: [{groups: {has: readers}}]
//! ```
//!
//! ### `mcp_tool`
//!
//! The name the request acts on:
//!
//! | method | name tested |
//! |---|---|
//! | `tools/call` | `params.name` (the tool) |
//! | `prompts/get` | `params.name` (the prompt) |
//! | `resources/read`, `resources/subscribe`, `resources/unsubscribe` | `params.uri` (the resource) |
//!
//! For every other method (`initialize`, `tools/list`, notifications, …) there is no name, and
//! **`mcp_tool` does not match** — under `allow` as under `deny`, for every operator including
//! `not_in`. This is Pomerium's semantics ("for `tools/list`, `resources/list`, etc., the
//! criterion evaluates to false"), and it gives the behaviour an operator expects:
//!
//! - `deny: {and: [mcp_tool: {starts_with: admin_}]}` denies calling `admin_x`, and never
//!   blocks `initialize` or `tools/list`;
//! - `deny: {and: [mcp_tool: {not_in: [query, list_tables]}]}` is an allowlist: every *named*
//!   request outside the list is denied, the protocol's other messages pass. Note that prompts
//!   and resources are named requests too, so this also denies every `prompts/get` and
//!   `resources/read`; to restrict only tools, add `- mcp_method: {is: tools/call}` to the same
//!   `and`;
//! - putting `mcp_tool` **only** under `allow` denies every request that has no name, including
//!   `initialize`: the route becomes unusable. Put tool restrictions under `deny` (Pomerium's
//!   advice too), or allow the unnamed methods explicitly:
//!
//! ```yaml
//! allow:
//!   or:
//!     - mcp_tool: {in: [query, list_tables]}
//!     - mcp_method: {not_in: [tools/call, prompts/get, resources/read, resources/subscribe, resources/unsubscribe]}
//! ```
//!
//! Fail closed: a `tools/call`, `prompts/get` or `resources/read|subscribe|unsubscribe` request
//! whose name is missing is denied outright ([`Reason::MissingTarget`]), whatever the policy, so
//! a deny on `mcp_tool` can never be dodged by leaving the name out.
//!
//! ### `mcp_argument`
//!
//! A value inside `params.arguments` of the request (a tool call's or a prompt's arguments),
//! found by `path`, then tested with one or more operators (all must hold):
//!
//! | operator | matches when the argument… |
//! |---|---|
//! | `equals` | equals the JSON value (numbers by value: `1` = `1.0`) |
//! | `in` | equals one of the listed JSON values |
//! | `contains` | is a string containing the given string, or an array with an element equal to the value |
//! | `matches` | is a string the regex matches (**unanchored** search; use `^…$` to match the whole string; [regex-lite syntax](https://docs.rs/regex-lite)) |
//! | `lt`, `lte`, `gt`, `gte` | is a number `<`, `≤`, `>`, `≥` the given number (a numeric string does not count) |
//!
//! Paths: `a.b[0]` or `$.a.b[0]`; keys with dots or brackets in brackets and quotes,
//! `$["file.name"]`; `$` alone is the whole `arguments` value. A path that is not there does
//! not match (so use `mcp_argument` in `deny` to block values, and remember that under `deny` a
//! missing argument is not blocked).
//!
//! ```yaml
//! deny:
//!   or:
//!     - and:
//!         - mcp_tool: {is: run_query}
//!         - mcp_argument: {path: sql, matches: '(?i)\b(drop|truncate|delete)\b'}
//!     - mcp_argument: {path: $.options.limit, gt: 1000}
//!     - mcp_argument: {path: 'paths[0]', contains: '..'}
//!     - mcp_argument: {path: env, in: [prod, production]}
//!     - mcp_argument: {path: flags, contains: force}     # an array argument with "force"
//!     - mcp_argument: {path: dry_run, equals: false}
//! ```
//!
//! ## Decisions and reasons
//!
//! [`Policy::evaluate`] returns a [`Decision`] whose [`Reason`] names the rule that decided,
//! by a stable id made of the field path: `policy.deny.and[0]` (the first item of the deny
//! block's `and`), `policy[1].allow.or[2]`, `policy.allow.and` (an `and` of several items that
//! all matched). When no allow block matched, the reason names the first item that failed. The
//! ids stay the same as long as the policy text does, so audit logs can be grepped.
//!
//! ## Listings: `allows_target` and `allows_identity`
//!
//! Listings are decided with some inputs *unknown*, in three-valued (Kleene) logic: a criterion
//! on an unknown input is "unknown", and an item is shown unless the policy **certainly**
//! denies it — a deny block certainly matches, or every allow block certainly fails. Criteria
//! on unknown inputs therefore never hide anything; only what is already known can.
//!
//! - [`Policy::allows_target`]`(identity, method, name)`: may this user use this tool (method
//!   `tools/call`), prompt (`prompts/get`) or resource (`resources/read`)? Used to filter list
//!   responses. The arguments are unknown, so `mcp_argument` criteria count as unknown: a tool
//!   that is denied only for some argument values is still listed.
//! - [`Policy::allows_identity`]`(identity)`: could this user use the route at all? Only the
//!   identity criteria are known; `mcp_method`, `mcp_tool` and `mcp_argument` are unknown. Used
//!   by the token service's routes listing. With the example at the top, `bob@other.com` does
//!   not see the route, `alice@company.com` does.
//!
//! Listings only hide; every request is still decided in full by [`Policy::evaluate`].
//!
//! ## Compile errors
//!
//! Unknown actions, operators, criteria and matchers, values of the wrong type, invalid globs,
//! regexes and paths, criteria with zero or several keys, and nesting deeper than 16 are all
//! errors. [`PolicyError::field`] is the path of the offending field relative to the route's
//! `policy` (prefix it with the route), e.g. `allow.and[2].mcp_argument.matches` with reason
//! `invalid regex: …`.
//!
//! ## Use from Rust
//!
//! ```
//! use mcpgate_policy::{Identity, Policy, Request};
//! use serde_json::json;
//!
//! let policy = Policy::compile(&json!({
//!     "allow": {"and": [{"domain": {"is": "company.com"}}]},
//!     "deny": {"and": [{"mcp_tool": {"starts_with": "admin_"}}]},
//! }))?;
//! let alice = Identity {
//!     user: "u-1".into(),
//!     email: Some("alice@company.com".into()),
//!     ..Identity::default()
//! };
//! let args = json!({"id": 7});
//! let call = Request::new(&alice).method("tools/call").target("admin_reset").arguments(&args);
//! let decision = policy.evaluate(&call);
//! assert!(!decision.allowed);
//! assert_eq!(decision.reason.to_string(), "denied by policy.deny.and[0]");
//! assert!(policy.evaluate(&Request::new(&alice).method("tools/list")).allowed);
//! assert!(policy.allows_identity(&alice));
//! assert!(!policy.allows_target(&alice, "tools/call", "admin_reset"));
//! # Ok::<(), mcpgate_policy::PolicyError>(())
//! ```
//!
//! Evaluation walks the precompiled tree (globs, regexes and paths are compiled once), builds
//! no strings, borrows the reason from the policy, and never panics.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod compile;
mod eval;
mod matchers;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::compile::Compiled;
use crate::eval::{any_block, Ctx, Input, Tri};

pub use crate::compile::MAX_NESTING;

/// Methods whose request names a tool, prompt or resource, the value `mcp_tool` tests.
/// A request with one of these methods and no name is denied ([`Reason::MissingTarget`]).
pub const TARGETED_METHODS: [&str; 5] = [
    "tools/call",
    "prompts/get",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// For a list method, the method whose permission decides whether an entry is shown:
/// `tools/list` → `tools/call`, `prompts/list` → `prompts/get`, `resources/list` →
/// `resources/read`. Pass it to [`Policy::allows_target`] with the entry's name (or URI).
pub fn list_entry_method(list_method: &str) -> Option<&'static str> {
    match list_method {
        "tools/list" => Some("tools/call"),
        "prompts/list" => Some("prompts/get"),
        "resources/list" => Some("resources/read"),
        _ => None,
    }
}

/// A policy that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{}", .field, if .field.is_empty() { "" } else { ": " }, .reason)]
pub struct PolicyError {
    /// Path of the offending field relative to the route's `policy` value, e.g.
    /// `allow.and[2].mcp_argument.matches`; empty when the policy value itself is wrong.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Who is making the request: built once from the verified token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The user id (token subject).
    pub user: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// All claims of the token (a JSON object), for `claim` criteria.
    #[serde(default)]
    pub claims: Value,
}

/// One MCP request, borrowed from the parsed message.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub identity: &'a Identity,
    /// The JSON-RPC method; `None` for an HTTP request that carries no JSON-RPC message.
    pub method: Option<&'a str>,
    /// The tool or prompt name, or the resource URI, JSON-unescaped. Set it for the
    /// [`TARGETED_METHODS`] (without it they are denied); leave it `None` for other methods,
    /// which have no name (if set anyway, `mcp_tool` criteria test it).
    pub target: Option<&'a str>,
    /// `params.arguments`, if present.
    pub arguments: Option<&'a Value>,
}

impl<'a> Request<'a> {
    pub fn new(identity: &'a Identity) -> Request<'a> {
        Request {
            identity,
            method: None,
            target: None,
            arguments: None,
        }
    }

    pub fn method(mut self, method: &'a str) -> Request<'a> {
        self.method = Some(method);
        self
    }

    pub fn target(mut self, target: &'a str) -> Request<'a> {
        self.target = Some(target);
        self
    }

    pub fn arguments(mut self, arguments: &'a Value) -> Request<'a> {
        self.arguments = Some(arguments);
        self
    }
}

/// Why a request was allowed or denied. Rule ids borrow from the [`Policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason<'p> {
    /// The route has no policy (or an empty one): any signed-in user.
    NoPolicy,
    /// Allowed by this rule, e.g. `policy.allow.and[0]`.
    AllowRule(&'p str),
    /// Denied by this rule, e.g. `policy.deny.and[0]`.
    DenyRule(&'p str),
    /// Allow blocks exist and none matched; the id names the first item that failed.
    NoAllowRuleMatched(&'p str),
    /// The policy has only deny blocks, and none matched.
    NoDenyRuleMatched,
    /// A `tools/call`, `prompts/get` or `resources/*` request without a name: denied, fail closed.
    MissingTarget,
}

impl<'p> Reason<'p> {
    /// A short stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::NoPolicy => "no_policy",
            Reason::AllowRule(_) => "allow_rule",
            Reason::DenyRule(_) => "deny_rule",
            Reason::NoAllowRuleMatched(_) => "no_allow_rule_matched",
            Reason::NoDenyRuleMatched => "no_deny_rule_matched",
            Reason::MissingTarget => "missing_target",
        }
    }

    /// The rule id involved, if any.
    pub fn rule(&self) -> Option<&'p str> {
        match *self {
            Reason::AllowRule(r) | Reason::DenyRule(r) | Reason::NoAllowRuleMatched(r) => Some(r),
            Reason::NoPolicy | Reason::NoDenyRuleMatched | Reason::MissingTarget => None,
        }
    }
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NoPolicy => f.write_str("no policy: any signed-in user"),
            Reason::AllowRule(rule) => write!(f, "allowed by {rule}"),
            Reason::DenyRule(rule) => write!(f, "denied by {rule}"),
            Reason::NoAllowRuleMatched(rule) => {
                write!(f, "no allow rule matched ({rule} did not match)")
            }
            Reason::NoDenyRuleMatched => f.write_str("no deny rule matched and no allow rule set"),
            Reason::MissingTarget => f.write_str("request names no tool, prompt or resource"),
        }
    }
}

/// The outcome of [`Policy::evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    pub allowed: bool,
    pub reason: Reason<'p>,
}

/// A compiled route policy. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Policy {
    inner: Arc<Compiled>,
}

impl Default for Policy {
    /// The policy of a route without one: any signed-in user.
    fn default() -> Self {
        Policy {
            inner: Arc::new(Compiled {
                allow: Vec::new(),
                deny: Vec::new(),
            }),
        }
    }
}

impl Policy {
    /// Compiles a route's `policy` value. `null` (and `{}`, `[]`) give [`Policy::default`].
    pub fn compile(value: &Value) -> Result<Policy, PolicyError> {
        Ok(Policy {
            inner: Arc::new(compile::compile(value)?),
        })
    }

    /// Compiles an optional policy (`None`, a route without `policy`, is any signed-in user).
    pub fn compile_optional(value: Option<&Value>) -> Result<Policy, PolicyError> {
        value.map_or_else(|| Ok(Policy::default()), Policy::compile)
    }

    /// True when the policy has no rule at all: every signed-in user may do everything.
    pub fn is_unrestricted(&self) -> bool {
        self.inner.allow.is_empty() && self.inner.deny.is_empty()
    }

    /// True when some rule has an `mcp_argument` criterion: only then does [`Policy::evaluate`]
    /// look at [`Request::arguments`], so callers may skip building them otherwise.
    pub fn uses_arguments(&self) -> bool {
        self.inner
            .allow
            .iter()
            .chain(&self.inner.deny)
            .any(compile::Block::uses_arguments)
    }

    /// Decides one request.
    pub fn evaluate<'p>(&'p self, request: &Request<'_>) -> Decision<'p> {
        if request.target.is_none()
            && request
                .method
                .is_some_and(|m| TARGETED_METHODS.contains(&m))
        {
            return Decision {
                allowed: false,
                reason: Reason::MissingTarget,
            };
        }
        let ctx = Ctx {
            identity: request.identity,
            method: request.method.into(),
            target: request.target.into(),
            arguments: request.arguments.into(),
        };
        let inner = &*self.inner;
        let (deny, deny_rule) = any_block(&inner.deny, &ctx);
        // Every input is known here, so `Unknown` cannot occur; were it to, it denies.
        if deny != Tri::False {
            return Decision {
                allowed: false,
                reason: Reason::DenyRule(deny_rule.unwrap_or("policy.deny")),
            };
        }
        if inner.allow.is_empty() {
            let reason = if inner.deny.is_empty() {
                Reason::NoPolicy
            } else {
                Reason::NoDenyRuleMatched
            };
            return Decision {
                allowed: true,
                reason,
            };
        }
        let (allow, allow_rule) = any_block(&inner.allow, &ctx);
        let rule = allow_rule.unwrap_or("policy.allow");
        if allow == Tri::True {
            Decision {
                allowed: true,
                reason: Reason::AllowRule(rule),
            }
        } else {
            Decision {
                allowed: false,
                reason: Reason::NoAllowRuleMatched(rule),
            }
        }
    }

    /// Could this user use the route at all? Identity criteria decide; MCP criteria are
    /// unknown and never exclude (see the crate docs, "Listings").
    pub fn allows_identity(&self, identity: &Identity) -> bool {
        self.possibly_allowed(&Ctx {
            identity,
            method: Input::Unknown,
            target: Input::Unknown,
            arguments: Input::Unknown,
        })
    }

    /// May this user use the named tool/prompt/resource through `method` (`tools/call`,
    /// `prompts/get`, `resources/read`; see [`list_entry_method`])? The arguments are unknown
    /// and never exclude. For filtering list responses.
    pub fn allows_target(&self, identity: &Identity, method: &str, name: &str) -> bool {
        self.possibly_allowed(&Ctx {
            identity,
            method: Input::Present(method),
            target: Input::Present(name),
            arguments: Input::Unknown,
        })
    }

    fn possibly_allowed(&self, ctx: &Ctx<'_>) -> bool {
        let inner = &*self.inner;
        if any_block(&inner.deny, ctx).0 == Tri::True {
            return false;
        }
        inner.allow.is_empty() || any_block(&inner.allow, ctx).0 != Tri::False
    }
}
