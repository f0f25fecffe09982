//! The shallow parse against the full one on arbitrary text (the first byte picks how many levels
//! to build and the depth limit): the same error or the same tree, the same messages, and the
//! same list filtering output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpgate_protocol::json::{self, Value, ValueKind};
use mcpgate_protocol::jsonrpc::{self, IdKey, Limits};
use mcpgate_protocol::list_filter::{ListKind, ResponseTracker};

/// `shallow` is `full` with some containers left unbuilt.
fn assert_same_tree(full: &Value<'_>, shallow: &Value<'_>) {
    assert_eq!(full.raw().as_ptr(), shallow.raw().as_ptr());
    assert_eq!(full.raw(), shallow.raw());
    match (full.kind(), shallow.kind()) {
        (ValueKind::Object(_) | ValueKind::Array(_), ValueKind::Opaque) => {
            assert_eq!(shallow.materialize().as_ref(), Ok(full));
        }
        (ValueKind::Object(a), ValueKind::Object(b)) => {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert_eq!((&x.key, x.key_raw), (&y.key, y.key_raw));
                assert_same_tree(&x.value, &y.value);
            }
        }
        (ValueKind::Array(a), ValueKind::Array(b)) => {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert_same_tree(x, y);
            }
        }
        (a, b) => assert_eq!(a, b),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let levels = usize::from(knobs & 0x07);
    let max_depth = if knobs & 0x08 == 0 {
        64
    } else {
        usize::from(knobs >> 4) + 1
    };
    let limits = Limits {
        max_depth,
        ..Limits::default()
    };

    match (
        json::parse(text, max_depth),
        json::parse_shallow(text, max_depth, levels),
    ) {
        (Ok(full), Ok(shallow)) => assert_same_tree(&full, &shallow),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (full, shallow) => panic!("{full:?} vs {shallow:?}"),
    }

    match (
        jsonrpc::parse_str(text, &limits),
        jsonrpc::parse_str_shallow(text, &limits, levels),
    ) {
        (Ok(full), Ok(shallow)) => {
            assert_eq!(full.is_batch(), shallow.is_batch());
            assert_eq!(full.messages().len(), shallow.messages().len());
            for (x, y) in full.messages().iter().zip(shallow.messages()) {
                assert_eq!(
                    (x.kind(), x.id(), x.method(), x.target(), x.target_kind()),
                    (y.kind(), y.id(), y.method(), y.target(), y.target_kind())
                );
                assert_same_tree(x.value(), y.value());
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (full, shallow) => panic!("{full:?} vs {shallow:?}"),
    }

    let mut tracker = ResponseTracker::new();
    tracker.record_id(IdKey::Number(1), Some(ListKind::Tools));
    tracker.record_id(IdKey::Number(2), Some(ListKind::Prompts));
    tracker.record_id(IdKey::Number(3), None);
    let allow = |name: &str| name.len() % 2 == 0;
    assert_eq!(
        tracker.filter_body(text, &limits, allow),
        tracker.filter_body_full_parse(text, &limits, allow)
    );
});
