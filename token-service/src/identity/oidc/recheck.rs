//! When and how a provider-backed session is checked again at its provider. Plain decisions; the
//! store holds the row (with a lease so one replica at a time uses the refresh token) and the
//! provider module talks to the provider.
//!
//! A session signed in through a provider carries the provider's refresh token (encrypted) and a
//! `token_version` that grows each time a new refresh token is stored. A refresh grant of ours or
//! a client-route token mint for a session whose last check is older than the provider's
//! `recheck_interval` first refreshes at the provider:
//! - accepted: the new refresh token (when the provider rotated it) is stored and the session is
//!   good for another interval;
//! - refused (`invalid_grant`, user disabled): if the database already holds a newer refresh
//!   token than the one used (another replica rotated it meanwhile), the check is retried with
//!   that one, so a stale token never locks the user out; otherwise the session ends;
//! - unavailable (provider down): the session is kept, but this request fails; the next one tries
//!   again.
//!
//! Without a provider refresh token (the provider did not grant `offline_access`) the session
//! lasts as long as the ID token it signed in with; when the provider has a userinfo endpoint and
//! its access token is still valid, a check calls userinfo instead, and a refusal there ends the
//! session too.

/// True when a session last checked at `checked_at` must be checked again at `now`.
pub fn due(checked_at: i64, interval_secs: i64, now: i64) -> bool {
    now.saturating_sub(checked_at) >= interval_secs.max(1)
}

/// What to do after the provider refused a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRefusal {
    /// The stored token is newer than the one refused: try again with it.
    RetryWithStored,
    /// The refused token is the newest there is: the user lost access; end the session.
    EndSession,
    /// The session ended meanwhile (another replica's check): nothing more to do.
    AlreadyEnded,
}

/// Decides after a refusal of the token of `used_version`, given the row as it is now
/// (`None`: gone).
pub fn after_refusal(used_version: i64, stored: Option<(i64, bool)>) -> AfterRefusal {
    match stored {
        None | Some((_, true)) => AfterRefusal::AlreadyEnded,
        Some((version, false)) if version > used_version => AfterRefusal::RetryWithStored,
        Some(_) => AfterRefusal::EndSession,
    }
}

/// The most attempts one check makes with successively newer stored tokens.
pub const MAX_ATTEMPTS: usize = 3;

/// For a session without a refresh token: still good while the ID token it signed in with is.
pub fn without_refresh_token_valid(id_token_expires_at: i64, now: i64) -> bool {
    now < id_token_expires_at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_after_the_interval() {
        assert!(!due(100, 300, 399));
        assert!(due(100, 300, 400));
        assert!(!due(100, 0, 100));
        assert!(due(100, 0, 101));
    }

    #[test]
    fn a_stale_token_never_locks_the_user_out() {
        // Another replica rotated the token while ours was in flight: retry with the newer one.
        assert_eq!(
            after_refusal(3, Some((4, false))),
            AfterRefusal::RetryWithStored
        );
        // Ours was the newest: the provider really refused the user.
        assert_eq!(after_refusal(3, Some((3, false))), AfterRefusal::EndSession);
        assert_eq!(
            after_refusal(3, Some((5, true))),
            AfterRefusal::AlreadyEnded
        );
        assert_eq!(after_refusal(3, None), AfterRefusal::AlreadyEnded);
    }

    #[test]
    fn without_refresh_token_the_id_token_bounds_the_session() {
        assert!(without_refresh_token_valid(200, 199));
        assert!(!without_refresh_token_valid(200, 200));
    }
}
