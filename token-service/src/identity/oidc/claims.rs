//! From a provider's verified claims to the identity mcpgate signs in: claim paths, the email
//! domain allow-list, `email_verified`, and the provider-qualified subject. Plain functions.

use mcpgate_config::identity::OidcProvider;
use serde_json::Value;

use crate::identity::users::UserClaims;

/// Why a verified identity may still not sign in. The text is shown to the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the provider did not share an email address (claim {0})")]
    NoEmail(String),
    #[error("the provider says the email address {0} is not verified")]
    EmailNotVerified(String),
    #[error("the email address {email} is not in a domain this gateway allows ({allowed})")]
    DomainNotAllowed { email: String, allowed: String },
    #[error("the provider's answer has no subject (sub)")]
    NoSubject,
    #[error("the provider's userinfo answer is about another user (its sub differs)")]
    UserinfoSubjectMismatch,
}

/// The value at a claim path. A claim whose name itself contains dots
/// (`https://example.com/groups`) is found as one name first; otherwise each dot descends into
/// an object (`realm_access.roles`, `org.groups`).
pub fn claim_at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    path.split('.')
        .try_fold(claims, |v, segment| v.as_object()?.get(segment))
}

/// A claim that is a non-empty string.
pub fn string_claim(claims: &Value, path: &str) -> Option<String> {
    claim_at(claims, path)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Groups: an array of strings (other members ignored) or one string.
pub fn groups_claim(claims: &Value, path: &str) -> Vec<String> {
    match claim_at(claims, path) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => vec![],
    }
}

/// True when no allow-list is set or the address's domain is on it (case-insensitive, exact:
/// `example.com` does not admit `sub.example.com` or `badexample.com`).
pub fn email_domain_allowed(email: &str, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    !local.is_empty() && allowed.iter().any(|d| d.eq_ignore_ascii_case(domain))
}

/// The subject mcpgate uses for a provider's user: `<provider id>:<sub>`, so two providers'
/// users never share one (and none can collide with a built-in username, which has no ':'
/// requirement but is chosen by the operator).
pub fn qualified_subject(provider_id: &str, sub: &str) -> String {
    format!("{provider_id}:{sub}")
}

/// Claims from the ID token with the userinfo answer (when fetched) laid over them. The userinfo
/// `sub` must be the ID token's (OpenID Connect Core 5.3.2).
pub fn merge_userinfo(id_token: &Value, userinfo: Option<&Value>) -> Result<Value, Refusal> {
    let Some(userinfo) = userinfo else {
        return Ok(id_token.clone());
    };
    if userinfo.get("sub") != id_token.get("sub") {
        return Err(Refusal::UserinfoSubjectMismatch);
    }
    let mut merged = id_token.clone();
    if let (Some(target), Some(extra)) = (merged.as_object_mut(), userinfo.as_object()) {
        for (k, v) in extra {
            // The ID token's own protocol claims stay as verified.
            if !matches!(k.as_str(), "iss" | "aud" | "exp" | "iat" | "nonce" | "azp") {
                target.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(merged)
}

/// The user a provider's (verified, merged) claims sign in, or why they may not.
pub fn identity(provider: &OidcProvider, claims: &Value) -> Result<UserClaims, Refusal> {
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(Refusal::NoSubject)?;
    let paths = &provider.claims;
    let email =
        string_claim(claims, &paths.email).ok_or_else(|| Refusal::NoEmail(paths.email.clone()))?;
    // Only an explicit `false` (or "false") refuses: many providers omit the claim.
    let unverified = match claims.get("email_verified") {
        Some(Value::Bool(false)) => true,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("false"),
        _ => false,
    };
    if unverified {
        return Err(Refusal::EmailNotVerified(email));
    }
    if !email_domain_allowed(&email, &provider.allowed_email_domains) {
        return Err(Refusal::DomainNotAllowed {
            email,
            allowed: provider.allowed_email_domains.join(", "),
        });
    }
    Ok(UserClaims {
        username: qualified_subject(&provider.id, sub),
        email,
        name: string_claim(claims, &paths.name),
        groups: groups_claim(claims, &paths.groups),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mcpgate_config::identity::ClaimPaths;
    use serde_json::json;

    pub fn provider() -> OidcProvider {
        OidcProvider {
            id: "corp".into(),
            display_name: "Example Corp".into(),
            issuer: "https://idp.example.com".into(),
            client_id: "mcpgate".into(),
            client_secret: Some("a-client-secret-of-some-length".into()),
            client_secret_file: None,
            scopes: vec!["openid".into(), "email".into()],
            claims: ClaimPaths::default(),
            allowed_email_domains: vec![],
            allowed_algorithms: vec!["RS256".into()],
            userinfo: false,
            recheck_interval: std::time::Duration::from_secs(300),
        }
    }

    #[test]
    fn claim_paths_descend_and_prefer_whole_names() {
        let c = json!({
            "realm_access": {"roles": ["a", "b"]},
            "org": {"groups": ["eng", 7, ""], "name": "x"},
            "https://example.com/groups": ["url"],
            "flat": "one"
        });
        assert_eq!(groups_claim(&c, "realm_access.roles"), vec!["a", "b"]);
        assert_eq!(groups_claim(&c, "org.groups"), vec!["eng"]);
        assert_eq!(groups_claim(&c, "https://example.com/groups"), vec!["url"]);
        assert_eq!(groups_claim(&c, "flat"), vec!["one"]);
        assert!(groups_claim(&c, "org.missing").is_empty());
        assert!(groups_claim(&c, "flat.deeper").is_empty());
        assert_eq!(string_claim(&c, "org.name").as_deref(), Some("x"));
        assert_eq!(string_claim(&c, "org"), None);
    }

    #[test]
    fn email_domains_match_exactly() {
        let allowed = vec!["example.com".to_string()];
        assert!(email_domain_allowed("a@Example.COM", &allowed));
        assert!(!email_domain_allowed("a@sub.example.com", &allowed));
        assert!(!email_domain_allowed("a@badexample.com", &allowed));
        assert!(!email_domain_allowed("a@example.com@evil.com", &allowed));
        assert!(!email_domain_allowed("@example.com", &allowed));
        assert!(!email_domain_allowed("nobody", &allowed));
        assert!(email_domain_allowed("anyone@anywhere", &[]));
    }

    #[test]
    fn identity_is_qualified_and_policed() {
        let mut p = provider();
        p.claims.groups = "org.groups".into();
        let c = json!({"sub": "u1", "email": "al@example.com", "name": "Al", "org": {"groups": ["eng"]}});
        let user = identity(&p, &c).expect("identity");
        assert_eq!(user.username, "corp:u1");
        assert_eq!(user.email, "al@example.com");
        assert_eq!(user.name.as_deref(), Some("Al"));
        assert_eq!(user.groups, vec!["eng"]);

        p.allowed_email_domains = vec!["other.com".into()];
        assert!(matches!(
            identity(&p, &c),
            Err(Refusal::DomainNotAllowed { .. })
        ));
        p.allowed_email_domains = vec![];
        let unverified = json!({"sub": "u1", "email": "al@example.com", "email_verified": false});
        assert!(matches!(
            identity(&p, &unverified),
            Err(Refusal::EmailNotVerified(_))
        ));
        let verified = json!({"sub": "u1", "email": "al@example.com", "email_verified": true});
        assert!(identity(&p, &verified).is_ok());
        assert!(matches!(
            identity(&p, &json!({"sub": "u1"})),
            Err(Refusal::NoEmail(_))
        ));
        assert_eq!(
            identity(&p, &json!({"email": "a@b.c"})),
            Err(Refusal::NoSubject)
        );
    }

    #[test]
    fn userinfo_must_be_about_the_same_subject() {
        let id = json!({"sub": "u1", "iss": "https://idp", "email": "old@example.com"});
        let merged = merge_userinfo(
            &id,
            Some(&json!({"sub": "u1", "email": "new@example.com", "iss": "x"})),
        )
        .expect("merged");
        assert_eq!(merged["email"], "new@example.com");
        assert_eq!(merged["iss"], "https://idp");
        assert_eq!(
            merge_userinfo(&id, Some(&json!({"sub": "u2"}))),
            Err(Refusal::UserinfoSubjectMismatch)
        );
        assert_eq!(merge_userinfo(&id, None).expect("same"), id);
    }
}
