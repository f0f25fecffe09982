//! JSON Web Key Set parsing (RFC 7517, RFC 8037): the token service's public signing keys.
//!
//! Only `OKP`/`Ed25519` keys with a `kid` are kept; keys of other types, other curves, or marked
//! for another use are ignored, so the token service can publish more than the filter needs.
//! A malformed Ed25519 key, a duplicate `kid` or a set with no usable key is an error: the
//! caller then keeps the keys it already has instead of replacing them with a broken set.

use std::fmt;

use jwt_simple::prelude::Ed25519PublicKey;
use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Decoder};
use serde_json::Value;

/// Upper bound on a JWKS document the filter accepts (a handful of keys is a few hundred bytes).
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Upper bound on the number of keys kept.
pub const MAX_KEYS: usize = 32;

/// The verification keys, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<(String, Ed25519PublicKey)>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.kids().collect::<Vec<_>>())
            .finish()
    }
}

impl KeySet {
    /// Parse a JWKS document.
    pub fn parse(document: &[u8]) -> Result<Self, JwksError> {
        if document.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let value: Value = serde_json::from_slice(document).map_err(|_| JwksError::NotJson)?;
        let keys = value
            .as_object()
            .and_then(|o| o.get("keys"))
            .and_then(Value::as_array)
            .ok_or(JwksError::NoKeysArray)?;
        let mut set = KeySet::default();
        for (index, jwk) in keys.iter().enumerate() {
            let Some(jwk) = jwk.as_object() else {
                return Err(JwksError::InvalidKey {
                    index,
                    reason: "is not a JSON object",
                });
            };
            let field = |name: &str| jwk.get(name).and_then(Value::as_str);
            if field("kty") != Some("OKP") || field("crv") != Some("Ed25519") {
                continue; // another key type: not ours
            }
            if jwk.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
                continue; // an encryption key
            }
            if jwk.get("alg").is_some_and(|a| a.as_str() != Some("EdDSA")) {
                continue; // meant for another algorithm
            }
            let kid = match field("kid") {
                Some(kid) if !kid.is_empty() => kid,
                _ => {
                    return Err(JwksError::InvalidKey {
                        index,
                        reason: "has no kid",
                    })
                }
            };
            if jwk.contains_key("d") {
                return Err(JwksError::InvalidKey {
                    index,
                    reason: "contains private key material (d)",
                });
            }
            let x = field("x").ok_or(JwksError::InvalidKey {
                index,
                reason: "has no x",
            })?;
            let raw = Base64UrlSafeNoPadding::decode_to_vec(x, None).map_err(|_| {
                JwksError::InvalidKey {
                    index,
                    reason: "x is not base64url",
                }
            })?;
            if raw.len() != 32 {
                return Err(JwksError::InvalidKey {
                    index,
                    reason: "x is not 32 bytes",
                });
            }
            let key = Ed25519PublicKey::from_bytes(&raw).map_err(|_| JwksError::InvalidKey {
                index,
                reason: "x is not an Ed25519 public key",
            })?;
            if set.get(kid).is_some() {
                return Err(JwksError::InvalidKey {
                    index,
                    reason: "duplicates the kid of another key",
                });
            }
            if set.keys.len() >= MAX_KEYS {
                return Err(JwksError::TooManyKeys);
            }
            set.keys.push((kid.to_owned(), key));
        }
        if set.keys.is_empty() {
            return Err(JwksError::NoUsableKeys);
        }
        Ok(set)
    }

    /// The key with this `kid`, if any.
    pub fn get(&self, kid: &str) -> Option<&Ed25519PublicKey> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.get(kid).is_some()
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(k, _)| k.as_str())
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    TooLarge,
    NotJson,
    NoKeysArray,
    InvalidKey { index: usize, reason: &'static str },
    TooManyKeys,
    NoUsableKeys,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::TooLarge => write!(f, "JWKS document is larger than {MAX_JWKS_BYTES} bytes"),
            JwksError::NotJson => write!(f, "JWKS document is not valid JSON"),
            JwksError::NoKeysArray => write!(f, "JWKS document has no \"keys\" array"),
            JwksError::InvalidKey { index, reason } => write!(f, "JWKS keys[{index}] {reason}"),
            JwksError::TooManyKeys => {
                write!(f, "JWKS document has more than {MAX_KEYS} Ed25519 keys")
            }
            JwksError::NoUsableKeys => write!(
                f,
                "JWKS document has no usable OKP/Ed25519 signing key with a kid"
            ),
        }
    }
}

impl std::error::Error for JwksError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    #[test]
    fn parses_ed25519_keys_and_ignores_others() {
        let (_, a) = test_key("a");
        let (_, b) = test_key("b");
        let doc = format!(
            r#"{{"keys":[
                {{"kty":"RSA","kid":"rsa","n":"xyz","e":"AQAB"}},
                {{"kty":"EC","crv":"P-256","kid":"ec","x":"AA","y":"AA"}},
                {{"kty":"OKP","crv":"X25519","kid":"x","x":"AA"}},
                {a},
                {{"kty":"OKP","crv":"Ed25519","kid":"enc","use":"enc","x":"AA"}},
                {b}
            ]}}"#
        );
        let set = KeySet::parse(doc.as_bytes()).unwrap();
        assert_eq!(set.kids().collect::<Vec<_>>(), vec!["a", "b"]);
        assert!(set.contains("a") && set.contains("b") && !set.contains("rsa"));
    }

    #[test]
    fn accepts_the_token_service_shape() {
        let (_, jwk) = test_key("k1");
        let jwk = jwk.replace('}', r#","alg":"EdDSA","use":"sig"}"#);
        let set = KeySet::parse(format!(r#"{{"keys":[{jwk}]}}"#).as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn rejects_bad_documents_with_clear_errors() {
        let err = |doc: &str| KeySet::parse(doc.as_bytes()).unwrap_err();
        assert_eq!(err("not json"), JwksError::NotJson);
        assert_eq!(err("[]"), JwksError::NoKeysArray);
        assert_eq!(err(r#"{"keys":{}}"#), JwksError::NoKeysArray);
        assert_eq!(err(r#"{"keys":[]}"#), JwksError::NoUsableKeys);
        assert_eq!(
            err(r#"{"keys":[{"kty":"RSA","kid":"r"}]}"#),
            JwksError::NoUsableKeys
        );
        assert_eq!(
            err(r#"{"keys":[1]}"#),
            JwksError::InvalidKey {
                index: 0,
                reason: "is not a JSON object"
            }
        );
        let e = err(
            r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
        );
        assert_eq!(
            e,
            JwksError::InvalidKey {
                index: 0,
                reason: "has no kid"
            }
        );
        assert_eq!(e.to_string(), "JWKS keys[0] has no kid");
        let e = err(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"!!"}]}"#);
        assert_eq!(
            e,
            JwksError::InvalidKey {
                index: 0,
                reason: "x is not base64url"
            }
        );
        let e = err(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"AAAA"}]}"#);
        assert_eq!(
            e,
            JwksError::InvalidKey {
                index: 0,
                reason: "x is not 32 bytes"
            }
        );
        let e = err(r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k"}]}"#);
        assert_eq!(
            e,
            JwksError::InvalidKey {
                index: 0,
                reason: "has no x"
            }
        );
        let (_, a) = test_key("same");
        let e = err(&format!(r#"{{"keys":[{a},{a}]}}"#));
        assert_eq!(
            e,
            JwksError::InvalidKey {
                index: 1,
                reason: "duplicates the kid of another key"
            }
        );
        let big = vec![b' '; MAX_JWKS_BYTES + 1];
        assert_eq!(KeySet::parse(&big).unwrap_err(), JwksError::TooLarge);
    }

    #[test]
    fn rejects_private_keys() {
        let e = KeySet::parse(
            br#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"AA","d":"AA"}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            JwksError::InvalidKey {
                index: 0,
                reason: "contains private key material (d)"
            }
        );
    }
}
