//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, OpenID Connect Core 9): the
//! client signs a short JWT with its own key, and the token endpoint checks it against the keys
//! it registered (`jwks`, or published at `jwks_uri`). Checked in full: the algorithm, the
//! signature, `iss` = `sub` = the client id, `aud` naming our token endpoint or issuer, `exp`
//! (and not too far ahead), `jti` (single use, stored until `exp`).

use mcpgate_config::gateway::TokenEndpointAuthMethod;
use mcpgate_config::identity::ASSERTION_ALGORITHMS;
use serde_json::Value;

use crate::clients::{Client, PresentedCredentials};
use crate::oauth::error::OAuthError;
use crate::oauth::jose;
use crate::state::AppState;

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest an assertion may still be valid for: its jti is kept that long.
pub const MAX_LIFETIME_SECS: i64 = 3600;
const MAX_JTI_CHARS: usize = 256;

fn invalid(reason: impl std::fmt::Display) -> OAuthError {
    OAuthError::invalid_client(format!("client assertion: {reason}"))
}

/// The client credentials of a request that sent `client_assertion`; `None` when it sent none.
pub fn presented(
    basic_header: bool,
    form_client_id: Option<&str>,
    form_secret: Option<&str>,
    assertion_type: Option<&str>,
    assertion: Option<&str>,
) -> Result<Option<PresentedCredentials>, OAuthError> {
    let assertion = match (assertion_type, assertion) {
        (None, None) => return Ok(None),
        (Some(CLIENT_ASSERTION_TYPE), Some(a)) => a,
        (Some(CLIENT_ASSERTION_TYPE), None) | (None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "client_assertion and client_assertion_type must be sent together",
            ))
        }
        (Some(_), _) => {
            return Err(OAuthError::invalid_request(format!(
                "client_assertion_type must be {CLIENT_ASSERTION_TYPE}"
            )))
        }
    };
    if basic_header || form_secret.is_some() {
        return Err(OAuthError::invalid_request(
            "use one client authentication method: client_assertion, a Basic header or client_secret",
        ));
    }
    // client_id is optional with an assertion (RFC 7521 §4.2): then its `sub` names the client.
    let client_id = match form_client_id {
        Some(id) => id.to_string(),
        None => jose::payload(assertion)
            .ok()
            .and_then(|c| c.get("sub").and_then(Value::as_str).map(str::to_string))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("it names no client (sub), and client_id was not sent"))?,
    };
    Ok(Some(PresentedCredentials {
        client_id,
        secret: None,
        assertion: Some(assertion.to_string()),
        method: TokenEndpointAuthMethod::PrivateKeyJwt,
    }))
}

/// What a client assertion must satisfy.
pub struct Expected<'a> {
    pub client_id: &'a str,
    /// Accepted `aud` values: our token endpoint URL and our issuer.
    pub audiences: &'a [String],
    pub now: i64,
    pub leeway_secs: u64,
}

/// A client assertion that passed every check but single use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub jti: String,
    pub expires_at: i64,
}

/// The checks on the claims of a verified client assertion.
pub fn check_claims(claims: &Value, expected: &Expected<'_>) -> Result<Accepted, OAuthError> {
    let text = |k: &str| claims.get(k).and_then(Value::as_str);
    if text("iss") != Some(expected.client_id) {
        return Err(invalid("iss must be the client_id"));
    }
    if text("sub") != Some(expected.client_id) {
        return Err(invalid("sub must be the client_id"));
    }
    let aud = jose::audiences(claims);
    if !aud
        .iter()
        .any(|a| expected.audiences.iter().any(|e| e == a))
    {
        return Err(invalid(
            "aud must name this authorization server's token endpoint or issuer",
        ));
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("exp is required"))?;
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
    Ok(Accepted {
        jti: jti.to_string(),
        expires_at: exp,
    })
}

fn allowed_algorithms() -> Vec<String> {
    ASSERTION_ALGORITHMS.map(String::from).to_vec()
}

/// Signature, then claims, with the client's inline `jwks`.
pub fn check(raw: &str, jwks: &Value, expected: &Expected<'_>) -> Result<Accepted, OAuthError> {
    let (_, claims) = jose::verify(
        raw,
        jwks,
        &allowed_algorithms(),
        expected.now,
        expected.leeway_secs,
    )
    .map_err(invalid)?;
    check_claims(&claims, expected)
}

/// Authenticates `client` (registered for `private_key_jwt`) with the assertion it presented:
/// every check, then single use of its `jti`.
pub async fn verify(
    state: &AppState,
    client: &Client,
    presented: &PresentedCredentials,
    t: i64,
) -> Result<(), OAuthError> {
    let raw = presented
        .assertion
        .as_deref()
        .ok_or_else(|| invalid("client_assertion is required"))?;
    let audiences = [
        format!("{}{}", state.issuer, mcpgate_config::paths::TOKEN),
        state.issuer.clone(),
    ];
    let expected = Expected {
        client_id: &client.client_id,
        audiences: &audiences,
        now: t,
        leeway_secs: state.config.authorization_server.leeway.as_secs(),
    };
    let accepted = match (&client.jwks, &client.jwks_uri) {
        (Some(jwks), _) => check(raw, jwks, &expected)?,
        (None, Some(uri)) => {
            // The operator wrote a pre-registered client's jwks_uri (it may be internal); a
            // registered client chose its own and is held to public addresses.
            if client.kind == crate::clients::ClientKind::PreRegistered {
                state.oidc.key_sets.trust(uri);
            }
            let verified = state
                .oidc
                .key_sets
                .verify(
                    uri,
                    raw,
                    &allowed_algorithms(),
                    t,
                    expected.leeway_secs,
                )
                .await
                .map_err(|reason| {
                    tracing::warn!(client_id = %client.client_id, reason = %reason, "client jwks_uri unavailable");
                    invalid(format!("the client's jwks_uri could not be read: {reason}"))
                })?;
            let (_, claims) = verified.map_err(invalid)?;
            check_claims(&claims, &expected)?
        }
        (None, None) => return Err(invalid("the client registered no keys")),
    };
    if !state
        .store
        .use_assertion(
            &format!("client:{}", client.client_id),
            &accepted.jti,
            accepted.expires_at,
        )
        .await?
    {
        return Err(invalid("its jti was already used (a replayed assertion)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::jose::tests::{rsa_jwk, sign_rs, OTHER_RSA_PEM, RSA_PEM};
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn audiences() -> Vec<String> {
        vec![
            "https://gw.example/.mcpgate/oauth/token".into(),
            "https://gw.example".into(),
        ]
    }

    fn claims() -> Value {
        json!({"iss": "cli", "sub": "cli", "aud": "https://gw.example/.mcpgate/oauth/token",
               "exp": NOW + 60, "iat": NOW, "jti": "j-1"})
    }

    fn checked(body: &Value, pem: &str) -> Result<Accepted, OAuthError> {
        let aud = audiences();
        let expected = Expected {
            client_id: "cli",
            audiences: &aud,
            now: NOW,
            leeway_secs: 5,
        };
        let jwks = json!({"keys": [rsa_jwk(RSA_PEM, "k1")]});
        check(&sign_rs(pem, Some("k1"), "JWT", body), &jwks, &expected)
    }

    fn refused(body: &Value) -> String {
        let e = checked(body, RSA_PEM).expect_err("refused");
        assert_eq!(e.error, "invalid_client");
        e.description
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

    #[test]
    fn a_good_assertion_is_accepted() {
        assert_eq!(
            checked(&claims(), RSA_PEM).expect("accepted"),
            Accepted {
                jti: "j-1".into(),
                expires_at: NOW + 60
            }
        );
        assert!(checked(&with("aud", json!(["x", "https://gw.example"])), RSA_PEM).is_ok());
    }

    #[test]
    fn every_claim_is_checked() {
        assert!(refused(&with("iss", json!("other"))).contains("iss"));
        assert!(refused(&with("sub", json!("other"))).contains("sub"));
        assert!(refused(&with("sub", Value::Null)).contains("sub"));
        assert!(refused(&with("aud", json!("https://elsewhere.example"))).contains("aud"));
        assert!(refused(&with("exp", Value::Null)).contains("exp is required"));
        assert!(refused(&with("exp", json!(NOW - 60))).contains("expired"));
        assert!(refused(&with("exp", json!(NOW + 7200))).contains("too far ahead"));
        assert!(refused(&with("jti", Value::Null)).contains("jti"));
        assert!(refused(&with("jti", json!("x".repeat(300)))).contains("jti"));
        let forged = checked(&claims(), OTHER_RSA_PEM).expect_err("forged");
        assert!(forged.description.contains("signature"), "{forged:?}");
        // The description never carries the assertion.
        assert!(!forged.description.contains("eyJ"));
    }

    #[test]
    fn presented_assertions_are_read_strictly() {
        let raw = sign_rs(RSA_PEM, Some("k1"), "JWT", &claims());
        let p = presented(false, None, None, Some(CLIENT_ASSERTION_TYPE), Some(&raw))
            .expect("ok")
            .expect("some");
        assert_eq!(
            (p.client_id.as_str(), p.method),
            ("cli", TokenEndpointAuthMethod::PrivateKeyJwt)
        );
        assert_eq!(presented(false, None, None, None, None), Ok(None));
        let e = |r: Result<Option<PresentedCredentials>, OAuthError>| r.expect_err("refused").error;
        assert_eq!(
            e(presented(false, None, None, Some("urn:x"), Some(&raw))),
            "invalid_request"
        );
        assert_eq!(
            e(presented(false, None, None, None, Some(&raw))),
            "invalid_request"
        );
        assert_eq!(
            e(presented(
                true,
                None,
                None,
                Some(CLIENT_ASSERTION_TYPE),
                Some(&raw)
            )),
            "invalid_request"
        );
        assert_eq!(
            e(presented(
                false,
                None,
                Some("s"),
                Some(CLIENT_ASSERTION_TYPE),
                Some(&raw)
            )),
            "invalid_request"
        );
        assert_eq!(
            e(presented(
                false,
                None,
                None,
                Some(CLIENT_ASSERTION_TYPE),
                Some("not-a-jwt")
            )),
            "invalid_client"
        );
    }
}
