//! The state every request sees: one version of the gateway file and what the service derives
//! from it, beside the long-lived parts (the database, keys, caches) a reload carries over.

use std::collections::HashMap;
use std::sync::Arc;

use mcpgate_config::gateway::{ClientRoute, ServerRoute};
use mcpgate_config::{ConfigError, GatewayConfig};

use crate::clients::metadata_document::MetadataDocuments;
use crate::clients::{Client, ClientLookupError};
use crate::runtime::signing_keys::SigningKeys;
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::upstream::tokens::UpstreamTokens;

/// Everything a request needs, for one version of the gateway file. A reload builds a new one
/// (see `runtime::reload`) that shares the long-lived parts with the one it replaces.
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
    pub upstream: Arc<UpstreamTokens>,
    /// OpenID Connect providers' discovered metadata and keys: kept across reloads.
    pub oidc: Arc<crate::identity::oidc::provider::OidcProviders>,
    /// The process's metrics: created once, kept across reloads.
    pub metrics: Arc<Metrics>,
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
        let upstream = UpstreamTokens::new(&config, &parts.routes)?;
        let store = Store::connect(&config.token_service.database_url).await?;
        let metrics = Arc::new(Metrics::new(Some(store.pool().clone())));
        Ok(Self::assemble(
            config,
            parts,
            store,
            Arc::new(keys),
            Arc::new(documents),
            Arc::new(upstream),
            Arc::new(crate::identity::oidc::provider::OidcProviders::new()?),
            metrics,
        ))
    }

    /// The state for `config` from its derived parts and the long-lived ones.
    #[allow(clippy::too_many_arguments)] // one per long-lived part, each named at the call
    pub fn assemble(
        config: GatewayConfig,
        parts: ConfigParts,
        store: Store,
        keys: Arc<SigningKeys>,
        documents: Arc<MetadataDocuments>,
        upstream: Arc<UpstreamTokens>,
        oidc: Arc<crate::identity::oidc::provider::OidcProviders>,
        metrics: Arc<Metrics>,
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
            oidc,
            metrics,
            config,
        }
    }

    /// What a provider re-check of a session needs (see `identity::oidc::session`).
    pub fn oidc_check(&self, t: i64) -> crate::identity::oidc::session::CheckContext<'_> {
        crate::identity::oidc::session::CheckContext {
            store: &self.store,
            cipher: self.upstream.cipher().ok(),
            providers: &self.oidc,
            identity: &self.config.identity,
            leeway_secs: crate::clock::secs(self.config.authorization_server.leeway),
            keep_until: t + crate::clock::secs(
                self.config.authorization_server.refresh_token_lifetime,
            ),
        }
    }

    /// Any client, fetching a metadata document for an https `client_id`.
    pub async fn client(&self, client_id: &str) -> Result<Option<Client>, ClientLookupError> {
        if let Some(c) = self.static_clients.get(client_id) {
            return Ok(Some(c.clone()));
        }
        if client_id.starts_with("https://") || client_id.starts_with("http://") {
            return Ok(Some(
                self.documents
                    .resolve(client_id, &self.metrics)
                    .await?
                    .as_ref()
                    .clone(),
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
