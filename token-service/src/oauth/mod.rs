//! The OAuth 2.1 authorization server: the authorization endpoint (sign-in and consent), the
//! token endpoint, PKCE, access tokens, opaque tokens, revocation, the discovery documents and
//! server routes as resources.

pub mod access_token;
pub mod authorize;
pub mod error;
pub mod id_jag;
pub mod jose;
pub mod metadata;
pub mod opaque_token;
pub mod pkce;
pub mod resources;
pub mod revocation;
pub mod token_endpoint;
