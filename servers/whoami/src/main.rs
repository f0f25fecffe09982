use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use mcpgate_assertion::Verifier;
use mcpgate_demo_runtime::{bind_loopback, exit_code, init_logging, serve, ServeError};
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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_logging("info,rmcp=warn");
    exit_code(run(Flags::parse()).await)
}

async fn run(flags: Flags) -> Result<(), ServeError> {
    let listener = bind_loopback(flags.listen).await?;
    let verifier = Verifier::for_route(&flags.issuer, flags.route_url, flags.jwks_url);
    tracing::info!(
        audience = verifier.audience(),
        "serving MCP at /mcp; every request must carry a valid assertion"
    );
    let streams = CancellationToken::new();
    let app = router(HttpOptions {
        verifier: Arc::new(verifier),
        allowed_hosts: flags.allowed_hosts,
        shutdown: streams.clone(),
    });
    serve(listener, app, streams).await
}
