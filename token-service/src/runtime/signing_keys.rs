//! The Ed25519 key that signs access tokens: a PKCS#8 PEM file, created (0600) on first start,
//! published as a JWK set with a `kid` derived from the public key so it is stable across restarts.
//!
//! A key replaced while the service runs (the file's content or path changed, see
//! `runtime::reload`) is retired, not dropped: its public key stays in the JWK set and keeps
//! verifying until the tokens it signed have expired.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::{
    Ed25519KeyPair, Ed25519PublicKey, EdDSAPublicKeyLike, JWTClaims, Token, VerificationOptions,
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

pub struct SigningKeys {
    key_pair: Ed25519KeyPair,
    kid: String,
    public_key: Vec<u8>,
    /// Earlier keys, newest first, each until the last token it signed has expired.
    retired: Vec<RetiredKey>,
}

struct RetiredKey {
    kid: String,
    public_key: Vec<u8>,
    until: i64,
}

impl SigningKeys {
    /// Loads the key at `path`, or generates and writes one when the file does not exist.
    pub fn load_or_generate(path: &Path) -> anyhow::Result<Self> {
        // Replicas starting at once on one volume agree on one key (see `key_files`).
        let (pem, created) = crate::runtime::key_files::read_or_create(
            path,
            "authorization_server.signing_key_file",
            || Ed25519KeyPair::generate().to_pem(),
        )?;
        if created {
            tracing::info!(path = %path.display(), "generated a new Ed25519 signing key");
        }
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
            retired: Vec::new(),
        }
    }

    /// `next` as the signing key, with the current one (and earlier ones still in use) retired:
    /// published and accepted until `until` (unix seconds), which must cover the lifetime of
    /// every token the current key has signed. Retired keys past their time at `now` are
    /// dropped; a retired key that comes back as `next` is no longer retired.
    pub fn rotate(&self, next: SigningKeys, until: i64, now: i64) -> SigningKeys {
        let current = RetiredKey {
            kid: self.kid.clone(),
            public_key: self.public_key.clone(),
            until,
        };
        let earlier = self.retired.iter().map(|k| RetiredKey {
            kid: k.kid.clone(),
            public_key: k.public_key.clone(),
            until: k.until,
        });
        let retired = std::iter::once(current)
            .chain(earlier)
            .filter(|k| k.until > now && k.kid != next.kid)
            .collect();
        SigningKeys { retired, ..next }
    }

    pub fn key_pair(&self) -> &Ed25519KeyPair {
        &self.key_pair
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK set served at `/.well-known/jwks.json`: the signing key first, then the
    /// retired keys still in use.
    pub fn jwks(&self) -> serde_json::Value {
        self.jwks_at(crate::clock::now())
    }

    fn jwks_at(&self, now: i64) -> serde_json::Value {
        let jwk = |kid: &str, public_key: &[u8]| {
            serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(public_key),
                "kid": kid,
                "alg": "EdDSA",
                "use": "sig",
            })
        };
        let keys: Vec<_> = std::iter::once(jwk(&self.kid, &self.public_key))
            .chain(self.retired_at(now).map(|k| jwk(&k.kid, &k.public_key)))
            .collect();
        serde_json::json!({ "keys": keys })
    }

    fn retired_at(&self, now: i64) -> impl Iterator<Item = &RetiredKey> {
        self.retired.iter().filter(move |k| k.until > now)
    }

    /// Verifies a JWT this service signed with the key its `kid` names: the signing key, or a
    /// retired key still in use.
    pub fn verify_token<C: DeserializeOwned>(
        &self,
        token: &str,
        options: VerificationOptions,
    ) -> Result<JWTClaims<C>, jwt_simple::Error> {
        self.verify_token_at(token, options, crate::clock::now())
    }

    fn verify_token_at<C: DeserializeOwned>(
        &self,
        token: &str,
        options: VerificationOptions,
        now: i64,
    ) -> Result<JWTClaims<C>, jwt_simple::Error> {
        let kid = Token::decode_metadata(token)?.key_id().map(str::to_string);
        let public_key = match kid.as_deref() {
            None => self.key_pair.public_key(),
            Some(kid) if kid == self.kid => self.key_pair.public_key(),
            Some(kid) => {
                let retired = self
                    .retired_at(now)
                    .find(|k| k.kid == kid)
                    .ok_or_else(|| jwt_simple::Error::msg("unknown or expired key id"))?;
                Ed25519PublicKey::from_bytes(&retired.public_key)?
            }
        };
        public_key.verify_token::<C>(token, Some(options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_simple::prelude::EdDSAKeyPairLike;

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

    fn kids(jwks: &serde_json::Value) -> Vec<String> {
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid").to_string())
            .collect()
    }

    fn signed(keys: &SigningKeys) -> String {
        let claims =
            jwt_simple::prelude::Claims::create(jwt_simple::prelude::Duration::from_hours(1));
        keys.key_pair().sign(claims).expect("sign")
    }

    #[test]
    fn a_rotated_key_is_published_and_verifies_until_its_time_is_up() {
        let old = SigningKeys::from_key_pair(Ed25519KeyPair::generate());
        let old_token = signed(&old);
        let new = SigningKeys::from_key_pair(Ed25519KeyPair::generate());
        let (new_kid, old_kid) = (new.kid().to_string(), old.kid().to_string());
        let rotated = old.rotate(new, 1_000, 100);

        assert_eq!(
            rotated.kid(),
            new_kid,
            "new tokens are signed with the new key"
        );
        assert_eq!(
            kids(&rotated.jwks_at(999)),
            [new_kid.clone(), old_kid.clone()]
        );
        let new_token = signed(&rotated);
        let options = VerificationOptions::default;
        assert!(rotated
            .verify_token_at::<jwt_simple::prelude::NoCustomClaims>(&old_token, options(), 999)
            .is_ok());
        assert!(rotated
            .verify_token_at::<jwt_simple::prelude::NoCustomClaims>(&new_token, options(), 999)
            .is_ok());

        // Past the retired key's time: gone from the set, and its tokens no longer verify.
        assert_eq!(kids(&rotated.jwks_at(1_000)), [new_kid]);
        assert!(rotated
            .verify_token_at::<jwt_simple::prelude::NoCustomClaims>(&old_token, options(), 1_000)
            .is_err());
    }

    #[test]
    fn rotating_back_and_again_keeps_each_key_once() {
        let a = SigningKeys::from_key_pair(Ed25519KeyPair::generate());
        let a_pem = a.key_pair().to_pem();
        let b = SigningKeys::from_key_pair(Ed25519KeyPair::generate());
        let c = SigningKeys::from_key_pair(Ed25519KeyPair::generate());
        let (a_kid, b_kid, c_kid) = (
            a.kid().to_string(),
            b.kid().to_string(),
            c.kid().to_string(),
        );
        let ab = a.rotate(b, 500, 0);
        let abc = ab.rotate(c, 600, 10);
        assert_eq!(
            kids(&abc.jwks_at(10)),
            [c_kid.clone(), b_kid.clone(), a_kid.clone()]
        );
        // Back to `a`: it signs again and is not listed twice.
        let again = SigningKeys::from_key_pair(Ed25519KeyPair::from_pem(&a_pem).expect("pem"));
        let back = abc.rotate(again, 700, 20);
        assert_eq!(kids(&back.jwks_at(20)), [a_kid, c_kid, b_kid]);
        assert_eq!(back.retired.len(), 2);
        // Expired retired keys are dropped at the next rotation.
        let d = SigningKeys::from_key_pair(Ed25519KeyPair::generate());
        let d_kid = d.kid().to_string();
        let a_kid = back.kid().to_string();
        let c_kid = back.retired[0].kid.clone();
        assert_eq!(
            kids(&back.rotate(d, 900, 650).jwks_at(650)),
            [d_kid, a_kid, c_kid],
            "b (until 600) is gone"
        );
    }

    #[test]
    fn a_token_with_an_unknown_kid_is_refused() {
        let keys = SigningKeys::from_key_pair(Ed25519KeyPair::generate());
        let stranger = SigningKeys::from_key_pair(Ed25519KeyPair::generate());
        assert!(keys
            .verify_token::<jwt_simple::prelude::NoCustomClaims>(
                &signed(&stranger),
                VerificationOptions::default()
            )
            .is_err());
    }
}
