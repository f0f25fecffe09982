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
    #[error("--listen must be a loopback address such as 127.0.0.1:18105, not {0}")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] provider::ConfigError),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), StartError> {
    if !args.listen.ip().is_loopback() {
        return Err(StartError::NotLoopback(args.listen));
    }
    let provider = Arc::new(Provider::new(&args.provider_api)?);
    let verifier = match (&args.issuer, &args.route_url) {
        (Some(issuer), Some(route_url)) => {
            let issuer = issuer.trim_end_matches('/');
            let jwks_url = args
                .jwks_url
                .clone()
                .unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json"));
            Some(Arc::new(Verifier::new(issuer, route_url, jwks_url)))
        }
        _ => None,
    };

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: args.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: args.listen,
        source,
    })?;
    tracing::info!("listening on http://{addr}");
    tracing::info!(
        provider = provider.origin(),
        "MCP endpoint http://{addr}/mcp"
    );
    match &verifier {
        Some(v) => tracing::info!(audience = v.audience(), "requests need a valid assertion"),
        None => tracing::warn!(
            "no --issuer/--route-url: any caller is trusted (no x-mcpgate-assertion check)"
        ),
    }

    let shutdown = CancellationToken::new();
    let mut config =
        StreamableHttpServerConfig::default().with_cancellation_token(shutdown.child_token());
    if !args.allowed_hosts.is_empty() {
        config = config.with_allowed_hosts(args.allowed_hosts.clone());
    }
    let app = app::router(provider, verifier, config);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop_signal().await;
            tracing::info!("shutting down");
            // Ends the open MCP streams so the graceful shutdown does not wait for them.
            shutdown.cancel();
        })
        .await
        .map_err(StartError::Serve)
}

async fn stop_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
