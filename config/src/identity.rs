//! How people sign in: the built-in user directory (`token_service.users_file`) and any number
//! of OpenID Connect providers (`identity.oidc`). Each provider gets a button on the sign-in page.
//! Enterprise identity providers (`identity.enterprise`) sign people in without a browser: the
//! token endpoint accepts their identity assertion authorization grants (ID-JAG).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::ConfigError;

/// The `identity` block of the gateway file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// OpenID Connect providers people may sign in with.
    #[serde(default)]
    pub oidc: Vec<OidcProvider>,
    /// Enterprise identity providers whose identity assertion authorization grants
    /// (`typ: oauth-id-jag+jwt`, the JWT-bearer grant) the token endpoint accepts.
    #[serde(default)]
    pub enterprise: Vec<EnterpriseIdp>,
}

/// One trusted enterprise identity provider (draft-ietf-oauth-identity-assertion-authz-grant,
/// the MCP enterprise-managed authorization extension).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseIdp {
    /// `[a-z0-9-]+`, unique among `identity.enterprise`. Qualifies subjects (`<id>:<sub>`): give
    /// it the id of the `identity.oidc` provider that is the same IdP so a person is one user.
    pub id: String,
    /// The exact `iss` of its assertions.
    pub issuer: String,
    /// Where its signing keys are published (fetched, cached, re-fetched on an unknown `kid`).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Its signing keys inline (a JWK Set), instead of `jwks_uri`.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// The `aud` its assertions must carry; default: this gateway's issuer.
    #[serde(default)]
    pub audience: Option<String>,
    /// When set, only these OAuth clients may redeem its assertions.
    #[serde(default)]
    pub allowed_clients: Vec<String>,
    /// Where the identity is found in the assertion's claims: dotted paths.
    #[serde(default)]
    pub claims: ClaimPaths,
    /// When set, only addresses in these domains are accepted.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// Assertion signature algorithms accepted (asymmetric only).
    #[serde(default = "default_algorithms")]
    pub allowed_algorithms: Vec<String>,
}

/// The asymmetric JWS algorithms an assertion (ID-JAG, `private_key_jwt`) may be signed with.
pub const ASSERTION_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// One OpenID Connect provider (authorization code flow with PKCE, discovery from `issuer`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProvider {
    /// `[a-z0-9-]+`, unique. Appears in URLs and qualifies subjects (`<id>:<sub>`).
    pub id: String,
    /// The sign-in page's button: "Sign in with <display_name>".
    pub display_name: String,
    /// The provider's issuer; metadata comes from `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    #[serde(default, skip_serializing)]
    pub client_secret: Option<String>,
    /// Read into `client_secret` at load (trimmed), so the secret need not sit in this file.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Where the identity is found in the provider's claims: dotted paths.
    #[serde(default)]
    pub claims: ClaimPaths,
    /// When set, only addresses in these domains may sign in.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// ID token signature algorithms accepted (`none` never is).
    #[serde(default = "default_algorithms")]
    pub allowed_algorithms: Vec<String>,
    /// Also read claims from the provider's userinfo endpoint.
    #[serde(default)]
    pub userinfo: bool,
    /// How often a signed-in user is checked again at the provider (a refresh grant there).
    #[serde(default = "default_recheck", with = "humantime_serde")]
    pub recheck_interval: Duration,
}

/// Claim paths, dotted (`realm_access.roles`, `org.groups`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimPaths {
    #[serde(default = "default_email_claim")]
    pub email: String,
    #[serde(default = "default_name_claim")]
    pub name: String,
    #[serde(default = "default_groups_claim")]
    pub groups: String,
}

impl Default for ClaimPaths {
    fn default() -> Self {
        Self {
            email: default_email_claim(),
            name: default_name_claim(),
            groups: default_groups_claim(),
        }
    }
}

/// The JWS algorithms an ID token may be signed with.
pub const SUPPORTED_ALGORITHMS: [&str; 13] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384", "HS512",
];

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile", "offline_access"]
        .map(String::from)
        .to_vec()
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}
fn default_recheck() -> Duration {
    Duration::from_secs(300)
}
fn default_email_claim() -> String {
    "email".into()
}
fn default_name_claim() -> String {
    "name".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}

impl Identity {
    /// Relative `client_secret_file` paths are relative to the gateway file.
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        for p in self
            .oidc
            .iter_mut()
            .filter_map(|p| p.client_secret_file.as_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Reads each `client_secret_file` into `client_secret`; errors name the field, never the
    /// value.
    pub(crate) fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        for (i, p) in self.oidc.iter_mut().enumerate() {
            let Some(file) = &p.client_secret_file else {
                continue;
            };
            let field = format!("identity.oidc[{i}].client_secret_file");
            let text = std::fs::read_to_string(file).map_err(|e| {
                ConfigError::new(&field, format!("cannot read {}: {e}", file.display()))
            })?;
            let secret = text.trim();
            if secret.is_empty() {
                return Err(ConfigError::new(
                    field,
                    format!("{} is empty", file.display()),
                ));
            }
            p.client_secret = Some(secret.to_string());
        }
        Ok(())
    }

    /// Checks the providers. `users_file` is whether the built-in directory is enabled: at
    /// least one way to sign in is required.
    pub fn validate(&self, users_file: bool) -> Result<(), ConfigError> {
        if !users_file && self.oidc.is_empty() {
            return Err(ConfigError::new(
                "token_service.users_file",
                "no way to sign in: set token_service.users_file (the built-in user directory), \
                 identity.oidc (OpenID Connect providers), or both",
            ));
        }
        let mut ids = HashSet::new();
        for (i, p) in self.oidc.iter().enumerate() {
            let field = |f: &str| format!("identity.oidc[{i}].{f}");
            if p.id.is_empty()
                || p.id.len() > 63
                || !p
                    .id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(ConfigError::new(
                    field("id"),
                    "must be 1 to 63 characters of a-z, 0-9 and '-'",
                ));
            }
            if !ids.insert(p.id.as_str()) {
                return Err(ConfigError::new(
                    field("id"),
                    format!("'{}' is used by another provider", p.id),
                ));
            }
            if p.display_name.trim().is_empty()
                || p.display_name.len() > 100
                || p.display_name.chars().any(char::is_control)
            {
                return Err(ConfigError::new(
                    field("display_name"),
                    "must be 1 to 100 characters without control characters",
                ));
            }
            validate_oidc_issuer(&p.issuer).map_err(|r| ConfigError::new(field("issuer"), r))?;
            if p.client_id.trim().is_empty() {
                return Err(ConfigError::new(field("client_id"), "must not be empty"));
            }
            match (&p.client_secret, &p.client_secret_file) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        field("client_secret_file"),
                        "set client_secret or client_secret_file, not both",
                    ))
                }
                (None, None) => {
                    return Err(ConfigError::new(
                        field("client_secret"),
                        "is required (or client_secret_file): the gateway is a confidential client",
                    ))
                }
                (Some(s), _) if s.is_empty() => {
                    return Err(ConfigError::new(
                        field("client_secret"),
                        "must not be empty",
                    ))
                }
                _ => {}
            }
            if !p.scopes.iter().any(|s| s == "openid") {
                return Err(ConfigError::new(field("scopes"), "must include openid"));
            }
            for (j, s) in p.scopes.iter().enumerate() {
                let ok = !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
                if !ok {
                    return Err(ConfigError::new(
                        field(&format!("scopes[{j}]")),
                        "must be a non-empty scope token (printable ASCII, no quotes or backslashes)",
                    ));
                }
            }
            for (name, path) in [
                ("email", &p.claims.email),
                ("name", &p.claims.name),
                ("groups", &p.claims.groups),
            ] {
                if path.is_empty() || path.split('.').any(str::is_empty) {
                    return Err(ConfigError::new(
                        field(&format!("claims.{name}")),
                        "must be a claim name or a dotted path (org.groups)",
                    ));
                }
            }
            for (j, d) in p.allowed_email_domains.iter().enumerate() {
                let ok = !d.is_empty()
                    && !d.starts_with('.')
                    && !d.contains('@')
                    && d.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                if !ok {
                    return Err(ConfigError::new(
                        field(&format!("allowed_email_domains[{j}]")),
                        "must be a domain name like example.com",
                    ));
                }
            }
            if p.allowed_algorithms.is_empty() {
                return Err(ConfigError::new(
                    field("allowed_algorithms"),
                    "must list at least one algorithm",
                ));
            }
            for (j, alg) in p.allowed_algorithms.iter().enumerate() {
                if alg.eq_ignore_ascii_case("none") {
                    return Err(ConfigError::new(
                        field(&format!("allowed_algorithms[{j}]")),
                        "none is never accepted: ID tokens must be signed",
                    ));
                }
                if !SUPPORTED_ALGORITHMS.contains(&alg.as_str()) {
                    return Err(ConfigError::new(
                        field(&format!("allowed_algorithms[{j}]")),
                        format!("must be one of {}", SUPPORTED_ALGORITHMS.join(", ")),
                    ));
                }
            }
            if p.recheck_interval < Duration::from_secs(1) {
                return Err(ConfigError::new(
                    field("recheck_interval"),
                    "must be at least one second",
                ));
            }
        }
        self.validate_enterprise()
    }

    fn validate_enterprise(&self) -> Result<(), ConfigError> {
        let mut ids = HashSet::new();
        let mut issuers = HashSet::new();
        for (i, p) in self.enterprise.iter().enumerate() {
            let field = |f: &str| format!("identity.enterprise[{i}].{f}");
            if !valid_id(&p.id) {
                return Err(ConfigError::new(
                    field("id"),
                    "must be 1 to 63 characters of a-z, 0-9 and '-'",
                ));
            }
            if !ids.insert(p.id.as_str()) {
                return Err(ConfigError::new(
                    field("id"),
                    format!("'{}' is used by another enterprise provider", p.id),
                ));
            }
            validate_oidc_issuer(&p.issuer).map_err(|r| ConfigError::new(field("issuer"), r))?;
            if !issuers.insert(p.issuer.as_str()) {
                return Err(ConfigError::new(
                    field("issuer"),
                    "is the issuer of another enterprise provider",
                ));
            }
            validate_key_source(p.jwks_uri.as_deref(), p.jwks.as_ref(), &field)?;
            if let Some(aud) = &p.audience {
                if aud.trim().is_empty() {
                    return Err(ConfigError::new(field("audience"), "must not be empty"));
                }
            }
            for (j, c) in p.allowed_clients.iter().enumerate() {
                if c.trim().is_empty() {
                    return Err(ConfigError::new(
                        field(&format!("allowed_clients[{j}]")),
                        "must not be empty",
                    ));
                }
            }
            validate_claims_and_domains(&p.claims, &p.allowed_email_domains, &field)?;
            if p.allowed_algorithms.is_empty() {
                return Err(ConfigError::new(
                    field("allowed_algorithms"),
                    "must list at least one algorithm",
                ));
            }
            for (j, alg) in p.allowed_algorithms.iter().enumerate() {
                if !ASSERTION_ALGORITHMS.contains(&alg.as_str()) {
                    return Err(ConfigError::new(
                        field(&format!("allowed_algorithms[{j}]")),
                        format!("must be one of {}", ASSERTION_ALGORITHMS.join(", ")),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn validate_claims_and_domains(
    claims: &ClaimPaths,
    domains: &[String],
    field: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    for (name, path) in [
        ("email", &claims.email),
        ("name", &claims.name),
        ("groups", &claims.groups),
    ] {
        if path.is_empty() || path.split('.').any(str::is_empty) {
            return Err(ConfigError::new(
                field(&format!("claims.{name}")),
                "must be a claim name or a dotted path (org.groups)",
            ));
        }
    }
    for (j, d) in domains.iter().enumerate() {
        let ok = !d.is_empty()
            && !d.starts_with('.')
            && !d.contains('@')
            && d.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !ok {
            return Err(ConfigError::new(
                field(&format!("allowed_email_domains[{j}]")),
                "must be a domain name like example.com",
            ));
        }
    }
    Ok(())
}

/// Where a party's public keys come from: exactly one of `jwks_uri` (https, fetched and cached)
/// and `jwks` (a JWK Set inline). `field` names a field of the party's block.
pub fn validate_key_source(
    jwks_uri: Option<&str>,
    jwks: Option<&serde_json::Value>,
    field: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    match (jwks_uri, jwks) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            field("jwks"),
            "set jwks_uri or jwks, not both",
        )),
        (None, None) => Err(ConfigError::new(
            field("jwks_uri"),
            "is required (or jwks, the keys inline): its JWTs are verified with its public keys",
        )),
        (Some(uri), None) => {
            validate_oidc_issuer(uri).map_err(|r| ConfigError::new(field("jwks_uri"), r))
        }
        (None, Some(jwks)) => {
            validate_jwks(jwks).map_err(|(f, r)| ConfigError::new(field(&format!("jwks{f}")), r))
        }
    }
}

/// A JWK Set of public signing keys: `{"keys": [{"kty": …}, …]}`, at least one, no private
/// parts. Errors are (the field below `jwks`, the reason).
pub fn validate_jwks(jwks: &serde_json::Value) -> Result<(), (String, String)> {
    let keys = jwks
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| {
            (
                String::new(),
                "must be a JWK Set: an object with a keys array".to_string(),
            )
        })?;
    if keys.is_empty() {
        return Err((".keys".into(), "must list at least one key".into()));
    }
    for (i, k) in keys.iter().enumerate() {
        let at = |f: &str| format!(".keys[{i}]{f}");
        let Some(kty) = k.get("kty").and_then(serde_json::Value::as_str) else {
            return Err((at(".kty"), "is required".into()));
        };
        if !matches!(kty, "RSA" | "EC" | "OKP") {
            return Err((at(".kty"), "must be RSA, EC or OKP".into()));
        }
        if k.get("d").is_some() {
            return Err((
                at(".d"),
                "is a private key part: publish public keys only".into(),
            ));
        }
    }
    Ok(())
}

/// An issuer: https, or http on a loopback host (a local test provider); no query or fragment.
fn validate_oidc_issuer(issuer: &str) -> Result<(), String> {
    let url = Url::parse(issuer).map_err(|e| format!("not an absolute URL: {e}"))?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("must not have a query, fragment or user information".into());
    }
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(h) => h.to_string(),
        None => return Err("must name a host".into()),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if crate::gateway::is_loopback_host(&host) => Ok(()),
        "http" => Err("must use https (http is allowed for loopback hosts only)".into()),
        other => Err(format!("scheme {other} is not allowed; use https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> OidcProvider {
        OidcProvider {
            id: "corp".into(),
            display_name: "Example Corp".into(),
            issuer: "https://idp.example.com".into(),
            client_id: "mcpgate".into(),
            client_secret: Some("s".into()),
            client_secret_file: None,
            scopes: default_scopes(),
            claims: ClaimPaths::default(),
            allowed_email_domains: vec![],
            allowed_algorithms: default_algorithms(),
            userinfo: false,
            recheck_interval: default_recheck(),
        }
    }

    fn err(p: OidcProvider) -> ConfigError {
        Identity {
            oidc: vec![p],
            ..Default::default()
        }
        .validate(false)
        .expect_err("rejected")
    }

    #[test]
    fn a_valid_provider_passes() {
        assert!(Identity {
            oidc: vec![provider()],
            ..Default::default()
        }
        .validate(false)
        .is_ok());
        let mut loopback = provider();
        loopback.issuer = "http://127.0.0.1:9000/oidc".into();
        assert!(Identity {
            oidc: vec![loopback],
            ..Default::default()
        }
        .validate(false)
        .is_ok());
    }

    #[test]
    fn a_sign_in_method_is_required() {
        let e = Identity::default().validate(false).expect_err("rejected");
        assert_eq!(e.field, "token_service.users_file");
        assert!(e.reason.contains("identity.oidc"), "{e}");
        assert!(Identity::default().validate(true).is_ok());
    }

    #[test]
    fn errors_name_the_field() {
        let mut p = provider();
        p.issuer = "http://idp.example.com".into();
        assert_eq!(err(p).field, "identity.oidc[0].issuer");
        let mut p = provider();
        p.id = "Corp".into();
        assert_eq!(err(p).field, "identity.oidc[0].id");
        let mut p = provider();
        p.client_secret = None;
        assert_eq!(err(p).field, "identity.oidc[0].client_secret");
        let mut p = provider();
        p.client_secret_file = Some("x".into());
        assert_eq!(err(p).field, "identity.oidc[0].client_secret_file");
        let mut p = provider();
        p.allowed_algorithms = vec!["RS256".into(), "none".into()];
        assert_eq!(err(p).field, "identity.oidc[0].allowed_algorithms[1]");
        let mut p = provider();
        p.scopes = vec!["email".into()];
        assert_eq!(err(p).field, "identity.oidc[0].scopes");
        let mut p = provider();
        p.claims.groups = "org..groups".into();
        assert_eq!(err(p).field, "identity.oidc[0].claims.groups");
        let mut p = provider();
        p.allowed_email_domains = vec!["@example.com".into()];
        assert_eq!(err(p).field, "identity.oidc[0].allowed_email_domains[0]");
        let e = Identity {
            oidc: vec![provider(), provider()],
            ..Default::default()
        }
        .validate(true)
        .expect_err("duplicate id");
        assert_eq!(e.field, "identity.oidc[1].id");
    }

    fn enterprise() -> EnterpriseIdp {
        EnterpriseIdp {
            id: "corp".into(),
            issuer: "https://idp.example.com".into(),
            jwks_uri: Some("https://idp.example.com/jwks".into()),
            jwks: None,
            audience: None,
            allowed_clients: vec![],
            claims: ClaimPaths::default(),
            allowed_email_domains: vec![],
            allowed_algorithms: default_algorithms(),
        }
    }

    fn enterprise_err(list: Vec<EnterpriseIdp>) -> ConfigError {
        Identity {
            enterprise: list,
            ..Default::default()
        }
        .validate(true)
        .expect_err("rejected")
    }

    #[test]
    fn enterprise_providers_are_validated_by_field() {
        let ok = |list: Vec<EnterpriseIdp>| {
            Identity {
                enterprise: list,
                ..Default::default()
            }
            .validate(true)
        };
        assert!(ok(vec![enterprise()]).is_ok());
        let mut inline = enterprise();
        inline.jwks_uri = None;
        inline.jwks =
            Some(serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]}));
        inline.issuer = "http://127.0.0.1:9000".into();
        assert!(ok(vec![inline.clone()]).is_ok());

        type Change = Box<dyn Fn(&mut EnterpriseIdp)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|p| p.id = "Corp".into()),
                "identity.enterprise[0].id",
            ),
            (
                Box::new(|p| p.issuer = "http://idp.example.com".into()),
                "identity.enterprise[0].issuer",
            ),
            (
                Box::new(|p| p.jwks_uri = None),
                "identity.enterprise[0].jwks_uri",
            ),
            (
                Box::new(|p| p.jwks = Some(serde_json::json!({"keys": []}))),
                "identity.enterprise[0].jwks",
            ),
            (
                Box::new(|p| p.jwks_uri = Some("ftp://x".into())),
                "identity.enterprise[0].jwks_uri",
            ),
            (
                Box::new(|p| p.audience = Some(" ".into())),
                "identity.enterprise[0].audience",
            ),
            (
                Box::new(|p| p.allowed_clients = vec!["".into()]),
                "identity.enterprise[0].allowed_clients[0]",
            ),
            (
                Box::new(|p| p.claims.email = ".x".into()),
                "identity.enterprise[0].claims.email",
            ),
            (
                Box::new(|p| p.allowed_email_domains = vec!["@x".into()]),
                "identity.enterprise[0].allowed_email_domains[0]",
            ),
            (
                Box::new(|p| p.allowed_algorithms = vec![]),
                "identity.enterprise[0].allowed_algorithms",
            ),
            (
                Box::new(|p| p.allowed_algorithms = vec!["RS256".into(), "HS256".into()]),
                "identity.enterprise[0].allowed_algorithms[1]",
            ),
        ];
        for (change, field) in cases {
            let mut p = enterprise();
            change(&mut p);
            assert_eq!(enterprise_err(vec![p]).field, field);
        }
        let mut no_keys = inline.clone();
        no_keys.jwks = Some(serde_json::json!({"keys": [{"kty": "oct", "k": "x"}]}));
        assert_eq!(
            enterprise_err(vec![no_keys]).field,
            "identity.enterprise[0].jwks.keys[0].kty"
        );
        let mut private = inline;
        private.jwks = Some(
            serde_json::json!({"keys": [{"kty": "RSA", "n": "x", "e": "AQAB", "d": "secret"}]}),
        );
        let e = enterprise_err(vec![private]);
        assert_eq!(e.field, "identity.enterprise[0].jwks.keys[0].d");
        assert!(!e.to_string().contains("secret"));
        let mut second = enterprise();
        second.id = "other".into();
        assert_eq!(
            enterprise_err(vec![enterprise(), second]).field,
            "identity.enterprise[1].issuer"
        );
        assert_eq!(
            enterprise_err(vec![enterprise(), enterprise()]).field,
            "identity.enterprise[1].id"
        );
    }
}
