//! OAuth clients of every origin (pre-registered in the gateway file, dynamically registered,
//! client ID metadata documents), redirect URI matching, and token-endpoint client authentication.

pub mod assertion;
pub mod metadata;
pub mod metadata_document;
pub mod registration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use mcpgate_config::gateway::{is_loopback_host, StaticClient, TokenEndpointAuthMethod};

use crate::clients::metadata::ClientMetadata;
use crate::clients::metadata_document::DocumentError;
use crate::oauth::error::OAuthError;
use crate::oauth::opaque_token;
use crate::store::StoredClient;

/// Why looking a client up failed (beyond "no such client").
#[derive(Debug, thiserror::Error)]
pub enum ClientLookupError {
    #[error("{0}")]
    Document(#[from] DocumentError),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// `authorization_server.clients`: trusted by the operator, no consent page.
    PreRegistered,
    /// RFC 7591 dynamic registration.
    Registered,
    /// An https `client_id` whose metadata document was fetched.
    MetadataDocument,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub auth_method: TokenEndpointAuthMethod,
    /// SHA-256 of the client secret (see `opaque_token::hash`); `None` for public clients.
    pub secret_hash: Option<String>,
    pub kind: ClientKind,
    pub grant_types: Vec<String>,
    /// `private_key_jwt`: the registered public keys (a JWK Set) or where they are published.
    pub jwks: Option<serde_json::Value>,
    pub jwks_uri: Option<String>,
}

impl Client {
    pub fn from_static(c: &StaticClient) -> Self {
        Self {
            client_id: c.client_id.clone(),
            client_name: c.client_name.clone(),
            redirect_uris: c.redirect_uris.clone(),
            auth_method: c.token_endpoint_auth_method,
            secret_hash: c.client_secret.as_deref().map(opaque_token::hash),
            kind: ClientKind::PreRegistered,
            grant_types: c.grant_types.clone(),
            jwks: c.jwks.clone(),
            jwks_uri: c.jwks_uri.clone(),
        }
    }

    pub fn from_metadata(
        client_id: String,
        metadata: ClientMetadata,
        secret_hash: Option<String>,
        kind: ClientKind,
    ) -> Self {
        Self {
            client_id,
            client_name: metadata.client_name,
            redirect_uris: metadata.redirect_uris,
            auth_method: metadata.token_endpoint_auth_method,
            secret_hash,
            kind,
            grant_types: metadata.grant_types,
            jwks: metadata.jwks,
            jwks_uri: metadata.jwks_uri,
        }
    }

    pub fn from_stored(stored: StoredClient) -> anyhow::Result<Self> {
        let metadata: ClientMetadata = serde_json::from_str(&stored.metadata)?;
        Ok(Self::from_metadata(
            stored.client_id,
            metadata,
            stored.secret_hash,
            ClientKind::Registered,
        ))
    }

    /// A metadata-document client as the token endpoint sees it: public, and bound to its codes
    /// and refresh tokens by `client_id`, so its document need not be fetched again.
    pub fn metadata_document_at_token_endpoint(client_id: &str) -> Self {
        Self {
            client_id: client_id.to_string(),
            client_name: None,
            redirect_uris: vec![],
            auth_method: TokenEndpointAuthMethod::None,
            secret_hash: None,
            kind: ClientKind::MetadataDocument,
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            jwks: None,
            jwks_uri: None,
        }
    }

    pub fn needs_consent(&self) -> bool {
        self.kind != ClientKind::PreRegistered
    }

    pub fn may_refresh(&self) -> bool {
        self.grant_types.iter().any(|g| g == "refresh_token")
    }

    pub fn may_use_jwt_bearer(&self) -> bool {
        self.grant_types
            .iter()
            .any(|g| g == metadata::JWT_BEARER_GRANT)
    }

    /// The registered redirect URI the requested one matches, if any.
    pub fn redirect_uri_allowed(&self, requested: &str) -> bool {
        self.redirect_uris
            .iter()
            .any(|registered| redirect_uri_matches(registered, requested))
    }
}

/// Exact string comparison, except that for `http` loopback redirect URIs the port may differ
/// (RFC 8252 §7.3: native apps listen on an ephemeral port). Textual on purpose: a URL parser
/// would normalise away differences (dot segments, case, empty port) that exact matching must see.
pub fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    match (
        loopback_without_port(registered),
        loopback_without_port(requested),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// For `http://<loopback>[:port]<rest>`, the URI with the port removed.
fn loopback_without_port(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("http://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return None;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        let (inner, after) = v6.split_once(']')?;
        if !(after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())))
        {
            return None;
        }
        if !is_loopback_host(inner) {
            return None;
        }
        format!("[{inner}]")
    } else {
        let (host, port) = authority.split_once(':').unwrap_or((authority, ""));
        if !port.bytes().all(|b| b.is_ascii_digit()) || !is_loopback_host(host) {
            return None;
        }
        host.to_string()
    };
    Some(format!("http://{host}{tail}"))
}

/// The credentials a token or revocation request presented, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedCredentials {
    pub client_id: String,
    pub secret: Option<String>,
    /// `private_key_jwt`: the `client_assertion`.
    pub assertion: Option<String>,
    pub method: TokenEndpointAuthMethod,
}

/// The client credentials a token-endpoint request presents (header or form).
pub fn presented_in_request(
    headers: &axum::http::HeaderMap,
    params: &crate::http::params::Params,
) -> Result<PresentedCredentials, OAuthError> {
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("invalid"));
    if let Some(p) = assertion::presented(
        authorization.is_some(),
        params.single("client_id")?,
        params.single("client_secret")?,
        params.single("client_assertion_type")?,
        params.single("client_assertion")?,
    )? {
        return Ok(p);
    }
    presented_credentials(
        authorization,
        params.single("client_id")?,
        params.single("client_secret")?,
    )
}

/// Reads client credentials from the `Authorization` header (Basic, RFC 6749 §2.3.1: both parts
/// form-urlencoded) and the form's `client_id` / `client_secret`.
pub fn presented_credentials(
    authorization: Option<&str>,
    form_client_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<PresentedCredentials, OAuthError> {
    if let Some(header) = authorization {
        let Some(encoded) = header
            .strip_prefix("Basic ")
            .or_else(|| header.strip_prefix("basic "))
        else {
            return Err(OAuthError::invalid_client(
                "Authorization header must use the Basic scheme",
            )
            .with_basic_challenge());
        };
        let decoded = STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                OAuthError::invalid_client("Basic credentials are not valid base64")
                    .with_basic_challenge()
            })?;
        let (id, secret) = decoded.split_once(':').ok_or_else(|| {
            OAuthError::invalid_client("Basic credentials must be client_id:client_secret")
                .with_basic_challenge()
        })?;
        let id = form_decode(id);
        let secret = form_decode(secret);
        if form_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method: Basic header or client_secret, not both",
            ));
        }
        if form_client_id.is_some_and(|f| f != id) {
            return Err(OAuthError::invalid_client(
                "client_id does not match the Basic credentials",
            )
            .with_basic_challenge());
        }
        if id.is_empty() {
            return Err(
                OAuthError::invalid_client("Basic credentials carry no client_id")
                    .with_basic_challenge(),
            );
        }
        return Ok(PresentedCredentials {
            client_id: id,
            secret: Some(secret),
            assertion: None,
            method: TokenEndpointAuthMethod::ClientSecretBasic,
        });
    }
    let client_id =
        form_client_id.ok_or_else(|| OAuthError::invalid_client("client_id is required"))?;
    Ok(match form_secret {
        Some(secret) => PresentedCredentials {
            client_id: client_id.to_string(),
            secret: Some(secret.to_string()),
            assertion: None,
            method: TokenEndpointAuthMethod::ClientSecretPost,
        },
        None => PresentedCredentials {
            client_id: client_id.to_string(),
            secret: None,
            assertion: None,
            method: TokenEndpointAuthMethod::None,
        },
    })
}

/// `application/x-www-form-urlencoded` decoding of one Basic credential part.
fn form_decode(part: &str) -> String {
    let plus_as_space = part.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

/// Verifies presented credentials against the client's registered method and secret.
pub fn authenticate(client: &Client, presented: &PresentedCredentials) -> Result<(), OAuthError> {
    let fail = |description: &str| {
        let e = OAuthError::invalid_client(description.to_string());
        if client.auth_method == TokenEndpointAuthMethod::ClientSecretBasic
            || presented.method == TokenEndpointAuthMethod::ClientSecretBasic
        {
            e.with_basic_challenge()
        } else {
            e
        }
    };
    if presented.method != client.auth_method {
        return Err(fail(&format!(
            "client authentication failed: this client is registered for {} but the request used {}",
            client.auth_method.as_str(),
            presented.method.as_str()
        )));
    }
    match (client.auth_method, &client.secret_hash, &presented.secret) {
        (TokenEndpointAuthMethod::None, _, None) => Ok(()),
        (TokenEndpointAuthMethod::None, _, Some(_)) => {
            Err(fail("a public client must not send a client secret"))
        }
        // Verified by `assertion::verify` (it needs the keys and the jti store), never here.
        (TokenEndpointAuthMethod::PrivateKeyJwt, _, _) => Err(fail("client authentication failed")),
        (_, Some(stored), Some(secret)) if opaque_token::matches(secret, stored) => Ok(()),
        _ => Err(fail("client authentication failed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(method: TokenEndpointAuthMethod, secret: Option<&str>) -> Client {
        Client {
            client_id: "cli".into(),
            client_name: None,
            redirect_uris: vec![
                "https://app.example/cb".into(),
                "http://127.0.0.1:3000/callback".into(),
            ],
            auth_method: method,
            secret_hash: secret.map(opaque_token::hash),
            kind: ClientKind::Registered,
            grant_types: vec!["authorization_code".into()],
            jwks: Option::None,
            jwks_uri: Option::None,
        }
    }

    #[test]
    fn redirect_uris_match_exactly_except_loopback_ports() {
        let c = client(TokenEndpointAuthMethod::None, None);
        assert!(c.redirect_uri_allowed("https://app.example/cb"));
        assert!(
            !c.redirect_uri_allowed("https://app.example/cc"),
            "one character differs"
        );
        assert!(!c.redirect_uri_allowed("https://app.example/cb/"));
        assert!(
            !c.redirect_uri_allowed("https://app.example:8443/cb"),
            "https ports never vary"
        );
        assert!(!c.redirect_uri_allowed("https://APP.example/cb"));
        assert!(c.redirect_uri_allowed("http://127.0.0.1:3000/callback"));
        assert!(
            c.redirect_uri_allowed("http://127.0.0.1:51234/callback"),
            "loopback port may vary"
        );
        assert!(c.redirect_uri_allowed("http://127.0.0.1/callback"));
        assert!(!c.redirect_uri_allowed("http://127.0.0.1:51234/callbacK"));
        assert!(
            !c.redirect_uri_allowed("http://localhost:3000/callback"),
            "host must match"
        );
        assert!(!c.redirect_uri_allowed("http://127.0.0.1:3000@evil.example/callback"));
        assert!(!c.redirect_uri_allowed("http://127.0.0.1:3000/callback?x=1"));
        assert!(redirect_uri_matches(
            "http://[::1]:1/cb",
            "http://[::1]:2/cb"
        ));
        assert!(redirect_uri_matches(
            "http://localhost:1/cb",
            "http://localhost:9/cb"
        ));
        assert!(!redirect_uri_matches(
            "http://example.com:1/cb",
            "http://example.com:2/cb"
        ));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20client:s%3Acret+x"));
        let p = presented_credentials(Some(&header), None, None).expect("parsed");
        assert_eq!(p.client_id, "my client");
        assert_eq!(p.secret.as_deref(), Some("s:cret x"));
        assert_eq!(p.method, TokenEndpointAuthMethod::ClientSecretBasic);
        assert!(presented_credentials(Some("Bearer x"), None, None).is_err());
        assert!(presented_credentials(Some("Basic !!!"), None, None).is_err());
        let both = presented_credentials(Some(&header), None, Some("s"));
        assert_eq!(both.unwrap_err().error, "invalid_request");
        assert_eq!(
            presented_credentials(Some(&header), Some("other"), None)
                .unwrap_err()
                .error,
            "invalid_client"
        );
        assert_eq!(
            presented_credentials(None, None, None).unwrap_err().error,
            "invalid_client"
        );
    }

    #[test]
    fn each_method_is_really_verified() {
        use TokenEndpointAuthMethod::*;
        let secret = "0123456789abcdef-secret";
        let presented = |method, secret: Option<&str>| PresentedCredentials {
            client_id: "cli".into(),
            secret: secret.map(str::to_string),
            assertion: Option::None,
            method,
        };
        // none
        let public = client(None, Option::None);
        assert!(authenticate(&public, &presented(None, Option::None)).is_ok());
        assert!(authenticate(&public, &presented(ClientSecretPost, Some("x"))).is_err());
        // client_secret_basic
        let basic = client(ClientSecretBasic, Some(secret));
        assert!(authenticate(&basic, &presented(ClientSecretBasic, Some(secret))).is_ok());
        let wrong = authenticate(&basic, &presented(ClientSecretBasic, Some("wrong"))).unwrap_err();
        assert_eq!(
            (wrong.error, wrong.status.as_u16(), wrong.basic_challenge),
            ("invalid_client", 401, true)
        );
        let method = authenticate(&basic, &presented(ClientSecretPost, Some(secret))).unwrap_err();
        assert!(method
            .description
            .contains("registered for client_secret_basic"));
        assert!(authenticate(&basic, &presented(None, Option::None)).is_err());
        // client_secret_post
        let post = client(ClientSecretPost, Some(secret));
        assert!(authenticate(&post, &presented(ClientSecretPost, Some(secret))).is_ok());
        assert!(authenticate(&post, &presented(ClientSecretPost, Some("wrong"))).is_err());
        assert!(authenticate(&post, &presented(ClientSecretBasic, Some(secret))).is_err());
        assert!(
            !authenticate(&post, &presented(ClientSecretPost, Some("wrong")))
                .unwrap_err()
                .basic_challenge
        );
        // a confidential client with no stored secret never authenticates
        let broken = client(ClientSecretPost, Option::None);
        assert!(authenticate(&broken, &presented(ClientSecretPost, Some(""))).is_err());
    }
}
