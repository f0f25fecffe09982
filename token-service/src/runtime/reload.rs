//! Applying a changed gateway file to the running token service, without a restart.
//!
//! The new file is loaded and everything the service derives from it is built exactly as at
//! start ([`ConfigParts::derive`], the signing key, the metadata-document settings, the upstream
//! token key). Only when all of it succeeds is the new [`AppState`] swapped in, together with the
//! routers built on it: a request is routed and answered by the configuration that was current
//! when it arrived, so requests in flight (SSE streams included) finish on the old one. A file
//! that does not validate changes nothing; the error names the field.
//!
//! The long-lived parts are carried over: the database pool always, the metadata-document cache
//! unless its settings change, the upstream refresh locks and discovery cache unless the token
//! key or a server route changes. Settings that need a restart (the listeners, the database) keep
//! their running values and are reported.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use mcpgate_config::{ConfigError, GatewayConfig};
use serde_json::Value;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use crate::clients::metadata_document::MetadataDocuments;
use crate::http::router::router;
use crate::internal_api::{self, InternalSecret};
use crate::runtime::signing_keys::SigningKeys;
use crate::runtime::watch::{ConfigWatch, Trigger};
use crate::state::{AppState, ConfigParts, SharedState};
use crate::upstream::tokens::UpstreamTokens;

/// At most this many changed settings are named in the reload log line.
const MAX_LISTED_CHANGES: usize = 12;

/// Listeners given on the command line (`serve --listen --internal-listen`), which replace the
/// gateway file's at start and on every reload: replicas on one host share one file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenOverride {
    pub listen: Option<SocketAddr>,
    pub internal_listen: Option<SocketAddr>,
}

impl ListenOverride {
    pub fn is_none(&self) -> bool {
        self.listen.is_none() && self.internal_listen.is_none()
    }

    /// `config` with these listeners (see [`GatewayConfig::with_listen_override`]).
    pub fn apply(&self, config: GatewayConfig) -> Result<GatewayConfig, ConfigError> {
        if self.is_none() {
            return Ok(config);
        }
        config.with_listen_override(self.listen, self.internal_listen)
    }
}

/// The configuration in effect and the routers built on it, replaced together.
pub struct LiveConfig {
    current: RwLock<Arc<Snapshot>>,
    secret: Arc<InternalSecret>,
    listen: ListenOverride,
}

struct Snapshot {
    state: SharedState,
    public: Router,
    internal: Router,
}

impl LiveConfig {
    pub fn new(state: AppState, secret: Arc<InternalSecret>) -> Arc<Self> {
        Self::with_listen_override(state, secret, ListenOverride::default())
    }

    /// Like `new`, for a service whose listeners came from the command line: every reload
    /// applies them to the file it loads.
    pub fn with_listen_override(
        state: AppState,
        secret: Arc<InternalSecret>,
        listen: ListenOverride,
    ) -> Arc<Self> {
        let snapshot = Snapshot::new(Arc::new(state), &secret);
        Arc::new(Self {
            current: RwLock::new(Arc::new(snapshot)),
            secret,
            listen,
        })
    }

    /// The state new requests get.
    pub fn state(&self) -> SharedState {
        self.snapshot().state.clone()
    }

    /// The public listener's service: each request goes to the router current when it arrives.
    pub fn public(self: &Arc<Self>) -> LiveRouter {
        LiveRouter {
            live: self.clone(),
            internal: false,
        }
    }

    /// The internal listener's service.
    pub fn internal(self: &Arc<Self>) -> LiveRouter {
        LiveRouter {
            live: self.clone(),
            internal: true,
        }
    }

    /// Makes `state` the one new requests get.
    pub fn replace(&self, state: AppState) {
        let snapshot = Arc::new(Snapshot::new(Arc::new(state), &self.secret));
        // A panic elsewhere cannot leave the slot half-written: it only ever holds a whole Arc.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Snapshot {
    fn new(state: SharedState, secret: &Arc<InternalSecret>) -> Self {
        Self {
            public: router(state.clone()),
            internal: internal_api::router(state.clone(), secret.clone()),
            state,
        }
    }
}

/// A listener's service over [`LiveConfig`]; the routers themselves are built per
/// configuration, so what they decide at build time (which endpoints exist, body limits)
/// follows a reload too.
#[derive(Clone)]
pub struct LiveRouter {
    live: Arc<LiveConfig>,
    internal: bool,
}

impl Service<Request> for LiveRouter {
    type Response = Response;
    type Error = Infallible;
    type Future = Oneshot<Router, Request>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let snapshot = self.live.snapshot();
        let router = if self.internal {
            &snapshot.internal
        } else {
            &snapshot.public
        };
        router.clone().oneshot(request)
    }
}

/// What a reload changed, for its log line.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// The settings whose values changed (paths such as `routes[0].policy.allow.domain.is`),
    /// never their values.
    pub changed: Vec<String>,
    /// Changed settings that need a restart; their running values were kept.
    pub restart_only: Vec<&'static str>,
    /// The new signing key's `kid` when the key was rotated.
    pub rotated_key: Option<String>,
    /// The files the new configuration reads at load, to watch from now on.
    pub files: Vec<PathBuf>,
}

/// The gateway file and the files it names that are read only at load: the signing key and the
/// upstream OAuth client secrets. A change of any of them is a reason to reload.
pub fn watched_files(path: &Path, config: &GatewayConfig) -> Vec<PathBuf> {
    let secrets = config.routes.iter().filter_map(|r| {
        r.mcp
            .server
            .as_ref()
            .and_then(|s| s.upstream_oauth2.as_ref())
            .and_then(|u| u.client_secret_file.clone())
    });
    [
        path.to_path_buf(),
        config.authorization_server.signing_key_file.clone(),
    ]
    .into_iter()
    .chain(secrets)
    .collect()
}

/// Loads the gateway file at `path` and, when it is valid, makes it the configuration new
/// requests get. On error nothing changes.
pub fn reload(live: &LiveConfig, path: &Path) -> Result<Reloaded, ConfigError> {
    // The command line's listeners again, so they are neither lost nor reported as changed.
    let config = live.listen.apply(GatewayConfig::load(path)?)?;
    let (state, mut reloaded) = reconfigure(&live.state(), config, crate::clock::now())?;
    reloaded.files = watched_files(path, &state.config);
    live.replace(state);
    Ok(reloaded)
}

/// The state for `config`, carrying over what `running` holds that outlives a configuration.
/// `now` is when the service starts signing with a rotated key.
pub fn reconfigure(
    running: &AppState,
    mut config: GatewayConfig,
    now: i64,
) -> Result<(AppState, Reloaded), ConfigError> {
    let restart_only = keep_restart_only(&running.config, &mut config);
    let parts = ConfigParts::derive(&config)?;

    let key_file = &config.authorization_server.signing_key_file;
    let next = SigningKeys::load_or_generate(key_file)
        .map_err(|e| setting_error("authorization_server.signing_key_file", e))?;
    let (keys, rotated_key) = if next.kid() == running.keys.kid() {
        (running.keys.clone(), None)
    } else {
        let kid = next.kid().to_string();
        let until = now + retired_key_lifetime(&running.config, &config);
        (Arc::new(running.keys.rotate(next, until, now)), Some(kid))
    };

    let documents_settings = &config.authorization_server.client_id_metadata_documents;
    let documents = if same_json(
        documents_settings,
        &running
            .config
            .authorization_server
            .client_id_metadata_documents,
    ) {
        running.documents.clone()
    } else {
        Arc::new(
            MetadataDocuments::new(documents_settings.clone()).map_err(|e| {
                setting_error("authorization_server.client_id_metadata_documents", e)
            })?,
        )
    };

    // New provider settings or upstreams invalidate the discovery cache; the refresh locks
    // go with it, which is safe: the lease in each token's row still allows one refresh.
    let upstream = if config.token_service.upstream_token_key_file
        == running.config.token_service.upstream_token_key_file
        && config.token_service.upstream_request_timeout
            == running.config.token_service.upstream_request_timeout
        && parts.routes == running.routes
    {
        running.upstream.clone()
    } else {
        Arc::new(
            UpstreamTokens::new(&config, &parts.routes)
                .map_err(|e| setting_error("token_service.upstream_token_key_file", e))?,
        )
    };

    let changed = changed_settings(&running.config, &config);
    let state = AppState::assemble(
        config,
        parts,
        running.store.clone(),
        keys,
        documents,
        upstream,
        running.oidc.clone(),
        running.metrics.clone(),
    );
    Ok((
        state,
        Reloaded {
            changed,
            restart_only,
            rotated_key,
            files: Vec::new(),
        },
    ))
}

/// Reloads on every trigger of `watch` and logs the outcome, until the task is dropped.
pub async fn run(live: Arc<LiveConfig>, path: PathBuf, mut watch: ConfigWatch) {
    loop {
        let trigger = watch.next().await;
        match reload(&live, &path) {
            Ok(reloaded) => {
                log_reloaded(&live.state(), trigger, &reloaded);
                watch.watch(reloaded.files);
            }
            Err(e) => log_rejected(&path, trigger, &e),
        }
    }
}

fn log_reloaded(state: &AppState, trigger: Trigger, reloaded: &Reloaded) {
    if !reloaded.restart_only.is_empty() {
        tracing::warn!(
            settings = %reloaded.restart_only.join(", "),
            "gateway file: these settings take effect only after a restart; their running values stay in effect"
        );
    }
    let changed = if reloaded.changed.is_empty() {
        "nothing".to_string()
    } else if reloaded.changed.len() > MAX_LISTED_CHANGES {
        format!(
            "{}, and {} more",
            reloaded.changed[..MAX_LISTED_CHANGES].join(", "),
            reloaded.changed.len() - MAX_LISTED_CHANGES
        )
    } else {
        reloaded.changed.join(", ")
    };
    tracing::info!(
        trigger = trigger.as_str(),
        server_routes = state.routes.len(),
        client_routes = state.client_routes.len(),
        signing_key = %state.keys.kid(),
        rotated_key = reloaded.rotated_key.is_some(),
        %changed,
        "gateway file reloaded"
    );
}

pub fn log_rejected(path: &Path, trigger: Trigger, e: &ConfigError) {
    tracing::error!(
        trigger = trigger.as_str(),
        file = %path.display(),
        field = %e.field,
        reason = %e.reason,
        "gateway file not applied: the running configuration stays in effect"
    );
}

/// Puts the running values of the settings that need a restart back into `next`; returns the
/// names of those that differed.
fn keep_restart_only(running: &GatewayConfig, next: &mut GatewayConfig) -> Vec<&'static str> {
    let mut kept = Vec::new();
    let (was, ts) = (&running.token_service, &mut next.token_service);
    if ts.listen != was.listen {
        kept.push("token_service.listen");
        ts.listen = was.listen;
    }
    if ts.database_url != was.database_url {
        kept.push("token_service.database_url");
        ts.database_url.clone_from(&was.database_url);
    }
    // Compared as the address in use: it defaults to `listen` with the port plus one.
    if next.internal_listen() != running.internal_listen() {
        kept.push("token_service.internal_listen");
        next.token_service.internal_listen = running.token_service.internal_listen;
    }
    kept
}

/// How long a replaced signing key stays published and accepted: the longest any token it
/// signed can still be valid (access tokens under either file's lifetime, assertions), plus the
/// clock skew verifiers tolerate.
fn retired_key_lifetime(running: &GatewayConfig, next: &GatewayConfig) -> i64 {
    let (a, b) = (&running.authorization_server, &next.authorization_server);
    let tokens = crate::clock::secs(a.access_token_lifetime.max(b.access_token_lifetime));
    tokens.max(crate::internal_api::assertion::LIFETIME_SECS)
        + crate::clock::secs(a.leeway.max(b.leeway))
}

/// A setting whose file could not be used; `e`'s message starts with the field it names.
fn setting_error(field: &str, e: anyhow::Error) -> ConfigError {
    let message = format!("{e:#}");
    match message.split_once(": ") {
        Some((named, reason)) if named.starts_with(field) => ConfigError::new(named, reason),
        _ => ConfigError::new(field, message),
    }
}

fn same_json<T: serde::Serialize>(a: &T, b: &T) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

/// The paths of the settings that differ between two gateway files; values are never included.
fn changed_settings(running: &GatewayConfig, next: &GatewayConfig) -> Vec<String> {
    let mut out = Vec::new();
    match (serde_json::to_value(running), serde_json::to_value(next)) {
        (Ok(a), Ok(b)) => diff_paths(&a, &b, String::new(), &mut out),
        _ => out.push("(unknown)".to_string()),
    }
    out
}

fn diff_paths(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, av) in a {
                match b.get(key) {
                    Some(bv) => diff_paths(av, bv, join(key), out),
                    None => out.push(join(key)),
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(join(key));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let item = format!("{path}[{i}]");
                match (a.get(i), b.get(i)) {
                    (Some(av), Some(bv)) => diff_paths(av, bv, item, out),
                    _ => out.push(item),
                }
            }
        }
        _ => out.push(if path.is_empty() {
            "(the whole file)".to_string()
        } else {
            path
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_settings_are_named_by_path_without_values() {
        let mut out = Vec::new();
        diff_paths(
            &json!({"routes": [{"policy": {"allow": "a"}, "to": "x"}], "issuer": "i", "gone": 1}),
            &json!({"routes": [{"policy": {"allow": "b"}, "to": "x"}, {"to": "y"}], "issuer": "i", "new": "secret-value"}),
            String::new(),
            &mut out,
        );
        out.sort();
        assert_eq!(out, ["gone", "new", "routes[0].policy.allow", "routes[1]"]);
    }

    #[test]
    fn a_setting_error_keeps_the_field_its_message_names() {
        let e = setting_error(
            "authorization_server.client_id_metadata_documents",
            anyhow::anyhow!("authorization_server.client_id_metadata_documents.extra_root_certificates[1]: cannot read /x: gone"),
        );
        assert_eq!(
            e.field,
            "authorization_server.client_id_metadata_documents.extra_root_certificates[1]"
        );
        assert_eq!(e.reason, "cannot read /x: gone");
        let plain = setting_error(
            "token_service.upstream_token_key_file",
            anyhow::anyhow!("boom"),
        );
        assert_eq!(plain.field, "token_service.upstream_token_key_file");
        assert_eq!(plain.reason, "boom");
    }
}
