//! The harness the integration tests share: a token service in a temp dir built from gateway
//! YAML (fixed, or following reloads of its file), requests to its routers, replies, sign-in
//! cookies and a scratch PostgreSQL schema.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::BodyExt;
use mcpgate_config::GatewayConfig;
use mcpgate_token_service::http::router::router;
use mcpgate_token_service::identity::users;
use mcpgate_token_service::internal_api::{self, InternalSecret};
use mcpgate_token_service::oauth::pkce;
use mcpgate_token_service::runtime::reload::LiveConfig;
use mcpgate_token_service::state::AppState;
use serde_json::Value;
use sqlx::any::AnyPoolOptions;
use tower::ServiceExt;

pub const HOST: &str = "localhost:18080";
pub const ISSUER: &str = "http://localhost:18080";
pub const VERIFIER: &str = "a-verifier-that-is-long-enough-for-pkce-0123456789";
pub const SECRET: &str = "internal-secret-0123456789-abcdefghij";
pub const STATIC_SECRET: &str = "static-secret-0123456789";
pub const PASSWORD: &str = "correct horse battery";

/// The parts of a gateway config that differ between tests; `{dir}` in any of them stands for
/// the temp dir.
pub struct Gateway<'a> {
    /// Lines under `authorization_server:` after the issuer and the signing key (clients, …).
    pub authorization_server: &'a str,
    pub database_url: &'a str,
    /// Lines under `token_service:` after the users file.
    pub token_service: &'a str,
    /// The `routes:` list.
    pub routes: &'a str,
}

/// A token service on a temp dir: its state, public and internal routers and config.
pub struct Service {
    pub state: Arc<AppState>,
    pub public: Router,
    pub internal: Router,
    pub config: GatewayConfig,
    pub config_path: PathBuf,
    pub dir: tempfile::TempDir,
}

/// A token service whose configuration can be reloaded: the routers follow [`LiveConfig`].
pub struct LiveService {
    pub live: Arc<LiveConfig>,
    pub public: Router,
    pub internal: Router,
    pub config_path: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Gateway<'_> {
    /// Writes the config to `gateway.yaml` in a new temp dir, adds `users` (username, display
    /// name, groups; all with [`PASSWORD`]) and starts the service.
    pub async fn start(&self, users: &[(&str, &str, &[&str])]) -> Service {
        let (dir, config_path, config) = self.write(users);
        let state = Arc::new(AppState::new(config.clone()).await.expect("state"));
        let secret = Arc::new(InternalSecret::new(SECRET).expect("secret"));
        Service {
            public: router(state.clone()),
            internal: internal_api::router(state.clone(), secret),
            state,
            config,
            config_path,
            dir,
        }
    }

    /// Like [`Gateway::start`], with routers that follow a reload of the gateway file.
    pub async fn start_live(&self, users: &[(&str, &str, &[&str])]) -> LiveService {
        let (dir, config_path, config) = self.write(users);
        let state = AppState::new(config).await.expect("state");
        let live = LiveConfig::new(
            state,
            Arc::new(InternalSecret::new(SECRET).expect("secret")),
        );
        LiveService {
            public: Router::new().fallback_service(live.public()),
            internal: Router::new().fallback_service(live.internal()),
            live,
            config_path,
            dir,
        }
    }

    /// The gateway file's text, `{dir}` replaced by `dir`.
    pub fn yaml(&self, dir: &std::path::Path) -> String {
        format!(
            "
authorization_server:
  issuer: {ISSUER}
  signing_key_file: {{dir}}/key.pem
{}
token_service:
  listen: 127.0.0.1:18081
  database_url: {}
  users_file: {{dir}}/users.yaml
{}
routes:
{}
",
            self.authorization_server.trim_end(),
            self.database_url,
            self.token_service.trim_end(),
            self.routes.trim_end(),
        )
        .replace("{dir}", &dir.display().to_string())
    }

    fn write(
        &self,
        users: &[(&str, &str, &[&str])],
    ) -> (tempfile::TempDir, PathBuf, GatewayConfig) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("gateway.yaml");
        std::fs::write(&config_path, self.yaml(dir.path())).expect("write config");
        let config = GatewayConfig::load(&config_path).expect("config");
        for (username, name, groups) in users {
            users::upsert(
                config
                    .token_service
                    .users_file
                    .as_deref()
                    .expect("users_file"),
                users::User {
                    username: username.to_string(),
                    email: format!("{username}@example.com"),
                    name: Some(name.to_string()),
                    groups: groups.iter().map(|g| g.to_string()).collect(),
                    password_hash: users::hash_password(PASSWORD).expect("hash"),
                },
            )
            .expect("users file");
        }
        (dir, config_path, config)
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("JSON body, got {:?}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: header::HeaderName) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_string())
    }
    pub fn location(&self) -> url::Url {
        let loc = self
            .header(header::LOCATION)
            .unwrap_or_else(|| panic!("no Location ({}): {}", self.status, self.text()));
        url::Url::parse(ISSUER)
            .expect("base")
            .join(&loc)
            .expect("url")
    }
    /// The `name=value` pair of the Set-Cookie header.
    pub fn cookie(&self) -> String {
        let set_cookie = self.header(header::SET_COOKIE).expect("cookie");
        set_cookie.split(';').next().expect("pair").to_string()
    }
}

pub async fn send(router: &Router, req: Request<Body>) -> Reply {
    let response = router.clone().oneshot(req).await.expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// `GET path` on the public host, with `headers`.
pub async fn get_with(
    router: &Router,
    path: &str,
    headers: &[(header::HeaderName, &str)],
) -> Reply {
    let mut req = Request::get(path).header(header::HOST, HOST);
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    send(router, req.body(Body::empty()).expect("request")).await
}

/// `GET path` on the public host, with a cookie if given.
pub async fn get(router: &Router, path: &str, cookie: Option<&str>) -> Reply {
    match cookie {
        Some(c) => get_with(router, path, &[(header::COOKIE, c)]).await,
        None => get_with(router, path, &[]).await,
    }
}

/// `POST path` with a form body on the public host, with `headers`.
pub async fn post_form(
    router: &Router,
    path: &str,
    form: &[(&str, &str)],
    headers: &[(header::HeaderName, String)],
) -> Reply {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(k, v);
    }
    send(router, req.body(Body::from(body)).expect("request")).await
}

/// Signs `username` in through `POST /.mcpgate/sign_in` with `target` (`request` or
/// `return_to`); asserts the redirect and returns the reply.
pub async fn sign_in(router: &Router, target: (&str, &str), username: &str) -> Reply {
    let reply = post_form(
        router,
        "/.mcpgate/sign_in",
        &[target, ("username", username), ("password", PASSWORD)],
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.text());
    reply
}

/// The authorization endpoint with PKCE over [`VERIFIER`], then `extra` (raw query text).
pub fn authorize_url(client_id: &str, redirect_uri: &str, state: &str, extra: &str) -> String {
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("code_challenge", &pkce::challenge_for(VERIFIER))
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", state)
        .finish();
    format!("/.mcpgate/oauth/authorize?{q}{extra}")
}

pub fn query(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("claims")
}

/// Runs `test` with a URL for a fresh PostgreSQL schema (named `prefix` and a random part)
/// under `base`, and drops the schema afterwards.
pub async fn in_postgres_schema<F, Fut>(base: &str, prefix: &str, test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    sqlx::any::install_default_drivers();
    let schema = format!(
        "{prefix}{}",
        mcpgate_token_service::oauth::opaque_token::generate()
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
    );
    let admin = AnyPoolOptions::new()
        .max_connections(1)
        .connect(base)
        .await
        .expect("connect to postgres");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let outcome = tokio::spawn(test(url)).await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .expect("drop schema");
    outcome.expect("postgres test");
}
