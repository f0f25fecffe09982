//! Sign-in through OpenID Connect providers (`identity.oidc`): the provider client, the claims
//! that make an mcpgate identity, and the re-check that keeps a session bounded by its provider.
//! See docs/operations.md ("Signing in through an OpenID Connect provider").

pub mod claims;
pub mod provider;
pub mod recheck;
pub mod routes;
pub mod session;
pub mod sign_in;

use mcpgate_config::GatewayConfig;

use crate::http::pages::SignInChoices;

/// What the sign-in page offers under `config`.
pub fn sign_in_choices(config: &GatewayConfig) -> SignInChoices {
    SignInChoices {
        built_in: config.token_service.users_file.is_some(),
        providers: config
            .identity
            .oidc
            .iter()
            .map(|p| (p.id.clone(), p.display_name.clone()))
            .collect(),
    }
}
