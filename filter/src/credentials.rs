//! What a server route's upstream gets besides the request: the user assertion and, on routes
//! with upstream OAuth, the user's upstream token (`POST /internal/v1/credentials`). Pure: the
//! shared-data cache table, the call-out's request and answer, and the local answers the outcomes
//! lead to. The host layer does the I/O.
//!
//! ## The cache
//!
//! Proxy-wasm shared data never shrinks, so the cache is a fixed table of [`SLOTS`] keys
//! (`mcpgate.<table>.<slot>`). An entry's key is the SHA-256 of the token service scope, the route
//! URL and the presented secret (a TE here, a session cookie for client routes), so an entry is
//! bound to the route it was issued for; the slot is the key's first bytes modulo [`SLOTS`]; the
//! value names its full key, so a collision or a stale value is a miss. Values hold no raw TE
//! or cookie, only what the token service gave for them.
//!
//! A server route's entry is reused until the token service's `cache_until` (at most
//! [`MAX_CACHE_SECONDS`]), so a steady stream of calls costs no call-out. It records when it was
//! asked for: once the revocation list says the token service deleted the user's upstream token
//! for the route at or after that moment (a disconnect, a refused refresh, a rejection), the entry
//! is a miss.
//!
//! Each VM also keeps its own copy of the entries it read or wrote ([`LocalTable`], the same
//! slots), so a steady stream of calls costs no shared-data read: under V8 a read is two host
//! calls and a copy of the entry. The copy obeys the same `cache_until` and revocation-list
//! checks; another VM dropping an entry (an upstream rejection) reaches it through the
//! revocation list, which names that rejection within a poll.

use mcpgate_protocol::jsonrpc::{Body, Kind};
use serde_json::{json, Map, Value};

use crate::challenge::{self, LocalResponse, ALLOW_ORIGIN, EXPOSE_HEADERS};
use crate::decision;
use crate::token_cache::TokenHash;

/// Slots per shared-data table.
pub const SLOTS: u16 = 4096;
/// Internal API call-outs give up after this long.
pub const CALL_TIMEOUT_SECONDS: u64 = 5;
/// Larger internal API answers are refused.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest assertion, upstream token or TE put into a header.
pub const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;
/// JSON-RPC error code when the upstream provider cannot be reached.
pub const UPSTREAM_UNAVAILABLE_CODE: i64 = -32003;
/// The longest the filter reuses a server route's cached credentials, whatever `cache_until`
/// says: the revocation list names a deleted upstream token for an hour
/// (`UPSTREAM_DISCONNECT_LISTED_SECS` in the token service), so a copy cached before the deletion
/// must be gone by then.
pub const MAX_CACHE_SECONDS: u64 = 3600;
/// `error_description` of the upstream-authorization challenge.
pub const UPSTREAM_AUTHORIZATION_REQUIRED: &str = "upstream authorization required";

pub type CacheKey = [u8; 32];

/// The cache key for a secret (by its SHA-256, which the token cache already computed, so the
/// hot path hashes a token once) presented to `target`, under the token service `scope`.
/// Length-prefixed, so no two different triples hash the same input.
pub fn cache_key(scope: &str, target: &str, secret_digest: &TokenHash) -> CacheKey {
    let mut hash = hmac_sha256::Hash::new();
    for part in [
        scope.as_bytes(),
        target.as_bytes(),
        secret_digest.as_slice(),
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize()
}

/// The slot of a key in a table of [`SLOTS`].
pub fn slot(key: &CacheKey) -> u16 {
    let [a, b, ..] = *key;
    u16::from_be_bytes([a, b]) % SLOTS
}

/// The shared-data key of `key`'s slot in `table` (`cred`, `session`).
pub fn slot_name(table: &str, key: &CacheKey) -> String {
    format!("mcpgate.{table}.{}", slot(key))
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex_digit(nibble: u8) -> u8 {
    HEX_DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0')
}

fn hex(key: &CacheKey) -> String {
    let mut out = String::with_capacity(64);
    for byte in key {
        out.push(char::from(hex_digit(byte >> 4)));
        out.push(char::from(hex_digit(byte & 0x0f)));
    }
    out
}

/// Whether an entry's first line is `key` in hex (64 digits). Compared digit by digit, without
/// building the hex string: every cached request checks a key.
fn names_key(value: &[u8], key: &CacheKey) -> bool {
    let first = value.split(|b| *b == b'\n').next().unwrap_or_default();
    first.len() == 64
        && first
            .chunks_exact(2)
            .zip(key)
            .all(|(pair, byte)| pair == [hex_digit(byte >> 4), hex_digit(byte & 0x0f)])
}

/// A value that can go into a request header as is: visible ASCII, no spaces, bounded.
pub fn is_header_safe(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_CREDENTIAL_BYTES
        && value.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// A table value: `<hex key>\n<cache_until>\n<field>\n<field>…`. `None` if a field could break
/// the format (callers only store header-safe fields, which cannot).
pub fn encode_entry(key: &CacheKey, cache_until: u64, fields: &[&str]) -> Option<Vec<u8>> {
    if fields.iter().any(|f| f.contains('\n')) {
        return None;
    }
    let mut value = format!("{}\n{cache_until}", hex(key));
    for field in fields {
        value.push('\n');
        value.push_str(field);
    }
    Some(value.into_bytes())
}

/// The fields of a table value that belongs to `key` and is still good at `now`; `None` for a
/// miss (another key in the slot, expired, empty or unreadable).
pub fn decode_entry<'v>(value: &'v [u8], key: &CacheKey, now: u64) -> Option<Vec<&'v str>> {
    if !names_key(value, key) {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split('\n').skip(1);
    let cache_until: u64 = parts.next()?.parse().ok()?;
    if now >= cache_until {
        return None;
    }
    Some(parts.collect())
}

/// A VM's own copy of a table: [`SLOTS`] slots, each the last entry this VM read or wrote for
/// a key of that slot. Bounded like the shared table; a slot's value names its full key.
#[derive(Debug, Default)]
pub struct LocalTable {
    slots: Vec<Option<Vec<u8>>>,
}

impl LocalTable {
    /// The entry stored for `key`, if its slot holds that key's (it may have expired: the
    /// decoders check).
    pub fn get(&self, key: &CacheKey) -> Option<&[u8]> {
        let value = self.slots.get(usize::from(slot(key)))?.as_deref()?;
        names_key(value, key).then_some(value)
    }

    pub fn put(&mut self, key: &CacheKey, value: Vec<u8>) {
        if self.slots.is_empty() {
            self.slots.resize(usize::from(SLOTS), None);
        }
        if let Some(slot) = self.slots.get_mut(usize::from(slot(key))) {
            *slot = Some(value);
        }
    }

    /// Empties `key`'s slot if it holds `key`'s entry.
    pub fn remove(&mut self, key: &CacheKey) {
        if let Some(slot) = self.slots.get_mut(usize::from(slot(key))) {
            if slot.as_deref().is_some_and(|value| names_key(value, key)) {
                *slot = None;
            }
        }
    }
}

/// What the token service gave for a (route, TE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub assertion: String,
    /// Only on routes with upstream OAuth.
    pub upstream_token: Option<String>,
    /// Unix seconds until which the pair may be reused.
    pub cache_until: u64,
}

impl Credentials {
    /// Until when this answer, asked for at `fetched_at`, may be reused from the shared cache:
    /// `cache_until`, and at most [`MAX_CACHE_SECONDS`] after `fetched_at`.
    pub fn reuse_until(&self, fetched_at: u64) -> u64 {
        self.cache_until
            .min(fetched_at.saturating_add(MAX_CACHE_SECONDS))
    }

    /// The cache entry for an answer to a call-out sent at `fetched_at`, good until
    /// [`Credentials::reuse_until`].
    pub fn encode(&self, key: &CacheKey, fetched_at: u64) -> Option<Vec<u8>> {
        encode_entry(
            key,
            self.reuse_until(fetched_at),
            &[
                fetched_at.to_string().as_str(),
                self.assertion.as_str(),
                self.upstream_token.as_deref().unwrap_or_default(),
            ],
        )
    }

    /// A cached entry for `key`, if it is one and still good at `now`. `upstream_oauth`: the
    /// route needs an upstream token (an entry without one is a miss). `disconnected_at`: when
    /// the token service last deleted this user's upstream token for the route (the revocation
    /// list); an upstream token fetched at or before then may be the deleted one, so a miss.
    pub fn decode(
        value: &[u8],
        key: &CacheKey,
        now: u64,
        upstream_oauth: bool,
        disconnected_at: Option<u64>,
    ) -> Option<Self> {
        let fields = decode_entry(value, key, now)?;
        let [fetched_at, assertion, upstream_token] = fields.as_slice() else {
            return None;
        };
        let fetched_at: u64 = fetched_at.parse().ok()?;
        let credentials = Credentials {
            assertion: (*assertion).to_owned(),
            upstream_token: (!upstream_token.is_empty()).then(|| (*upstream_token).to_owned()),
            cache_until: 0,
        };
        let disconnected = credentials.upstream_token.is_some()
            && disconnected_at.is_some_and(|at| fetched_at <= at);
        (credentials.valid_for(upstream_oauth) && !disconnected).then_some(credentials)
    }

    fn valid_for(&self, upstream_oauth: bool) -> bool {
        is_header_safe(&self.assertion)
            && match &self.upstream_token {
                Some(token) => upstream_oauth && is_header_safe(token),
                None => !upstream_oauth,
            }
    }
}

/// The call-out's JSON body: `{"route": <resource>, "token": <TE>}` (also the body of
/// `/internal/v1/upstream_rejected`).
pub fn request_body(route: &str, token: &str) -> Vec<u8> {
    json!({"route": route, "token": token})
        .to_string()
        .into_bytes()
}

/// The outcome of `POST /internal/v1/credentials`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsAnswer {
    Granted(Credentials),
    /// 401 `invalid_token`: refuse the request as for a bad token.
    InvalidToken,
    /// 403: the user must (re)connect the upstream provider.
    UpstreamAuthorizationRequired {
        connect_url: Option<String>,
    },
    /// 503 `upstream_unavailable`: the provider is down; the stored token is kept.
    UpstreamUnavailable {
        description: String,
    },
    /// Anything else (timeout, wrong secret, malformed answer): fail closed with 503.
    Failed(String),
}

/// An answer's JSON object (empty when the body is not one).
pub(crate) fn json_object(body: &[u8]) -> Map<String, Value> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => object,
        _ => Map::new(),
    }
}

/// A string member, if it is one.
pub(crate) fn text<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    object.get(name).and_then(Value::as_str)
}

/// The `error` code of an error answer (empty if none).
fn error_code(object: &Map<String, Value>) -> &str {
    text(object, "error").unwrap_or_default()
}

/// The granted credentials of a 200 answer; `None` when a member is missing or mistyped.
fn granted(object: &Map<String, Value>) -> Option<Credentials> {
    let upstream_token = match object.get("upstream_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) => Some(token.clone()),
        Some(_) => return None,
    };
    Some(Credentials {
        assertion: text(object, "assertion")?.to_owned(),
        upstream_token,
        cache_until: object.get("cache_until")?.as_u64()?,
    })
}

/// Explains a status that none of the contract's outcomes covers.
pub fn unexpected_status(status: Option<&str>, error: &str) -> String {
    match (status, error) {
        (None, _) => "no response from the token service (timeout or connection failure)".into(),
        (Some("401"), _) => "the token service refused the internal API secret (401); check \
                             MCPGATE_INTERNAL_API_SECRET in Envoy and the token service"
            .into(),
        (Some(status), "") => format!("token service answered {status}"),
        (Some(status), error) => {
            format!("token service answered {status} ({})", sanitize(error, 64))
        }
    }
}

/// Reads the answer to a credentials call-out for a route (`upstream_oauth`: the route's upstream
/// needs the user's token, so an answer without one cannot be used).
pub fn parse_credentials_answer(
    status: Option<&str>,
    body: &[u8],
    upstream_oauth: bool,
) -> CredentialsAnswer {
    if body.len() > MAX_ANSWER_BYTES {
        return CredentialsAnswer::Failed("the token service answer is too large".into());
    }
    let object = json_object(body);
    match status {
        Some("200") => {
            let Some(mut credentials) = granted(&object) else {
                return CredentialsAnswer::Failed(
                    "the token service answered 200 without usable credentials".into(),
                );
            };
            credentials.upstream_token = if upstream_oauth {
                credentials.upstream_token.filter(|t| !t.is_empty())
            } else {
                None // never forwarded to a route without upstream OAuth
            };
            if upstream_oauth && credentials.upstream_token.is_none() {
                return CredentialsAnswer::UpstreamAuthorizationRequired { connect_url: None };
            }
            if credentials.valid_for(upstream_oauth) {
                CredentialsAnswer::Granted(credentials)
            } else {
                CredentialsAnswer::Failed(
                    "the token service answered credentials that cannot go into a header".into(),
                )
            }
        }
        Some(code @ ("401" | "403" | "503")) => match (code, error_code(&object)) {
            ("401", "invalid_token") => CredentialsAnswer::InvalidToken,
            ("403", "upstream_authorization_required") => {
                CredentialsAnswer::UpstreamAuthorizationRequired {
                    connect_url: text(&object, "connect_url")
                        .filter(|u| is_header_safe(u))
                        .map(str::to_owned),
                }
            }
            ("503", "upstream_unavailable") => CredentialsAnswer::UpstreamUnavailable {
                description: sanitize(
                    text(&object, "error_description")
                        .unwrap_or("the upstream provider did not answer"),
                    200,
                ),
            },
            (_, other) => CredentialsAnswer::Failed(unexpected_status(status, other)),
        },
        _ => CredentialsAnswer::Failed(unexpected_status(status, error_code(&object))),
    }
}

/// At most `max` characters, without control characters (a description for a message).
pub fn sanitize(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// 401 telling the client the user must connect the route's upstream provider (again).
pub fn upstream_authorization_required(
    resource_metadata_url: &str,
    connect_url: &str,
) -> LocalResponse {
    let challenge = format!(
        "Bearer error=\"invalid_token\", error_description=\"{}\", resource_metadata=\"{}\"",
        UPSTREAM_AUTHORIZATION_REQUIRED,
        challenge::quote(resource_metadata_url)
    );
    let body = json!({
        "error": "upstream_authorization_required",
        "error_description": UPSTREAM_AUTHORIZATION_REQUIRED,
        "connect_url": connect_url,
    });
    LocalResponse {
        status: 401,
        headers: vec![
            ("www-authenticate", challenge),
            ("content-type", "application/json".into()),
            ("cache-control", "no-store".into()),
            ("access-control-allow-origin", ALLOW_ORIGIN.into()),
            ("access-control-expose-headers", EXPOSE_HEADERS.into()),
        ],
        body: body.to_string().into_bytes(),
    }
}

/// The JSON-RPC requests of an allowed body, to answer them when the provider is down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestIds {
    pub batch: bool,
    /// The raw ids of the requests (notifications and responses have none to answer).
    pub ids: Vec<String>,
}

impl RequestIds {
    pub fn of(body: &Body<'_>) -> Self {
        RequestIds {
            batch: body.is_batch(),
            ids: body
                .messages()
                .iter()
                .filter(|m| m.kind() == Kind::Request)
                .map(|m| m.id().map_or("null", |id| id.raw()).to_owned())
                .collect(),
        }
    }
}

pub fn upstream_unavailable_message(description: &str) -> String {
    format!("upstream authorization is temporarily unavailable: {description}")
}

/// The provider is down: a JSON-RPC error (HTTP 200, code [`UPSTREAM_UNAVAILABLE_CODE`]) for
/// each request of the body, or 503 JSON when there is no request to answer (no body, only
/// notifications).
pub fn upstream_unavailable(
    requests: Option<&RequestIds>,
    description: &str,
    request_id: &str,
) -> LocalResponse {
    let message = upstream_unavailable_message(description);
    let Some(requests) = requests.filter(|r| !r.ids.is_empty()) else {
        return challenge::unavailable(&message);
    };
    let errors: Vec<String> = requests
        .ids
        .iter()
        .map(|id| {
            decision::jsonrpc_error_body(
                id,
                UPSTREAM_UNAVAILABLE_CODE,
                &message,
                request_id,
                "upstream_unavailable",
            )
        })
        .collect();
    let body = if requests.batch {
        format!("[{}]", errors.join(","))
    } else {
        errors.concat()
    };
    decision::json_response(200, body)
}

/// The MCP server refused the upstream token: 401, or 403 with `error="insufficient_scope"` in a
/// `WWW-Authenticate` challenge.
pub fn is_upstream_rejection<'a>(
    status: Option<&str>,
    mut www_authenticate: impl Iterator<Item = &'a [u8]>,
) -> bool {
    match status {
        Some("401") => true,
        Some("403") => www_authenticate.any(|value| {
            String::from_utf8_lossy(value)
                .to_ascii_lowercase()
                .contains("insufficient_scope")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token_cache::hash_token;
    use mcpgate_protocol::jsonrpc::{parse, Limits};
    use serde_json::Value;

    const META: &str = "http://localhost:18080/.well-known/oauth-protected-resource/github";
    const CONNECT: &str = "http://localhost:18080/github/.mcpgate/mcp/connect";

    fn body_json(r: &LocalResponse) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn keys_bind_scope_route_and_token() {
        let k = cache_key("ts", "http://r/a", &hash_token("tok"));
        assert_eq!(k, cache_key("ts", "http://r/a", &hash_token("tok")));
        assert_ne!(k, cache_key("ts", "http://r/b", &hash_token("tok")));
        assert_ne!(k, cache_key("ts2", "http://r/a", &hash_token("tok")));
        assert_ne!(k, cache_key("ts", "http://r/a", &hash_token("tok2")));
        // Length prefixes: moving a boundary changes the key.
        assert_ne!(
            cache_key("ab", "c", &hash_token("d")),
            cache_key("a", "bc", &hash_token("d"))
        );
        assert!(slot(&k) < SLOTS);
        assert_eq!(slot_name("cred", &[0xff; 32]), "mcpgate.cred.4095");
        assert_eq!(slot_name("session", &[0x10; 32]), "mcpgate.session.16");
        // Slots spread.
        let slots: std::collections::HashSet<u16> = (0..1000)
            .map(|i| slot(&cache_key("s", "r", &hash_token(&i.to_string()))))
            .collect();
        assert!(slots.len() > 800, "{}", slots.len());
        assert_eq!(hex(&[0xab; 32]).len(), 64);
        assert!(hex(&[0x0f; 32]).starts_with("0f0f"));
    }

    #[test]
    fn entries_round_trip_and_miss() {
        let key = cache_key("s", "r", &hash_token("t"));
        let creds = Credentials {
            assertion: "a.b.c".into(),
            upstream_token: Some("gho_123".into()),
            cache_until: 200,
        };
        let value = creds.encode(&key, 95).unwrap();
        let got = Credentials::decode(&value, &key, 100, true, None).unwrap();
        assert_eq!(got.assertion, "a.b.c");
        assert_eq!(got.upstream_token.as_deref(), Some("gho_123"));
        // Reused until the token service's cache_until, however many calls come meanwhile.
        assert_eq!(creds.reuse_until(95), 200);
        assert!(Credentials::decode(&value, &key, 199, true, None).is_some());
        // Expired, another key in the slot, unreadable, empty: misses.
        assert!(Credentials::decode(&value, &key, 200, true, None).is_none());
        assert!(Credentials::decode(
            &value,
            &cache_key("s", "r", &hash_token("u")),
            100,
            true,
            None
        )
        .is_none());
        assert!(Credentials::decode(b"", &key, 100, true, None).is_none());
        assert!(Credentials::decode(b"\xff\xfe", &key, 100, true, None).is_none());
        // An entry without the moment it was fetched (the format before it had one): a miss.
        let old = encode_entry(&key, 200, &["a.b.c", "gho_123"]).unwrap();
        assert!(Credentials::decode(&old, &key, 100, true, None).is_none());
        let garbled = encode_entry(&key, 200, &["x", "a.b.c", "gho_123"]).unwrap();
        assert!(Credentials::decode(&garbled, &key, 100, true, None).is_none());
        // An upstream token on a route without upstream OAuth, or none where one is needed.
        assert!(Credentials::decode(&value, &key, 100, false, None).is_none());
        let plain = Credentials {
            upstream_token: None,
            ..creds.clone()
        };
        // An assertion alone: the token service's cache_until.
        assert_eq!(plain.reuse_until(100), 200);
        let value = plain.encode(&key, 100).unwrap();
        assert!(Credentials::decode(&value, &key, 199, false, None).is_some());
        assert!(Credentials::decode(&value, &key, 100, false, None).is_some());
        assert!(Credentials::decode(&value, &key, 100, true, None).is_none());
        // Fields that would break the format are not stored.
        assert!(encode_entry(&key, 1, &["a\nb"]).is_none());
        let v = encode_entry(&key, 300, &["x", "", "z"]).unwrap();
        assert_eq!(decode_entry(&v, &key, 299), Some(vec!["x", "", "z"]));
        assert_eq!(decode_entry(&v, &key, 300), None);
        let mut bad = v.clone();
        bad.truncate(64);
        assert_eq!(decode_entry(&bad, &key, 1), None);
    }

    #[test]
    fn a_vms_copy_holds_one_entry_per_slot_and_names_its_key() {
        let key = cache_key("s", "r", &hash_token("t"));
        let creds = Credentials {
            assertion: "a.b.c".into(),
            upstream_token: None,
            cache_until: 200,
        };
        let mut table = LocalTable::default();
        assert!(table.get(&key).is_none());
        table.remove(&key);
        table.put(&key, creds.encode(&key, 100).unwrap());
        let value = table.get(&key).unwrap().to_vec();
        assert!(Credentials::decode(&value, &key, 150, false, None).is_some());
        // The same checks as the shared table: expiry and disconnects still apply to the copy.
        assert!(Credentials::decode(&value, &key, 200, false, None).is_none());
        // Another key of the same slot replaces the entry; the first key then misses.
        let other = (0..)
            .map(|i| cache_key("s", "r", &hash_token(&format!("u{i}"))))
            .find(|k| slot(k) == slot(&key) && *k != key)
            .unwrap();
        table.put(&other, creds.encode(&other, 100).unwrap());
        assert!(table.get(&key).is_none());
        assert!(table.get(&other).is_some());
        // Removing a key leaves another key's entry alone.
        table.remove(&key);
        assert!(table.get(&other).is_some());
        table.remove(&other);
        assert!(table.get(&other).is_none());
    }

    #[test]
    fn entries_never_outlive_an_hour() {
        let key = cache_key("s", "r", &hash_token("t"));
        let creds = Credentials {
            assertion: "a.b.c".into(),
            upstream_token: Some("gho_123".into()),
            cache_until: 1_000_000,
        };
        assert_eq!(creds.reuse_until(1000), 1000 + MAX_CACHE_SECONDS);
        let value = creds.encode(&key, 1000).unwrap();
        assert!(
            Credentials::decode(&value, &key, 1000 + MAX_CACHE_SECONDS - 1, true, None).is_some()
        );
        assert!(Credentials::decode(&value, &key, 1000 + MAX_CACHE_SECONDS, true, None).is_none());
        let plain = Credentials {
            upstream_token: None,
            ..creds
        };
        assert_eq!(plain.reuse_until(1000), 1000 + MAX_CACHE_SECONDS);
        assert_eq!(plain.reuse_until(u64::MAX), 1_000_000);
    }

    #[test]
    fn a_disconnect_at_or_after_the_fetch_is_a_miss() {
        let key = cache_key("s", "r", &hash_token("t"));
        let creds = Credentials {
            assertion: "a.b.c".into(),
            upstream_token: Some("gho_123".into()),
            cache_until: 500,
        };
        let value = creds.encode(&key, 100).unwrap();
        let decode =
            |disconnected_at| Credentials::decode(&value, &key, 150, true, disconnected_at);
        assert!(decode(None).is_some());
        // Disconnected before the fetch: the entry holds the token stored since.
        assert!(decode(Some(99)).is_some());
        // At (same second: it may have been read before the deletion) or after: a miss.
        assert!(decode(Some(100)).is_none());
        assert!(decode(Some(140)).is_none());
        assert!(decode(Some(u64::MAX)).is_none());
        // The entry fetched again after the disconnect is good.
        let again = creds.encode(&key, 141).unwrap();
        assert!(Credentials::decode(&again, &key, 150, true, Some(140)).is_some());
        // Entries without an upstream token carry nothing a disconnect takes away.
        let plain = Credentials {
            upstream_token: None,
            ..creds
        };
        let value = plain.encode(&key, 100).unwrap();
        assert!(Credentials::decode(&value, &key, 150, false, Some(140)).is_some());
    }

    #[test]
    fn header_safety() {
        assert!(is_header_safe("eyJ.abc-_~+/="));
        for bad in ["", "a b", "a\r\nx: y", "é", "a\0"] {
            assert!(!is_header_safe(bad), "{bad:?}");
        }
        assert!(!is_header_safe(&"a".repeat(MAX_CREDENTIAL_BYTES + 1)));
    }

    #[test]
    fn request_body_is_json() {
        let v: Value = serde_json::from_slice(&request_body("http://r/a", "t\"e")).unwrap();
        assert_eq!(v, json!({"route": "http://r/a", "token": "t\"e"}));
    }

    #[test]
    fn granted_answers() {
        let ok = br#"{"assertion":"a.b.c","upstream_token":"gho_1","cache_until":99}"#;
        assert_eq!(
            parse_credentials_answer(Some("200"), ok, true),
            CredentialsAnswer::Granted(Credentials {
                assertion: "a.b.c".into(),
                upstream_token: Some("gho_1".into()),
                cache_until: 99
            })
        );
        // Never forwarded where the route has no upstream OAuth.
        assert_eq!(
            parse_credentials_answer(Some("200"), ok, false),
            CredentialsAnswer::Granted(Credentials {
                assertion: "a.b.c".into(),
                upstream_token: None,
                cache_until: 99
            })
        );
        let none = br#"{"assertion":"a.b.c","upstream_token":null,"cache_until":99}"#;
        assert!(matches!(
            parse_credentials_answer(Some("200"), none, false),
            CredentialsAnswer::Granted(_)
        ));
        assert_eq!(
            parse_credentials_answer(Some("200"), none, true),
            CredentialsAnswer::UpstreamAuthorizationRequired { connect_url: None }
        );
        // A bad upstream token matters only where it is used.
        let bad_upstream = br#"{"assertion":"a","upstream_token":"x\r\ny","cache_until":1}"#;
        assert!(matches!(
            parse_credentials_answer(Some("200"), bad_upstream, true),
            CredentialsAnswer::Failed(_)
        ));
        assert!(matches!(
            parse_credentials_answer(Some("200"), bad_upstream, false),
            CredentialsAnswer::Granted(Credentials {
                upstream_token: None,
                ..
            })
        ));
        for bad in [
            &br#"{"assertion":"a b","cache_until":1}"#[..],
            br#"{"assertion":"","cache_until":1}"#,
            br#"{"upstream_token":"x","cache_until":1}"#,
            br#"{"assertion":"a"}"#,
            b"nope",
        ] {
            assert!(
                matches!(
                    parse_credentials_answer(Some("200"), bad, true),
                    CredentialsAnswer::Failed(_)
                        | CredentialsAnswer::UpstreamAuthorizationRequired { .. }
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
            assert!(matches!(
                parse_credentials_answer(Some("200"), bad, false),
                CredentialsAnswer::Failed(_)
            ));
        }
        let big = vec![b' '; MAX_ANSWER_BYTES + 1];
        assert!(matches!(
            parse_credentials_answer(Some("200"), &big, false),
            CredentialsAnswer::Failed(_)
        ));
    }

    #[test]
    fn refusals_and_failures() {
        let p = |status: Option<&str>, body: &str| {
            parse_credentials_answer(status, body.as_bytes(), true)
        };
        assert_eq!(
            p(Some("401"), r#"{"error":"invalid_token"}"#),
            CredentialsAnswer::InvalidToken
        );
        assert_eq!(
            p(
                Some("403"),
                &format!(
                    r#"{{"error":"upstream_authorization_required","connect_url":"{CONNECT}"}}"#
                )
            ),
            CredentialsAnswer::UpstreamAuthorizationRequired {
                connect_url: Some(CONNECT.into())
            }
        );
        assert_eq!(
            p(
                Some("503"),
                r#"{"error":"upstream_unavailable","error_description":"github.com answered 502\n"}"#
            ),
            CredentialsAnswer::UpstreamUnavailable {
                description: "github.com answered 502".into()
            }
        );
        assert!(matches!(
            p(Some("503"), r#"{"error":"upstream_unavailable"}"#),
            CredentialsAnswer::UpstreamUnavailable { description } if !description.is_empty()
        ));
        // 401 without invalid_token: the internal API refused our secret.
        assert!(matches!(p(Some("401"), ""), CredentialsAnswer::Failed(m) if m.contains("secret")));
        assert!(matches!(p(Some("403"), "{}"), CredentialsAnswer::Failed(m) if m.contains("403")));
        assert!(matches!(p(Some("503"), "x"), CredentialsAnswer::Failed(m) if m.contains("503")));
        assert!(matches!(p(Some("500"), ""), CredentialsAnswer::Failed(m) if m.contains("500")));
        assert!(matches!(p(None, ""), CredentialsAnswer::Failed(m) if m.contains("timeout")));
        assert!(matches!(
            p(Some("400"), r#"{"error":"bad\u0000"}"#),
            CredentialsAnswer::Failed(m) if m == "token service answered 400 (bad)"
        ));
    }

    #[test]
    fn upstream_authorization_challenge() {
        let r = upstream_authorization_required(META, CONNECT);
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("www-authenticate"),
            Some(
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"upstream authorization \
                     required\", resource_metadata=\"{META}\""
                )
                .as_str()
            )
        );
        let body = body_json(&r);
        assert_eq!(body["error"], "upstream_authorization_required");
        assert_eq!(body["connect_url"], CONNECT);
        assert_eq!(
            r.header("access-control-expose-headers"),
            Some(EXPOSE_HEADERS)
        );
    }

    #[test]
    fn provider_outage_answers_each_request() {
        let limits = Limits::default();
        let single = parse(
            br#"{"jsonrpc":"2.0","id":"a\u0062","method":"ping"}"#,
            &limits,
        )
        .unwrap();
        let ids = RequestIds::of(&single);
        assert_eq!(ids.ids, vec![r#""a\u0062""#]);
        let r = upstream_unavailable(Some(&ids), "github.com timed out", "rid");
        assert_eq!(r.status, 200);
        // The id byte for byte.
        assert!(String::from_utf8_lossy(&r.body).contains(r#""id":"a\u0062""#));
        let body = body_json(&r);
        assert_eq!(body["error"]["code"], UPSTREAM_UNAVAILABLE_CODE);
        assert_eq!(
            body["error"]["message"],
            "upstream authorization is temporarily unavailable: github.com timed out"
        );
        assert_eq!(body["error"]["data"]["reason"], "upstream_unavailable");
        let batch = parse(
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#,
            &limits,
        )
        .unwrap();
        let ids = RequestIds::of(&batch);
        assert!(ids.batch);
        let body = body_json(&upstream_unavailable(Some(&ids), "x", "rid"));
        assert_eq!(body.as_array().map(Vec::len), Some(2));
        assert_eq!(body[1]["id"], 2);
        // Nothing to answer in JSON-RPC: 503.
        let notification = parse(
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            &limits,
        )
        .unwrap();
        let r = upstream_unavailable(Some(&RequestIds::of(&notification)), "x", "rid");
        assert_eq!(r.status, 503);
        let r = upstream_unavailable(None, "down", "rid");
        assert_eq!(r.status, 503);
        assert_eq!(
            body_json(&r)["error_description"],
            "upstream authorization is temporarily unavailable: down"
        );
    }

    #[test]
    fn upstream_rejections() {
        let none = std::iter::empty::<&[u8]>;
        assert!(is_upstream_rejection(Some("401"), none()));
        assert!(!is_upstream_rejection(Some("403"), none()));
        assert!(is_upstream_rejection(
            Some("403"),
            [&br#"Bearer error="insufficient_scope", scope="repo""#[..]].into_iter()
        ));
        assert!(is_upstream_rejection(
            Some("403"),
            [
                &b"Basic realm=x"[..],
                b"Bearer error=\"INSUFFICIENT_SCOPE\""
            ]
            .into_iter()
        ));
        assert!(!is_upstream_rejection(
            Some("403"),
            [&b"Bearer error=\"invalid_request\""[..]].into_iter()
        ));
        assert!(!is_upstream_rejection(Some("200"), none()));
        assert!(!is_upstream_rejection(Some("500"), none()));
        assert!(!is_upstream_rejection(None, none()));
    }

    #[test]
    fn sanitized_descriptions() {
        assert_eq!(sanitize("a\r\nb\tc", 10), "abc");
        assert_eq!(sanitize("ééé", 2), "éé");
    }
}
