//! A strict RFC 8259 JSON parser into a borrowed value tree.
//!
//! Stricter than `serde_json` where a gateway must be: a repeated object key at any depth is an
//! error (keys are compared after unescaping, so `"method"` and `"\u006dethod"` collide), nesting
//! is limited (the limit is checked before recursing, so no input can overflow the stack), lone
//! UTF-16 surrogates in `\u` escapes are rejected, and the end of input in the middle of a value is
//! reported as [`Error::Truncated`] rather than a generic syntax error.
//!
//! Every value keeps the exact input text it was parsed from ([`Value::raw`]), so callers can echo
//! a JSON-RPC id byte-for-byte and re-serialise a message while copying every untouched member
//! verbatim. Numbers are kept as their source text (never rounded). Strings without escapes borrow
//! from the input; only strings with escapes allocate.
//!
//! [`parse_shallow`] validates the whole input exactly as strictly (same errors, same offsets) but
//! builds only the outer levels: deeper objects and arrays become [`ValueKind::Opaque`]. Building
//! the tree is most of the cost of parsing, and a caller that reads only the outer members (the
//! list filter) need not pay for the rest.

use std::borrow::Cow;

use crate::error::{excerpt, Error};

const OBJECT_SEPARATOR: &str = "',' or '}' expected in object";
const ARRAY_SEPARATOR: &str = "',' or ']' expected in array";

/// The deepest nesting any caller may configure; deeper limits are clamped to this so the
/// recursive parser's stack use stays bounded (a few hundred KiB at most, also inside Wasm).
pub const MAX_DEPTH_CAP: usize = 512;

/// Objects with more members than this are checked for duplicate keys by sorting (O(n log n))
/// instead of a linear scan per member.
const LINEAR_DUPLICATE_CHECK: usize = 16;

/// A parsed JSON value together with the exact input text it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Value<'a> {
    raw: &'a str,
    kind: ValueKind<'a>,
}

/// The JSON type and content of a [`Value`].
#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind<'a> {
    Null,
    Bool(bool),
    /// The number exactly as written (validated against the RFC 8259 grammar).
    Number(&'a str),
    /// The decoded string.
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    /// Members in input order; keys are unique (after unescaping).
    Object(Vec<Member<'a>>),
    /// An object or array below the levels [`parse_shallow`] builds: validated as strictly as
    /// the rest, but not built. Only [`Value::raw`] is available ([`Value::materialize`] builds
    /// it); `as_object`, `as_array` and `get` see nothing.
    Opaque,
}

/// One `key: value` member of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Member<'a> {
    /// The decoded key.
    pub key: Cow<'a, str>,
    /// The key as written, with its quotes.
    pub key_raw: &'a str,
    pub value: Value<'a>,
}

impl<'a> Value<'a> {
    /// The exact input text of this value (no surrounding whitespace).
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    pub fn kind(&self) -> &ValueKind<'a> {
        &self.kind
    }

    pub(crate) fn from_parts(raw: &'a str, kind: ValueKind<'a>) -> Self {
        Value { raw, kind }
    }

    pub fn into_kind(self) -> ValueKind<'a> {
        self.kind
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, ValueKind::Null)
    }

    /// The decoded string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            ValueKind::String(s) => Some(s),
            _ => None,
        }
    }

    /// The members, if this is an object.
    pub fn as_object(&self) -> Option<&[Member<'a>]> {
        match &self.kind {
            ValueKind::Object(members) => Some(members),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value<'a>]> {
        match &self.kind {
            ValueKind::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The member `key` (decoded, exact match), if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.as_object()?
            .iter()
            .find(|m| m.key == key)
            .map(|m| &m.value)
    }

    /// The full tree of this value, parsed again from its raw text (for a
    /// [`ValueKind::Opaque`] value, the tree [`parse`] would have built).
    pub fn materialize(&self) -> Result<Value<'a>, Error> {
        // The raw text was validated within the caller's depth limit, itself at most the cap.
        parse(self.raw, MAX_DEPTH_CAP)
    }

    /// Checks that every number is one `serde_json` can represent: `Ok` exactly when
    /// [`Value::to_serde_json`] would succeed, without building anything.
    pub fn check_numbers(&self) -> Result<(), Error> {
        match &self.kind {
            ValueKind::Number(n) => {
                // Without an exponent and with at most 300 characters the magnitude is below
                // 1e300, well inside `f64`; anything else is parsed as `to_serde_json` does.
                if n.len() <= 300 && !n.contains(['e', 'E']) {
                    return Ok(());
                }
                serde_json::from_str::<serde_json::Number>(n)
                    .map(drop)
                    .map_err(|_| Error::InvalidJson {
                        offset: 0,
                        what: "number out of range",
                    })
            }
            ValueKind::Array(items) => items.iter().try_for_each(Value::check_numbers),
            ValueKind::Object(members) => members.iter().try_for_each(|m| m.value.check_numbers()),
            ValueKind::Null | ValueKind::Bool(_) | ValueKind::String(_) => Ok(()),
            ValueKind::Opaque => self.materialize()?.check_numbers(),
        }
    }

    /// Converts to a `serde_json::Value` (for policy engines that work on it). Numbers that
    /// `serde_json` cannot represent (beyond `f64` range) are an error; integers beyond 64 bits
    /// become floats, as `serde_json` does.
    pub fn to_serde_json(&self) -> Result<serde_json::Value, Error> {
        Ok(match &self.kind {
            ValueKind::Null => serde_json::Value::Null,
            ValueKind::Bool(b) => serde_json::Value::Bool(*b),
            ValueKind::Number(n) => serde_json::Value::Number(
                serde_json::from_str::<serde_json::Number>(n).map_err(|_| Error::InvalidJson {
                    offset: 0,
                    what: "number out of range",
                })?,
            ),
            ValueKind::String(s) => serde_json::Value::String(s.to_string()),
            ValueKind::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(Value::to_serde_json)
                    .collect::<Result<_, _>>()?,
            ),
            ValueKind::Object(members) => {
                let mut map = serde_json::Map::with_capacity(members.len());
                for m in members {
                    map.insert(m.key.to_string(), m.value.to_serde_json()?);
                }
                serde_json::Value::Object(map)
            }
            ValueKind::Opaque => self.materialize()?.to_serde_json()?,
        })
    }
}

/// Parses `bytes` as exactly one JSON value (surrounding whitespace allowed).
///
/// Invalid UTF-8 is [`Error::InvalidUtf8`], except a multi-byte character cut off by the end of
/// input, which is [`Error::Truncated`].
pub fn parse_bytes(bytes: &[u8], max_depth: usize) -> Result<Value<'_>, Error> {
    let src = match std::str::from_utf8(bytes) {
        Ok(src) => src,
        Err(e) => {
            let offset = e.valid_up_to();
            return Err(match e.error_len() {
                None => Error::Truncated { offset },
                Some(_) => Error::InvalidUtf8 { offset },
            });
        }
    };
    parse(src, max_depth)
}

/// Parses `src` as exactly one JSON value (surrounding whitespace allowed). Nesting of objects and
/// arrays deeper than `max_depth` (clamped to [`MAX_DEPTH_CAP`]) is [`Error::TooDeep`]; a
/// top-level object is at depth 1.
pub fn parse(src: &str, max_depth: usize) -> Result<Value<'_>, Error> {
    parse_shallow(src, max_depth, usize::MAX)
}

/// [`parse`] that builds only the outer `materialize_depth` levels of objects and arrays (a
/// top-level object is level 1); deeper ones are [`ValueKind::Opaque`]. Every input is accepted
/// or refused exactly as by [`parse`], with the same error.
pub fn parse_shallow(
    src: &str,
    max_depth: usize,
    materialize_depth: usize,
) -> Result<Value<'_>, Error> {
    let mut p = Parser {
        src,
        bytes: src.as_bytes(),
        pos: 0,
        max_depth: max_depth.min(MAX_DEPTH_CAP),
        materialize_depth,
        skipped_keys: Vec::new(),
    };
    p.skip_ws();
    if p.peek().is_none() {
        return Err(Error::Empty);
    }
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos < p.bytes.len() {
        return Err(Error::TrailingData { offset: p.pos });
    }
    Ok(value)
}

/// Appends `s` as a JSON string literal (with quotes) to `out`.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    max_depth: usize,
    /// Containers at this depth or deeper are validated, not built.
    materialize_depth: usize,
    /// Decoded keys and their offsets of the unbuilt objects being validated, innermost last:
    /// one stack for the whole parse instead of a `Vec` per object.
    skipped_keys: Vec<(Cow<'a, str>, usize)>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn truncated(&self) -> Error {
        Error::Truncated { offset: self.pos }
    }

    fn invalid(&self, what: &'static str) -> Error {
        Error::InvalidJson {
            offset: self.pos,
            what,
        }
    }

    /// The input between two token boundaries (always ASCII positions, so char boundaries).
    fn slice(&self, start: usize, end: usize) -> Result<&'a str, Error> {
        self.src.get(start..end).ok_or(Error::InvalidJson {
            offset: start,
            what: "internal: slice outside input",
        })
    }

    /// Parses one value at nesting `depth` (the number of enclosing containers).
    fn value(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        self.skip_ws();
        let start = self.pos;
        let kind = match self.peek() {
            None => return Err(self.truncated()),
            Some(b'{') => {
                self.enter(depth)?;
                if depth < self.materialize_depth {
                    ValueKind::Object(self.object(depth + 1)?)
                } else {
                    self.skip_object(depth + 1)?;
                    ValueKind::Opaque
                }
            }
            Some(b'[') => {
                self.enter(depth)?;
                if depth < self.materialize_depth {
                    ValueKind::Array(self.array(depth + 1)?)
                } else {
                    self.skip_array(depth + 1)?;
                    ValueKind::Opaque
                }
            }
            Some(b'"') => ValueKind::String(self.string()?),
            Some(b't') => {
                self.literal(b"true")?;
                ValueKind::Bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                ValueKind::Bool(false)
            }
            Some(b'n') => {
                self.literal(b"null")?;
                ValueKind::Null
            }
            Some(b'-' | b'0'..=b'9') => ValueKind::Number(self.number()?),
            Some(_) => return Err(self.invalid("unexpected character")),
        };
        Ok(Value {
            raw: self.slice(start, self.pos)?,
            kind,
        })
    }

    fn enter(&self, depth: usize) -> Result<(), Error> {
        if depth >= self.max_depth {
            return Err(Error::TooDeep {
                limit: self.max_depth,
                offset: self.pos,
            });
        }
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), Error> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        if rest.starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else if word.starts_with(rest) {
            // The input ends inside the literal.
            self.pos = self.bytes.len();
            Err(self.truncated())
        } else {
            Err(self.invalid("invalid literal"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// At least one digit, or a truncation/syntax error.
    fn required_digits(&mut self, what: &'static str) -> Result<(), Error> {
        match self.peek() {
            None => Err(self.truncated()),
            Some(b'0'..=b'9') => {
                self.digits();
                Ok(())
            }
            Some(_) => Err(self.invalid(what)),
        }
    }

    fn number(&mut self) -> Result<&'a str, Error> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            None => return Err(self.truncated()),
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            Some(_) => return Err(self.invalid("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.required_digits("invalid number: digit expected after '.'")?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.required_digits("invalid number: digit expected in exponent")?;
        }
        self.slice(start, self.pos)
    }

    /// Moves past string content that needs no attention: anything but a quote, a backslash or
    /// a control character (all ASCII, so `pos` stays on a char boundary).
    fn scan_plain(&mut self) {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        // Eight bytes at a time (most of a body is string content): the classic "has a zero
        // byte" test on `word ^ '"'`, `word ^ '\\'` and `word - 0x20`. The lowest flagged byte is
        // always a real match (borrows only carry upwards), so little-endian order finds the first.
        let mut chunks = rest.chunks_exact(8);
        for chunk in chunks.by_ref() {
            let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
                break;
            };
            let word = u64::from_le_bytes(bytes);
            let quote = word ^ (ONES * u64::from(b'"'));
            let backslash = word ^ (ONES * u64::from(b'\\'));
            let found = (quote.wrapping_sub(ONES) & !quote)
                | (backslash.wrapping_sub(ONES) & !backslash)
                | (word.wrapping_sub(ONES * 0x20) & !word);
            let found = found & HIGHS;
            if found != 0 {
                self.pos += (found.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
        let tail = chunks.remainder();
        self.pos += tail
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            .unwrap_or(tail.len());
    }

    /// Parses a string starting at its opening quote.
    fn string(&mut self) -> Result<Cow<'a, str>, Error> {
        self.pos += 1; // opening quote
        let start = self.pos;
        // Fast path: no escapes, borrow from the input.
        self.scan_plain();
        match self.peek() {
            None => return Err(self.truncated()),
            Some(b'"') => {
                let s = self.slice(start, self.pos)?;
                self.pos += 1;
                return Ok(Cow::Borrowed(s));
            }
            Some(b'\\') => {}
            Some(_) => return Err(self.invalid("control character in string")),
        }
        let mut out = String::from(self.slice(start, self.pos)?);
        loop {
            // At a backslash.
            self.pos += 1;
            out.push(self.escape()?);
            let run = self.pos;
            self.scan_plain();
            out.push_str(self.slice(run, self.pos)?);
            match self.peek() {
                None => return Err(self.truncated()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {}
                Some(_) => return Err(self.invalid("control character in string")),
            }
        }
    }

    /// Validates a string starting at its opening quote, as [`Parser::string`] does, without
    /// decoding it.
    fn skip_string(&mut self) -> Result<(), Error> {
        self.pos += 1; // opening quote
        loop {
            self.scan_plain();
            match self.peek() {
                None => return Err(self.truncated()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape()?;
                }
                Some(_) => return Err(self.invalid("control character in string")),
            }
        }
    }

    /// Decodes the escape after a backslash.
    fn escape(&mut self) -> Result<char, Error> {
        let c = match self.peek() {
            None => return Err(self.truncated()),
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let first = self.hex4()?;
                let code = match first {
                    0xD800..=0xDBFF => {
                        // A high surrogate must be followed by an escaped low surrogate.
                        match (self.peek(), self.bytes.get(self.pos + 1).copied()) {
                            (None, _) | (Some(b'\\'), None) => return Err(self.truncated()),
                            (Some(b'\\'), Some(b'u')) => self.pos += 2,
                            _ => return Err(self.invalid("lone UTF-16 surrogate in \\u escape")),
                        }
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return Err(self.invalid("lone UTF-16 surrogate in \\u escape"));
                        }
                        0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                    }
                    0xDC00..=0xDFFF => {
                        return Err(self.invalid("lone UTF-16 surrogate in \\u escape"))
                    }
                    _ => first,
                };
                return char::from_u32(code).ok_or_else(|| self.invalid("invalid \\u escape"));
            }
            Some(_) => return Err(self.invalid("invalid escape")),
        };
        self.pos += 1;
        Ok(c)
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let mut code = 0u32;
        for _ in 0..4 {
            let digit = match self.peek() {
                None => return Err(self.truncated()),
                Some(b) => (b as char)
                    .to_digit(16)
                    .ok_or_else(|| self.invalid("invalid \\u escape"))?,
            };
            code = (code << 4) | digit;
            self.pos += 1;
        }
        Ok(code)
    }

    /// The start of an object key (its opening quote), after whitespace. `object` and
    /// `skip_object` share these steps so both report the same first error.
    fn key_start(&mut self) -> Result<usize, Error> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.truncated()),
            Some(b'"') => Ok(self.pos),
            Some(_) => Err(self.invalid("object key expected")),
        }
    }

    /// The `:` after an object key.
    fn colon(&mut self) -> Result<(), Error> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.truncated()),
            Some(b':') => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.invalid("':' expected after object key")),
        }
    }

    /// After a member or element: true at `,` (another follows), false at `close`.
    fn more(&mut self, close: u8, expected: &'static str) -> Result<bool, Error> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.truncated()),
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(false)
            }
            Some(_) => Err(self.invalid(expected)),
        }
    }

    /// Parses an object starting at `{`; `depth` is the depth of its members.
    // Inlined into `value` (its only caller) in optimised builds, as the compiler did by itself
    // before the skip path existed: the full parse is about 8% slower otherwise. Not in debug
    // builds, where one frame per level would hold every inlined local and overflow a test
    // thread's stack at the depth cap.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn object(&mut self, depth: usize) -> Result<Vec<Member<'a>>, Error> {
        self.pos += 1; // '{'
        let mut members: Vec<Member<'a>> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(members);
        }
        loop {
            let key_start = self.key_start()?;
            let key = self.string()?;
            let key_raw = self.slice(key_start, self.pos)?;
            if members.len() < LINEAR_DUPLICATE_CHECK && members.iter().any(|m| m.key == key) {
                return Err(Error::DuplicateKey {
                    key: excerpt(&key),
                    offset: key_start,
                });
            }
            self.colon()?;
            let value = self.value(depth)?;
            members.push(Member {
                key,
                key_raw,
                value,
            });
            if !self.more(b'}', OBJECT_SEPARATOR)? {
                break;
            }
        }
        if members.len() > LINEAR_DUPLICATE_CHECK {
            let keys = members
                .iter()
                .map(|m| (m.key.as_ref(), offset_in(self.src, m.key_raw)))
                .collect();
            if let Some(e) = sorted_duplicate(keys) {
                return Err(e);
            }
        }
        Ok(members)
    }

    /// Validates an object starting at `{` as [`Parser::object`] does (same checks in the same
    /// order, so the same first error) without building it; `depth` is the depth of its members.
    fn skip_object(&mut self, depth: usize) -> Result<(), Error> {
        self.pos += 1; // '{'
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        let base = self.skipped_keys.len();
        loop {
            let key_start = self.key_start()?;
            let key = self.string()?;
            let earlier = self.skipped_keys.get(base..).unwrap_or_default();
            if earlier.len() < LINEAR_DUPLICATE_CHECK && earlier.iter().any(|(k, _)| *k == key) {
                return Err(Error::DuplicateKey {
                    key: excerpt(&key),
                    offset: key_start,
                });
            }
            self.skipped_keys.push((key, key_start));
            self.colon()?;
            self.skip_value(depth)?;
            if !self.more(b'}', OBJECT_SEPARATOR)? {
                break;
            }
        }
        let keys = self.skipped_keys.get(base..).unwrap_or_default();
        let duplicate = if keys.len() > LINEAR_DUPLICATE_CHECK {
            sorted_duplicate(keys.iter().map(|(k, at)| (k.as_ref(), *at)).collect())
        } else {
            None
        };
        self.skipped_keys.truncate(base);
        duplicate.map_or(Ok(()), Err)
    }

    /// Parses an array starting at `[`; `depth` is the depth of its elements.
    #[cfg_attr(not(debug_assertions), inline(always))] // as `object`
    fn array(&mut self, depth: usize) -> Result<Vec<Value<'a>>, Error> {
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.value(depth)?);
            if !self.more(b']', ARRAY_SEPARATOR)? {
                return Ok(items);
            }
        }
    }

    /// Validates an array starting at `[` as [`Parser::array`] does, without building it.
    fn skip_array(&mut self, depth: usize) -> Result<(), Error> {
        self.pos += 1; // '['
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_value(depth)?;
            if !self.more(b']', ARRAY_SEPARATOR)? {
                return Ok(());
            }
        }
    }

    /// Validates one value at nesting `depth` as [`Parser::value`] does, without building it.
    fn skip_value(&mut self, depth: usize) -> Result<(), Error> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.truncated()),
            Some(b'{') => {
                self.enter(depth)?;
                self.skip_object(depth + 1)
            }
            Some(b'[') => {
                self.enter(depth)?;
                self.skip_array(depth + 1)
            }
            Some(b'"') => self.skip_string(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(_) => Err(self.invalid("unexpected character")),
        }
    }
}

/// The duplicate among the keys (decoded key, offset) of one large object: the second occurrence
/// of the smallest repeated key. Ties sort by offset, so the answer does not depend on the sort.
fn sorted_duplicate(mut keys: Vec<(&str, usize)>) -> Option<Error> {
    keys.sort_unstable();
    keys.windows(2).find_map(|pair| match pair {
        [(a, _), (b, offset)] if a == b => Some(Error::DuplicateKey {
            key: excerpt(b),
            offset: *offset,
        }),
        _ => None,
    })
}

/// Byte offset of `part` (a slice of `whole`) within `whole`.
fn offset_in(whole: &str, part: &str) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize)
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
