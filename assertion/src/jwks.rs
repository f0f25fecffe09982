//! The gateway's JSON Web Key Set (`<issuer>/.well-known/jwks.json`): Ed25519 keys (`kty: OKP`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::Ed25519PublicKey;
use serde::Deserialize;

/// The usable keys of a JWKS document, by key id.
#[derive(Clone)]
pub struct Jwks {
    keys: Vec<(Option<String>, Ed25519PublicKey)>,
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("the JWKS document is not JSON with a `keys` array: {0}")]
    Shape(#[from] serde_json::Error),
    #[error("the JWKS document has no Ed25519 key")]
    NoKey,
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<Key>,
}

#[derive(Deserialize)]
struct Key {
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

impl Jwks {
    /// Parses a JWKS document, keeping its Ed25519 keys and skipping any other kind.
    pub fn parse(document: &[u8]) -> Result<Self, JwksError> {
        let document: Document = serde_json::from_slice(document)?;
        let keys: Vec<_> = document
            .keys
            .into_iter()
            .filter(|k| k.kty == "OKP" && k.crv.as_deref() == Some("Ed25519"))
            .filter_map(|k| {
                let bytes = URL_SAFE_NO_PAD.decode(k.x?).ok()?;
                let key = Ed25519PublicKey::from_bytes(&bytes).ok()?;
                Some((k.kid.clone(), key))
            })
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoKey);
        }
        Ok(Self { keys })
    }

    /// The key named `kid`, or with no `kid` the only key of a one-key set.
    pub(crate) fn key(&self, kid: Option<&str>) -> Option<&Ed25519PublicKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|(id, _)| id.as_deref() == Some(kid))
                .map(|(_, key)| key),
            None if self.keys.len() == 1 => self.keys.first().map(|(_, key)| key),
            None => None,
        }
    }

    pub(crate) fn has(&self, kid: Option<&str>) -> bool {
        self.key(kid).is_some()
    }
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<_> = self.keys.iter().map(|(id, _)| id).collect();
        f.debug_struct("Jwks").field("kids", &ids).finish()
    }
}
