//! Compiled matchers: string matchers (with globs), JSON paths, claim and argument matchers.
//!
//! Everything here is built once by the compiler and then only read; matching never allocates
//! (regex-lite keeps a per-thread scratch cache that is reused after the first match) and never
//! panics: all slicing goes through `get`, all numbers through checked conversions.

use std::cmp::Ordering;

use serde_json::{Number, Value};

// ---------------------------------------------------------------------------------------------
// Glob
// ---------------------------------------------------------------------------------------------

/// A compiled glob: `*` matches any run of characters (including none, including `/`), `?`
/// matches exactly one character, `\` makes the next character literal. The whole string must
/// match (a glob is anchored at both ends).
///
/// Written by hand rather than taken from a crate: the glob crates are built for file paths
/// (`*` stops at `/`, character classes, `**`), pull in more code than the wasm module should
/// carry, and allocate while matching; this is ~60 lines, allocation-free, and O(pattern × input)
/// in the worst case (one backtrack point, no exponential blow-up).
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    tokens: Vec<GlobToken>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobToken {
    Literal(char),
    AnyOne,
    AnyRun,
}

impl Glob {
    pub(crate) fn compile(pattern: &str) -> Result<Glob, String> {
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => {
                    if tokens.last() == Some(&GlobToken::AnyRun) {
                        continue; // `**` is the same as `*`
                    }
                    GlobToken::AnyRun
                }
                '?' => GlobToken::AnyOne,
                '\\' => match chars.next() {
                    Some(escaped) => GlobToken::Literal(escaped),
                    None => return Err("invalid glob: trailing `\\` escapes nothing".into()),
                },
                other => GlobToken::Literal(other),
            };
            tokens.push(token);
        }
        Ok(Glob { tokens })
    }

    pub(crate) fn is_match(&self, input: &str, case_insensitive: bool) -> bool {
        let same = |a: char, b: char| {
            if case_insensitive {
                a.eq_ignore_ascii_case(&b)
            } else {
                a == b
            }
        };
        let next_char = |pos: usize| input.get(pos..).and_then(|rest| rest.chars().next());

        let mut tok = 0usize;
        let mut pos = 0usize;
        // Where to resume after the most recent `*`: (token after the star, input position).
        let mut resume: Option<(usize, usize)> = None;
        loop {
            let c = next_char(pos);
            match (self.tokens.get(tok), c) {
                (Some(GlobToken::AnyRun), _) => {
                    tok += 1;
                    resume = Some((tok, pos));
                    continue;
                }
                (Some(GlobToken::AnyOne), Some(ch)) => {
                    tok += 1;
                    pos += ch.len_utf8();
                    continue;
                }
                (Some(GlobToken::Literal(want)), Some(ch)) if same(*want, ch) => {
                    tok += 1;
                    pos += ch.len_utf8();
                    continue;
                }
                (None, None) => return true,
                _ => {}
            }
            // Mismatch: let the last `*` swallow one more character, or fail.
            let Some((star_tok, star_pos)) = resume else {
                return false;
            };
            let Some(swallowed) = next_char(star_pos) else {
                return false;
            };
            let next_pos = star_pos + swallowed.len_utf8();
            resume = Some((star_tok, next_pos));
            tok = star_tok;
            pos = next_pos;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// String matcher (email, domain, user, mcp_method, mcp_tool)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(crate) enum StrOp {
    Is(Box<str>),
    In(Vec<Box<str>>),
    NotIn(Vec<Box<str>>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Contains(Box<str>),
    Glob(Glob),
}

impl StrOp {
    pub(crate) fn is_match(&self, s: &str, ci: bool) -> bool {
        match self {
            StrOp::Is(want) => str_eq(s, want, ci),
            StrOp::In(list) => list.iter().any(|want| str_eq(s, want, ci)),
            StrOp::NotIn(list) => !list.iter().any(|want| str_eq(s, want, ci)),
            StrOp::StartsWith(prefix) => starts_with(s, prefix, ci),
            StrOp::EndsWith(suffix) => ends_with(s, suffix, ci),
            StrOp::Contains(needle) => contains(s, needle, ci),
            StrOp::Glob(glob) => glob.is_match(s, ci),
        }
    }
}

/// A conjunction of string operators. `case_insensitive` is ASCII-only (used for `domain`).
#[derive(Debug, Clone)]
pub(crate) struct StringMatcher {
    pub(crate) ops: Vec<StrOp>,
    pub(crate) case_insensitive: bool,
}

impl StringMatcher {
    pub(crate) fn is_match(&self, s: &str) -> bool {
        self.ops
            .iter()
            .all(|op| op.is_match(s, self.case_insensitive))
    }
}

fn str_eq(a: &str, b: &str, ci: bool) -> bool {
    if ci {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

fn starts_with(s: &str, prefix: &str, ci: bool) -> bool {
    if !ci {
        return s.starts_with(prefix);
    }
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

fn ends_with(s: &str, suffix: &str, ci: bool) -> bool {
    if !ci {
        return s.ends_with(suffix);
    }
    let Some(start) = s.len().checked_sub(suffix.len()) else {
        return false;
    };
    s.as_bytes()
        .get(start..)
        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes()))
}

fn contains(s: &str, needle: &str, ci: bool) -> bool {
    if !ci {
        return s.contains(needle);
    }
    if needle.is_empty() {
        return true;
    }
    s.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

// ---------------------------------------------------------------------------------------------
// JSON paths
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(Box<str>),
    Index(usize),
}

/// A pre-split JSON path: `a.b[0]`, `$.a.b[0]`, `$["key.with.dots"]`, `$` (the root itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonPath {
    segments: Vec<Segment>,
}

impl JsonPath {
    pub(crate) fn single_key(key: &str) -> JsonPath {
        JsonPath {
            segments: vec![Segment::Key(key.into())],
        }
    }

    pub(crate) fn parse(text: &str) -> Result<JsonPath, String> {
        if text.is_empty() {
            return Err("empty path".into());
        }
        let mut segments = Vec::new();
        let mut chars = text.char_indices().peekable();
        let mut first = true;
        if text.starts_with('$') {
            chars.next();
            first = false;
        }
        while let Some(&(at, c)) = chars.peek() {
            match c {
                '.' => {
                    chars.next();
                    let key = take_bare_key(&mut chars);
                    if key.is_empty() {
                        return Err(format!(
                            "invalid path `{text}`: empty key after `.` at byte {at}"
                        ));
                    }
                    segments.push(Segment::Key(key.into()));
                }
                '[' => {
                    chars.next();
                    segments.push(take_bracket(text, &mut chars, at)?);
                }
                _ if first => {
                    let key = take_bare_key(&mut chars);
                    if key.is_empty() {
                        return Err(format!("invalid path `{text}`: unexpected `{c}`"));
                    }
                    segments.push(Segment::Key(key.into()));
                }
                _ => {
                    return Err(format!(
                        "invalid path `{text}`: expected `.` or `[` at byte {at}, found `{c}`"
                    ))
                }
            }
            first = false;
        }
        Ok(JsonPath { segments })
    }

    pub(crate) fn lookup<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        let mut current = root;
        for segment in &self.segments {
            current = match (segment, current) {
                (Segment::Key(key), Value::Object(map)) => map.get(&**key)?,
                (Segment::Index(i), Value::Array(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(current)
    }
}

type Chars<'a> = std::iter::Peekable<std::str::CharIndices<'a>>;

fn take_bare_key(chars: &mut Chars<'_>) -> String {
    let mut key = String::new();
    while let Some(&(_, c)) = chars.peek() {
        if c == '.' || c == '[' || c == ']' {
            break;
        }
        key.push(c);
        chars.next();
    }
    key
}

fn take_bracket(text: &str, chars: &mut Chars<'_>, open_at: usize) -> Result<Segment, String> {
    let unclosed = || format!("invalid path `{text}`: `[` at byte {open_at} is not closed");
    match chars.peek().map(|&(_, c)| c) {
        Some(quote @ ('"' | '\'')) => {
            chars.next();
            let mut key = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, escaped)) => key.push(escaped),
                        None => return Err(unclosed()),
                    },
                    Some((_, c)) if c == quote => break,
                    Some((_, c)) => key.push(c),
                    None => return Err(unclosed()),
                }
            }
            match chars.next() {
                Some((_, ']')) => Ok(Segment::Key(key.into())),
                _ => Err(unclosed()),
            }
        }
        _ => {
            let mut digits = String::new();
            loop {
                match chars.next() {
                    Some((_, ']')) => break,
                    Some((_, c)) => digits.push(c),
                    None => return Err(unclosed()),
                }
            }
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "invalid path `{text}`: `[{digits}]` is not an array index (use `[\"key\"]` for a key)"
                ));
            }
            digits
                .parse::<usize>()
                .map(Segment::Index)
                .map_err(|_| format!("invalid path `{text}`: index `{digits}` is too large"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON comparison
// ---------------------------------------------------------------------------------------------

/// Compares two JSON numbers by value (`1`, `1.0` and `1e0` are equal), exactly for integers.
pub(crate) fn num_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    // One side is a u64 above i64::MAX and the other an i64 (so smaller).
    if a.as_i64().is_some() && b.as_u64().is_some() {
        return Some(Ordering::Less);
    }
    if a.as_u64().is_some() && b.as_i64().is_some() {
        return Some(Ordering::Greater);
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// JSON equality where numbers compare by value (serde_json's own `==` says `1 != 1.0`, which
/// would let `1.0` slip past a deny on `equals: 1`).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Some(Ordering::Equal),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------------------------
// Claim matcher
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(crate) enum ClaimOp {
    /// Scalar: the claim equals it, or the claim is an array with an element equal to it.
    /// Array or object: the claim equals it exactly.
    Is(Value),
    In(Vec<Value>),
    NotIn(Vec<Value>),
    /// A string operator applied to a string claim or to any string element of an array claim.
    Str(StrOp),
}

#[derive(Debug, Clone)]
pub(crate) struct ClaimMatcher {
    pub(crate) ops: Vec<ClaimOp>,
}

fn claim_is(claim: &Value, want: &Value) -> bool {
    if json_eq(claim, want) {
        return true;
    }
    match (claim, want) {
        (Value::Array(_), Value::Array(_) | Value::Object(_)) => false,
        (Value::Array(items), _) => items.iter().any(|item| json_eq(item, want)),
        _ => false,
    }
}

impl ClaimMatcher {
    pub(crate) fn is_match(&self, claim: &Value) -> bool {
        self.ops.iter().all(|op| match op {
            ClaimOp::Is(want) => claim_is(claim, want),
            ClaimOp::In(list) => list.iter().any(|want| claim_is(claim, want)),
            ClaimOp::NotIn(list) => !list.iter().any(|want| claim_is(claim, want)),
            ClaimOp::Str(op) => match claim {
                Value::String(s) => op.is_match(s, false),
                Value::Array(items) => items
                    .iter()
                    .any(|item| item.as_str().is_some_and(|s| op.is_match(s, false))),
                _ => false,
            },
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Argument matcher
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(crate) enum ArgOp {
    Equals(Value),
    In(Vec<Value>),
    /// Substring of a string argument (when the value is a string), or an element of an array
    /// argument.
    Contains(Value),
    Matches(regex_lite::Regex),
    Lt(Number),
    Lte(Number),
    Gt(Number),
    Gte(Number),
}

#[derive(Debug, Clone)]
pub(crate) struct ArgMatcher {
    pub(crate) ops: Vec<ArgOp>,
}

fn numeric(arg: &Value, bound: &Number, accept: fn(Ordering) -> bool) -> bool {
    match arg {
        Value::Number(n) => num_cmp(n, bound).is_some_and(accept),
        _ => false,
    }
}

impl ArgMatcher {
    pub(crate) fn is_match(&self, arg: &Value) -> bool {
        self.ops.iter().all(|op| match op {
            ArgOp::Equals(want) => json_eq(arg, want),
            ArgOp::In(list) => list.iter().any(|want| json_eq(arg, want)),
            ArgOp::Contains(want) => match (arg, want) {
                (Value::String(s), Value::String(needle)) => s.contains(needle.as_str()),
                (Value::Array(items), _) => items.iter().any(|item| json_eq(item, want)),
                _ => false,
            },
            ArgOp::Matches(re) => arg.as_str().is_some_and(|s| re.is_match(s)),
            ArgOp::Lt(bound) => numeric(arg, bound, Ordering::is_lt),
            ArgOp::Lte(bound) => numeric(arg, bound, Ordering::is_le),
            ArgOp::Gt(bound) => numeric(arg, bound, Ordering::is_gt),
            ArgOp::Gte(bound) => numeric(arg, bound, Ordering::is_ge),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn glob(p: &str) -> Glob {
        Glob::compile(p).unwrap()
    }

    #[test]
    fn glob_basics() {
        assert!(glob("admin_*").is_match("admin_delete", false));
        assert!(glob("admin_*").is_match("admin_", false));
        assert!(!glob("admin_*").is_match("xadmin_", false));
        assert!(glob("*_delete").is_match("db_delete", false));
        assert!(!glob("*_delete").is_match("db_delete_all", false));
        assert!(glob("db_?et").is_match("db_get", false));
        assert!(
            glob("db_?et").is_match("db_éet", false),
            "? is one char, not one byte"
        );
        assert!(!glob("db_?et").is_match("db_et", false));
        assert!(glob("*").is_match("", false));
        assert!(glob("").is_match("", false));
        assert!(!glob("").is_match("a", false));
        assert!(glob("a*b*c").is_match("aXXbYYc", false));
        assert!(glob("a*b*c").is_match("abc", false));
        assert!(!glob("a*b*c").is_match("acb", false));
        assert!(glob("file:///home/*").is_match("file:///home/a/b.txt", false));
        assert!(glob(r"what\?").is_match("what?", false));
        assert!(!glob(r"what\?").is_match("whatx", false));
        assert!(glob(r"\*").is_match("*", false));
        assert!(!glob(r"\*").is_match("x", false));
        assert!(glob("A*").is_match("abc", true));
        assert!(!glob("A*").is_match("abc", false));
        assert!(Glob::compile("oops\\").is_err());
        // Pathological pattern stays linear-ish.
        let long = "a".repeat(2000);
        assert!(!glob("*a*a*a*a*a*b").is_match(&long, false));
    }

    #[test]
    fn case_insensitive_helpers() {
        assert!(starts_with("Company.COM", "company", true));
        assert!(!starts_with("co", "company", true));
        assert!(ends_with("x.Company.COM", "company.com", true));
        assert!(!ends_with("m", "company.com", true));
        assert!(contains("xCOMPANYy", "company", true));
        assert!(contains("x", "", true));
        assert!(!contains("xCOMPAy", "company", true));
        // Non-ASCII does not panic at char boundaries.
        assert!(!starts_with("é", "e", true));
        assert!(!ends_with("é", "\u{301}x", true));
    }

    #[test]
    fn paths() {
        let v = json!({"a": {"b": [10, {"c": "x"}]}, "k.dot": 1, "": 2});
        let get = |p: &str| JsonPath::parse(p).unwrap().lookup(&v).cloned();
        assert_eq!(get("a.b[0]"), Some(json!(10)));
        assert_eq!(get("$.a.b[0]"), Some(json!(10)));
        assert_eq!(get("$.a.b[1].c"), Some(json!("x")));
        assert_eq!(get("a.b[2]"), None);
        assert_eq!(get("a.x"), None);
        assert_eq!(get("a[0]"), None);
        assert_eq!(get("a.b.c"), None);
        assert_eq!(get("$[\"k.dot\"]"), Some(json!(1)));
        assert_eq!(get("['k.dot']"), Some(json!(1)));
        assert_eq!(get("$['']"), Some(json!(2)));
        assert_eq!(get("$"), Some(v.clone()));
        for bad in [
            "", "a..b", "a.", ".", "a[", "a[x]", "a[-1]", "a[\"x", "a]b", "$x", "a[1",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_eq(&json!(1), &json!(1.0)));
        assert!(json_eq(&json!([1, {"a": 2}]), &json!([1.0, {"a": 2.0}])));
        assert!(!json_eq(&json!(1), &json!("1")));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
        let n = |v: Value| match v {
            Value::Number(n) => n,
            _ => unreachable!(),
        };
        assert_eq!(
            num_cmp(&n(json!(-1)), &n(json!(u64::MAX))),
            Some(Ordering::Less)
        );
        assert_eq!(
            num_cmp(&n(json!(u64::MAX)), &n(json!(-1))),
            Some(Ordering::Greater)
        );
        assert_eq!(
            num_cmp(&n(json!(2.5)), &n(json!(2))),
            Some(Ordering::Greater)
        );
    }
}
