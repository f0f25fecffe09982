//! Sign-in through OpenID Connect providers (`identity.oidc`): the provider client, the claims
//! that make an mcpgate identity, and the re-check that keeps a session bounded by its provider.
//! See docs/operations.md ("Signing in through an OpenID Connect provider").

pub mod claims;
pub mod provider;
pub mod recheck;
