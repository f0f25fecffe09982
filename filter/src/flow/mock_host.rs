//! A [`Host`] for the native tests that records every effect the flow has: headers set and
//! removed, local replies, resumes, call-outs, properties, shared data, counters, log lines.
//! It behaves as Envoy does where the flow relies on it: a header map is a list of pairs
//! (names compared case-insensitively), a body is the bytes buffered so far, a call-out gets a
//! fresh token, shared data keeps a CAS per key that changes on every write, and a write with a
//! stale CAS is refused.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use super::host::{CallOut, Host, HostError, LogLevel, Side};
use crate::challenge::LocalResponse;

/// A call-out the flow sent.
#[derive(Debug, Clone)]
pub struct SentCall {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl SentCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A header map as the host holds it.
type HeaderPairs = Vec<(String, Vec<u8>)>;

/// What one request has seen and done, and the state the VM shares through the host.
#[derive(Debug, Default)]
pub struct Recorded {
    pub now: Option<u64>,
    pub request_headers: HeaderPairs,
    pub response_headers: HeaderPairs,
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
    /// Local replies, in order.
    pub sent: Vec<LocalResponse>,
    /// `resume_request` calls.
    pub resumes: usize,
    pub calls: Vec<SentCall>,
    next_token: u32,
    /// Refuse call-outs (no such cluster).
    pub refuse_calls: bool,
    /// The call-out answer being handled: its headers and body.
    pub answer: Option<(HeaderPairs, Vec<u8>)>,
    pub properties: BTreeMap<String, String>,
    pub shared: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    /// Counter names by id, and their totals by name.
    counter_names: Vec<String>,
    pub counters: BTreeMap<String, u64>,
    pub logs: Vec<(LogLevel, String)>,
}

#[derive(Debug, Default)]
pub struct MockHost {
    pub state: RefCell<Recorded>,
}

fn lookup<'a>(map: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    map.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

impl MockHost {
    pub fn at(now: u64) -> Self {
        let host = MockHost::default();
        host.state.borrow_mut().now = Some(now);
        host
    }

    /// A new request on the same host (clock, shared data and counters kept).
    pub fn new_request(&self, headers: &[(&str, &str)]) {
        let mut s = self.state.borrow_mut();
        s.request_headers = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect();
        s.response_headers.clear();
        s.request_body.clear();
        s.response_body.clear();
        s.sent.clear();
        s.resumes = 0;
        s.calls.clear();
        s.answer = None;
        s.properties.clear();
        s.logs.clear();
    }

    pub fn set_now(&self, now: u64) {
        self.state.borrow_mut().now = Some(now);
    }

    /// More request body bytes arrive; the total buffered so far.
    pub fn push_request_body(&self, bytes: &[u8]) -> usize {
        let mut s = self.state.borrow_mut();
        s.request_body.extend_from_slice(bytes);
        s.request_body.len()
    }

    pub fn set_response(&self, headers: &[(&str, &str)]) {
        self.state.borrow_mut().response_headers = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect();
    }

    /// The response body chunk the host hands over now (streamed: replaces the last one).
    pub fn set_response_body(&self, bytes: &[u8]) -> usize {
        let mut s = self.state.borrow_mut();
        s.response_body = bytes.to_vec();
        s.response_body.len()
    }

    /// More response body bytes buffered (a body the filter holds).
    pub fn push_response_body(&self, bytes: &[u8]) -> usize {
        let mut s = self.state.borrow_mut();
        s.response_body.extend_from_slice(bytes);
        s.response_body.len()
    }

    /// Makes `status` and `body` the call-out answer being handled; its body size.
    pub fn answer(&self, status: Option<&str>, headers: &[(&str, &str)], body: &[u8]) -> usize {
        let mut map: HeaderPairs = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect();
        if let Some(status) = status {
            map.push((":status".into(), status.as_bytes().to_vec()));
        }
        self.state.borrow_mut().answer = Some((map, body.to_vec()));
        body.len()
    }

    pub fn request_header(&self, name: &str) -> Option<String> {
        let s = self.state.borrow();
        lookup(&s.request_headers, name).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn request_header_values(&self, name: &str) -> Vec<String> {
        self.state
            .borrow()
            .request_headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    pub fn response_header(&self, name: &str) -> Option<String> {
        let s = self.state.borrow();
        lookup(&s.response_headers, name).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn property(&self, name: &str) -> Option<String> {
        self.state.borrow().properties.get(name).cloned()
    }

    pub fn sent(&self) -> Vec<LocalResponse> {
        self.state.borrow().sent.clone()
    }

    pub fn resumes(&self) -> usize {
        self.state.borrow().resumes
    }

    pub fn calls(&self) -> Vec<SentCall> {
        self.state.borrow().calls.clone()
    }

    pub fn response_body(&self) -> Vec<u8> {
        self.state.borrow().response_body.clone()
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.state.borrow().counters.get(name).copied().unwrap_or(0)
    }

    pub fn logs(&self, level: LogLevel) -> Vec<String> {
        self.state
            .borrow()
            .logs
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, m)| m.clone())
            .collect()
    }

    pub fn put_shared(&self, key: &str, value: &[u8]) {
        let _ = self.set_shared_data(key, value, None);
    }
}

impl Host for MockHost {
    fn log(&self, level: LogLevel, message: &str) {
        self.state
            .borrow_mut()
            .logs
            .push((level, message.to_owned()));
    }

    fn now(&self) -> Option<u64> {
        self.state.borrow().now
    }

    fn headers(&self, side: Side) -> Vec<(String, Vec<u8>)> {
        let s = self.state.borrow();
        match side {
            Side::Request => s.request_headers.clone(),
            Side::Response => s.response_headers.clone(),
        }
    }

    fn set_header(&self, side: Side, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.remove_header(side, name)?;
        self.add_header(side, name, value)
    }

    fn add_header(&self, side: Side, name: &str, value: &[u8]) -> Result<(), HostError> {
        let mut s = self.state.borrow_mut();
        let map = match side {
            Side::Request => &mut s.request_headers,
            Side::Response => &mut s.response_headers,
        };
        map.push((name.to_ascii_lowercase(), value.to_vec()));
        Ok(())
    }

    fn remove_header(&self, side: Side, name: &str) -> Result<(), HostError> {
        let mut s = self.state.borrow_mut();
        let map = match side {
            Side::Request => &mut s.request_headers,
            Side::Response => &mut s.response_headers,
        };
        map.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        Ok(())
    }

    fn body(&self, side: Side, start: usize, len: usize) -> Result<Vec<u8>, HostError> {
        let s = self.state.borrow();
        let body = match side {
            Side::Request => &s.request_body,
            Side::Response => &s.response_body,
        };
        let end = start.saturating_add(len).min(body.len());
        Ok(body.get(start.min(end)..end).unwrap_or_default().to_vec())
    }

    fn replace_response_body(&self, start: usize, len: usize, new: &[u8]) -> Result<(), HostError> {
        let mut s = self.state.borrow_mut();
        let end = start.saturating_add(len).min(s.response_body.len());
        if start > end {
            return Err(HostError("BadArgument".into()));
        }
        s.response_body.splice(start..end, new.iter().copied());
        Ok(())
    }

    fn send_response(&self, response: &LocalResponse) -> Result<(), HostError> {
        self.state.borrow_mut().sent.push(response.clone());
        Ok(())
    }

    fn resume_request(&self) -> Result<(), HostError> {
        self.state.borrow_mut().resumes += 1;
        Ok(())
    }

    fn dispatch(&self, call: &CallOut<'_>) -> Result<u32, HostError> {
        let mut s = self.state.borrow_mut();
        if s.refuse_calls {
            return Err(HostError("BadArgument".into()));
        }
        s.next_token += 1;
        let token = s.next_token;
        s.calls.push(SentCall {
            token,
            cluster: call.cluster.to_owned(),
            headers: call
                .headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: call.body.map(<[u8]>::to_vec),
        });
        Ok(token)
    }

    fn call_answer_header(&self, name: &str) -> Option<Vec<u8>> {
        let s = self.state.borrow();
        let (headers, _) = s.answer.as_ref()?;
        lookup(headers, name).map(<[u8]>::to_vec)
    }

    fn call_answer_body(&self, len: usize) -> Result<Vec<u8>, HostError> {
        let s = self.state.borrow();
        let Some((_, body)) = s.answer.as_ref() else {
            return Ok(Vec::new());
        };
        Ok(body.iter().take(len).copied().collect())
    }

    fn set_property(&self, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.state
            .borrow_mut()
            .properties
            .insert(name.to_owned(), String::from_utf8_lossy(value).into_owned());
        Ok(())
    }

    fn shared_data(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        Ok(match self.state.borrow().shared.get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        let mut s = self.state.borrow_mut();
        if let (Some(cas), Some((_, current))) = (cas, s.shared.get(key)) {
            if cas != *current {
                return Err(HostError("CasMismatch".into()));
            }
        }
        s.next_cas += 1;
        let next = s.next_cas;
        s.shared.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }

    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        let mut s = self.state.borrow_mut();
        s.counter_names.push(name.to_owned());
        Ok(u32::try_from(s.counter_names.len() - 1).unwrap_or(u32::MAX))
    }

    fn add_to_counter(&self, id: u32, delta: u64) -> Result<(), HostError> {
        let mut s = self.state.borrow_mut();
        let name = s
            .counter_names
            .get(id as usize)
            .cloned()
            .ok_or_else(|| HostError("NotFound".into()))?;
        *s.counters.entry(name).or_default() += delta;
        Ok(())
    }
}
