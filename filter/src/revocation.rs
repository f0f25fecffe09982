//! The token service's revocation list (`GET /internal/v1/revocations`): access-token ids revoked
//! and not yet expired, revoked subjects (service accounts), and the users' upstream tokens
//! deleted within the last hour (`disconnected`: a cached copy fetched at or before then is not
//! reused). Pure: parsing, the shared-data value, the poll schedule and the answer's
//! classification; the host layer does the I/O.
//!
//! One VM at a time polls (a lease in shared data, like the JWKS refresh) every
//! `revocations_refresh_seconds` with `If-None-Match`, publishes a changed list to shared data as
//! `<etag>\n<document>`, and every VM adopts a new version on its next tick. A list that cannot
//! be fetched is kept: the last one stays in force however old it gets.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::Value;

use crate::refresh::FailureRun;

/// Upper bound on the document (tens of thousands of ids).
pub const MAX_REVOCATIONS_BYTES: usize = 4 << 20;
/// A poll that has not answered after this long is considered lost.
pub const FETCH_TIMEOUT_SECONDS: u64 = 5;

/// The revoked token ids and subjects, and the upstream disconnects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    jtis: HashSet<String>,
    subjects: HashSet<String>,
    /// sub → route resource URL → the latest moment (unix seconds) the token service deleted the
    /// user's upstream token for the route.
    disconnected: HashMap<String, HashMap<String, u64>>,
}

impl Revocations {
    pub fn parse(document: &[u8]) -> Result<Self, RevocationsError> {
        if document.len() > MAX_REVOCATIONS_BYTES {
            return Err(RevocationsError::TooLarge);
        }
        let value: serde_json::Value =
            serde_json::from_slice(document).map_err(|_| RevocationsError::NotValid)?;
        let object = value.as_object().ok_or(RevocationsError::NotValid)?;
        Ok(Revocations {
            jtis: strings(object.get("jtis"))?,
            subjects: strings(object.get("subjects"))?,
            disconnected: disconnects(object.get("disconnected"))?,
        })
    }

    /// When the token service last deleted `sub`'s upstream token for `route` (within the hour
    /// the list covers), if it did.
    pub fn disconnected_at(&self, sub: &str, route: &str) -> Option<u64> {
        self.disconnected.get(sub)?.get(route).copied()
    }

    /// True when the token's `jti` or its subject is listed.
    pub fn is_revoked(&self, jti: Option<&str>, sub: &str) -> bool {
        jti.is_some_and(|jti| self.jtis.contains(jti)) || self.subjects.contains(sub)
    }

    /// (revoked token ids, revoked subjects, upstream disconnects)
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.jtis.len(),
            self.subjects.len(),
            self.disconnected.values().map(HashMap::len).sum(),
        )
    }

    /// No token id or subject is revoked (disconnects do not count: they revoke no token).
    pub fn is_empty(&self) -> bool {
        self.jtis.is_empty() && self.subjects.is_empty()
    }
}

/// A member that is absent or an array of strings (empty ones are dropped: they match nothing).
fn strings(member: Option<&Value>) -> Result<HashSet<String>, RevocationsError> {
    let Some(member) = member else {
        return Ok(HashSet::new());
    };
    let items = member.as_array().ok_or(RevocationsError::NotValid)?;
    items
        .iter()
        .filter(|item| item.as_str() != Some(""))
        .map(|item| {
            item.as_str()
                .map(str::to_owned)
                .ok_or(RevocationsError::NotValid)
        })
        .collect()
}

/// A member that is absent or an array of `{"sub", "route", "at"}` objects (strings, and unix
/// seconds); the latest `at` per (sub, route) counts. Items with an empty sub or route are
/// dropped: they match nothing.
fn disconnects(
    member: Option<&Value>,
) -> Result<HashMap<String, HashMap<String, u64>>, RevocationsError> {
    let mut out: HashMap<String, HashMap<String, u64>> = HashMap::new();
    let Some(member) = member else {
        return Ok(out);
    };
    for item in member.as_array().ok_or(RevocationsError::NotValid)? {
        let field = |name: &str| item.get(name).ok_or(RevocationsError::NotValid);
        let (Some(sub), Some(route), Some(at)) = (
            field("sub")?.as_str(),
            field("route")?.as_str(),
            field("at")?.as_u64(),
        ) else {
            return Err(RevocationsError::NotValid);
        };
        if sub.is_empty() || route.is_empty() {
            continue;
        }
        let latest = out
            .entry(sub.to_owned())
            .or_default()
            .entry(route.to_owned())
            .or_insert(at);
        *latest = (*latest).max(at);
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationsError {
    TooLarge,
    NotValid,
}

impl fmt::Display for RevocationsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevocationsError::TooLarge => write!(
                f,
                "revocation list is larger than {MAX_REVOCATIONS_BYTES} bytes"
            ),
            RevocationsError::NotValid => f.write_str(
                "revocation list is not a JSON object with \"jtis\" and \"subjects\" string \
                 arrays and a \"disconnected\" array of {\"sub\", \"route\", \"at\"}",
            ),
        }
    }
}

impl std::error::Error for RevocationsError {}

/// Shared-data value: the ETag (possibly empty), newline, the document.
pub fn encode_shared(etag: &str, document: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(etag.len().saturating_add(document.len()).saturating_add(1));
    value.extend_from_slice(etag.as_bytes());
    value.push(b'\n');
    value.extend_from_slice(document);
    value
}

pub fn decode_shared(value: &[u8]) -> Option<(&str, &[u8])> {
    let newline = value.iter().position(|b| *b == b'\n')?;
    let (head, rest) = value.split_at(newline);
    Some((std::str::from_utf8(head).ok()?, rest.get(1..)?))
}

/// An ETag worth echoing in `If-None-Match`: visible ASCII, bounded (RFC 9110 `entity-tag`).
pub fn usable_etag(etag: Option<&[u8]>) -> Option<&str> {
    let etag = etag?;
    if etag.is_empty() || etag.len() > 256 || !etag.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    std::str::from_utf8(etag).ok()
}

/// What a poll's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollAnswer {
    /// 200: a (possibly) new list in the body.
    Updated,
    /// 304: the list we have is current.
    NotModified,
    /// Anything else: keep the list we have.
    Failed(String),
}

pub fn classify(status: Option<&str>) -> PollAnswer {
    match status {
        Some("200") => PollAnswer::Updated,
        Some("304") => PollAnswer::NotModified,
        Some("401") => PollAnswer::Failed(
            "the token service refused the internal API secret (401); check \
             MCPGATE_INTERNAL_API_SECRET in Envoy and the token service"
                .into(),
        ),
        Some(other) => PollAnswer::Failed(format!("token service answered {other}")),
        None => PollAnswer::Failed(
            "no response from the token service (timeout or connection failure)".into(),
        ),
    }
}

/// When this VM polls: the lease in shared data says when the next poll is due for all VMs;
/// this keeps the VM's own outstanding call-out from being duplicated.
#[derive(Debug, Clone)]
pub struct Poller {
    period: u64,
    in_flight_until: Option<u64>,
    /// Failed polls in a row (log throttling).
    pub failures: FailureRun,
}

impl Poller {
    pub fn new(period: u64) -> Self {
        Poller {
            period: period.max(1),
            in_flight_until: None,
            failures: FailureRun::default(),
        }
    }

    pub fn period(&self) -> u64 {
        self.period
    }

    /// This VM has no poll outstanding (a lost one counts as answered after the timeout).
    pub fn idle(&self, now: u64) -> bool {
        self.in_flight_until.is_none_or(|until| now >= until)
    }

    /// The lease value while a poll is outstanding.
    pub fn started(&mut self, now: u64) -> u64 {
        let until = now.saturating_add(FETCH_TIMEOUT_SECONDS);
        self.in_flight_until = Some(until);
        until
    }

    /// The poll answered; the lease value until the next one is due. `true` (log at warn level)
    /// for the first failure of a run and every 60th after.
    pub fn finished(&mut self, now: u64, ok: bool) -> (u64, bool) {
        self.in_flight_until = None;
        let warn = if ok {
            self.failures.succeeded();
            false
        } else {
            self.failures.failed(60)
        };
        (now.saturating_add(self.period), warn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_jtis_and_subjects() {
        let r = Revocations::parse(br#"{"jtis":["j1","j2",""],"subjects":["sa:1"]}"#).unwrap();
        assert_eq!(r.counts(), (2, 1, 0));
        assert!(r.is_revoked(Some("j1"), "user"));
        assert!(r.is_revoked(Some("j2"), "user"));
        assert!(r.is_revoked(None, "sa:1"));
        assert!(r.is_revoked(Some("other"), "sa:1"));
        assert!(!r.is_revoked(Some("j3"), "user"));
        assert!(!r.is_revoked(None, "user"));
        // An empty jti or subject never matches a token without one.
        assert!(!r.is_revoked(Some(""), ""));
        let empty = Revocations::parse(br#"{"jtis":[],"subjects":[]}"#).unwrap();
        assert!(empty.is_empty());
        assert!(Revocations::parse(b"{}").unwrap().is_empty());
        // Unknown members are tolerated (the token service may add some).
        assert!(Revocations::parse(br#"{"jtis":["a"],"version":3}"#).is_ok());
    }

    #[test]
    fn parses_upstream_disconnects() {
        const GH: &str = "http://localhost:18080/github";
        let r = Revocations::parse(
            br#"{"jtis":[],"subjects":[],"disconnected":[
                {"sub":"alice","route":"http://localhost:18080/github","at":1700000000},
                {"sub":"alice","route":"http://localhost:18080/github","at":1699999990},
                {"sub":"alice","route":"http://localhost:18080/gitlab","at":1700000005,"x":1},
                {"sub":"bob","route":"http://localhost:18080/github","at":1700000001},
                {"sub":"","route":"http://localhost:18080/github","at":1},
                {"sub":"carol","route":"","at":1}
            ]}"#,
        )
        .unwrap();
        // The latest moment per (sub, route); empty names match nothing.
        assert_eq!(r.disconnected_at("alice", GH), Some(1_700_000_000));
        assert_eq!(
            r.disconnected_at("alice", "http://localhost:18080/gitlab"),
            Some(1_700_000_005)
        );
        assert_eq!(r.disconnected_at("bob", GH), Some(1_700_000_001));
        assert_eq!(
            r.disconnected_at("bob", "http://localhost:18080/gitlab"),
            None
        );
        assert_eq!(r.disconnected_at("carol", GH), None);
        assert_eq!(r.disconnected_at("", GH), None);
        assert_eq!(r.counts(), (0, 0, 3));
        // Disconnects revoke no token.
        assert!(r.is_empty());
        assert!(!r.is_revoked(None, "alice"));
        assert_eq!(
            Revocations::parse(br#"{"disconnected":[]}"#).unwrap(),
            Revocations::default()
        );
        for bad in [
            &br#"{"disconnected":{}}"#[..],
            br#"{"disconnected":[1]}"#,
            br#"{"disconnected":[{"sub":"a","route":"r"}]}"#,
            br#"{"disconnected":[{"sub":"a","route":"r","at":-1}]}"#,
            br#"{"disconnected":[{"sub":"a","route":"r","at":1.5}]}"#,
            br#"{"disconnected":[{"sub":"a","route":"r","at":"1"}]}"#,
            br#"{"disconnected":[{"sub":1,"route":"r","at":1}]}"#,
            br#"{"disconnected":[{"route":"r","at":1}]}"#,
            br#"{"disconnected":[{"sub":"a","route":null,"at":1}]}"#,
        ] {
            assert_eq!(
                Revocations::parse(bad),
                Err(RevocationsError::NotValid),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn rejects_bad_documents() {
        for bad in [
            &b"not json"[..],
            b"[]",
            br#"{"jtis":"j1"}"#,
            br#"{"jtis":[1]}"#,
            br#"{"subjects":[null]}"#,
            b"",
        ] {
            assert_eq!(
                Revocations::parse(bad),
                Err(RevocationsError::NotValid),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let big = vec![b' '; MAX_REVOCATIONS_BYTES + 1];
        assert_eq!(Revocations::parse(&big), Err(RevocationsError::TooLarge));
        assert!(RevocationsError::NotValid.to_string().contains("jtis"));
    }

    #[test]
    fn shared_value_round_trip() {
        let v = encode_shared("\"v7\"", br#"{"jtis":[]}"#);
        assert_eq!(decode_shared(&v), Some(("\"v7\"", &br#"{"jtis":[]}"#[..])));
        let v = encode_shared("", b"{}\n");
        assert_eq!(decode_shared(&v), Some(("", &b"{}\n"[..])));
        assert_eq!(decode_shared(b"no newline"), None);
        assert_eq!(decode_shared(b"\xff\n{}"), None);
    }

    #[test]
    fn etags() {
        assert_eq!(usable_etag(Some(b"\"abc\"")), Some("\"abc\""));
        assert_eq!(usable_etag(Some(b"W/\"abc\"")), Some("W/\"abc\""));
        assert_eq!(usable_etag(Some(b"")), None);
        assert_eq!(usable_etag(Some(b"a b")), None);
        assert_eq!(usable_etag(Some(b"a\r\nx: y")), None);
        assert_eq!(usable_etag(Some(&[b'a'; 257])), None);
        assert_eq!(usable_etag(None), None);
    }

    #[test]
    fn answers() {
        assert_eq!(classify(Some("200")), PollAnswer::Updated);
        assert_eq!(classify(Some("304")), PollAnswer::NotModified);
        assert!(matches!(classify(Some("401")), PollAnswer::Failed(m) if m.contains("secret")));
        assert!(matches!(classify(Some("503")), PollAnswer::Failed(m) if m.contains("503")));
        assert!(matches!(classify(None), PollAnswer::Failed(m) if m.contains("timeout")));
    }

    #[test]
    fn poll_schedule_and_log_throttling() {
        let mut p = Poller::new(2);
        assert!(p.idle(100));
        assert_eq!(p.started(100), 105);
        assert!(!p.idle(101));
        assert!(p.idle(105)); // lost
        assert_eq!(p.finished(101, true), (103, false));
        assert!(p.idle(101));
        assert_eq!(p.finished(103, false), (105, true));
        for _ in 0..59 {
            assert!(!p.finished(103, false).1);
        }
        assert!(p.finished(103, false).1); // the 60th + 1
        assert_eq!(p.failures.count(), 61);
        p.finished(103, true);
        assert_eq!(p.failures.count(), 0);
        assert_eq!(Poller::new(0).period(), 1);
    }
}
