//! The HTTP face: MCP's streamable HTTP transport at `/mcp`, every request behind the assertion
//! check.

use std::sync::Arc;

use axum::Router;
use mcpgate_assertion::axum_layer::require_assertion;
use mcpgate_assertion::Verifier;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::server::WhoamiServer;

pub struct HttpOptions {
    pub verifier: Arc<Verifier>,
    /// `Host` values accepted besides the loopback names (rmcp's DNS-rebinding check).
    pub allowed_hosts: Vec<String>,
    /// Cancelled on shutdown, ending open SSE streams.
    pub shutdown: CancellationToken,
}

pub fn router(options: HttpOptions) -> Router {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    hosts.extend(options.allowed_hosts);
    // Stateless, JSON answers: the identity is per request, and a proxy in front sees plain
    // request/response exchanges.
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_allowed_hosts(hosts)
        .with_cancellation_token(options.shutdown);
    let service = StreamableHttpService::new(
        || Ok(WhoamiServer::default()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(
            options.verifier,
            require_assertion,
        ))
}
