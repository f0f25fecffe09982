//! Object ids in OpenAI's style (`resp_…`, `mcpl_…`, `mcp_…`, `msg_…`, `chatcmpl-…`, `call_…`):
//! unique within and across runs, from the clock and a counter (no randomness is needed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// `prefix` followed by 32 hex digits.
pub fn new_id(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{prefix}{nanos:016x}{n:016x}")
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = new_id("resp_");
        let b = new_id("resp_");
        assert!(a.starts_with("resp_") && a.len() == 5 + 32);
        assert_ne!(a, b);
    }
}
