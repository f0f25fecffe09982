//! The running service: shared state, the router, the purge task and `serve`.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, ServiceExt};
use mcpgate_config::gateway::{ClientRoute, ServerRoute};
use mcpgate_config::{paths, ConfigError, GatewayConfig};
use tower_http::cors::{Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::clients::metadata_document::{DocumentError, MetadataDocuments};
use crate::clients::registration;
use crate::clients::Client;
use crate::internal_api::InternalSecret;
use crate::oauth::authorize;
use crate::oauth::metadata;
use crate::oauth::revocation;
use crate::oauth::token_endpoint;
use crate::runtime::reload::{self, LiveConfig};
use crate::runtime::signing_keys::SigningKeys;
use crate::runtime::watch::ConfigWatch;
use crate::store::Store;
use crate::upstream::mcp_routes;

/// How long a started authorization may wait for sign-in and consent.
pub const PENDING_LIFETIME_SECS: i64 = 600;
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// Everything a request needs, for one version of the gateway file. A reload builds a new one
/// (see `config_reload`) that shares the long-lived parts with the one it replaces.
pub struct AppState {
    pub config: GatewayConfig,
    pub issuer: String,
    pub issuer_https: bool,
    pub routes: Vec<ServerRoute>,
    /// Each server route's compiled policy, in the order of `routes`.
    pub route_policies: Vec<mcpgate_policy::Policy>,
    pub client_routes: Vec<ClientRoute>,
    /// The database pool: opened once, kept across reloads.
    pub store: Store,
    pub keys: Arc<SigningKeys>,
    pub static_clients: HashMap<String, Client>,
    /// The metadata-document cache: kept across reloads unless its settings change.
    pub documents: Arc<MetadataDocuments>,
    /// Upstream OAuth: the token key, the provider client, refresh locks.
    pub upstream: Arc<crate::upstream::tokens::UpstreamTokens>,
}

/// What the service derives from the gateway file alone, checked the same way at start and on
/// every reload.
pub struct ConfigParts {
    pub routes: Vec<ServerRoute>,
    pub route_policies: Vec<mcpgate_policy::Policy>,
    pub client_routes: Vec<ClientRoute>,
    pub static_clients: HashMap<String, Client>,
}

impl ConfigParts {
    pub fn derive(config: &GatewayConfig) -> Result<Self, ConfigError> {
        let routes = config.server_routes()?;
        let route_policies = routes
            .iter()
            .map(|r| {
                mcpgate_config::filter::compile_policy(
                    r.policy.as_ref(),
                    &format!("routes[{}].policy", r.index),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client_routes = config.client_routes()?;
        let static_clients = config
            .authorization_server
            .clients
            .iter()
            .map(|c| (c.client_id.clone(), Client::from_static(c)))
            .collect();
        Ok(Self {
            routes,
            route_policies,
            client_routes,
            static_clients,
        })
    }
}

pub type SharedState = Arc<AppState>;

#[derive(Debug, thiserror::Error)]
pub enum ClientLookupError {
    #[error("{0}")]
    Document(#[from] DocumentError),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
}

impl AppState {
    /// Opens the database (migrating it) and loads or creates the signing key.
    pub async fn new(config: GatewayConfig) -> anyhow::Result<Self> {
        let parts = ConfigParts::derive(&config)?;
        let keys = SigningKeys::load_or_generate(&config.authorization_server.signing_key_file)?;
        let documents = MetadataDocuments::new(
            config
                .authorization_server
                .client_id_metadata_documents
                .clone(),
        )?;
        let upstream = crate::upstream::tokens::UpstreamTokens::new(&config, &parts.routes)?;
        let store = Store::connect(&config.token_service.database_url).await?;
        Ok(Self::assemble(
            config,
            parts,
            store,
            Arc::new(keys),
            Arc::new(documents),
            Arc::new(upstream),
        ))
    }

    /// The state for `config` from its derived parts and the long-lived ones.
    pub fn assemble(
        config: GatewayConfig,
        parts: ConfigParts,
        store: Store,
        keys: Arc<SigningKeys>,
        documents: Arc<MetadataDocuments>,
        upstream: Arc<crate::upstream::tokens::UpstreamTokens>,
    ) -> Self {
        let issuer = config.authorization_server.issuer.clone();
        Self {
            issuer_https: issuer.starts_with("https://"),
            issuer,
            routes: parts.routes,
            route_policies: parts.route_policies,
            client_routes: parts.client_routes,
            store,
            keys,
            static_clients: parts.static_clients,
            documents,
            upstream,
            config,
        }
    }

    /// Any client, fetching a metadata document for an https `client_id`.
    pub async fn client(&self, client_id: &str) -> Result<Option<Client>, ClientLookupError> {
        if let Some(c) = self.static_clients.get(client_id) {
            return Ok(Some(c.clone()));
        }
        if client_id.starts_with("https://") || client_id.starts_with("http://") {
            return Ok(Some(
                self.documents.resolve(client_id).await?.as_ref().clone(),
            ));
        }
        Ok(self
            .store
            .client(client_id)
            .await?
            .map(Client::from_stored)
            .transpose()?)
    }

    /// A client as the token and revocation endpoints see it: metadata-document clients are
    /// public and need no fetch there (their codes and tokens are bound to the client_id).
    pub async fn client_at_token_endpoint(
        &self,
        client_id: &str,
    ) -> anyhow::Result<Option<Client>> {
        if let Some(c) = self.static_clients.get(client_id) {
            return Ok(Some(c.clone()));
        }
        if client_id.starts_with("https://") {
            return Ok(self
                .documents
                .enabled()
                .then(|| Client::metadata_document_at_token_endpoint(client_id)));
        }
        self.store
            .client(client_id)
            .await?
            .map(Client::from_stored)
            .transpose()
    }
}

/// The request's host as the client addressed it (`Host`, or the URI authority for HTTP/2).
pub fn request_host(headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

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
        .route(paths::SIGN_IN, get(authorize::sign_in_form_handler).post(authorize::sign_in_handler))
        .route(paths::CONSENT, get(authorize::consent_page_handler).post(authorize::consent_handler))
        .route(paths::HEALTH, get(health_handler))
        .route(paths::UPSTREAM_CALLBACK, get(crate::upstream::connect::callback_handler))
        // `<server route>/.mcpgate/mcp/connect`: any prefix, so it is matched in the fallback.
        .fallback(crate::upstream::connect::fallback_handler)
        .layer(RequestBodyLimitLayer::new(body_limit))
        // Spans carry the method and path only: query strings can hold request ids and state.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
        }))
        .with_state(state)
}

async fn health_handler(
    axum::extract::State(state): axum::extract::State<SharedState>,
) -> Response {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok"})),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "database unavailable"})),
            )
                .into_response()
        }
    }
}

/// Runs the service until SIGINT/SIGTERM, applying changes of the gateway file at
/// `config_path` (from which `config` was loaded) as they happen and on SIGHUP.
pub async fn serve(config: GatewayConfig, config_path: PathBuf) -> anyhow::Result<()> {
    let listen = config.token_service.listen;
    let internal_listen = config.internal_listen();
    // Before anything else: without the secret the internal API cannot be served at all.
    let secret = Arc::new(InternalSecret::from_env()?);
    // Before the first slow step: until it is handled, SIGHUP ends the process. The files the
    // configuration names are added once loading has created those it creates (the key).
    let mut watch =
        ConfigWatch::new([config_path.clone()]).context("cannot watch the gateway file")?;
    let files = reload::watched_files(&config_path, &config);
    let live = LiveConfig::new(AppState::new(config).await?, secret);
    watch.watch(files);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("token_service.listen: cannot listen on {listen}"))?;
    let internal_listener = tokio::net::TcpListener::bind(internal_listen)
        .await
        .with_context(|| {
            format!("token_service.internal_listen: cannot listen on {internal_listen}")
        })?;
    let state = live.state();
    tracing::info!(%listen, %internal_listen, issuer = %state.issuer, routes = state.routes.len(), "token service ready");
    // The pool outlives every reload, so the purge keeps the one it starts with.
    let store = state.store.clone();
    drop(state);
    let purge_store = store.clone();
    let purge = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_INTERVAL);
        loop {
            tick.tick().await;
            match purge_store.purge_expired(now()).await {
                Ok(n) if n > 0 => tracing::debug!(rows = n, "purged expired rows"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "purging expired rows failed"),
            }
        }
    });
    let reload = tokio::spawn(reload::run(live.clone(), config_path, watch));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let public = axum::serve(listener, live.public().into_make_service())
        .with_graceful_shutdown(wait(stopped.clone()))
        .into_future();
    let internal = axum::serve(internal_listener, live.internal().into_make_service())
        .with_graceful_shutdown(wait(stopped))
        .into_future();
    let signal = async move {
        shutdown_signal().await;
        let _ = stop.send(true);
        Ok::<(), std::io::Error>(())
    };
    let served = tokio::try_join!(public, internal, signal);
    reload.abort();
    purge.abort();
    served?;
    store.close().await;
    Ok(())
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
