//! mcpgate chat: the demo's chat app behind a client route. The gateway signs the user in and
//! hands the app, on every request, the user's gateway token and a signed identity assertion; the
//! app lists the user's MCP servers and lets a language model call them with that token, so the
//! gateway's policy decides every tool call.

mod api;
mod assets;
mod caller;
mod chat;
mod chat_completions;
mod conversation;
mod denial;
mod event_stream;
mod events;
mod gateway;
mod mcp;
mod models;
mod responses;
mod tool_loop;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use mcpgate_assertion::Verifier;
use mcpgate_demo_runtime::{bind_loopback, exit_code, init_logging, serve, ServeError};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "mcpgate-chat",
    version,
    about = "The mcpgate demo's chat app (behind a client route)"
)]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, env = "MCPGATE_CHAT_LISTEN", default_value = "127.0.0.1:18110")]
    listen: SocketAddr,
    /// The gateway's public origin (routes list, disconnect, JWKS), e.g. http://localhost:18080.
    #[arg(long, env = "MCPGATE_CHAT_GATEWAY")]
    gateway: String,
    /// The gateway's issuer (default: --gateway).
    #[arg(long, env = "MCPGATE_CHAT_ISSUER")]
    issuer: Option<String>,
    /// This client route's public URL (the assertion's audience), e.g. http://localhost:18080/chat.
    #[arg(long, env = "MCPGATE_CHAT_APP_URL")]
    app_url: String,
    /// The models file (YAML).
    #[arg(long, env = "MCPGATE_CHAT_MODELS")]
    models: String,
    /// Where the app itself reaches the gateway for MCP calls (default: the servers' listed URLs).
    #[arg(long, env = "MCPGATE_CHAT_MCP_BASE")]
    mcp_base: Option<String>,
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("{flag}: `{value}` is not an http(s) URL")]
    Url { flag: &'static str, value: String },
    #[error(transparent)]
    Models(#[from] models::ModelsError),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// `value` checked as an http(s) URL, without a trailing slash.
fn url_flag(flag: &'static str, value: &str) -> Result<String, StartError> {
    let trimmed = value.trim().trim_end_matches('/').to_string();
    match reqwest::Url::parse(&trimmed) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(trimmed),
        _ => Err(StartError::Url {
            flag,
            value: value.to_string(),
        }),
    }
}

/// The path of the client route, ending in `/` (`/chat/`, or `/` at the origin's root).
fn base_path(app_url: &str) -> String {
    let path = reqwest::Url::parse(app_url)
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default();
    format!("{path}/")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_logging("info,rmcp=warn");
    exit_code(run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), StartError> {
    // The MCP client's reqwest carries no TLS provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let gateway = url_flag("--gateway", &args.gateway)?;
    let issuer = match &args.issuer {
        Some(issuer) => url_flag("--issuer", issuer)?,
        None => gateway.clone(),
    };
    let app_url = url_flag("--app-url", &args.app_url)?;
    let mcp_base = args
        .mcp_base
        .as_deref()
        .map(|b| url_flag("--mcp-base", b))
        .transpose()?;
    let models = models::load(&args.models, |name| std::env::var(name).ok())?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| StartError::Http(e.to_string()))?;
    let state = Arc::new(api::AppState {
        verifier: Verifier::new(
            issuer.clone(),
            app_url.clone(),
            format!("{gateway}/.well-known/jwks.json"),
        ),
        gateway: gateway::Gateway::new(&gateway, http.clone()),
        http,
        base_path: base_path(&app_url),
        app_url: app_url.clone(),
        models,
        mcp_base,
    });
    let listener = bind_loopback(args.listen).await?;
    tracing::info!(%gateway, %issuer, %app_url, models = state.models.len(), "serving mcpgate chat");
    // No stream outlives a request here: the token only satisfies the shared shell.
    Ok(serve(listener, api::router(state), CancellationToken::new()).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        assert_eq!(base_path("http://localhost:18080/chat"), "/chat/");
        assert_eq!(base_path("http://localhost:18080"), "/");
        assert_eq!(
            url_flag("--gateway", "http://localhost:18080/").expect("ok"),
            "http://localhost:18080"
        );
        assert_eq!(
            url_flag("--app-url", "localhost/chat")
                .expect_err("no scheme")
                .to_string(),
            "--app-url: `localhost/chat` is not an http(s) URL"
        );
    }
}
