//! Running the service: both listeners, the purge task and reloads, until a signal stops it.

use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::ServiceExt;
use mcpgate_config::GatewayConfig;

use crate::clock::now;
use crate::internal_api::InternalSecret;
use crate::runtime::reload::{self, LiveConfig};
use crate::runtime::watch::ConfigWatch;
use crate::state::AppState;

const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// Runs the service until SIGINT/SIGTERM, applying changes of the gateway file at
/// `config_path` (from which `config` was loaded) as they happen and on SIGHUP.
/// `listen_override` are the command line's listeners, already applied to `config`; each
/// reload applies them again.
pub async fn serve(
    config: GatewayConfig,
    config_path: PathBuf,
    listen_override: reload::ListenOverride,
) -> anyhow::Result<()> {
    let listen = config.token_service.listen;
    let internal_listen = config.internal_listen();
    // Before anything else: without the secret the internal API cannot be served at all.
    let secret = Arc::new(InternalSecret::from_env()?);
    // Before the first slow step: until it is handled, SIGHUP ends the process. The files the
    // configuration names are added once loading has created those it creates (the key).
    let mut watch =
        ConfigWatch::new([config_path.clone()]).context("cannot watch the gateway file")?;
    let files = reload::watched_files(&config_path, &config);
    let live =
        LiveConfig::with_listen_override(AppState::new(config).await?, secret, listen_override);
    watch.watch(files);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("token_service.listen: cannot listen on {listen}"))?;
    let internal_listener = tokio::net::TcpListener::bind(internal_listen)
        .await
        .with_context(|| {
            format!("token_service.internal_listen: cannot listen on {internal_listen}")
        })?;
    let state = live.state();
    tracing::info!(%listen, %internal_listen, issuer = %state.issuer, routes = state.routes.len(), "token service ready");
    // The pool outlives every reload, so the purge keeps the one it starts with.
    let store = state.store.clone();
    drop(state);
    let purge_store = store.clone();
    let purge = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_INTERVAL);
        loop {
            tick.tick().await;
            match purge_store.purge_expired(now()).await {
                Ok(n) if n > 0 => tracing::debug!(rows = n, "purged expired rows"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "purging expired rows failed"),
            }
        }
    });
    let reload = tokio::spawn(reload::run(live.clone(), config_path, watch));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let public = axum::serve(listener, live.public().into_make_service())
        .with_graceful_shutdown(wait(stopped.clone()))
        .into_future();
    let internal = axum::serve(internal_listener, live.internal().into_make_service())
        .with_graceful_shutdown(wait(stopped))
        .into_future();
    let signal = async move {
        shutdown_signal().await;
        let _ = stop.send(true);
        Ok::<(), std::io::Error>(())
    };
    let served = tokio::try_join!(public, internal, signal);
    reload.abort();
    purge.abort();
    served?;
    store.close().await;
    Ok(())
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
