//! Per-VM cache of verified access tokens, keyed by the SHA-256 of the token (the token itself is
//! never stored). A hit skips the signature check, which costs about 200 µs in V8; the caller
//! still checks the cached claims against the route's audience and the current time.

use std::collections::HashMap;

use crate::access_token::AccessClaims;

pub type TokenHash = [u8; 32];

pub const DEFAULT_CAPACITY: usize = 4096;

pub fn hash_token(token: &str) -> TokenHash {
    hmac_sha256::Hash::hash(token.as_bytes())
}

#[derive(Debug)]
pub struct TokenCache {
    entries: HashMap<TokenHash, AccessClaims>,
    capacity: usize,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::new(DEFAULT_CAPACITY)
    }
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The claims of a previously verified token, if it has not expired (`now` is unix seconds,
    /// `leeway_seconds` the configured clock skew). An expired entry is dropped.
    pub fn get(
        &mut self,
        hash: &TokenHash,
        now: u64,
        leeway_seconds: u64,
    ) -> Option<&AccessClaims> {
        let expired = self
            .entries
            .get(hash)
            .map(|c| !is_live(c, now, leeway_seconds))?;
        if expired {
            self.entries.remove(hash);
            return None;
        }
        self.entries.get(hash)
    }

    /// Remember a verified token. When full, expired entries go first, then the entries that
    /// expire soonest.
    pub fn insert(&mut self, hash: TokenHash, claims: AccessClaims, now: u64, leeway_seconds: u64) {
        if !is_live(&claims, now, leeway_seconds) {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&hash) {
            self.entries.retain(|_, c| is_live(c, now, leeway_seconds));
            while self.entries.len() >= self.capacity {
                let Some(victim) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, c)| c.exp)
                    .map(|(h, _)| *h)
                else {
                    break;
                };
                self.entries.remove(&victim);
            }
        }
        self.entries.insert(hash, claims);
    }

    /// Drop tokens verified with keys that are no longer published.
    pub fn retain_kids(&mut self, mut known: impl FnMut(&str) -> bool) {
        self.entries.retain(|_, c| known(&c.kid));
    }

    pub fn remove(&mut self, hash: &TokenHash) {
        self.entries.remove(hash);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn is_live(claims: &AccessClaims, now: u64, leeway_seconds: u64) -> bool {
    now < claims
        .exp
        .saturating_add(leeway_seconds.min(crate::access_token::MAX_LEEWAY_SECONDS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64, kid: &str) -> AccessClaims {
        AccessClaims {
            sub: "u".into(),
            email: None,
            groups: vec![],
            client_id: None,
            sid: None,
            jti: None,
            exp,
            audiences: vec!["http://a".into()],
            kid: kid.into(),
            identity: Default::default(),
        }
    }

    #[test]
    fn hit_miss_and_expiry() {
        let mut cache = TokenCache::new(8);
        let h = hash_token("token-1");
        assert_eq!(h, hash_token("token-1"));
        assert_ne!(h, hash_token("token-2"));
        assert!(cache.get(&h, 100, 0).is_none());
        cache.insert(h, claims(200, "k"), 100, 5);
        assert_eq!(cache.get(&h, 150, 5).map(|c| c.exp), Some(200));
        assert!(cache.get(&hash_token("token-2"), 150, 5).is_none());
        // Still live within the leeway, gone after it; the expired entry is dropped.
        assert!(cache.get(&h, 204, 5).is_some());
        assert!(cache.get(&h, 205, 5).is_none());
        assert!(cache.is_empty());
        // Already expired tokens are not stored.
        cache.insert(h, claims(90, "k"), 100, 5);
        assert!(cache.is_empty());
    }

    #[test]
    fn bounded_with_expired_then_soonest_evicted() {
        let mut cache = TokenCache::new(3);
        cache.insert(hash_token("a"), claims(110, "k"), 100, 0);
        cache.insert(hash_token("b"), claims(300, "k"), 100, 0);
        cache.insert(hash_token("c"), claims(200, "k"), 100, 0);
        assert_eq!(cache.len(), 3);
        // At t=120 `a` has expired: it makes room.
        cache.insert(hash_token("d"), claims(400, "k"), 120, 0);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&hash_token("a"), 120, 0).is_none());
        // Nothing expired: the soonest to expire (`c`) goes.
        cache.insert(hash_token("e"), claims(500, "k"), 120, 0);
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&hash_token("c"), 120, 0).is_none());
        for t in ["b", "d", "e"] {
            assert!(cache.get(&hash_token(t), 120, 0).is_some(), "{t}");
        }
        // Re-inserting a present key does not evict.
        cache.insert(hash_token("e"), claims(500, "k"), 120, 0);
        assert_eq!(cache.len(), 3);
        for i in 0..100 {
            cache.insert(hash_token(&i.to_string()), claims(1000 + i, "k"), 120, 0);
            assert!(cache.len() <= 3);
        }
    }

    #[test]
    fn drops_tokens_of_retired_keys() {
        let mut cache = TokenCache::new(8);
        cache.insert(hash_token("a"), claims(300, "old"), 100, 0);
        cache.insert(hash_token("b"), claims(300, "new"), 100, 0);
        cache.retain_kids(|kid| kid == "new");
        assert!(cache.get(&hash_token("a"), 100, 0).is_none());
        assert!(cache.get(&hash_token("b"), 100, 0).is_some());
    }
}
