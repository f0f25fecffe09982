use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mcpgate_assertion::Verifier;
use mcpgate_server_sqlite::database::{Database, Limits, OpenError};
use mcpgate_server_sqlite::http::{router, HttpOptions};
use tokio_util::sync::CancellationToken;

/// Reference MCP server: read-only SQL over one SQLite database, at /mcp (streamable HTTP).
#[derive(Debug, Parser)]
#[command(version)]
struct Flags {
    /// Address to listen on (loopback; port 0 picks a free one).
    #[arg(long, env = "MCPGATE_SQLITE_LISTEN", default_value = "127.0.0.1:18104")]
    listen: SocketAddr,
    /// The SQLite database to serve; it must exist and is opened read-only.
    #[arg(long, env = "MCPGATE_SQLITE_DATABASE")]
    database: PathBuf,
    /// The most rows one query returns (the rest is cut off, `truncated: true`).
    #[arg(long, env = "MCPGATE_SQLITE_MAX_ROWS", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_rows: u32,
    /// Longest a query may run, in seconds, before it is stopped.
    #[arg(long, env = "MCPGATE_SQLITE_TIME_LIMIT_SECS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=600))]
    time_limit_secs: u32,
    /// The gateway's issuer (e.g. http://localhost:18080). With --route-url, every request must
    /// carry a valid x-mcpgate-assertion; without them, any caller is trusted.
    #[arg(long, env = "MCPGATE_ISSUER", requires = "route_url")]
    issuer: Option<String>,
    /// This server's route URL at the gateway (the assertion's audience), e.g.
    /// http://localhost:18080/sqlite.
    #[arg(long, env = "MCPGATE_ROUTE_URL", requires = "issuer")]
    route_url: Option<String>,
    /// The gateway's key set; default <issuer>/.well-known/jwks.json.
    #[arg(long, env = "MCPGATE_JWKS_URL", requires = "issuer")]
    jwks_url: Option<String>,
    /// Another Host header value to accept besides localhost/127.0.0.1/::1 (repeatable), e.g.
    /// the name the gateway uses for this server.
    #[arg(long = "allowed-host")]
    allowed_hosts: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Database(#[from] OpenError),
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
    let limits = Limits {
        max_rows: flags.max_rows as usize,
        time_limit: Duration::from_secs(flags.time_limit_secs.into()),
    };
    let database = Arc::new(Database::open(&flags.database, limits)?);
    let verifier = match (flags.issuer, flags.route_url) {
        (Some(issuer), Some(route_url)) => {
            let jwks_url = flags.jwks_url.unwrap_or_else(|| {
                format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/'))
            });
            Some(Arc::new(Verifier::new(issuer, route_url, jwks_url)))
        }
        _ => None,
    };
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
    tracing::info!(database = %flags.database.display(), max_rows = limits.max_rows, "serving MCP at /mcp");
    match &verifier {
        Some(verifier) => tracing::info!(
            audience = verifier.audience(),
            "every request must carry a valid assertion"
        ),
        None => {
            tracing::warn!("no --issuer/--route-url: trusting any caller (development only)")
        }
    }
    let shutdown = CancellationToken::new();
    let app = router(
        database,
        HttpOptions {
            verifier,
            allowed_hosts: flags.allowed_hosts,
            shutdown: shutdown.clone(),
        },
    );
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
