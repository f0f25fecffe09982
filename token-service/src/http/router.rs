//! The public listener's router: every endpoint MCP clients, browsers and apps reach.

use axum::http::Method;
use axum::routing::{get, post};
use axum::Router;
use mcpgate_config::paths;
use tower_http::cors::{Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;

use crate::clients::registration;
use crate::http::health;
use crate::identity::oidc;
use crate::identity::sign_in;
use crate::oauth::{authorize, metadata, revocation, token_endpoint};
use crate::state::SharedState;
use crate::telemetry::{self, Listener};
use crate::upstream::{connect, mcp_routes};

pub fn router(state: SharedState) -> Router {
    let read_cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::OPTIONS])
        .allow_headers(Any);
    let post_cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers(Any);
    let well_known = Router::new()
        .route(
            paths::AUTHORIZATION_SERVER_METADATA,
            get(metadata::authorization_server_handler),
        )
        .route(
            paths::OPENID_CONFIGURATION,
            get(metadata::openid_configuration_handler),
        )
        .route(
            paths::PROTECTED_RESOURCE_METADATA,
            get(metadata::protected_resource_root_handler),
        )
        .route(
            &format!("{}/{{*path}}", paths::PROTECTED_RESOURCE_METADATA),
            get(metadata::protected_resource_handler),
        )
        .route(paths::JWKS, get(metadata::jwks_handler))
        .layer(read_cors);
    let mut api = Router::new()
        .route(paths::TOKEN, post(token_endpoint::handler))
        .route(paths::REVOKE, post(revocation::handler));
    if state
        .config
        .authorization_server
        .dynamic_registration
        .enabled
    {
        api = api.route(paths::REGISTER, post(registration::handler));
    }
    let api = api.layer(post_cors);
    // Called with `Authorization: Bearer`, which a `*` allow-headers answer does not cover.
    let mcp = Router::new()
        .route(paths::MCP_ROUTES, get(mcp_routes::list_handler))
        .route(
            paths::MCP_ROUTES_DISCONNECT,
            post(mcp_routes::disconnect_handler),
        )
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers(tower_http::cors::AllowHeaders::mirror_request()),
        );
    let body_limit = state
        .config
        .authorization_server
        .dynamic_registration
        .max_metadata_bytes
        .max(64 * 1024)
        + 1;
    Router::new()
        .merge(well_known)
        .merge(api)
        .merge(mcp)
        .route(paths::AUTHORIZE, get(authorize::authorize_handler))
        .route(
            paths::SIGN_IN,
            get(sign_in::sign_in_form_handler).post(sign_in::sign_in_handler),
        )
        .route(
            paths::CONSENT,
            get(authorize::consent_page_handler).post(authorize::consent_handler),
        )
        .route(paths::HEALTH, get(health::handler))
        .route(
            &format!(
                "{}/{{provider}}{}",
                paths::OIDC_PREFIX,
                paths::OIDC_START_SUFFIX
            ),
            post(oidc::routes::start_handler),
        )
        .route(
            &format!(
                "{}/{{provider}}{}",
                paths::OIDC_PREFIX,
                paths::OIDC_CALLBACK_SUFFIX
            ),
            get(oidc::routes::callback_handler),
        )
        .route(
            paths::SIGN_OUT,
            get(oidc::routes::sign_out_page_handler).post(oidc::routes::sign_out_handler),
        )
        .route(paths::SIGNED_OUT, get(oidc::routes::signed_out_handler))
        .route(paths::UPSTREAM_CALLBACK, get(connect::callback_handler))
        // `<server route>/.mcpgate/mcp/connect`: any prefix, so it is matched in the fallback.
        .fallback(connect::fallback_handler)
        .layer(RequestBodyLimitLayer::new(body_limit))
        // Spans carry the method, path and route template only: query strings can hold request
        // ids and state.
        .layer(axum::middleware::from_fn_with_state(
            telemetry::Observed {
                listener: Listener::Public,
                metrics: state.metrics.clone(),
            },
            telemetry::observe,
        ))
        .with_state(state)
}
