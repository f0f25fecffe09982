//! When to fetch the JWKS: pure scheduling decisions, driven by the host layer's clock.
//!
//! The keys live in proxy-wasm shared data as `<fetched_at unix seconds>\n<JWKS document>`, so
//! every worker VM sees when the copy was fetched and only one of them (the one holding the
//! lease) refreshes it when it goes stale. The lease (also the revocation list's) and the
//! failure runs that throttle log lines are here too.

/// A fetch that has not answered after this long is considered lost.
pub const FETCH_TIMEOUT_SECONDS: u64 = 5;
/// Retry period after a failed refresh while the previous keys are still usable.
pub const RETRY_WITH_KEYS_SECONDS: u64 = 5;
/// An unknown `kid` forces a refresh at most this often (per VM).
pub const FORCED_REFRESH_INTERVAL_SECONDS: u64 = 5;

#[derive(Debug, Clone)]
pub struct Refresher {
    refresh_seconds: u64,
    /// A fetch dispatched by the root context is outstanding until this time.
    in_flight_until: Option<u64>,
    /// No periodic attempt before this time (after a failure).
    not_before: u64,
    last_forced: Option<u64>,
}

impl Refresher {
    pub fn new(refresh_seconds: u64) -> Self {
        Refresher {
            refresh_seconds: refresh_seconds.max(1),
            in_flight_until: None,
            not_before: 0,
            last_forced: None,
        }
    }

    /// Whether the periodic tick should fetch now. `fetched_at` is when the shared copy was
    /// fetched (`None` when there is none); without keys it retries every tick (one second).
    pub fn should_fetch(&self, now: u64, fetched_at: Option<u64>, have_keys: bool) -> bool {
        if self.in_flight_until.is_some_and(|until| now < until) {
            return false;
        }
        if !have_keys {
            return true;
        }
        if now < self.not_before {
            return false;
        }
        match fetched_at {
            Some(at) => now >= at.saturating_add(self.refresh_seconds),
            None => true,
        }
    }

    pub fn started(&mut self, now: u64) {
        self.in_flight_until = Some(now.saturating_add(FETCH_TIMEOUT_SECONDS));
    }

    /// The periodic fetch answered; on failure the next attempt waits a little.
    pub fn finished(&mut self, now: u64, ok: bool) {
        self.in_flight_until = None;
        self.not_before = if ok {
            0
        } else {
            now.saturating_add(RETRY_WITH_KEYS_SECONDS)
        };
    }

    /// An unknown `kid` may trigger a refresh: at most once per interval.
    pub fn try_force(&mut self, now: u64) -> bool {
        match self.last_forced {
            Some(at) if now < at.saturating_add(FORCED_REFRESH_INTERVAL_SECONDS) => false,
            _ => {
                self.last_forced = Some(now);
                true
            }
        }
    }
}

/// Failures in a row of something retried (a refresh, a poll, call-outs), for log throttling:
/// the first failure of a run and every `every`-th after deserve a warning, the others a debug
/// line, so an outage does not flood the log at one line per worker per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureRun(u64);

impl FailureRun {
    /// One more failure; `true` when it deserves a warning.
    pub fn failed(&mut self, every: u64) -> bool {
        self.0 = self.0.saturating_add(1);
        self.0.checked_rem(every) == Some(1)
    }

    pub fn succeeded(&mut self) {
        self.0 = 0;
    }

    /// Failures in a row so far.
    pub fn count(&self) -> u64 {
        self.0
    }
}

/// Shared-data value: fetch time, newline, JWKS document.
pub fn encode_shared(fetched_at: u64, document: &[u8]) -> Vec<u8> {
    let mut value = fetched_at.to_string().into_bytes();
    value.push(b'\n');
    value.extend_from_slice(document);
    value
}

pub fn decode_shared(value: &[u8]) -> Option<(u64, &[u8])> {
    let newline = value.iter().position(|b| *b == b'\n')?;
    let (head, rest) = value.split_at(newline);
    let fetched_at = std::str::from_utf8(head).ok()?.parse().ok()?;
    Some((fetched_at, rest.get(1..)?))
}

/// The JWKS answer's `:status` (`None`: no answer): only a 200 carries keys.
pub fn check_answer(status: Option<&str>) -> Result<(), String> {
    match status {
        Some("200") => Ok(()),
        Some(other) => Err(format!("token service answered {other}")),
        None => Err("no response from the token service (timeout or connection failure)".into()),
    }
}

/// Lease value: unix seconds until which one VM owns the periodic fetch.
pub fn lease_is_free(value: Option<&[u8]>, now: u64) -> bool {
    let until = value
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok());
    until.is_none_or(|until| now >= until)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetches_without_keys_every_tick_unless_in_flight() {
        let mut r = Refresher::new(300);
        assert!(r.should_fetch(100, None, false));
        r.started(100);
        assert!(!r.should_fetch(101, None, false));
        assert!(r.should_fetch(105, None, false)); // lost fetch times out
        r.finished(102, false);
        assert!(r.should_fetch(103, None, false)); // no keys: retry at once
    }

    #[test]
    fn refreshes_when_stale_and_backs_off_after_failure() {
        let mut r = Refresher::new(300);
        assert!(!r.should_fetch(100, Some(50), true));
        assert!(!r.should_fetch(349, Some(50), true));
        assert!(r.should_fetch(350, Some(50), true));
        r.started(350);
        r.finished(351, false);
        assert!(!r.should_fetch(352, Some(50), true));
        assert!(r.should_fetch(356, Some(50), true));
        r.finished(357, true);
        assert!(!r.should_fetch(358, Some(357), true));
    }

    #[test]
    fn forced_refresh_is_rate_limited() {
        let mut r = Refresher::new(60);
        assert!(r.try_force(10));
        assert!(!r.try_force(11));
        assert!(!r.try_force(14));
        assert!(r.try_force(15));
    }

    #[test]
    fn failure_runs_warn_on_the_first_and_every_nth() {
        let mut run = FailureRun::default();
        assert!(run.failed(60));
        for _ in 0..59 {
            assert!(!run.failed(60));
        }
        assert!(run.failed(60)); // the 61st
        assert_eq!(run.count(), 61);
        run.succeeded();
        assert_eq!(run.count(), 0);
        assert!(run.failed(100));
        assert!(!run.failed(100));
    }

    #[test]
    fn shared_value_round_trip() {
        let v = encode_shared(1234, b"{\"keys\":[]}\n");
        assert_eq!(decode_shared(&v), Some((1234, &b"{\"keys\":[]}\n"[..])));
        assert_eq!(decode_shared(b"x\n{}"), None);
        assert_eq!(decode_shared(b"12"), None);
        assert_eq!(decode_shared(b"12\n"), Some((12, &b""[..])));
    }

    #[test]
    fn answers() {
        assert_eq!(check_answer(Some("200")), Ok(()));
        assert_eq!(
            check_answer(Some("304")),
            Err("token service answered 304".to_owned())
        );
        assert!(matches!(check_answer(Some("503")), Err(m) if m.contains("503")));
        assert!(matches!(check_answer(None), Err(m) if m.contains("timeout")));
    }

    #[test]
    fn lease() {
        assert!(lease_is_free(None, 10));
        assert!(lease_is_free(Some(b"garbage"), 10));
        assert!(!lease_is_free(Some(b"15"), 10));
        assert!(lease_is_free(Some(b"15"), 15));
    }
}
