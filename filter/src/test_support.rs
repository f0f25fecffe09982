//! Helpers for the native unit tests: keys, JWKS documents and hand-built tokens.

use jwt_simple::prelude::{Ed25519KeyPair, EdDSAKeyPairLike};
use jwt_simple::reexports::ct_codecs::{Base64UrlSafeNoPadding, Encoder};
use serde_json::{json, Value};

use crate::jwks::KeySet;

pub const NOW: u64 = 1_750_000_000;
pub const ISSUER: &str = "http://localhost:18080";
pub const ROUTE_A: &str = "http://localhost:18080/everything";
pub const ROUTE_B: &str = "http://localhost:18080/other";

pub fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

/// A fresh Ed25519 key pair and its public JWK (as the token service publishes it).
pub fn test_key(kid: &str) -> (Ed25519KeyPair, String) {
    let pair = Ed25519KeyPair::generate().with_key_id(kid);
    let x = b64(&pair.public_key().to_bytes());
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": x}).to_string();
    (pair, jwk)
}

pub fn key_set(jwks: &[&str]) -> KeySet {
    KeySet::parse(format!(r#"{{"keys":[{}]}}"#, jwks.join(",")).as_bytes()).unwrap()
}

/// The claims the token service puts in a TE for `aud`, valid at [`NOW`].
pub fn claims(aud: &str) -> Value {
    json!({
        "iss": ISSUER,
        "sub": "user-1",
        "aud": aud,
        "exp": NOW + 300,
        "iat": NOW - 10,
        "jti": "jti-1",
        "sid": "sid-1",
        "client_id": "client-1",
        "email": "alice@example.com",
        "groups": ["admins", "dev"],
        "scope": "mcp"
    })
}

pub fn header(kid: &str) -> Value {
    json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid})
}

/// `b64(header).b64(claims).b64(Ed25519 signature)`, built by hand so tests control every byte.
pub fn sign_raw(pair: &Ed25519KeyPair, header: &Value, claims: &Value) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sk = ed25519_compact::KeyPair::from_slice(&pair.to_bytes()).unwrap();
    let sig = sk.sk.sign(signing_input.as_bytes(), None);
    format!("{signing_input}.{}", b64(sig.as_ref()))
}

/// A token signed by `pair` with its kid.
pub fn token(pair: &Ed25519KeyPair, claims: &Value) -> String {
    let kid = pair.key_id().clone().unwrap();
    sign_raw(pair, &header(&kid), claims)
}
