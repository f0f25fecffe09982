//! Client metadata (RFC 7591 §2): the model and field-by-field validation shared by dynamic
//! registration and client ID metadata documents. Every error names the field and the reason.

use mcpgate_config::gateway::{validate_redirect_uri, TokenEndpointAuthMethod};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const MAX_CLIENT_NAME_CHARS: usize = 200;
const MAX_STRING_CHARS: usize = 2000;
const MAX_REDIRECT_URIS: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientMetadata {
    pub redirect_uris: Vec<String>,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
    /// `private_key_jwt`: the client's public keys inline (a JWK Set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// `private_key_jwt`: where the client publishes its public keys (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
}

use mcpgate_config::gateway::CLIENT_GRANT_TYPES;
pub use mcpgate_config::gateway::JWT_BEARER_GRANT;

/// A rejected metadata field: `error` is `invalid_redirect_uri` or `invalid_client_metadata`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct MetadataError {
    pub error: &'static str,
    pub field: String,
    pub reason: String,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> MetadataError {
    MetadataError {
        error: "invalid_client_metadata",
        field: field.into(),
        reason: reason.into(),
    }
}

fn bad_redirect(field: impl Into<String>, reason: impl Into<String>) -> MetadataError {
    MetadataError {
        error: "invalid_redirect_uri",
        field: field.into(),
        reason: reason.into(),
    }
}

fn string_field(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, MetadataError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() > MAX_STRING_CHARS => Err(bad(
            field,
            format!("must be at most {MAX_STRING_CHARS} characters"),
        )),
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            Err(bad(field, "must not contain control characters"))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(field, "must be a string")),
    }
}

fn string_array(
    obj: &Map<String, Value>,
    field: &str,
) -> Result<Option<Vec<String>>, MetadataError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(bad(format!("{field}[{i}]"), "must be a string")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad(field, "must be an array of strings")),
    }
}

fn https_uri(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, MetadataError> {
    let Some(value) = string_field(obj, field)? else {
        return Ok(None);
    };
    match url::Url::parse(&value) {
        Ok(u) if u.scheme() == "https" && u.host_str().is_some() => Ok(Some(value)),
        _ => Err(bad(field, "must be an absolute https URL")),
    }
}

/// Scope values: space-separated tokens of printable ASCII without `"` or `\` (RFC 6749 §3.3).
pub fn valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope.split(' ').all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        })
}

impl ClientMetadata {
    /// Validates a metadata JSON object. Unknown fields are ignored (RFC 7591 §2); known fields
    /// with the wrong type are errors.
    pub fn from_json(value: &Value) -> Result<Self, MetadataError> {
        let obj = value
            .as_object()
            .ok_or_else(|| bad("", "client metadata must be a JSON object"))?;

        // Absent grant_types would mean authorization_code only (RFC 7591); the gateway
        // registers refresh_token too (§3.2.1 lets it substitute values) and echoes the result.
        let grant_types = string_array(obj, "grant_types")?
            .unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
        for (i, g) in grant_types.iter().enumerate() {
            if !CLIENT_GRANT_TYPES.contains(&g.as_str()) {
                return Err(bad(
                    format!("grant_types[{i}]"),
                    format!("must be one of {}", CLIENT_GRANT_TYPES.join(", ")),
                ));
            }
        }
        let code_flow = grant_types.iter().any(|g| g == "authorization_code");
        if !code_flow && !grant_types.iter().any(|g| g == JWT_BEARER_GRANT) {
            return Err(bad(
                "grant_types",
                format!("must include authorization_code or {JWT_BEARER_GRANT}"),
            ));
        }
        let redirect_uris = match string_array(obj, "redirect_uris") {
            Ok(Some(uris)) => uris,
            Ok(None) if !code_flow => vec![],
            Ok(None) => return Err(bad_redirect("redirect_uris", "is required")),
            Err(e) => return Err(bad_redirect(e.field, e.reason)),
        };
        if redirect_uris.is_empty() && code_flow {
            return Err(bad_redirect("redirect_uris", "must list at least one URI"));
        }
        if redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(bad_redirect(
                "redirect_uris",
                format!("must list at most {MAX_REDIRECT_URIS} URIs"),
            ));
        }
        for (i, uri) in redirect_uris.iter().enumerate() {
            if uri.len() > MAX_STRING_CHARS {
                return Err(bad_redirect(
                    format!("redirect_uris[{i}]"),
                    format!("must be at most {MAX_STRING_CHARS} characters"),
                ));
            }
            validate_redirect_uri(uri)
                .map_err(|reason| bad_redirect(format!("redirect_uris[{i}]"), reason))?;
        }

        let token_endpoint_auth_method =
            match string_field(obj, "token_endpoint_auth_method")?.as_deref() {
                None | Some("client_secret_basic") => TokenEndpointAuthMethod::ClientSecretBasic,
                Some("none") => TokenEndpointAuthMethod::None,
                Some("client_secret_post") => TokenEndpointAuthMethod::ClientSecretPost,
                Some("private_key_jwt") => TokenEndpointAuthMethod::PrivateKeyJwt,
                Some(_) => return Err(bad(
                    "token_endpoint_auth_method",
                    "must be one of none, client_secret_basic, client_secret_post, private_key_jwt",
                )),
            };
        let (jwks, jwks_uri) = client_keys(obj, token_endpoint_auth_method)?;

        let response_types =
            string_array(obj, "response_types")?.unwrap_or_else(|| vec!["code".into()]);
        for (i, r) in response_types.iter().enumerate() {
            if r != "code" {
                return Err(bad(format!("response_types[{i}]"), "must be code"));
            }
        }
        if response_types.is_empty() {
            return Err(bad("response_types", "must include code"));
        }

        let client_name = string_field(obj, "client_name")?;
        if let Some(name) = &client_name {
            if name.chars().count() > MAX_CLIENT_NAME_CHARS {
                return Err(bad(
                    "client_name",
                    format!("must be at most {MAX_CLIENT_NAME_CHARS} characters"),
                ));
            }
        }
        let scope = string_field(obj, "scope")?;
        if let Some(scope) = &scope {
            if !valid_scope(scope) {
                return Err(bad(
                    "scope",
                    "must be space-separated printable ASCII scope tokens",
                ));
            }
        }
        let contacts = string_array(obj, "contacts")?.unwrap_or_default();
        if contacts.len() > 10 || contacts.iter().any(|c| c.len() > 320) {
            return Err(bad(
                "contacts",
                "must list at most 10 addresses of at most 320 characters",
            ));
        }
        let software_id = string_field(obj, "software_id")?;
        let software_version = string_field(obj, "software_version")?;
        for (field, value) in [
            ("software_id", &software_id),
            ("software_version", &software_version),
        ] {
            if value.as_ref().is_some_and(|v| v.chars().count() > 200) {
                return Err(bad(field, "must be at most 200 characters"));
            }
        }
        Ok(Self {
            redirect_uris,
            token_endpoint_auth_method,
            grant_types,
            response_types,
            client_name,
            client_uri: https_uri(obj, "client_uri")?,
            logo_uri: https_uri(obj, "logo_uri")?,
            policy_uri: https_uri(obj, "policy_uri")?,
            tos_uri: https_uri(obj, "tos_uri")?,
            scope,
            contacts,
            software_id,
            software_version,
            jwks,
            jwks_uri,
        })
    }
}

/// `jwks` / `jwks_uri`: exactly one with `private_key_jwt`, neither with another method.
#[allow(clippy::type_complexity)]
fn client_keys(
    obj: &Map<String, Value>,
    method: TokenEndpointAuthMethod,
) -> Result<(Option<Value>, Option<String>), MetadataError> {
    let jwks = obj.get("jwks").filter(|v| !v.is_null()).cloned();
    let jwks_uri = https_uri(obj, "jwks_uri")?;
    if method != TokenEndpointAuthMethod::PrivateKeyJwt {
        if jwks.is_some() || jwks_uri.is_some() {
            let field = if jwks.is_some() { "jwks" } else { "jwks_uri" };
            return Err(bad(
                field,
                "is only used with token_endpoint_auth_method private_key_jwt",
            ));
        }
        return Ok((None, None));
    }
    match (&jwks, &jwks_uri) {
        (Some(_), Some(_)) => Err(bad("jwks", "send jwks or jwks_uri, not both")),
        (None, None) => Err(bad(
            "jwks",
            "private_key_jwt needs the client's public keys: jwks or jwks_uri",
        )),
        (Some(keys), None) => {
            if keys.to_string().len() > 16 * 1024 {
                return Err(bad("jwks", "must be at most 16 KiB"));
            }
            mcpgate_config::identity::validate_jwks(keys)
                .map_err(|(f, r)| bad(format!("jwks{f}"), r))?;
            Ok((jwks, None))
        }
        (None, Some(_)) => Ok((None, jwks_uri)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> MetadataError {
        ClientMetadata::from_json(&v).expect_err("must be rejected")
    }

    #[test]
    fn minimal_metadata_gets_defaults() {
        let m = ClientMetadata::from_json(&json!({"redirect_uris": ["http://127.0.0.1:3000/cb"]}))
            .expect("valid");
        assert_eq!(
            m.token_endpoint_auth_method,
            TokenEndpointAuthMethod::ClientSecretBasic
        );
        assert_eq!(m.grant_types, vec!["authorization_code", "refresh_token"]);
        assert_eq!(m.response_types, vec!["code"]);
    }

    #[test]
    fn redirect_uris_are_required_and_checked() {
        let e = err(json!({}));
        assert_eq!(
            (e.error, e.field.as_str()),
            ("invalid_redirect_uri", "redirect_uris")
        );
        assert_eq!(
            err(json!({"redirect_uris": []})).error,
            "invalid_redirect_uri"
        );
        let e = err(json!({"redirect_uris": ["https://ok.example/cb", "http://evil.example/cb"]}));
        assert_eq!(
            (e.error, e.field.as_str()),
            ("invalid_redirect_uri", "redirect_uris[1]")
        );
        assert_eq!(
            err(json!({"redirect_uris": ["https://a.example/cb#frag"]})).field,
            "redirect_uris[0]"
        );
        assert_eq!(
            err(json!({"redirect_uris": "https://a.example/cb"})).error,
            "invalid_redirect_uri"
        );
        assert_eq!(err(json!({"redirect_uris": [1]})).field, "redirect_uris[0]");
    }

    #[test]
    fn each_field_is_validated_by_name() {
        let base = |extra: Value| {
            let mut v = json!({"redirect_uris": ["https://a.example/cb"]});
            for (k, val) in extra.as_object().expect("object") {
                v[k] = val.clone();
            }
            v
        };
        let cases = [
            (
                json!({"token_endpoint_auth_method": "private_key_jwt"}),
                "jwks",
            ),
            (
                json!({"token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "http://a.example/k"}),
                "jwks_uri",
            ),
            (
                json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [{"kty": "RSA", "d": "x"}]}}),
                "jwks.keys[0].d",
            ),
            (
                json!({"token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": []},
                       "jwks_uri": "https://a.example/k"}),
                "jwks",
            ),
            (json!({"jwks_uri": "https://a.example/k"}), "jwks_uri"),
            (
                json!({"token_endpoint_auth_method": "tls_client_auth"}),
                "token_endpoint_auth_method",
            ),
            (
                json!({"token_endpoint_auth_method": 1}),
                "token_endpoint_auth_method",
            ),
            (json!({"grant_types": ["implicit"]}), "grant_types[0]"),
            (json!({"grant_types": ["refresh_token"]}), "grant_types"),
            (json!({"grant_types": "authorization_code"}), "grant_types"),
            (json!({"response_types": ["token"]}), "response_types[0]"),
            (json!({"client_name": "x".repeat(201)}), "client_name"),
            (json!({"client_name": ["x"]}), "client_name"),
            (json!({"client_uri": "http://a.example"}), "client_uri"),
            (json!({"logo_uri": "javascript:x"}), "logo_uri"),
            (json!({"policy_uri": 3}), "policy_uri"),
            (json!({"tos_uri": "ftp://a.example/tos"}), "tos_uri"),
            (json!({"scope": "a\u{7f}b"}), "scope"),
            (json!({"scope": "a  b"}), "scope"),
            (json!({"contacts": "a@example.com"}), "contacts"),
        ];
        for (extra, field) in cases {
            let e = err(base(extra.clone()));
            assert_eq!(e.field, field, "{extra}");
            assert_eq!(e.error, "invalid_client_metadata");
        }
        let ok = ClientMetadata::from_json(&base(json!({
            "client_name": "x".repeat(200), "token_endpoint_auth_method": "none", "scope": "mcp:tools read",
            "client_uri": "https://a.example", "unknown_field": {"ignored": true}
        })))
        .expect("valid");
        assert_eq!(ok.token_endpoint_auth_method, TokenEndpointAuthMethod::None);
        assert!(err(json!("not an object")).reason.contains("JSON object"));
    }

    #[test]
    fn private_key_jwt_and_the_jwt_bearer_grant_register() {
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]});
        let m = ClientMetadata::from_json(&json!({
            "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt",
            "jwks": jwks, "grant_types": ["authorization_code", JWT_BEARER_GRANT]
        }))
        .expect("valid");
        assert_eq!(
            m.token_endpoint_auth_method,
            TokenEndpointAuthMethod::PrivateKeyJwt
        );
        assert_eq!(m.jwks, Some(jwks));
        // A client of the JWT-bearer grant alone needs no redirect URI.
        let m = ClientMetadata::from_json(&json!({
            "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": "https://a.example/jwks",
            "grant_types": [JWT_BEARER_GRANT]
        }))
        .expect("valid");
        assert!(m.redirect_uris.is_empty());
        assert_eq!(
            err(json!({"grant_types": ["authorization_code"]})).field,
            "redirect_uris"
        );
    }
}
