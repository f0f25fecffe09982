//! The Ed25519 key that signs access tokens: a PKCS#8 PEM file, created (0600) on first start,
//! published as a JWK set with a `kid` derived from the public key so it is stable across restarts.

use std::path::Path;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::Ed25519KeyPair;
use sha2::{Digest, Sha256};

pub struct SigningKeys {
    key_pair: Ed25519KeyPair,
    kid: String,
    public_key: Vec<u8>,
}

impl SigningKeys {
    /// Loads the key at `path`, or generates and writes one when the file does not exist.
    pub fn load_or_generate(path: &Path) -> anyhow::Result<Self> {
        let pem = match std::fs::read_to_string(path) {
            Ok(pem) => pem,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pem = Ed25519KeyPair::generate().to_pem();
                crate::key_files::create_private(
                    path,
                    &pem,
                    "authorization_server.signing_key_file",
                )?;
                tracing::info!(path = %path.display(), "generated a new Ed25519 signing key");
                pem
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "authorization_server.signing_key_file: cannot read {}",
                        path.display()
                    )
                })
            }
        };
        let key_pair = Ed25519KeyPair::from_pem(&pem).map_err(|e| {
            anyhow::anyhow!(
                "authorization_server.signing_key_file: {} is not a PKCS#8 PEM Ed25519 private key ({e})",
                path.display()
            )
        })?;
        Ok(Self::from_key_pair(key_pair))
    }

    pub fn from_key_pair(key_pair: Ed25519KeyPair) -> Self {
        let public_key = key_pair.public_key().to_bytes();
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(&public_key)[..16]);
        let key_pair = key_pair.with_key_id(&kid);
        Self {
            key_pair,
            kid,
            public_key,
        }
    }

    pub fn key_pair(&self) -> &Ed25519KeyPair {
        &self.key_pair
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK set served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(&self.public_key),
                "kid": self.kid,
                "alg": "EdDSA",
                "use": "sig",
            }]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_is_reloaded_with_the_same_kid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/signing.pem");
        let first = SigningKeys::load_or_generate(&path).expect("generate");
        let second = SigningKeys::load_or_generate(&path).expect("reload");
        assert_eq!(first.kid(), second.kid());
        assert_eq!(first.kid().len(), 22);
        let jwks = second.jwks();
        assert_eq!(jwks["keys"][0]["kty"], "OKP");
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
        assert_eq!(jwks["keys"][0]["kid"], first.kid());
        assert_eq!(jwks["keys"][0]["x"].as_str().map(str::len), Some(43));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn garbage_key_file_is_an_error_naming_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.pem");
        std::fs::write(&path, "not a key").expect("write");
        let err = SigningKeys::load_or_generate(&path)
            .err()
            .expect("error")
            .to_string();
        assert!(err.contains("signing_key_file"), "{err}");
    }
}
