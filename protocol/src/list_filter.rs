//! Filtering of list responses (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`) so a user only sees what the policy lets them use.
//!
//! The filter removes the items whose key the predicate refuses and re-serialises only the path
//! it changed (`message.result.<items>`): every other member of the message, of `result` (such as
//! `nextCursor` and `_meta`) and every kept item is copied byte-for-byte from the input. An item
//! that is not an object or lacks a string key is removed (fail closed). A list result whose items
//! member is missing or not an array is [`Error::InvalidListResult`]. Error responses pass
//! unchanged.
//!
//! [`ResponseTracker`] matches responses to requests by JSON-RPC id: the filter records each
//! request body it forwards and then asks what a response is. A response whose id was not
//! recorded (for example one replayed on a resumed SSE stream, which arrives on a GET with no
//! request body) is recognised by the shape of its result — a `tools`, `prompts`, `resources` or
//! `resourceTemplates` array — and filtered too, so resumption is no way around the filter.
//!
//! Responses are parsed with [`jsonrpc::parse_str_shallow`]: as strictly as requests, but only the
//! levels down to each item are built (most of a `tools/list` answer is item schemas that the
//! filter copies and never reads).

use std::collections::HashMap;

use crate::error::Error;
use crate::json::{Member, Value};
use crate::jsonrpc::{self, Body, IdKey, Kind, Limits, Message};

/// Container levels the filter reads: message, `result`, the items array, each item. Deeper
/// ones (an item's `inputSchema`, `_meta`) are only validated and copied as written.
const LIST_LEVELS: usize = 4;

/// The list methods whose answers are filtered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    pub const ALL: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Prompts,
        ListKind::ResourceTemplates,
        ListKind::Resources,
    ];

    /// The list kind answered by `method`, if it is one of the list methods.
    pub fn from_method(method: &str) -> Option<ListKind> {
        ListKind::ALL.into_iter().find(|k| k.method() == method)
    }

    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
        }
    }

    /// The member of `result` that holds the items.
    pub fn items_field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The member of each item the predicate sees: `name` for tools and prompts, `uri` for
    /// resources, `uriTemplate` for resource templates.
    pub fn key_field(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }

    /// Recognises a list result by shape: the first of `tools`, `prompts`, `resourceTemplates`,
    /// `resources` that is present as an array.
    pub fn detect(result: &Value<'_>) -> Option<ListKind> {
        ListKind::ALL.into_iter().find(|k| {
            result
                .get(k.items_field())
                .is_some_and(|v| v.as_array().is_some())
        })
    }
}

/// The outcome of filtering.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filtered {
    /// The rewritten body, or `None` when nothing was removed (send the original bytes).
    pub body: Option<String>,
    /// Items kept and removed, over every filtered message.
    pub kept: usize,
    pub removed: usize,
}

/// Filters one response message (a complete JSON body) to a `kind` list request.
pub fn filter_list_response<F>(
    body: &str,
    kind: ListKind,
    limits: &Limits,
    allow: F,
) -> Result<Filtered, Error>
where
    F: Fn(&str) -> bool,
{
    let message = jsonrpc::parse_str_shallow(body, limits, LIST_LEVELS)?.into_single()?;
    let mut filtered = Filtered::default();
    filtered.body = filter_message(&message, kind, &allow, &mut filtered)?;
    Ok(filtered)
}

/// Filters a parsed response message; `Some(json)` if items were removed.
fn filter_message<F>(
    message: &Message<'_>,
    kind: ListKind,
    allow: &F,
    counts: &mut Filtered,
) -> Result<Option<String>, Error>
where
    F: Fn(&str) -> bool,
{
    if message.kind() != Kind::Response {
        return Ok(None);
    }
    let Some(result) = message.result() else {
        return Ok(None); // an error response
    };
    let items = result
        .get(kind.items_field())
        .ok_or(Error::InvalidListResult {
            method: kind.method(),
            what: "items member missing",
        })?
        .as_array()
        .ok_or(Error::InvalidListResult {
            method: kind.method(),
            what: "items member is not an array",
        })?;
    let mut kept: Vec<&str> = Vec::with_capacity(items.len());
    for item in items {
        let key = item.get(kind.key_field()).and_then(Value::as_str);
        if key.is_some_and(allow) {
            kept.push(item.raw());
        }
    }
    let removed = items.len() - kept.len();
    counts.kept += kept.len();
    counts.removed += removed;
    // The answer was decided for this user's policy: a shared cache must not hand it to another
    // (2026-07-28 `CacheableResult.cacheScope`). Results without the member (older revisions)
    // are left as they are.
    let public_scope = result
        .get(CACHE_SCOPE)
        .is_some_and(|v| v.as_str() != Some(PRIVATE_SCOPE));
    if removed == 0 && !public_scope {
        return Ok(None);
    }
    let mut replacements: Vec<(&str, String)> = Vec::with_capacity(2);
    if removed > 0 {
        let mut new_items =
            String::with_capacity(kept.iter().map(|k| k.len() + 1).sum::<usize>() + 2);
        new_items.push('[');
        new_items.push_str(&kept.join(","));
        new_items.push(']');
        replacements.push((kind.items_field(), new_items));
    }
    if public_scope {
        replacements.push((CACHE_SCOPE, format!("\"{PRIVATE_SCOPE}\"")));
    }
    let new_result = replace_members(result, &replacements);
    Ok(Some(replace_member(message.value(), "result", &new_result)))
}

/// `result.cacheScope` of a 2026-07-28 list result, and the value a filtered answer gets.
pub const CACHE_SCOPE: &str = "cacheScope";
pub const PRIVATE_SCOPE: &str = "private";

/// Re-serialises `object` with member `key`'s value replaced by `replacement` (raw JSON); every
/// other member is copied as written.
fn replace_member(object: &Value<'_>, key: &str, replacement: &str) -> String {
    replace_members(object, &[(key, replacement.to_owned())])
}

/// [`replace_member`] for several members at once.
fn replace_members(object: &Value<'_>, replacements: &[(&str, String)]) -> String {
    let members: &[Member<'_>] = object.as_object().unwrap_or_default();
    let mut out = String::with_capacity(object.raw().len());
    out.push('{');
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(m.key_raw);
        out.push(':');
        if let Some((_, replacement)) = replacements.iter().find(|(k, _)| m.key == *k) {
            out.push_str(replacement);
        } else {
            out.push_str(m.value.raw());
        }
    }
    out.push('}');
    out
}

/// Remembers, per HTTP exchange, which request ids asked for which method, so responses can be
/// matched. Holds one entry per recorded request (bounded by the request body size).
#[derive(Debug, Clone, Default)]
pub struct ResponseTracker {
    requests: HashMap<IdKey, Tracked>,
}

/// MCP 2026-07-28's capability discovery, whose answer is judged by shape.
pub const DISCOVER_METHOD: &str = "server/discover";

/// What a recorded request id asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tracked {
    /// A list method.
    List(ListKind),
    /// Some other method.
    Other,
    /// Recorded more than once with different methods: decided by the response's shape.
    Ambiguous,
}

impl ResponseTracker {
    pub fn new() -> Self {
        ResponseTracker::default()
    }

    /// Records every request in a parsed request body.
    pub fn record_body(&mut self, body: &Body<'_>) {
        for message in body.messages() {
            self.record(message);
        }
    }

    /// Records one request (notifications and responses are ignored).
    pub fn record(&mut self, message: &Message<'_>) {
        if message.kind() != Kind::Request {
            return;
        }
        if let Some(id) = message.id() {
            if message.method() == Some(DISCOVER_METHOD) {
                // A discover result is no list, but one that carries a list (a `tools` array,
                // say) shows it filtered like the list itself: judged by shape.
                self.requests.insert(id.to_key(), Tracked::Ambiguous);
                return;
            }
            let kind = message.method().and_then(ListKind::from_method);
            self.record_id(id.to_key(), kind);
        }
    }

    /// Records that request `id` asked for `kind` (`None`: not a list method). An id recorded
    /// again with a different answer becomes ambiguous and its response is judged by shape, so
    /// a repeated id cannot shield a list response from the filter.
    pub fn record_id(&mut self, id: IdKey, kind: Option<ListKind>) {
        let new = kind.map_or(Tracked::Other, Tracked::List);
        self.requests
            .entry(id)
            .and_modify(|old| {
                if *old != new {
                    *old = Tracked::Ambiguous;
                }
            })
            .or_insert(new);
    }

    /// Number of requests recorded.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// The list kind a response answers: by its id when recorded, else by the shape of its
    /// result (see the module docs). `None` for non-responses and other answers.
    pub fn list_kind(&self, message: &Message<'_>) -> Option<ListKind> {
        if message.kind() != Kind::Response {
            return None;
        }
        let recorded = message
            .id()
            .and_then(|id| self.requests.get(&id.to_key()).copied());
        match recorded {
            Some(Tracked::List(kind)) => Some(kind),
            Some(Tracked::Other) => None,
            Some(Tracked::Ambiguous) | None => message.result().and_then(ListKind::detect),
        }
    }

    /// Parses a complete response body (JSON, or one SSE event's data) strictly and filters every
    /// list response in it. A batch is rewritten element by element (2025-03-26), copying the
    /// other elements verbatim. Empty or whitespace-only data (an SSE priming event) passes.
    pub fn filter_body<F>(&self, body: &str, limits: &Limits, allow: F) -> Result<Filtered, Error>
    where
        F: Fn(&str) -> bool,
    {
        self.filter_body_with(body, allow, |b| {
            jsonrpc::parse_str_shallow(b, limits, LIST_LEVELS)
        })
    }

    /// [`ResponseTracker::filter_body`] on the fully built tree ([`jsonrpc::parse_str`]): the
    /// reference that tests and fuzzing compare the shallow parse with. Same results, slower.
    #[doc(hidden)]
    pub fn filter_body_full_parse<F>(
        &self,
        body: &str,
        limits: &Limits,
        allow: F,
    ) -> Result<Filtered, Error>
    where
        F: Fn(&str) -> bool,
    {
        self.filter_body_with(body, allow, |b| jsonrpc::parse_str(b, limits))
    }

    fn filter_body_with<'b, F, P>(
        &self,
        body: &'b str,
        allow: F,
        parse: P,
    ) -> Result<Filtered, Error>
    where
        F: Fn(&str) -> bool,
        P: FnOnce(&'b str) -> Result<Body<'b>, Error>,
    {
        let mut filtered = Filtered::default();
        if body.trim_matches([' ', '\t', '\n', '\r']).is_empty() {
            return Ok(filtered);
        }
        let parsed = parse(body)?;
        let mut rewritten: Vec<Option<String>> = Vec::with_capacity(parsed.messages().len());
        for message in parsed.messages() {
            let new = match self.list_kind(message) {
                Some(kind) => filter_message(message, kind, &allow, &mut filtered)?,
                None => None,
            };
            rewritten.push(new);
        }
        if rewritten.iter().all(Option::is_none) {
            return Ok(filtered);
        }
        filtered.body = Some(match &parsed {
            Body::Single(_) => rewritten.into_iter().flatten().next().unwrap_or_default(),
            Body::Batch(messages) => {
                let mut out = String::with_capacity(body.len());
                out.push('[');
                for (i, (message, new)) in messages.iter().zip(&rewritten).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(new.as_deref().unwrap_or(message.raw()));
                }
                out.push(']');
                out
            }
        });
        Ok(filtered)
    }
}

#[cfg(test)]
#[path = "list_filter_tests.rs"]
mod tests;
