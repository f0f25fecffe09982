//! The W3C trace context of a request, copied onto its call-outs to the token service.
//!
//! Envoy gives a Wasm filter's `dispatch_http_call` no parent span and injects no `traceparent`
//! into it (`Context::httpCall` in Envoy's `source/extensions/common/wasm/context.cc` sends the
//! call with request options that carry no parent span), and the span Envoy makes for the
//! request itself is injected by the router, after the filter has run, so the filter cannot read
//! its id either. What the filter can do is pass on the context the request arrived with: its
//! `traceparent` and `tracestate` go onto the credentials, session and upstream-rejection
//! call-outs for that request, so the token service's span joins the client's trace, as a
//! sibling of Envoy's span for the request (both children of the client's span).
//!
//! Only well-formed values are copied (<https://www.w3.org/TR/trace-context/>): a `traceparent`
//! of version `00` exactly, or of a later version in the same layout with the fields the spec
//! lets later versions append, at most [`MAX_TRACE_HEADER`] bytes; a `tracestate` only with a
//! valid `traceparent`, and only when it is a list of at most 32 well-formed `key=value`
//! members. Anything else is dropped, never repaired.

use super::exchange::Exchange;

/// Longest `traceparent` or `tracestate` copied (the spec's `tracestate` limit is 512).
pub(super) const MAX_TRACE_HEADER: usize = 512;
/// Most `tracestate` members (the spec's limit).
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Whether `value` is a `traceparent` the filter passes on.
pub(super) fn valid_traceparent(value: &str) -> bool {
    if value.len() > MAX_TRACE_HEADER {
        return false;
    }
    let mut parts = value.splitn(5, '-');
    let (Some(version), Some(trace_id), Some(parent_id), Some(flags)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    };
    let not_zero = |s: &str| s.bytes().any(|c| c != b'0');
    let fields = hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && not_zero(trace_id)
        && hex(parent_id, 16)
        && not_zero(parent_id)
        && hex(flags, 2);
    match (fields, version, parts.next()) {
        (false, _, _) => false,
        (true, _, None) => true,
        // Version 00 has exactly these four fields.
        (true, "00", Some(_)) => false,
        // A later version may append fields after a dash; printable ASCII only.
        (true, _, Some(rest)) => rest.bytes().all(|c| (0x21..=0x7e).contains(&c)),
    }
}

/// Whether `value` is a `tracestate` the filter passes on: `key=value` members separated by
/// commas (optional spaces and tabs around them, empty members allowed), keys of
/// `[a-z0-9_-*/@]` starting with a letter or digit, values of printable ASCII without `,` and
/// `=`.
pub(super) fn valid_tracestate(value: &str) -> bool {
    if value.len() > MAX_TRACE_HEADER {
        return false;
    }
    let mut members: usize = 0;
    for member in value.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        members = members.saturating_add(1);
        let Some((key, val)) = member.split_once('=') else {
            return false;
        };
        let key_ok = key.len() <= 256
            && key
                .bytes()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && key
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/@".contains(&c));
        let val_ok = !val.is_empty()
            && val.len() <= 256
            && !val.ends_with(' ')
            && val
                .bytes()
                .all(|c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=');
        if !key_ok || !val_ok {
            return false;
        }
    }
    members <= MAX_TRACESTATE_MEMBERS
}

/// `(name, value)` pairs borrowed from [`Exchange::trace_context`]'s answer.
pub(super) fn pairs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

impl Exchange {
    /// The request's `traceparent` and `tracestate` to copy onto its call-outs: none when the
    /// request has no valid `traceparent`; `tracestate` only when it is valid too. Only the
    /// first value of each header is considered.
    pub(super) fn trace_context(&self) -> Vec<(&'static str, String)> {
        let Some(traceparent) = self.headers.get("traceparent") else {
            return Vec::new();
        };
        let traceparent = traceparent.trim_matches([' ', '\t']);
        if !valid_traceparent(traceparent) {
            return Vec::new();
        }
        let mut headers = vec![("traceparent", traceparent.to_string())];
        if let Some(state) = self.headers.get("tracestate") {
            let state = state.trim_matches([' ', '\t']);
            if !state.is_empty() && valid_tracestate(state) {
                headers.push(("tracestate", state.to_string()));
            }
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_must_be_w3c() {
        assert!(valid_traceparent(TP));
        assert!(valid_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        ));
        // A later version may be longer, after a dash.
        assert!(valid_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        ));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-\r\n",
        ] {
            assert!(!valid_traceparent(bad), "{bad:?}");
        }
        let long = format!("01{}-x{}", &TP[2..], "y".repeat(MAX_TRACE_HEADER));
        assert!(!valid_traceparent(&long));
    }

    #[test]
    fn tracestate_must_be_a_bounded_member_list() {
        assert!(valid_tracestate("congo=t61rcWkgMzE"));
        assert!(valid_tracestate(
            "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,,tenant@vendor=x y"
        ));
        for bad in [
            "noequals",
            "Upper=1",
            "k=",
            "k=a,b=c=d",
            "k=v\u{7f}",
            "k=a=b",
            "=v",
        ] {
            assert!(!valid_tracestate(bad), "{bad:?}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(!valid_tracestate(&many.join(",")));
        assert!(!valid_tracestate(&format!("k={}", "v".repeat(600))));
    }
}
