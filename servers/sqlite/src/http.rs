//! The HTTP face: MCP's streamable HTTP transport at `/mcp`, behind the assertion check when the
//! gateway's issuer and this route's URL are configured.

use std::sync::Arc;

use axum::Router;
use mcpgate_assertion::axum_layer::require_assertion;
use mcpgate_assertion::Verifier;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::database::Database;
use crate::server::SqlServer;

pub struct HttpOptions {
    /// `None`: every caller is trusted (development only).
    pub verifier: Option<Arc<Verifier>>,
    /// `Host` values accepted besides the loopback names (rmcp's DNS-rebinding check).
    pub allowed_hosts: Vec<String>,
    /// Cancelled on shutdown, ending open SSE streams.
    pub shutdown: CancellationToken,
}

pub fn router(database: Arc<Database>, options: HttpOptions) -> Router {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    hosts.extend(options.allowed_hosts);
    // Stateless, JSON answers: every POST stands alone, which suits a proxy in front and plain
    // curl alike (a request that streams progress still gets SSE).
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_allowed_hosts(hosts)
        .with_cancellation_token(options.shutdown);
    let service = StreamableHttpService::new(
        move || Ok(SqlServer::new(Arc::clone(&database))),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = Router::new().nest_service("/mcp", service);
    match options.verifier {
        Some(verifier) => router.layer(axum::middleware::from_fn_with_state(
            verifier,
            require_assertion,
        )),
        None => router,
    }
}
