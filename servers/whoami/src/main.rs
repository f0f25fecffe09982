use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use mcpgate_assertion::Verifier;
use mcpgate_server_whoami::http::{router, HttpOptions};
use tokio_util::sync::CancellationToken;

/// Reference MCP server: one tool, whoami, answering from the gateway's identity assertion.
/// MCP at /mcp (streamable HTTP); every request must carry a valid x-mcpgate-assertion.
#[derive(Debug, Parser)]
#[command(version)]
struct Flags {
    /// Address to listen on (loopback; port 0 picks a free one).
    #[arg(long, env = "MCPGATE_WHOAMI_LISTEN", default_value = "127.0.0.1:18107")]
    listen: SocketAddr,
    /// The gateway's issuer, e.g. http://localhost:18080.
    #[arg(long, env = "MCPGATE_ISSUER")]
    issuer: String,
    /// This server's route URL at the gateway (the assertion's audience), e.g.
    /// http://localhost:18080/whoami.
    #[arg(long, env = "MCPGATE_ROUTE_URL")]
    route_url: String,
    /// The gateway's key set; default <issuer>/.well-known/jwks.json.
    #[arg(long, env = "MCPGATE_JWKS_URL")]
    jwks_url: Option<String>,
    /// Another Host header value to accept besides localhost/127.0.0.1/::1 (repeatable).
    #[arg(long = "allowed-host")]
    allowed_hosts: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("--listen {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("--listen {0}: only loopback addresses are allowed")]
    NotLoopback(SocketAddr),
    #[error("serving HTTP failed: {0}")]
    Serve(std::io::Error),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rmcp=warn".into()),
        )
        .init();
    match run(Flags::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(flags: Flags) -> Result<(), StartError> {
    if !flags.listen.ip().is_loopback() {
        return Err(StartError::NotLoopback(flags.listen));
    }
    let jwks_url = flags.jwks_url.unwrap_or_else(|| {
        format!(
            "{}/.well-known/jwks.json",
            flags.issuer.trim_end_matches('/')
        )
    });
    let listener = tokio::net::TcpListener::bind(flags.listen)
        .await
        .map_err(|e| StartError::Listen {
            addr: flags.listen,
            reason: e.to_string(),
        })?;
    let bound = listener.local_addr().map_err(|e| StartError::Listen {
        addr: flags.listen,
        reason: e.to_string(),
    })?;
    tracing::info!("listening on http://{bound}");
    tracing::info!(
        issuer = %flags.issuer,
        audience = %flags.route_url,
        %jwks_url,
        "serving MCP at /mcp; every request must carry a valid assertion"
    );
    let shutdown = CancellationToken::new();
    let app = router(HttpOptions {
        verifier: Arc::new(Verifier::new(flags.issuer, flags.route_url, jwks_url)),
        allowed_hosts: flags.allowed_hosts,
        shutdown: shutdown.clone(),
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            shutdown.cancel();
        })
        .await
        .map_err(StartError::Serve)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return interrupt.await.unwrap_or_default(),
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or_default();
}
