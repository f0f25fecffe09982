//! The whoami tool's answer: the verified assertion's identity, in the contract's shape.

use mcpgate_assertion::Identity;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Whoami {
    /// The user (`alice`) or service account (`sa:<id>`).
    pub sub: String,
    pub email: String,
    pub groups: Vec<String>,
    /// The display name, null when the identity provider gave none.
    pub name: Option<String>,
    /// The gateway that vouched for the caller.
    pub issuer: String,
    /// The route URL the assertion was made for (this server at the gateway).
    pub audience: String,
    /// When the assertion expires, Unix seconds.
    pub expires_at: u64,
}

impl From<&Identity> for Whoami {
    fn from(identity: &Identity) -> Self {
        Self {
            sub: identity.sub.clone(),
            email: identity.email.clone(),
            groups: identity.groups.clone(),
            name: identity.name.clone(),
            issuer: identity.issuer.clone(),
            audience: identity.audience.clone(),
            expires_at: identity.expires_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_the_identity_in_the_contract_shape() {
        let identity = Identity {
            sub: "alice".into(),
            email: "alice@example.com".into(),
            groups: vec!["sales".into(), "engineering".into()],
            name: None,
            issuer: "http://localhost:18080".into(),
            audience: "http://localhost:18080/whoami".into(),
            issued_at: Some(1_700_000_000),
            expires_at: 1_700_000_300,
            jwt_id: Some("j1".into()),
        };
        let answer = serde_json::to_value(Whoami::from(&identity)).expect("json");
        assert_eq!(
            answer,
            serde_json::json!({
                "sub": "alice",
                "email": "alice@example.com",
                "groups": ["sales", "engineering"],
                "name": null,
                "issuer": "http://localhost:18080",
                "audience": "http://localhost:18080/whoami",
                "expires_at": 1_700_000_300u64
            })
        );
    }
}
