use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mcpgate_llm_standin::api::{router, AppState};
use mcpgate_llm_standin::mcp::RmcpClient;

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

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("--listen {0}: only loopback addresses are allowed")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Plain text when captured, so the first line parses as `listening on http://…`.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            // rmcp's info lines dump whole server descriptions; its warnings are enough.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rmcp=warn".into()),
        )
        .init();
    match serve(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), StartError> {
    if !args.listen.ip().is_loopback() {
        return Err(StartError::NotLoopback(args.listen));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| StartError::Bind(args.listen, e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| StartError::Bind(args.listen, e))?;
    tracing::info!("listening on http://{bound}");
    let state = AppState::new(
        RmcpClient::new(Duration::from_secs(args.mcp_timeout_secs.max(1))),
        args.api_key.filter(|k| !k.is_empty()),
        Duration::from_millis(args.delta_delay_ms),
    );
    axum::serve(listener, router(Arc::new(state)))
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(StartError::Serve)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}
