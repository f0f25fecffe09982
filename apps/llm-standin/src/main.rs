use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mcpgate_demo_runtime::{bind_loopback, exit_code, init_logging, serve, ServeError};
use mcpgate_llm_standin::api::{router, AppState};
use mcpgate_llm_standin::mcp::RmcpClient;
use tokio_util::sync::CancellationToken;

/// A local stand-in for OpenAI's API (Responses with remote MCP tools, chat completions) that
/// picks tools by a deterministic playbook.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on (loopback; port 0 picks a free port).
    #[arg(long, env = "STANDIN_LISTEN", default_value = "127.0.0.1:18111")]
    listen: SocketAddr,
    /// Require `Authorization: Bearer <KEY>` on every request (any key is accepted without it).
    #[arg(long, env = "STANDIN_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Pause after each streamed word of an answer, in milliseconds (0: no pause).
    #[arg(long, env = "STANDIN_DELTA_DELAY_MS", default_value_t = 25)]
    delta_delay_ms: u64,
    /// Limit for each MCP step (connect, list, call), in seconds.
    #[arg(long, env = "STANDIN_MCP_TIMEOUT_SECS", default_value_t = 30)]
    mcp_timeout_secs: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // rmcp's info lines dump whole server descriptions; its warnings are enough.
    init_logging("info,rmcp=warn");
    exit_code(serve_standin(Args::parse()).await)
}

async fn serve_standin(args: Args) -> Result<(), ServeError> {
    let listener = bind_loopback(args.listen).await?;
    let state = AppState::new(
        RmcpClient::new(Duration::from_secs(args.mcp_timeout_secs.max(1))),
        args.api_key.filter(|k| !k.is_empty()),
        Duration::from_millis(args.delta_delay_ms),
    );
    // No stream outlives a request here: the token only satisfies the shared shell.
    serve(listener, router(Arc::new(state)), CancellationToken::new()).await
}
