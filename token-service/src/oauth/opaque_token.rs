//! Random opaque values (codes, refresh tokens, session secrets, client secrets, request ids) and
//! the SHA-256 hashes that are all the database ever stores of them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// 32 bytes from the OS random generator, base64url without padding (43 characters).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of an opaque value: base64url(SHA-256(value)). A fast hash is enough because
/// every value hashed here carries 256 bits of entropy.
pub fn hash(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(value.as_bytes()))
}

/// Whether `value` hashes to `stored_hash`, compared in constant time.
pub fn matches(value: &str, stored_hash: &str) -> bool {
    hash(value).as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_random_and_hashes_match() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(matches(&a, &hash(&a)));
        assert!(!matches(&b, &hash(&a)));
        assert_ne!(hash(&a), a);
    }
}
