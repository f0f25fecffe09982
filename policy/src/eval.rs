//! Evaluation of the compiled tree, in Kleene's three-valued logic.
//!
//! A full request ([`crate::Policy::evaluate`]) knows every input, so only `True`/`False` occur.
//! The listing helpers ([`crate::Policy::allows_identity`], [`crate::Policy::allows_target`])
//! leave some inputs unknown; criteria on those inputs are `Unknown`, and the operators propagate
//! it (`Unknown ∧ False = False`, `Unknown ∨ True = True`, `¬Unknown = Unknown`).
//!
//! Each result carries a witness: the stable id of the rule item that explains it.

use serde_json::Value;

use crate::compile::{Block, Criterion, CriterionKind, Node, OpKind, Operator};
use crate::Identity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tri {
    False,
    Unknown,
    True,
}

/// One request input: known to be present, known to be absent, or not known at all.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<T> {
    Present(T),
    Absent,
    Unknown,
}

impl<T> From<Option<T>> for Input<T> {
    fn from(value: Option<T>) -> Self {
        match value {
            Some(v) => Input::Present(v),
            None => Input::Absent,
        }
    }
}

pub(crate) struct Ctx<'a> {
    pub(crate) identity: &'a Identity,
    pub(crate) method: Input<&'a str>,
    pub(crate) target: Input<&'a str>,
    pub(crate) arguments: Input<&'a Value>,
}

fn tri(b: bool) -> Tri {
    if b {
        Tri::True
    } else {
        Tri::False
    }
}

fn with_input<T: Copy>(input: Input<T>, test: impl FnOnce(T) -> bool) -> Tri {
    match input {
        Input::Present(v) => tri(test(v)),
        // A missing value never matches any matcher, `not_in` included.
        Input::Absent => Tri::False,
        Input::Unknown => Tri::Unknown,
    }
}

fn criterion(c: &Criterion, ctx: &Ctx<'_>) -> Tri {
    let id = ctx.identity;
    match &c.kind {
        CriterionKind::Accept | CriterionKind::AuthenticatedUser => Tri::True,
        CriterionKind::Reject => Tri::False,
        CriterionKind::Email(m) => tri(id.email.as_deref().is_some_and(|e| m.is_match(e))),
        CriterionKind::Domain(m) => tri(id
            .email
            .as_deref()
            .and_then(|e| e.rsplit_once('@'))
            .is_some_and(|(_, domain)| m.is_match(domain))),
        CriterionKind::User(m) => tri(m.is_match(&id.user)),
        CriterionKind::GroupsHas(wanted) => tri(wanted
            .iter()
            .all(|w| id.groups.iter().any(|g| g.as_str() == &**w))),
        CriterionKind::Claim(path, m) => {
            tri(path.lookup(&id.claims).is_some_and(|v| m.is_match(v)))
        }
        CriterionKind::McpMethod(m) => with_input(ctx.method, |s| m.is_match(s)),
        CriterionKind::McpTool(m) => with_input(ctx.target, |s| m.is_match(s)),
        CriterionKind::McpArgument(path, m) => with_input(ctx.arguments, |args| {
            path.lookup(args).is_some_and(|v| m.is_match(v))
        }),
    }
}

fn node<'p>(n: &'p Node, ctx: &Ctx<'_>) -> (Tri, &'p str) {
    match n {
        Node::Criterion(c) => (criterion(c, ctx), &c.path),
        Node::Op(op) => operator(op, ctx),
    }
}

pub(crate) fn operator<'p>(op: &'p Operator, ctx: &Ctx<'_>) -> (Tri, &'p str) {
    // An empty list never matches (Pomerium skips empty operators entirely).
    if op.items.is_empty() {
        return (Tri::False, &op.path);
    }
    let single = op.items.len() == 1;
    let mut first_unknown: Option<&'p str> = None;
    match op.kind {
        OpKind::And => {
            let mut last = &*op.path;
            for item in &op.items {
                let (t, w) = node(item, ctx);
                match t {
                    Tri::False => return (Tri::False, w),
                    Tri::Unknown => {
                        first_unknown.get_or_insert(w);
                    }
                    Tri::True => last = w,
                }
            }
            match first_unknown {
                Some(w) => (Tri::Unknown, w),
                // With one item, that item is the reason; with several, the whole `and` is.
                None if single => (Tri::True, last),
                None => (Tri::True, &op.path),
            }
        }
        OpKind::Or => {
            let mut last = &*op.path;
            for item in &op.items {
                let (t, w) = node(item, ctx);
                match t {
                    Tri::True => return (Tri::True, w),
                    Tri::Unknown => {
                        first_unknown.get_or_insert(w);
                    }
                    Tri::False => last = w,
                }
            }
            match first_unknown {
                Some(w) => (Tri::Unknown, w),
                None if single => (Tri::False, last),
                None => (Tri::False, &op.path),
            }
        }
        OpKind::Not => {
            for item in &op.items {
                let (t, w) = node(item, ctx);
                match t {
                    // The item that matched is why `not` fails.
                    Tri::True => return (Tri::False, w),
                    Tri::Unknown => {
                        first_unknown.get_or_insert(w);
                    }
                    Tri::False => {}
                }
            }
            match first_unknown {
                Some(w) => (Tri::Unknown, w),
                None => (Tri::True, &op.path),
            }
        }
        OpKind::Nor => {
            for item in &op.items {
                let (t, w) = node(item, ctx);
                match t {
                    Tri::False => return (Tri::True, &op.path),
                    Tri::Unknown => {
                        first_unknown.get_or_insert(w);
                    }
                    Tri::True => {}
                }
            }
            match first_unknown {
                Some(w) => (Tri::Unknown, w),
                None => (Tri::False, &op.path),
            }
        }
    }
}

/// A block's operators are OR-ed together; a block without operators matches nothing.
fn block<'p>(b: &'p Block, ctx: &Ctx<'_>) -> (Tri, &'p str) {
    let mut first_unknown: Option<&'p str> = None;
    let mut first_false: Option<&'p str> = None;
    for op in &b.ops {
        let (t, w) = operator(op, ctx);
        match t {
            Tri::True => return (Tri::True, w),
            Tri::Unknown => {
                first_unknown.get_or_insert(w);
            }
            Tri::False => {
                first_false.get_or_insert(w);
            }
        }
    }
    match (first_unknown, first_false) {
        (Some(w), _) => (Tri::Unknown, w),
        (None, Some(w)) if b.ops.len() == 1 => (Tri::False, w),
        _ => (Tri::False, &b.path),
    }
}

/// OR over blocks (all `allow` blocks, or all `deny` blocks, of every rule).
pub(crate) fn any_block<'p>(blocks: &'p [Block], ctx: &Ctx<'_>) -> (Tri, Option<&'p str>) {
    let mut first_unknown: Option<&'p str> = None;
    let mut first_false: Option<&'p str> = None;
    for b in blocks {
        let (t, w) = block(b, ctx);
        match t {
            Tri::True => return (Tri::True, Some(w)),
            Tri::Unknown => {
                first_unknown.get_or_insert(w);
            }
            Tri::False => {
                first_false.get_or_insert(w);
            }
        }
    }
    match first_unknown {
        Some(w) => (Tri::Unknown, Some(w)),
        None => (Tri::False, first_false),
    }
}
