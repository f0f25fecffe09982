//! The JWT-bearer grant (RFC 7523 §2.1) with an Identity Assertion JWT Authorization Grant
//! (ID-JAG, draft-ietf-oauth-identity-assertion-authz-grant; the MCP enterprise-managed
//! authorization extension): a trusted enterprise identity provider (`identity.enterprise`)
//! asserts a user for one client and one resource, and the token endpoint issues that user a
//! TE for the resource without a browser, under the route's policy and the same audit.
//!
//! Checked: `typ` exactly `oauth-id-jag+jwt`; `iss` a configured provider; the signature with
//! its keys (inline, or its `jwks_uri`, re-fetched once on an unknown `kid`); `aud` = our
//! issuer (or the provider's `audience`); `client_id` = the authenticated client (and on the
//! provider's `allowed_clients`); `exp`, `iat`; `jti` single use; `resource` (claim and/or
//! request parameter) a configured server route; `sub` and the email claim present.

use mcpgate_config::gateway::canonical_resource;
use mcpgate_config::identity::EnterpriseIdp;
use serde_json::{json, Value};

use crate::clients::Client;
use crate::http::params::Params;
use crate::identity::oidc::claims::{
    email_domain_allowed, groups_claim, qualified_subject, string_claim,
};
use crate::identity::users::UserClaims;
use crate::oauth::access_token::{self, Grant};
use crate::oauth::error::OAuthError;
use crate::oauth::jose::{self, Header};
use crate::oauth::token_endpoint::TokenResponse;
use crate::state::AppState;

/// The `typ` header of an ID-JAG.
pub const ID_JAG_TYP: &str = "oauth-id-jag+jwt";
/// The longest an ID-JAG may still be valid for: its jti is kept that long.
pub const MAX_LIFETIME_SECS: i64 = 3600;
const MAX_JTI_CHARS: usize = 256;

fn invalid(reason: impl std::fmt::Display) -> OAuthError {
    OAuthError::invalid_grant(format!("assertion: {reason}"))
}

/// The `typ` check and the provider the assertion names (before its signature is checked).
pub fn identify<'a>(
    raw: &str,
    providers: &'a [EnterpriseIdp],
) -> Result<(Header, &'a EnterpriseIdp), OAuthError> {
    let header = jose::header(raw).map_err(invalid)?;
    if header.typ.as_deref() != Some(ID_JAG_TYP) {
        return Err(invalid(format!(
            "typ must be {ID_JAG_TYP} (an identity assertion authorization grant)"
        )));
    }
    let payload = jose::payload(raw).map_err(invalid)?;
    let iss = payload.get("iss").and_then(Value::as_str).unwrap_or("");
    let idp = providers.iter().find(|p| p.issuer == iss).ok_or_else(|| {
        invalid("iss is not a trusted enterprise identity provider (identity.enterprise)")
    })?;
    Ok((header, idp))
}

/// What an ID-JAG must satisfy besides its provider.
pub struct Expected<'a> {
    /// This gateway's issuer (the default audience).
    pub issuer: &'a str,
    /// The authenticated client.
    pub client_id: &'a str,
    /// The request's `resource` parameter.
    pub resource: Option<&'a str>,
    /// The configured server routes' resources.
    pub routes: &'a [String],
    pub now: i64,
}

/// An ID-JAG that passed every check but single use and policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub user: UserClaims,
    pub resource: String,
    pub jti: String,
    pub expires_at: i64,
}

fn resources(claims: &Value) -> Result<Vec<String>, OAuthError> {
    let raw: Vec<&str> = match claims.get("resource") {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| invalid("resource must be a string or strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("resource must be a string or strings")),
    };
    raw.into_iter()
        .map(|r| canonical_resource(r).ok_or_else(|| invalid("resource is not an absolute URL")))
        .collect()
}

/// The checks on the claims of an ID-JAG whose signature verified (with its time claims).
pub fn check_claims(
    idp: &EnterpriseIdp,
    claims: &Value,
    expected: &Expected<'_>,
) -> Result<Accepted, OAuthError> {
    let text = |k: &str| claims.get(k).and_then(Value::as_str);
    let audience = idp.audience.as_deref().unwrap_or(expected.issuer);
    if !jose::audiences(claims).contains(&audience) {
        return Err(invalid(format!(
            "aud must be this authorization server ({audience})"
        )));
    }
    if text("client_id") != Some(expected.client_id) {
        return Err(invalid(
            "client_id is not the authenticated client: the grant was issued to another client",
        ));
    }
    if !idp.allowed_clients.is_empty()
        && !idp.allowed_clients.iter().any(|c| c == expected.client_id)
    {
        return Err(OAuthError::unauthorized_client(format!(
            "this client may not redeem assertions of the enterprise provider {} (allowed_clients)",
            idp.id
        )));
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("exp is required"))?;
    if claims.get("iat").and_then(Value::as_i64).is_none() {
        return Err(invalid("iat is required"));
    }
    if exp - expected.now > MAX_LIFETIME_SECS {
        return Err(invalid(format!(
            "exp is too far ahead (at most {MAX_LIFETIME_SECS} seconds)"
        )));
    }
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.chars().count() <= MAX_JTI_CHARS)
        .ok_or_else(|| {
            invalid(format!(
                "jti is required (at most {MAX_JTI_CHARS} characters)"
            ))
        })?;
    let sub = text("sub")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("sub is required"))?;

    let named = resources(claims)?;
    let requested = match expected.resource {
        Some(r) => Some(canonical_resource(r).ok_or_else(|| {
            OAuthError::invalid_target(
                "resource must be an absolute http(s) URL without query or fragment",
            )
        })?),
        None => None,
    };
    let resource = match (requested, named.as_slice()) {
        (Some(r), []) => r,
        (Some(r), named) if named.contains(&r) => r,
        (Some(_), _) => {
            return Err(OAuthError::invalid_target(
                "resource is not one the assertion was issued for",
            ))
        }
        (None, [one]) => one.clone(),
        (None, []) => {
            return Err(OAuthError::invalid_target(
                "no resource: the assertion names none and the request sent none",
            ))
        }
        (None, _) => {
            return Err(OAuthError::invalid_target(
                "the assertion names several resources: send resource to choose one",
            ))
        }
    };
    if !expected.routes.contains(&resource) {
        return Err(OAuthError::invalid_target(
            "resource is not a server route of this gateway",
        ));
    }

    let paths = &idp.claims;
    let email = string_claim(claims, &paths.email).ok_or_else(|| {
        invalid(format!(
            "the user's email claim ({}) is missing",
            paths.email
        ))
    })?;
    let unverified = match claims.get("email_verified") {
        Some(Value::Bool(false)) => true,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("false"),
        _ => false,
    };
    if unverified {
        return Err(invalid(
            "the provider says the user's email is not verified",
        ));
    }
    if !email_domain_allowed(&email, &idp.allowed_email_domains) {
        return Err(invalid(
            "the user's email is not in a domain this provider may assert (allowed_email_domains)",
        ));
    }
    Ok(Accepted {
        user: UserClaims {
            username: qualified_subject(&idp.id, sub),
            email,
            name: string_claim(claims, &paths.name),
            groups: groups_claim(claims, &paths.groups),
        },
        resource,
        jti: jti.to_string(),
        expires_at: exp,
    })
}

/// Signature (with the provider's inline `jwks`), then claims.
pub fn check_with_keys(
    raw: &str,
    header: &Header,
    idp: &EnterpriseIdp,
    jwks: &Value,
    expected: &Expected<'_>,
    leeway_secs: u64,
) -> Result<Accepted, OAuthError> {
    let jwk = jose::select_key(jwks, header).map_err(invalid)?;
    let claims = jose::verify_with(
        raw,
        header,
        jwk,
        &idp.allowed_algorithms,
        expected.now,
        leeway_secs,
    )
    .map_err(invalid)?;
    check_claims(idp, &claims, expected)
}

/// The claims a TE for `user` will carry, as route policies see them.
fn policy_identity(
    state: &AppState,
    user: &UserClaims,
    client_id: &str,
) -> mcpgate_policy::Identity {
    let mut claims = json!({
        "iss": state.issuer,
        "sub": user.username,
        "client_id": client_id,
        "email": user.email,
        "groups": user.groups,
    });
    if let Some(name) = &user.name {
        claims["name"] = json!(name);
    }
    mcpgate_policy::Identity {
        user: user.username.clone(),
        email: Some(user.email.clone()),
        groups: user.groups.clone(),
        claims,
    }
}

async fn accept(
    state: &AppState,
    client: &Client,
    params: &Params,
    raw: &str,
    t: i64,
) -> Result<(Accepted, String), OAuthError> {
    let (header, idp) = identify(raw, &state.config.identity.enterprise)?;
    let routes: Vec<String> = state.routes.iter().map(|r| r.resource.clone()).collect();
    let expected = Expected {
        issuer: &state.issuer,
        client_id: &client.client_id,
        resource: params.single("resource")?,
        routes: &routes,
        now: t,
    };
    let leeway = state.config.authorization_server.leeway.as_secs();
    let accepted = match (&idp.jwks, &idp.jwks_uri) {
        (Some(jwks), _) => check_with_keys(raw, &header, idp, jwks, &expected, leeway)?,
        (None, Some(uri)) => {
            state.oidc.key_sets.trust(uri);
            let verified = state
                .oidc
                .key_sets
                .verify(uri, raw, &idp.allowed_algorithms, t, leeway)
                .await
                .map_err(|reason| {
                    tracing::warn!(idp = %idp.id, reason = %reason, "enterprise provider keys unavailable");
                    OAuthError::temporarily_unavailable(format!(
                        "the keys of the enterprise provider {} cannot be read right now; try again later",
                        idp.id
                    ))
                })?;
            let (_, claims) = verified.map_err(invalid)?;
            check_claims(idp, &claims, &expected)?
        }
        (None, None) => return Err(OAuthError::server_error()),
    };
    if !state
        .store
        .use_assertion(
            &format!("idp:{}", idp.issuer),
            &accepted.jti,
            accepted.expires_at,
        )
        .await?
    {
        return Err(invalid("its jti was already used (a replayed grant)"));
    }
    Ok((accepted, idp.id.clone()))
}

/// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` for an authenticated `client`.
pub async fn grant(
    state: &AppState,
    client: &Client,
    params: &Params,
    t: i64,
) -> Result<TokenResponse, OAuthError> {
    if client.auth_method == mcpgate_config::gateway::TokenEndpointAuthMethod::None {
        return Err(OAuthError::unauthorized_client(
            "the jwt-bearer grant needs a confidential client (private_key_jwt or a secret)",
        ));
    }
    if !client.may_use_jwt_bearer() {
        return Err(OAuthError::unauthorized_client(
            "this client is not registered for the jwt-bearer grant (grant_types)",
        ));
    }
    let raw = params
        .single("assertion")?
        .ok_or_else(|| OAuthError::invalid_request("assertion is required"))?;
    let (accepted, idp) = match accept(state, client, params, raw, t).await {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(target: "mcpgate::audit", event = "jwt_bearer_refused", client_id = %client.client_id, error = e.error, reason = %e.description);
            return Err(e);
        }
    };
    let user = &accepted.user;
    let index = state
        .routes
        .iter()
        .position(|r| r.resource == accepted.resource)
        .ok_or_else(|| {
            OAuthError::invalid_target("resource is not a server route of this gateway")
        })?;
    let identity = policy_identity(state, user, &client.client_id);
    if !state.route_policies[index].allows_identity(&identity) {
        tracing::info!(target: "mcpgate::audit", event = "jwt_bearer_refused", client_id = %client.client_id, user = %user.username, idp = %idp, route = %accepted.resource, reason = "policy");
        return Err(OAuthError::invalid_grant(
            "the route's policy does not let this user in",
        ));
    }
    let family_id = crate::oauth::opaque_token::generate();
    let lifetime = state
        .config
        .authorization_server
        .access_token_lifetime
        .as_secs();
    let minted = access_token::mint(
        &state.keys,
        &Grant {
            issuer: &state.issuer,
            user,
            sid: &family_id,
            client_id: &client.client_id,
            resource: &accepted.resource,
            scope: None,
        },
        t,
        lifetime,
    )?;
    state
        .store
        .record_access_token(&minted.jti, &family_id, minted.expires_at)
        .await?;
    tracing::info!(target: "mcpgate::audit", event = "jwt_bearer_grant", client_id = %client.client_id, user = %user.username, email = %user.email, idp = %idp, route = %accepted.resource);
    Ok(TokenResponse {
        access_token: minted.token,
        token_type: "Bearer",
        expires_in: lifetime as i64,
        refresh_token: None,
        scope: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::jose::tests::{rsa_jwk, sign_rs, OTHER_RSA_PEM, RSA_PEM};
    use mcpgate_config::identity::ClaimPaths;

    const NOW: i64 = 1_700_000_000;
    const ROUTE: &str = "https://gw.example/everything";

    fn idp() -> EnterpriseIdp {
        EnterpriseIdp {
            id: "corp".into(),
            issuer: "https://idp.example.com".into(),
            jwks_uri: None,
            jwks: Some(json!({"keys": [rsa_jwk(RSA_PEM, "k1")]})),
            audience: None,
            allowed_clients: vec![],
            claims: ClaimPaths::default(),
            allowed_email_domains: vec![],
            allowed_algorithms: vec!["RS256".into()],
        }
    }

    fn claims() -> Value {
        json!({"iss": "https://idp.example.com", "sub": "u-1", "aud": "https://gw.example",
               "client_id": "cli", "resource": ROUTE, "exp": NOW + 300, "iat": NOW,
               "jti": "jag-1", "email": "ann@company.com", "name": "Ann", "groups": ["eng"]})
    }

    fn with(k: &str, v: Value) -> Value {
        let mut c = claims();
        if v.is_null() {
            c.as_object_mut().expect("object").remove(k);
        } else {
            c[k] = v;
        }
        c
    }

    fn run(
        raw: &str,
        providers: &[EnterpriseIdp],
        resource: Option<&str>,
    ) -> Result<Accepted, OAuthError> {
        let routes = vec![ROUTE.to_string(), "https://gw.example/other".to_string()];
        let expected = Expected {
            issuer: "https://gw.example",
            client_id: "cli",
            resource,
            routes: &routes,
            now: NOW,
        };
        let (header, p) = identify(raw, providers)?;
        check_with_keys(
            raw,
            &header,
            p,
            p.jwks.as_ref().expect("jwks"),
            &expected,
            5,
        )
    }

    fn signed(body: &Value) -> String {
        sign_rs(RSA_PEM, Some("k1"), ID_JAG_TYP, body)
    }

    fn refused(body: &Value) -> OAuthError {
        run(&signed(body), &[idp()], None).expect_err("refused")
    }

    #[test]
    fn a_good_grant_maps_the_user_like_oidc_sign_in() {
        let a = run(&signed(&claims()), &[idp()], None).expect("accepted");
        assert_eq!(a.user.username, "corp:u-1");
        assert_eq!(a.user.email, "ann@company.com");
        assert_eq!(a.user.name.as_deref(), Some("Ann"));
        assert_eq!(a.user.groups, vec!["eng"]);
        assert_eq!((a.resource.as_str(), a.jti.as_str()), (ROUTE, "jag-1"));
        // The request's resource chooses among the assertion's, canonicalised.
        let two = with("resource", json!([ROUTE, "https://gw.example/other"]));
        assert_eq!(
            run(&signed(&two), &[idp()], Some("https://GW.example/other/"))
                .expect("accepted")
                .resource,
            "https://gw.example/other"
        );
        // Without a resource claim, the parameter names it.
        let none = with("resource", Value::Null);
        assert_eq!(
            run(&signed(&none), &[idp()], Some(ROUTE))
                .expect("ok")
                .resource,
            ROUTE
        );
        // A configured audience replaces the issuer.
        let mut custom = idp();
        custom.audience = Some("urn:gw".into());
        assert!(run(&signed(&with("aud", json!("urn:gw"))), &[custom], None).is_ok());
    }

    #[test]
    fn the_header_and_the_issuer_are_checked_first() {
        let wrong_typ = sign_rs(RSA_PEM, Some("k1"), "JWT", &claims());
        let e = run(&wrong_typ, &[idp()], None).expect_err("typ");
        assert_eq!(e.error, "invalid_grant");
        assert!(
            e.description.contains("typ must be oauth-id-jag+jwt"),
            "{e:?}"
        );
        let e = refused(&with("iss", json!("https://evil.example")));
        assert!(e
            .description
            .contains("not a trusted enterprise identity provider"));
        let e = run("garbage", &[idp()], None).expect_err("malformed");
        assert!(e.description.contains("well-formed"));
    }

    #[test]
    fn every_refusal_is_named() {
        let d = |body: Value| refused(&body).description;
        let forged = run(
            &sign_rs(OTHER_RSA_PEM, Some("k1"), ID_JAG_TYP, &claims()),
            &[idp()],
            None,
        )
        .expect_err("forged");
        assert!(forged.description.contains("signature"));
        let unknown = run(
            &sign_rs(RSA_PEM, Some("k9"), ID_JAG_TYP, &claims()),
            &[idp()],
            None,
        )
        .expect_err("kid");
        assert!(unknown.description.contains("kid k9"));
        let mut es_only = idp();
        es_only.allowed_algorithms = vec!["ES256".into()];
        assert!(run(&signed(&claims()), &[es_only], None)
            .expect_err("alg")
            .description
            .contains("RS256"));
        assert!(d(with("aud", json!("https://other.example"))).contains("aud must be"));
        assert!(d(with("client_id", json!("other"))).contains("another client"));
        assert!(d(with("client_id", Value::Null)).contains("client_id"));
        assert!(d(with("exp", json!(NOW - 100))).contains("expired"));
        assert!(d(with("exp", Value::Null)).contains("exp is required"));
        assert!(d(with("exp", json!(NOW + 7200))).contains("too far ahead"));
        assert!(d(with("iat", Value::Null)).contains("iat is required"));
        assert!(d(with("iat", json!(NOW + 600))).contains("future"));
        assert!(d(with("jti", Value::Null)).contains("jti"));
        assert!(d(with("sub", Value::Null)).contains("sub"));
        assert!(d(with("email", Value::Null)).contains("email"));
        assert!(d(with("email_verified", json!(false))).contains("not verified"));
        let e = refused(&with("resource", json!("https://gw.example/unknown")));
        assert_eq!(e.error, "invalid_target");
        let e = refused(&with("resource", Value::Null));
        assert_eq!(e.error, "invalid_target");
        let e = refused(&with(
            "resource",
            json!([ROUTE, "https://gw.example/other"]),
        ));
        assert!(e.description.contains("several"));
        let e = run(
            &signed(&claims()),
            &[idp()],
            Some("https://gw.example/other"),
        )
        .expect_err("not granted");
        assert_eq!(e.error, "invalid_target");
        let mut only = idp();
        only.allowed_clients = vec!["someone-else".into()];
        assert_eq!(
            run(&signed(&claims()), &[only], None)
                .expect_err("client")
                .error,
            "unauthorized_client"
        );
        let mut domains = idp();
        domains.allowed_email_domains = vec!["example.com".into()];
        assert!(run(&signed(&claims()), &[domains], None)
            .expect_err("domain")
            .description
            .contains("allowed_email_domains"));
        // No description carries the assertion.
        assert!(!forged.description.contains("eyJ"));
    }
}
