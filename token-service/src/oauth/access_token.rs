//! Access tokens (TE): RFC 9068 JWTs signed with EdDSA, audience-bound to one server route.

use jwt_simple::prelude::*;
use serde::{Deserialize, Serialize};

use crate::identity::users::UserClaims;
use crate::runtime::signing_keys::SigningKeys;

/// The non-registered claims of a TE.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenClaims {
    pub sid: String,
    pub client_id: String,
    pub email: String,
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

pub struct Grant<'a> {
    pub issuer: &'a str,
    pub user: &'a UserClaims,
    pub sid: &'a str,
    pub client_id: &'a str,
    pub resource: &'a str,
    pub scope: Option<&'a str>,
}

pub struct Minted {
    pub token: String,
    pub jti: String,
    pub expires_at: i64,
}

/// Signs a TE valid from `now` for `lifetime_secs`.
pub fn mint(
    keys: &SigningKeys,
    grant: &Grant<'_>,
    now: i64,
    lifetime_secs: u64,
) -> anyhow::Result<Minted> {
    sign(
        keys,
        grant,
        Audiences::AsString(grant.resource.to_string()),
        now,
        lifetime_secs,
    )
}

/// Signs a TE whose `aud` is the array `audiences` (`grant.resource` is not used): client-route
/// session tokens and service-account tokens, which reach several routes.
pub fn mint_for_audiences(
    keys: &SigningKeys,
    grant: &Grant<'_>,
    audiences: &[String],
    now: i64,
    lifetime_secs: u64,
) -> anyhow::Result<Minted> {
    let set = audiences.iter().cloned().collect();
    sign(keys, grant, Audiences::AsSet(set), now, lifetime_secs)
}

fn sign(
    keys: &SigningKeys,
    grant: &Grant<'_>,
    audiences: Audiences,
    now: i64,
    lifetime_secs: u64,
) -> anyhow::Result<Minted> {
    let jti = crate::oauth::opaque_token::generate();
    let now_u = u64::try_from(now).unwrap_or(0);
    let claims = JWTClaims {
        issued_at: Some(Duration::from_secs(now_u)),
        expires_at: Some(Duration::from_secs(now_u + lifetime_secs)),
        invalid_before: None,
        issuer: Some(grant.issuer.to_string()),
        subject: Some(grant.user.username.clone()),
        audiences: Some(audiences),
        jwt_id: Some(jti.clone()),
        nonce: None,
        custom: TokenClaims {
            sid: grant.sid.to_string(),
            client_id: grant.client_id.to_string(),
            email: grant.user.email.clone(),
            groups: grant.user.groups.clone(),
            name: grant.user.name.clone(),
            scope: grant.scope.map(str::to_string),
        },
    };
    let options = HeaderOptions {
        signature_type: Some("at+jwt".into()),
        ..Default::default()
    };
    let token = keys
        .key_pair()
        .sign_with_options(claims, &options)
        .map_err(|e| anyhow::anyhow!("cannot sign access token: {e}"))?;
    Ok(Minted {
        token,
        jti,
        expires_at: now + lifetime_secs as i64,
    })
}

/// Verifies a TE this service signed (signature by the key its `kid` names, `typ: at+jwt`,
/// issuer, expiry with leeway); `None` otherwise. Assertions (`typ: JWT`, same key) are refused.
pub fn verify(
    keys: &SigningKeys,
    issuer: &str,
    token: &str,
    leeway_secs: u64,
) -> Option<JWTClaims<TokenClaims>> {
    let options = VerificationOptions {
        allowed_issuers: Some(std::collections::HashSet::from([issuer.to_string()])),
        time_tolerance: Some(Duration::from_secs(leeway_secs)),
        required_signature_type: Some("at+jwt".into()),
        ..Default::default()
    };
    keys.verify_token::<TokenClaims>(token, options).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    #[test]
    fn token_has_the_contract_header_and_claims() {
        let keys = SigningKeys::from_key_pair(Ed25519KeyPair::generate());
        let user = UserClaims {
            username: "alice".into(),
            email: "alice@example.com".into(),
            name: None,
            groups: vec!["eng".into()],
        };
        let grant = Grant {
            issuer: "http://localhost:18080",
            user: &user,
            sid: "sid1",
            client_id: "cli",
            resource: "http://localhost:18080/everything",
            scope: Some("mcp:tools"),
        };
        let now = i64::try_from(Clock::now_since_epoch().as_secs()).expect("time");
        let minted = mint(&keys, &grant, now, 300).expect("mint");
        let parts: Vec<&str> = minted.token.split('.').collect();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["typ"], "at+jwt");
        assert_eq!(header["kid"], keys.kid());
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(claims["iss"], "http://localhost:18080");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], "http://localhost:18080/everything");
        assert_eq!(claims["exp"], now + 300);
        assert_eq!(claims["iat"], now);
        assert_eq!(claims["jti"], minted.jti.as_str());
        assert_eq!(claims["sid"], "sid1");
        assert_eq!(claims["client_id"], "cli");
        assert_eq!(claims["email"], "alice@example.com");
        assert_eq!(claims["groups"], serde_json::json!(["eng"]));
        assert_eq!(claims["scope"], "mcp:tools");
        assert!(claims.get("name").is_none());
        let verified = verify(&keys, "http://localhost:18080", &minted.token, 5).expect("verifies");
        assert_eq!(verified.jwt_id.as_deref(), Some(minted.jti.as_str()));
        assert!(verify(&keys, "http://other", &minted.token, 5).is_none());
    }
}
