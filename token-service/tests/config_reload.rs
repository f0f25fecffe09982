//! Changing the gateway file while the token service runs: a `serve` process on 127.0.0.1 is
//! spoken to over HTTP while its gateway file is edited, replaced, made invalid, or the process
//! gets SIGHUP; its JSON log says what it did. Also `render envoy --watch`.

mod support;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::Ed25519KeyPair;
use mcpgate_config::GatewayConfig;
use mcpgate_token_service::runtime::signing_keys::SigningKeys;
use mcpgate_token_service::service_accounts::{self, Created, NewAccount};
use mcpgate_token_service::store::Store;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mcpgate-token-service");
const ISSUER: &str = "http://localhost:18080";
const HOST: &str = "localhost:18080";
const SECRET: &str = "internal-secret-0123456789-abcdefghij";
/// What the gateway promises for a changed file: applied within this long.
const APPLIED_WITHIN: Duration = Duration::from_secs(5);
const STARTED_WITHIN: Duration = Duration::from_secs(30);

const EVERYTHING: &str = "
  - from: http://localhost:18080/everything
    to: http://127.0.0.1:3001/mcp
    name: Everything
    mcp: {server: {}}
    policy:
      allow:
        and:
          - domain: {is: robots.example.com}";

const EVERYTHING_FOR_COMPANY: &str = "
  - from: http://localhost:18080/everything
    to: http://127.0.0.1:3001/mcp
    name: Everything
    mcp: {server: {}}
    policy:
      allow:
        and:
          - domain: {is: company.com}";

const SECOND: &str = "
  - from: http://localhost:18080/second
    to: http://127.0.0.1:3002/mcp
    name: Second
    mcp: {server: {}}";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The gateway file's settings a test changes.
#[derive(Clone)]
struct Settings {
    listen: u16,
    internal: u16,
    database: &'static str,
    key_file: &'static str,
    routes: String,
}

impl Settings {
    fn new(routes: &str) -> Self {
        Self {
            listen: free_port(),
            internal: free_port(),
            database: "db.sqlite",
            key_file: "key.pem",
            routes: routes.to_string(),
        }
    }

    fn yaml(&self, dir: &Path) -> String {
        let d = dir.display();
        format!(
            "authorization_server:
  issuer: {ISSUER}
  access_token_lifetime: 5m
  signing_key_file: {d}/{key}
token_service:
  listen: 127.0.0.1:{listen}
  internal_listen: 127.0.0.1:{internal}
  database_url: sqlite://{d}/{db}?mode=rwc
  users_file: {d}/users.yaml
envoy:
  wasm_module: {d}/mcpgate_filter.wasm
routes:{routes}
",
            key = self.key_file,
            listen = self.listen,
            internal = self.internal,
            db = self.database,
            routes = self.routes,
        )
    }
}

/// A process of the token service binary, its stderr collected line by line; killed on drop.
struct Process {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .args(["--log-format", "json"])
            .env("MCPGATE_INTERNAL_API_SECRET", SECRET)
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the token service binary");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("log").push(line);
            }
        });
        Self { child, log }
    }

    /// The `fields` of every JSON log line with this message.
    fn entries(&self, message: &str) -> Vec<Value> {
        self.log
            .lock()
            .expect("log")
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|v| v["fields"]["message"] == message)
            .map(|v| v["fields"].clone())
            .collect()
    }

    /// Waits until the log has a line with this message whose fields satisfy `matches`.
    async fn wait_for_entry(
        &mut self,
        message: &str,
        within: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(entry) = self.entries(message).into_iter().find(|e| matches(e)) {
                return entry;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the process exited ({status}); log:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "no {message:?} log line within {within:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    async fn wait_for_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "still running after {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `serve` with its gateway file in a temp dir.
struct Served {
    process: Process,
    settings: Settings,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Served {
    async fn start(routes: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = Settings::new(routes);
        std::fs::write(gateway_path(dir.path()), settings.yaml(dir.path())).expect("write");
        let path = gateway_path(dir.path());
        let mut process = Process::spawn(&["serve", "--config", &path.display().to_string()]);
        process
            .wait_for_entry("token service ready", STARTED_WITHIN, |_| true)
            .await;
        Self {
            process,
            settings,
            dir,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
        }
    }

    fn path(&self) -> PathBuf {
        gateway_path(self.dir.path())
    }

    /// Rewrites the gateway file in place with `settings`.
    fn write(&self, settings: &Settings) {
        std::fs::write(self.path(), settings.yaml(self.dir.path())).expect("write");
    }

    /// Replaces the gateway file by a rename, as `kubectl cp`, many editors and config
    /// management do.
    fn replace(&self, text: &str) {
        let tmp = self.dir.path().join(".gateway.yaml.tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, self.path()).expect("rename");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.settings.listen)
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, String) {
        let mut req = self
            .http
            .get(self.url(path))
            .header(reqwest::header::HOST, HOST);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let response = req.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// A client registered through `/.mcpgate/oauth/register`.
    async fn register(&self, redirect_uri: &str) -> String {
        let response = self
            .http
            .post(self.url("/.mcpgate/oauth/register"))
            .header(reqwest::header::HOST, HOST)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(
                serde_json::json!({
                    "redirect_uris": [redirect_uri],
                    "token_endpoint_auth_method": "none",
                })
                .to_string(),
            )
            .send()
            .await
            .expect("register");
        let body: Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("json");
        body["client_id"].as_str().expect("client_id").to_string()
    }

    /// Where `/.mcpgate/oauth/authorize` for `resource` sends the browser.
    async fn authorize(&self, client_id: &str, redirect_uri: &str, resource: &str) -> url::Url {
        let path = support::authorize_url(
            client_id,
            redirect_uri,
            "st4te",
            &format!("&resource={}", support::urlencode(resource)),
        );
        let response = self
            .http
            .get(self.url(&path))
            .header(reqwest::header::HOST, HOST)
            .send()
            .await
            .expect("authorize");
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or_else(|| panic!("no redirect ({})", response.status()))
            .to_string();
        url::Url::parse(ISSUER)
            .expect("base")
            .join(&location)
            .expect("url")
    }

    /// The names of the servers `/.mcpgate/mcp/routes` lists for `token`.
    async fn listed(&self, token: &str) -> Vec<String> {
        let (status, body) = self.get("/.mcpgate/mcp/routes", Some(token)).await;
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).expect("json");
        body["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .map(|s| s["name"].as_str().expect("name").to_string())
            .collect()
    }

    /// Waits until `/.mcpgate/mcp/routes` lists `expected` for `token`.
    async fn wait_for_listing(&self, token: &str, expected: &[&str]) {
        let deadline = Instant::now() + APPLIED_WITHIN;
        loop {
            let listed = self.listed(token).await;
            if listed == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still listing {listed:?} after {APPLIED_WITHIN:?}, expected {expected:?}; log:\n{}",
                self.process.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn jwks_kids(&self) -> Vec<String> {
        let (status, body) = self.get("/.well-known/jwks.json", None).await;
        assert_eq!(status, 200);
        let jwks: Value = serde_json::from_str(&body).expect("json");
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid").to_string())
            .collect()
    }

    /// A service account for the Everything route with client credentials.
    async fn service_account(&self) -> (String, String) {
        let config = GatewayConfig::load(&self.path()).expect("config");
        let store = Store::connect(&config.token_service.database_url)
            .await
            .expect("store");
        let keys = SigningKeys::load_or_generate(&config.authorization_server.signing_key_file)
            .expect("keys");
        let created = service_accounts::create(
            &store,
            &keys,
            ISSUER,
            &config.server_routes().expect("routes"),
            NewAccount {
                name: "etl".into(),
                email: "etl@robots.example.com".into(),
                groups: vec![],
                routes: vec!["Everything".into()],
                expires: None,
                client_credentials: true,
                jwks: None,
            },
            mcpgate_token_service::clock::now(),
        )
        .await
        .expect("service account");
        store.close().await;
        let Created::ClientCredentials {
            client_id,
            client_secret,
            ..
        } = created
        else {
            panic!("client credentials expected");
        };
        (client_id, client_secret)
    }

    /// An access token from the client-credentials grant.
    async fn token(&self, (client_id, client_secret): &(String, String)) -> String {
        let response = self
            .http
            .post(self.url("/.mcpgate/oauth/token"))
            .header(reqwest::header::HOST, HOST)
            .basic_auth(client_id, Some(client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token request");
        let status = response.status().as_u16();
        let body = response.text().await.expect("body");
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).expect("json");
        body["access_token"].as_str().expect("token").to_string()
    }
}

fn gateway_path(dir: &Path) -> PathBuf {
    dir.join("gateway.yaml")
}

fn kid_of(jwt: &str) -> String {
    let header = jwt.split('.').next().expect("header");
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json");
    header["kid"].as_str().expect("kid").to_string()
}

#[tokio::test]
async fn a_policy_change_and_a_new_route_apply_without_a_restart() {
    let served = Served::start(EVERYTHING).await;
    let token = served.token(&served.service_account().await).await;
    assert_eq!(served.listed(&token).await, ["Everything"]);
    let second_metadata = "/.well-known/oauth-protected-resource/second";
    assert_eq!(served.get(second_metadata, None).await.0, 404);
    let redirect_uri = "http://127.0.0.1:7777/callback";
    let client_id = served.register(redirect_uri).await;
    let second = "http://localhost:18080/second";
    let refused = served.authorize(&client_id, redirect_uri, second).await;
    assert_eq!(
        support::query(&refused, "error").as_deref(),
        Some("invalid_target")
    );

    // The robots' domain loses the route; a new route that lets everyone in appears.
    let next = Settings {
        routes: format!("{EVERYTHING_FOR_COMPANY}{SECOND}"),
        ..served.settings.clone()
    };
    served.write(&next);
    served.wait_for_listing(&token, &["Second"]).await;

    let (status, body) = served.get(second_metadata, None).await;
    assert_eq!(status, 200, "{body}");
    let metadata: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(metadata["resource"], "http://localhost:18080/second");
    assert_eq!(metadata["authorization_servers"][0], ISSUER);
    // Authorization for the new route's resource goes on to sign-in.
    let accepted = served.authorize(&client_id, redirect_uri, second).await;
    assert_eq!(accepted.path(), "/.mcpgate/sign_in", "{accepted}");
    assert_eq!(support::query(&accepted, "error"), None);

    let mut process = served.process;
    let reloaded = process
        .wait_for_entry("gateway file reloaded", APPLIED_WITHIN, |_| true)
        .await;
    assert_eq!(reloaded["trigger"], "file changed");
    assert_eq!(reloaded["server_routes"], 2);
    assert_eq!(reloaded["client_routes"], 0);
    assert_eq!(reloaded["rotated_key"], false);
    let changed = reloaded["changed"].as_str().expect("changed");
    assert!(
        changed.contains("routes[0].policy.allow.and[0].domain.is")
            && changed.contains("routes[1]"),
        "{changed}"
    );
    assert!(
        !changed.contains("company.com"),
        "values are never logged: {changed}"
    );
}

#[tokio::test]
async fn an_invalid_file_changes_nothing_and_the_log_names_the_field() {
    let mut served = Served::start(EVERYTHING).await;
    let token = served.token(&served.service_account().await).await;

    // A new route and a policy with a criterion that does not exist: none of it applies.
    let invalid = Settings {
        routes: format!(
            "{SECOND}
    policy:
      allow:
        and:
          - domian: {{is: company.com}}"
        ),
        ..served.settings.clone()
    };
    served.write(&invalid);
    let rejected = served
        .process
        .wait_for_entry(
            "gateway file not applied: the running configuration stays in effect",
            APPLIED_WITHIN,
            |_| true,
        )
        .await;
    let field = rejected["field"].as_str().expect("field");
    assert!(field.starts_with("routes[0].policy"), "{rejected}");
    assert!(
        rejected["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{rejected}"
    );
    assert_eq!(rejected["trigger"], "file changed");
    assert_eq!(served.listed(&token).await, ["Everything"]);
    assert_eq!(
        served
            .get("/.well-known/oauth-protected-resource/second", None)
            .await
            .0,
        404
    );

    // A file that is not even YAML: the reason says where.
    served.replace("routes: [\n");
    served
        .process
        .wait_for_entry(
            "gateway file not applied: the running configuration stays in effect",
            APPLIED_WITHIN,
            |e| e["reason"].as_str().is_some_and(|r| r.contains("line")),
        )
        .await;
    assert_eq!(served.listed(&token).await, ["Everything"]);

    // A valid file then applies, and each bad version was reported exactly once.
    served.write(&Settings {
        routes: format!("{EVERYTHING}{SECOND}"),
        ..served.settings.clone()
    });
    served
        .wait_for_listing(&token, &["Everything", "Second"])
        .await;
    assert_eq!(
        served
            .process
            .entries("gateway file not applied: the running configuration stays in effect")
            .len(),
        2,
        "{}",
        served.process.log_text()
    );
}

#[tokio::test]
async fn settings_that_need_a_restart_are_reported_and_keep_their_running_values() {
    let mut served = Served::start(EVERYTHING).await;
    let token = served.token(&served.service_account().await).await;
    let moved = Settings {
        listen: free_port(),
        internal: free_port(),
        database: "elsewhere.sqlite",
        routes: format!("{EVERYTHING_FOR_COMPANY}{SECOND}"),
        ..served.settings.clone()
    };
    served.write(&moved);
    // The rest of the file applies, on the running listener and database.
    served.wait_for_listing(&token, &["Second"]).await;
    let warning = served
        .process
        .wait_for_entry(
            "gateway file: these settings take effect only after a restart; their running values stay in effect",
            APPLIED_WITHIN,
            |_| true,
        )
        .await;
    assert_eq!(
        warning["settings"],
        "token_service.listen, token_service.database_url, token_service.internal_listen"
    );
    let reloaded = served
        .process
        .wait_for_entry("gateway file reloaded", APPLIED_WITHIN, |_| true)
        .await;
    let changed = reloaded["changed"].as_str().expect("changed");
    assert!(!changed.contains("token_service"), "{changed}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", moved.listen)).is_err(),
        "nothing listens on the new address"
    );
    assert!(!served.dir.path().join("elsewhere.sqlite").exists());
}

#[tokio::test]
async fn sighup_reloads_the_gateway_file() {
    let mut served = Served::start(EVERYTHING).await;
    served.process.signal("HUP");
    let reloaded = served
        .process
        .wait_for_entry("gateway file reloaded", APPLIED_WITHIN, |_| true)
        .await;
    // Unchanged, so only the signal can have caused it.
    assert_eq!(reloaded["trigger"], "SIGHUP");
    assert_eq!(reloaded["changed"], "nothing");
    assert_eq!(served.get("/.mcpgate/healthz", None).await.0, 200);

    // SIGHUP on a file that does not validate reports it again, and the process keeps serving.
    served.replace("routes: [\n");
    served
        .process
        .wait_for_entry(
            "gateway file not applied: the running configuration stays in effect",
            APPLIED_WITHIN,
            |e| e["trigger"] == "file changed",
        )
        .await;
    served.process.signal("HUP");
    served
        .process
        .wait_for_entry(
            "gateway file not applied: the running configuration stays in effect",
            APPLIED_WITHIN,
            |e| e["trigger"] == "SIGHUP",
        )
        .await;
    assert_eq!(served.get("/.mcpgate/healthz", None).await.0, 200);
}

#[tokio::test]
async fn a_rotated_signing_key_is_published_beside_the_old_one() {
    let mut served = Served::start(EVERYTHING).await;
    let credentials = served.service_account().await;
    let first = served.token(&credentials).await;
    let first_kid = kid_of(&first);
    assert_eq!(served.jwks_kids().await, std::slice::from_ref(&first_kid));

    // New content at the same path, moved into place as a secret update does.
    let key_path = served.dir.path().join(served.settings.key_file);
    let tmp = served.dir.path().join(".key.pem.tmp");
    std::fs::write(&tmp, Ed25519KeyPair::generate().to_pem()).expect("write");
    std::fs::rename(&tmp, &key_path).expect("rename");
    let reloaded = served
        .process
        .wait_for_entry("gateway file reloaded", APPLIED_WITHIN, |e| {
            e["rotated_key"] == true
        })
        .await;
    let second_kid = reloaded["signing_key"].as_str().expect("kid").to_string();
    assert_ne!(second_kid, first_kid);
    assert_eq!(
        served.jwks_kids().await,
        [second_kid.clone(), first_kid.clone()]
    );
    let second = served.token(&credentials).await;
    assert_eq!(kid_of(&second), second_kid, "new tokens use the new key");
    // The token service itself still accepts the token signed with the old key.
    assert_eq!(served.listed(&first).await, ["Everything"]);
    assert_eq!(served.listed(&second).await, ["Everything"]);

    // A new path in the gateway file: a key is created there and takes over.
    served.write(&Settings {
        key_file: "rotated/key.pem",
        ..served.settings.clone()
    });
    let reloaded = served
        .process
        .wait_for_entry("gateway file reloaded", APPLIED_WITHIN, |e| {
            e["rotated_key"] == true && e["signing_key"] != second_kid.as_str()
        })
        .await;
    let third_kid = reloaded["signing_key"].as_str().expect("kid").to_string();
    assert!(served.dir.path().join("rotated/key.pem").exists());
    assert_eq!(
        served.jwks_kids().await,
        [third_kid.clone(), second_kid, first_kid]
    );
    assert_eq!(kid_of(&served.token(&credentials).await), third_kid);
    assert_eq!(served.listed(&first).await, ["Everything"]);
}

#[tokio::test]
async fn render_envoy_watch_renders_each_valid_change_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("envoy");
    let path = gateway_path(dir.path());
    let settings = Settings::new(EVERYTHING);
    std::fs::write(&path, settings.yaml(dir.path())).expect("write");
    let mut process = Process::spawn(&[
        "render",
        "envoy",
        "--config",
        &path.display().to_string(),
        "--out-dir",
        &out.display().to_string(),
        "--watch",
    ]);
    process
        .wait_for_entry("watching the gateway file", STARTED_WITHIN, |_| true)
        .await;
    let ecds = out.join("ecds/mcpgate.yaml");
    let before = std::fs::read_to_string(&ecds).expect("the filter's ECDS file");
    assert!(before.contains("robots.example.com"));
    let rds_before = std::fs::read(out.join("rds/routes.yaml")).expect("rds");

    std::fs::write(
        &path,
        Settings {
            routes: EVERYTHING_FOR_COMPANY.to_string(),
            ..settings.clone()
        }
        .yaml(dir.path()),
    )
    .expect("write");
    let rendered = process
        .wait_for_entry("gateway file rendered", APPLIED_WITHIN, |_| true)
        .await;
    let after = std::fs::read_to_string(&ecds).expect("ecds");
    assert!(after.contains("company.com") && !after.contains("robots.example.com"));
    assert_eq!(
        rendered["written"],
        ecds.display().to_string(),
        "only the filter changed"
    );
    assert_eq!(
        std::fs::read(out.join("rds/routes.yaml")).expect("rds"),
        rds_before
    );

    // An invalid file writes nothing and names the field.
    let snapshot = |dir: &Path| {
        [
            "envoy.yaml",
            "cds/clusters.yaml",
            "ecds/mcpgate.yaml",
            "rds/routes.yaml",
            "lds/listeners.yaml",
        ]
        .map(|f| std::fs::read(dir.join(f)).expect("rendered file"))
    };
    let files = snapshot(&out);
    std::fs::write(
        &path,
        Settings {
            routes: "
  - from: http://localhost:18080/everything
    to: http://127.0.0.1:3001/mcp
    mcp: {server: {scopes: ['two words']}}"
                .to_string(),
            ..settings.clone()
        }
        .yaml(dir.path()),
    )
    .expect("write");
    let rejected = process
        .wait_for_entry(
            "gateway file not rendered: the files in the output directory stay as they are",
            APPLIED_WITHIN,
            |_| true,
        )
        .await;
    assert_eq!(rejected["field"], "routes[0].mcp.server.scopes[0]");
    assert_eq!(snapshot(&out), files);

    process.signal("TERM");
    let status = process.wait_for_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
}

/// The GitHub-like route with a provider at `provider` (a loopback URL; never contacted here).
fn github_route(provider: &str) -> String {
    format!(
        "
  - from: http://localhost:18080/github
    to: http://127.0.0.1:3003/mcp
    name: GitHub
    mcp:
      server:
        upstream_oauth2:
          client_id: cid
          client_secret: csecret
          endpoint:
            auth_url: {provider}/authorize
            token_url: {provider}/token"
    )
}

const APP_ROUTE: &str = "
  - from: http://localhost:18080/app
    to: http://127.0.0.1:18110
    name: App
    mcp: {client: {}}";

#[tokio::test]
async fn client_routes_and_upstream_oauth_settings_follow_a_reload() {
    let first = github_route("http://127.0.0.1:9/one");
    let gateway = support::Gateway {
        authorization_server: "",
        database_url: "sqlite://{dir}/db.sqlite?mode=rwc",
        token_service: "  upstream_token_key_file: {dir}/upstream-token-key",
        routes: &first,
    };
    let service = gateway.start_live(&[]).await;
    let user = mcpgate_token_service::identity::users::UserClaims {
        username: "alice".into(),
        email: "alice@example.com".into(),
        name: None,
        groups: vec![],
    };
    let (session, _) = mcpgate_token_service::identity::session::create(
        &service.live.state().store,
        &user,
        mcpgate_token_service::clock::now(),
        3600,
    )
    .await
    .expect("session");
    let cookie = format!(
        "{}={session}",
        mcpgate_token_service::identity::session::COOKIE
    );
    let connect = format!(
        "/github/.mcpgate/mcp/connect?redirect_url={}",
        support::urlencode("http://localhost:18080/app/settings")
    );
    let session_call = || async {
        let request = axum::http::Request::post("/internal/v1/session")
            .header(
                axum::http::header::AUTHORIZATION,
                format!("Bearer {}", support::SECRET),
            )
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(
                serde_json::json!({"session": session, "route": "http://localhost:18080/app"})
                    .to_string(),
            ))
            .expect("request");
        support::send(&service.internal, request).await
    };

    // No client route yet: nothing may return to /app, and the filter gets no app session.
    let refused = support::get(&service.public, &connect, Some(&cookie)).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.text().contains("client route"),
        "{}",
        refused.text()
    );
    assert_eq!(session_call().await.status, 400);

    // The provider moves and the app gets a client route.
    let next = format!("{}{APP_ROUTE}", github_route("http://127.0.0.1:9/two"));
    let changed = support::Gateway {
        routes: &next,
        ..gateway
    };
    std::fs::write(&service.config_path, changed.yaml(service.dir.path())).expect("write");
    let reloaded =
        mcpgate_token_service::runtime::reload::reload(&service.live, &service.config_path)
            .expect("reload");
    assert!(
        reloaded
            .changed
            .iter()
            .any(|c| c.starts_with("routes[0].mcp.server.upstream_oauth2.endpoint")),
        "{:?}",
        reloaded.changed
    );

    let to_provider = support::get(&service.public, &connect, Some(&cookie)).await;
    assert_eq!(to_provider.status, 302, "{}", to_provider.text());
    let location = to_provider.location();
    assert_eq!(
        location.as_str().split('?').next(),
        Some("http://127.0.0.1:9/two/authorize")
    );
    let app_session = session_call().await;
    assert_eq!(app_session.status, 200, "{}", app_session.text());
    assert!(app_session.json()["token"].is_string());
}
