//! The identity assertion (`x-mcpgate-assertion`): a short-lived JWT the filter adds to every
//! request it forwards to a server or client route, so the upstream can trust who the caller is.
//! Signed with the access-token key (verifiable with the published JWKS) but typed `JWT`, never
//! `at+jwt`, so it is never accepted as a bearer token.

use jwt_simple::prelude::*;

use crate::runtime::signing_keys::SigningKeys;

pub use mcpgate_assertion::{AssertionClaims, LIFETIME_SECS, TYP};

/// Who the assertion is about: a user (`sub` = username) or a service account (`sa:<id>`).
pub struct Subject<'a> {
    pub sub: &'a str,
    pub email: &'a str,
    pub groups: &'a [String],
    pub name: Option<&'a str>,
}

pub struct Minted {
    pub token: String,
    pub expires_at: i64,
}

/// Signs an assertion about `subject` for the route `audience`, valid from `now` for
/// [`LIFETIME_SECS`].
pub fn mint(
    keys: &SigningKeys,
    issuer: &str,
    audience: &str,
    subject: &Subject<'_>,
    now: i64,
) -> anyhow::Result<Minted> {
    let now_u = u64::try_from(now).unwrap_or(0);
    let claims = JWTClaims {
        issued_at: Some(Duration::from_secs(now_u)),
        expires_at: Some(Duration::from_secs(now_u + LIFETIME_SECS as u64)),
        invalid_before: None,
        issuer: Some(issuer.to_string()),
        subject: Some(subject.sub.to_string()),
        audiences: Some(Audiences::AsString(audience.to_string())),
        jwt_id: Some(crate::oauth::opaque_token::generate()),
        nonce: None,
        custom: AssertionClaims {
            email: subject.email.to_string(),
            groups: subject.groups.to_vec(),
            name: subject.name.map(str::to_string),
        },
    };
    let options = HeaderOptions {
        signature_type: Some(TYP.into()),
        ..Default::default()
    };
    let token = keys
        .key_pair()
        .sign_with_options(claims, &options)
        .map_err(|e| anyhow::anyhow!("cannot sign assertion: {e}"))?;
    Ok(Minted {
        token,
        expires_at: now + LIFETIME_SECS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use std::collections::HashSet;

    /// The public key a verifier would build from the JWKS document.
    fn key_from_jwks(jwks: &serde_json::Value) -> Ed25519PublicKey {
        let x = jwks["keys"][0]["x"].as_str().expect("x");
        let bytes = URL_SAFE_NO_PAD.decode(x).expect("b64");
        Ed25519PublicKey::from_bytes(&bytes).expect("key")
    }

    #[test]
    fn assertion_verifies_with_the_jwks_and_is_not_an_access_token() {
        let keys = SigningKeys::from_key_pair(Ed25519KeyPair::generate());
        let groups = vec!["eng".to_string()];
        let subject = Subject {
            sub: "alice",
            email: "alice@example.com",
            groups: &groups,
            name: Some("Alice"),
        };
        let now = i64::try_from(Clock::now_since_epoch().as_secs()).expect("time");
        let minted = mint(
            &keys,
            "http://localhost:18080",
            "http://localhost:18080/app",
            &subject,
            now,
        )
        .expect("mint");
        assert_eq!(minted.expires_at, now + 300);

        let parts: Vec<&str> = minted.token.split('.').collect();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], keys.kid());
        assert_eq!(keys.jwks()["keys"][0]["kid"], keys.kid());

        let public = key_from_jwks(&keys.jwks());
        let options = VerificationOptions {
            allowed_issuers: Some(HashSet::from(["http://localhost:18080".to_string()])),
            allowed_audiences: Some(HashSet::from(["http://localhost:18080/app".to_string()])),
            ..Default::default()
        };
        let claims = public
            .verify_token::<AssertionClaims>(&minted.token, Some(options))
            .expect("verifies with the JWKS key");
        assert_eq!(claims.subject.as_deref(), Some("alice"));
        assert_eq!(claims.custom.email, "alice@example.com");
        assert_eq!(claims.custom.groups, groups);
        assert_eq!(claims.custom.name.as_deref(), Some("Alice"));
        assert!(claims.jwt_id.is_some_and(|j| j.len() >= 32));
        assert_eq!(
            claims.expires_at.map(|e| e.as_secs()),
            Some(now as u64 + 300)
        );

        // Never an access token: the at+jwt type check refuses it, and TE claims are missing.
        let as_te = VerificationOptions {
            required_signature_type: Some("at+jwt".into()),
            ..Default::default()
        };
        assert!(public
            .verify_token::<AssertionClaims>(&minted.token, Some(as_te))
            .is_err());
        assert!(crate::oauth::access_token::verify(
            &keys,
            "http://localhost:18080",
            &minted.token,
            5
        )
        .is_none());
    }
}
