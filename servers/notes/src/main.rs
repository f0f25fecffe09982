//! mcpgate-server-notes: a reference MCP server for the demo. Its tools `search` and `fetch` read
//! a Notion-like notes provider with each user's own provider token, which the gateway swaps into
//! the request (`upstream_oauth2` route); the server never sees the user's gateway token.

mod app;
mod notion;
mod provider;
mod tools;

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use mcpgate_assertion::Verifier;
use mcpgate_demo_runtime::{bind_loopback, exit_code, init_logging, serve, ServeError};
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use tokio_util::sync::CancellationToken;

use crate::provider::Provider;

#[derive(Debug, Parser)]
#[command(
    name = "mcpgate-server-notes",
    version,
    about = "MCP server (streamable HTTP at /mcp) with tools search and fetch over a Notion-like notes provider"
)]
struct Args {
    /// Address to listen on (loopback only; port 0 picks a free port).
    #[arg(long, env = "NOTES_LISTEN", default_value = "127.0.0.1:18105")]
    listen: SocketAddr,
    /// The notes provider's API origin, e.g. http://127.0.0.1:18106.
    #[arg(long, env = "NOTES_PROVIDER_API")]
    provider_api: String,
    /// The gateway's issuer; with --route-url, every MCP request needs a valid x-mcpgate-assertion.
    #[arg(long, env = "MCPGATE_ISSUER", requires = "route_url")]
    issuer: Option<String>,
    /// This server's route URL at the gateway (the assertion's audience), e.g. http://localhost:18080/notes.
    #[arg(long, env = "MCPGATE_ROUTE_URL", requires = "issuer")]
    route_url: Option<String>,
    /// The gateway's JWKS (default: <issuer>/.well-known/jwks.json).
    #[arg(long, env = "MCPGATE_JWKS_URL", requires = "issuer")]
    jwks_url: Option<String>,
    /// Host header values accepted on /mcp (DNS-rebinding protection); default: loopback names.
    #[arg(
        long = "allowed-host",
        env = "NOTES_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Config(#[from] provider::ConfigError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_logging("info");
    exit_code(run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), StartError> {
    let listener = bind_loopback(args.listen).await?;
    let provider = Arc::new(Provider::new(&args.provider_api)?);
    let verifier = match (&args.issuer, &args.route_url) {
        (Some(issuer), Some(route_url)) => Some(Arc::new(Verifier::for_route(
            issuer,
            route_url.clone(),
            args.jwks_url.clone(),
        ))),
        _ => None,
    };
    tracing::info!(provider = provider.origin(), "serving MCP at /mcp");
    match &verifier {
        Some(v) => tracing::info!(audience = v.audience(), "requests need a valid assertion"),
        None => tracing::warn!(
            "no --issuer/--route-url: any caller is trusted (no x-mcpgate-assertion check)"
        ),
    }

    let streams = CancellationToken::new();
    let mut config =
        StreamableHttpServerConfig::default().with_cancellation_token(streams.child_token());
    if !args.allowed_hosts.is_empty() {
        config = config.with_allowed_hosts(args.allowed_hosts.clone());
    }
    let app = app::router(provider, verifier, config);
    Ok(serve(listener, app, streams).await?)
}
