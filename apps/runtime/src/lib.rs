//! The process shell of the demo's programs (the chat app, the LLM stand-in, the reference MCP
//! servers): logs to stderr, a listener that only binds loopback (the demo and the tests never
//! expose anything beyond 127.0.0.1), and serving one axum router until SIGINT or SIGTERM.

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Why a program could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--listen {0}: only loopback addresses are allowed")]
    NotLoopback(SocketAddr),
    #[error("--listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving HTTP failed: {0}")]
    Serve(std::io::Error),
}

/// Logs to stderr, filtered by `RUST_LOG` or else `default_filter`; plain text (no colours) when
/// stderr is not a terminal, so the first line parses as `listening on http://…`.
pub fn init_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
}

/// Binds `addr`, which must be a loopback address (port 0 picks a free port), and logs
/// `listening on http://<bound address>` as the first line tests and scripts wait for.
pub async fn bind_loopback(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    if !addr.ip().is_loopback() {
        return Err(ServeError::NotLoopback(addr));
    }
    let bind = |source| ServeError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind)?;
    let bound = listener.local_addr().map_err(bind)?;
    tracing::info!("listening on http://{bound}");
    Ok(listener)
}

/// Serves `router` until SIGINT or SIGTERM, then cancels `streams` (so open MCP or SSE streams end
/// instead of holding the graceful shutdown open) and waits for requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    streams: CancellationToken,
) -> Result<(), ServeError> {
    serve_until(listener, router, streams, shutdown_signal()).await
}

async fn serve_until(
    listener: TcpListener,
    router: axum::Router,
    streams: CancellationToken,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            stop.await;
            tracing::info!("shutting down");
            streams.cancel();
        })
        .await
        .map_err(ServeError::Serve)
}

/// Resolves on SIGINT or SIGTERM (on SIGINT alone where SIGTERM cannot be watched).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = interrupt => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = interrupt.await;
}

/// Runs `main` to an exit code, logging its error (typed errors name the flag at fault).
pub fn exit_code<E: std::fmt::Display>(outcome: Result<(), E>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_loopback_addresses_are_bound() {
        let any: SocketAddr = "0.0.0.0:0".parse().expect("addr");
        assert!(matches!(
            bind_loopback(any).await,
            Err(ServeError::NotLoopback(_))
        ));
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let listener = bind_loopback(loopback).await.expect("binds");
        assert!(listener.local_addr().expect("addr").ip().is_loopback());
    }

    #[tokio::test]
    async fn stopping_cancels_the_open_streams_and_returns() {
        let listener = bind_loopback("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("binds");
        let streams = CancellationToken::new();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_until(
            listener,
            axum::Router::new(),
            streams.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        let _ = stop.send(());
        server.await.expect("joins").expect("serves until stopped");
        assert!(streams.is_cancelled());
    }
}
