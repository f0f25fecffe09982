//! Ed25519 signing keys (PKCS#8 PEM, as the token service writes them), JWKS and test tokens.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD as B64STD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use ed25519_compact::{KeyPair, Seed};
use sha2::{Digest, Sha256};

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the 32-byte seed follows.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

pub fn generate_pem() -> String {
    let kp = KeyPair::from_seed(Seed::generate());
    let mut der = PKCS8_PREFIX.to_vec();
    der.extend_from_slice(kp.sk.seed().as_ref());
    let b64 = B64STD.encode(der);
    format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")
}

/// Reads a PKCS#8 Ed25519 private key (v1 or v2: the seed is the OCTET STRING inside the
/// privateKey OCTET STRING, `04 22 04 20 <seed>`).
pub fn load_pem(text: &str) -> Result<KeyPair, String> {
    let b64: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    let der = B64STD
        .decode(b64)
        .map_err(|e| format!("bad PEM base64: {e}"))?;
    if !der.windows(5).any(|w| w == [0x06, 0x03, 0x2b, 0x65, 0x70]) {
        return Err("not an Ed25519 (OID 1.3.101.112) key".into());
    }
    let at = der
        .windows(4)
        .position(|w| w == [0x04, 0x22, 0x04, 0x20])
        .ok_or("no Ed25519 seed in the PKCS#8 structure")?;
    let seed = der.get(at + 4..at + 36).ok_or("truncated key")?;
    let seed = Seed::from_slice(seed).map_err(|e| e.to_string())?;
    Ok(KeyPair::from_seed(seed))
}

pub fn public_x(kp: &KeyPair) -> String {
    B64.encode(kp.pk.as_ref())
}

/// RFC 7638 thumbprint, used as the kid of keys this tool makes.
pub fn thumbprint(kp: &KeyPair) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, public_x(kp));
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

pub fn jwks(kp: &KeyPair, kid: &str) -> String {
    serde_json::json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "x": public_x(kp), "kid": kid, "alg": "EdDSA", "use": "sig"
    }]})
    .to_string()
}

/// The kid under which `jwks_text` publishes this key pair's public key.
pub fn kid_in_jwks(kp: &KeyPair, jwks_text: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(jwks_text).map_err(|e| format!("bad JWKS: {e}"))?;
    let x = public_x(kp);
    v["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["x"].as_str() == Some(x.as_str()))
        .and_then(|k| k["kid"].as_str().map(str::to_string))
        .ok_or_else(|| "the signing key is not in the JWKS".to_string())
}

pub struct Mint<'a> {
    pub kp: &'a KeyPair,
    pub kid: &'a str,
    pub issuer: &'a str,
    pub audience: &'a str,
    pub subject: &'a str,
    pub email: &'a str,
    pub groups: &'a [String],
    pub client_id: &'a str,
    pub lifetime: u64,
}

impl Mint<'_> {
    pub fn token(&self, n: u64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": self.kid});
        let claims = serde_json::json!({
            "iss": self.issuer,
            "sub": self.subject,
            "aud": self.audience,
            "exp": now + self.lifetime,
            "iat": now,
            "jti": format!("bench-{now}-{n}"),
            "sid": "bench-session",
            "client_id": self.client_id,
            "email": self.email,
            "groups": self.groups,
        });
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self.kp.sk.sign(signing_input.as_bytes(), None);
        format!("{signing_input}.{}", B64.encode(sig.as_ref()))
    }
}
