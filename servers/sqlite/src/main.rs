use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mcpgate_assertion::Verifier;
use mcpgate_demo_runtime::{bind_loopback, exit_code, init_logging, serve, ServeError};
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
    #[error(transparent)]
    Serve(#[from] ServeError),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_logging("info,rmcp=warn");
    exit_code(run(Flags::parse()).await)
}

async fn run(flags: Flags) -> Result<(), StartError> {
    let limits = Limits {
        max_rows: flags.max_rows as usize,
        time_limit: Duration::from_secs(flags.time_limit_secs.into()),
    };
    let database = Arc::new(Database::open(&flags.database, limits)?);
    let verifier = match (flags.issuer, flags.route_url) {
        (Some(issuer), Some(route_url)) => Some(Arc::new(Verifier::for_route(
            &issuer,
            route_url,
            flags.jwks_url,
        ))),
        _ => None,
    };
    let listener = bind_loopback(flags.listen).await?;
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
    let streams = CancellationToken::new();
    let app = router(
        database,
        HttpOptions {
            verifier,
            allowed_hosts: flags.allowed_hosts,
            shutdown: streams.clone(),
        },
    );
    Ok(serve(listener, app, streams).await?)
}
