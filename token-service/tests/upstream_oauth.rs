//! Upstream OAuth against a tiny local provider (axum on 127.0.0.1:0): connecting through the
//! connect URL and through an MCP client's authorization, refresh with rotation, a provider that
//! sends no new refresh token, refusal (4xx) and outage (5xx), and one refresh for concurrent
//! callers, in one process and across two service instances sharing the database. Runs on
//! SQLite, and on PostgreSQL too when MCPGATE_TEST_POSTGRES_URL is set.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http_body_util::BodyExt;
use mcpgate_config::gateway::ServerRoute;
use mcpgate_token_service::clock::now;
use mcpgate_token_service::identity::session;
use mcpgate_token_service::identity::users::UserClaims;
use mcpgate_token_service::state::AppState;
use mcpgate_token_service::upstream;
use mcpgate_token_service::upstream::tokens::Fresh;
use sha2::{Digest, Sha256};
use support::{query, urlencode, Reply, Service, SECRET, VERIFIER};
use tower::ServiceExt;

const CALLBACK: &str = "http://localhost:18080/.mcpgate/upstream/callback";
const GITHUB: &str = "http://localhost:18080/github";
const DISCOVERED: &str = "http://localhost:18080/discovered";
const CLIENT_REDIRECT: &str = "http://127.0.0.1:9999/cb";

// --- the provider ------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Rotate,
    NoNewRefreshToken,
    Refuse,
    Down,
}

struct Provider {
    mode: Mode,
    delay: Duration,
    expires_in: u64,
    issued: usize,
    refresh_calls: usize,
    code_calls: usize,
    /// The only refresh token the provider accepts (the latest it issued).
    valid_refresh: Option<String>,
    /// PKCE challenge of the code "good-code".
    challenge: Option<String>,
    resources: Vec<Option<String>>,
}

type Shared = Arc<Mutex<Provider>>;

fn json(status: StatusCode, v: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn token_endpoint(State(p): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
    let basic = format!("Basic {}", STANDARD.encode("cid:csecret"));
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(basic.as_str())
    {
        return json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "invalid_client"}),
        );
    }
    let accepts_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    assert!(accepts_json, "token requests send Accept: application/json");
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    let delay = {
        let mut p = p.lock().expect("provider");
        p.resources.push(form.get("resource").cloned());
        if grant == "refresh_token" {
            p.refresh_calls += 1;
        } else {
            p.code_calls += 1;
        }
        p.delay
    };
    tokio::time::sleep(delay).await;
    let mut p = p.lock().expect("provider");
    let issue = |p: &mut Provider, with_refresh: bool| {
        p.issued += 1;
        let mut body = serde_json::json!({
            "access_token": format!("at-{}", p.issued),
            "token_type": "bearer",
            "expires_in": p.expires_in,
            "scope": "read:user",
        });
        if with_refresh {
            let rt = format!("rt-{}", p.issued);
            body["refresh_token"] = rt.clone().into();
            p.valid_refresh = Some(rt);
        }
        json(StatusCode::OK, body)
    };
    match grant.as_str() {
        "authorization_code" => {
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            let ok = form.get("code").map(String::as_str) == Some("good-code")
                && p.challenge.as_deref() == Some(challenge.as_str())
                && form.get("redirect_uri").map(String::as_str) == Some(CALLBACK);
            if !ok {
                return json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": "invalid_grant"}),
                );
            }
            issue(&mut p, true)
        }
        "refresh_token" => match p.mode {
            Mode::Down => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/html")],
                "<h1>down</h1>",
            )
                .into_response(),
            Mode::Refuse => json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": "invalid_grant", "error_description": "revoked"}),
            ),
            mode => {
                if form.get("refresh_token") != p.valid_refresh.as_ref() {
                    return json(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({"error": "invalid_grant", "error_description": "stale refresh token"}),
                    );
                }
                issue(&mut p, mode == Mode::Rotate)
            }
        },
        _ => json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "unsupported_grant_type"}),
        ),
    }
}

/// Starts the provider; returns its base URL.
async fn start_provider(p: Shared) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let prm = serde_json::json!({"resource": format!("{base}/mcp"), "authorization_servers": [base.clone()]});
    let asm = serde_json::json!({
        "issuer": base.clone(),
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "code_challenge_methods_supported": ["S256"],
    });
    let app = Router::new()
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(move || async move { json(StatusCode::OK, prm) }),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move { json(StatusCode::OK, asm) }),
        )
        .route("/token", post(token_endpoint))
        .with_state(p);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

// --- the token service -------------------------------------------------------------------------

struct Harness {
    service: Service,
    provider: Shared,
    base: String,
}

impl std::ops::Deref for Harness {
    type Target = Service;
    fn deref(&self) -> &Service {
        &self.service
    }
}

async fn harness(database_url: &str) -> Harness {
    let provider: Shared = Arc::new(Mutex::new(Provider {
        mode: Mode::Rotate,
        delay: Duration::ZERO,
        expires_in: 3600,
        issued: 0,
        refresh_calls: 0,
        code_calls: 0,
        valid_refresh: None,
        challenge: None,
        resources: vec![],
    }));
    let base = start_provider(provider.clone()).await;
    let authorization_server = format!(
        r#"
  clients:
    - client_id: static-public
      token_endpoint_auth_method: none
      redirect_uris: [{CLIENT_REDIRECT}]"#
    );
    let routes = format!(
        r#"
  - from: {GITHUB}
    to: {base}/mcp
    name: GitHub
    mcp:
      server:
        upstream_oauth2:
          client_id: cid
          client_secret: csecret
          scopes: [read:user]
          endpoint:
            auth_url: {base}/authorize
            token_url: {base}/token
            auth_style: header
          authorization_url_params: {{prompt: consent}}
  - from: {DISCOVERED}
    to: {base}/mcp
    name: Discovered
    mcp:
      server:
        upstream_oauth2:
          client_id: cid
          client_secret: csecret
  - from: http://localhost:18080/plain
    to: {base}/plain
    name: Plain
    mcp:
      server: {{}}
    policy:
      deny:
        or:
          - user: {{is: mallory}}
  - from: http://localhost:18080/app
    to: http://127.0.0.1:18110
    name: Chat app
    mcp:
      client: {{}}"#
    );
    let gateway = support::Gateway {
        authorization_server: &authorization_server,
        database_url,
        token_service: "  upstream_token_key_file: {dir}/keys/upstream-token-key",
        routes: &routes,
    };
    Harness {
        service: gateway.start(&[]).await,
        provider,
        base,
    }
}

impl Harness {
    fn route(&self, resource: &str) -> ServerRoute {
        self.state
            .routes
            .iter()
            .find(|r| r.resource == resource)
            .expect("route")
            .clone()
    }

    fn provider(&self) -> std::sync::MutexGuard<'_, Provider> {
        self.provider.lock().expect("provider")
    }

    /// `GET /internal/v1/revocations`, with `If-None-Match: etag`: (status, ETag, body).
    async fn revocations(&self, etag: Option<&str>) -> (StatusCode, String, serde_json::Value) {
        let mut req = Request::get("/internal/v1/revocations")
            .header(header::AUTHORIZATION, format!("Bearer {SECRET}"));
        if let Some(etag) = etag {
            req = req.header(header::IF_NONE_MATCH, etag);
        }
        let response = self
            .internal
            .clone()
            .oneshot(req.body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let etag = response.headers()[header::ETAG]
            .to_str()
            .expect("etag")
            .to_string();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, etag, body)
    }

    /// Asserts that the revocation list changed since `etag` and lists `username` disconnected
    /// from `route` at `since` or later.
    async fn assert_disconnect_listed(&self, etag: &str, username: &str, route: &str, since: i64) {
        let (status, new_etag, body) = self.revocations(Some(etag)).await;
        assert_eq!(status, StatusCode::OK, "the list changed");
        assert_ne!(new_etag, etag);
        let listed = body["disconnected"]
            .as_array()
            .expect("disconnected")
            .iter()
            .any(|d| {
                d["sub"] == username
                    && d["route"] == route
                    && d["at"]
                        .as_i64()
                        .is_some_and(|at| at >= since && at <= now())
            });
        assert!(listed, "{username} on {route} in {body}");
        assert!(!body.to_string().contains("at-"), "no token in the list");
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        support::get(&self.public, path, cookie).await
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        support::post_form(&self.public, path, form, &[]).await
    }

    /// A signed-in browser session for `username`: its cookie.
    async fn session(&self, username: &str) -> String {
        let user = UserClaims {
            username: username.into(),
            email: format!("{username}@example.com"),
            name: None,
            groups: vec![],
        };
        let (secret, _) = session::create(&self.state.store, &user, now(), 3600)
            .await
            .expect("session");
        format!("{}={secret}", session::COOKIE)
    }

    /// Makes the stored token due for refresh.
    async fn make_due(&self, username: &str, route: &str) {
        let t = now();
        let done = sqlx::query(
            "UPDATE upstream_tokens SET issued_at = $1, expires_at = $2 WHERE username = $3 AND route = $4",
        )
        .bind(t - 3600)
        .bind(t + 30)
        .bind(username)
        .bind(route)
        .execute(self.state.store.pool())
        .await
        .expect("update");
        assert_eq!(done.rows_affected(), 1);
    }

    async fn fresh(&self, username: &str, route: &str) -> Fresh {
        upstream::tokens::fresh_token(&self.state, username, &self.route(route))
            .await
            .expect("fresh_token")
    }

    /// The provider's authorization URL from a redirect, with its challenge registered for the
    /// code "good-code"; returns the state.
    fn accept_provider_redirect(&self, location: &url::Url) -> String {
        assert!(
            location
                .as_str()
                .starts_with(&format!("{}/authorize?", self.base)),
            "{location}"
        );
        assert_eq!(query(location, "client_id").as_deref(), Some("cid"));
        assert_eq!(query(location, "redirect_uri").as_deref(), Some(CALLBACK));
        assert_eq!(
            query(location, "code_challenge_method").as_deref(),
            Some("S256")
        );
        self.provider().challenge = query(location, "code_challenge");
        query(location, "state").expect("state")
    }
}

fn token_of(f: &Fresh) -> &str {
    match f {
        Fresh::Token { access_token, .. } => access_token,
        other => panic!("expected a token, got {other:?}"),
    }
}

// --- the scenarios -----------------------------------------------------------------------------

async fn connect_and_refresh(h: &Harness) {
    let alice = h.session("alice").await;
    let mallory = h.session("mallory").await;
    let connect = format!(
        "/github/.mcpgate/mcp/connect?redirect_url={}",
        urlencode("http://localhost:18080/app/settings?tab=mcp")
    );

    // Open redirects are refused before anything else.
    let evil = h
        .get(
            &format!(
                "/github/.mcpgate/mcp/connect?redirect_url={}",
                urlencode("http://localhost:18080@evil.example/app")
            ),
            Some(&alice),
        )
        .await;
    assert_eq!(evil.status, StatusCode::BAD_REQUEST);
    assert!(evil.headers.get(header::LOCATION).is_none());
    assert!(evil.text().contains("user information"), "{}", evil.text());

    // Without a session: to sign-in, and back to this connect URL afterwards.
    let anonymous = h.get(&connect, None).await;
    assert_eq!(anonymous.status, StatusCode::FOUND);
    let sign_in = anonymous.location();
    assert_eq!(sign_in.path(), "/.mcpgate/sign_in");
    let back = query(&sign_in, "return_to").expect("return_to");
    assert!(
        back.starts_with("http://localhost:18080/github/.mcpgate/mcp/connect?redirect_url="),
        "{back}"
    );

    // The sign-in page takes that return_to.
    let page = h
        .get(
            &format!("{}?{}", sign_in.path(), sign_in.query().unwrap_or("")),
            None,
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());

    // The provider says no: a clear page, and the state is used up.
    let declined = h.get(&connect, Some(&mallory)).await;
    let declined_state = h.accept_provider_redirect(&declined.location());
    let declined_callback = format!(
        "/.mcpgate/upstream/callback?error=access_denied&error_description=%3Cb%3Eno%3C%2Fb%3E&state={declined_state}"
    );
    let page = h.get(&declined_callback, Some(&mallory)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.text().contains("access_denied"), "{}", page.text());
    assert!(!page.text().contains("<b>no"), "provider text is escaped");
    let again = h.get(&declined_callback, Some(&mallory)).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.text().contains("no longer valid"), "{}", again.text());

    // A route without upstream OAuth goes straight back.
    let plain = h
        .get(
            &format!(
                "/plain/.mcpgate/mcp/connect?redirect_url={}",
                urlencode("http://localhost:18080/app")
            ),
            Some(&alice),
        )
        .await;
    assert_eq!(plain.location().as_str(), "http://localhost:18080/app");
    // A user the route's policy shuts out has nothing to connect.
    let shut_out = h
        .get(
            &format!(
                "/plain/.mcpgate/mcp/connect?redirect_url={}",
                urlencode("http://localhost:18080/app")
            ),
            Some(&mallory),
        )
        .await;
    assert_eq!(shut_out.status, StatusCode::FORBIDDEN);
    assert!(shut_out.text().contains("policy"), "{}", shut_out.text());
    assert_eq!(
        h.get("/nothing/.mcpgate/mcp/connect", Some(&alice))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Signed in: to the provider.
    let started = h.get(&connect, Some(&alice)).await;
    assert_eq!(started.status, StatusCode::FOUND, "{}", started.text());
    let location = started.location();
    assert_eq!(query(&location, "scope").as_deref(), Some("read:user"));
    assert_eq!(query(&location, "prompt").as_deref(), Some("consent"));
    assert_eq!(
        query(&location, "resource"),
        None,
        "configured endpoints get no resource"
    );
    let state = h.accept_provider_redirect(&location);
    let callback = format!("/.mcpgate/upstream/callback?code=good-code&state={state}");

    // Another browser (or none) cannot complete it, and does not use it up.
    for cookie in [None, Some(mallory.as_str())] {
        let refused = h.get(&callback, cookie).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{cookie:?}");
        assert!(
            refused.text().contains("browser session"),
            "{}",
            refused.text()
        );
    }
    assert_eq!(
        upstream::tokens::status(&h.state, "alice", &h.route(GITHUB))
            .await
            .expect("status"),
        None
    );

    let done = h.get(&callback, Some(&alice)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text());
    assert_eq!(
        done.location().as_str(),
        "http://localhost:18080/app/settings?tab=mcp"
    );
    let replay = h.get(&callback, Some(&alice)).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.provider().code_calls, 1);

    // Stored encrypted, for alice only.
    let status = upstream::tokens::status(&h.state, "alice", &h.route(GITHUB))
        .await
        .expect("status");
    assert!(
        matches!(status, Some(Some(e)) if e > now() + 3000),
        "{status:?}"
    );
    assert_eq!(
        upstream::tokens::status(&h.state, "mallory", &h.route(GITHUB))
            .await
            .expect("status"),
        None
    );
    let stored: String = sqlx::query_scalar("SELECT ciphertext FROM upstream_tokens")
        .fetch_one(h.state.store.pool())
        .await
        .expect("row");
    assert!(!stored.contains("at-1") && !stored.contains("rt-1"));
    let first = h.fresh("alice", GITHUB).await;
    assert_eq!(token_of(&first), "at-1");
    assert_eq!(h.provider().refresh_calls, 0);
    assert_eq!(h.fresh("mallory", GITHUB).await, Fresh::NotConnected);

    // Due: refreshed, and the rotated refresh token is the one used next.
    h.make_due("alice", GITHUB).await;
    assert_eq!(token_of(&h.fresh("alice", GITHUB).await), "at-2");
    assert_eq!(h.provider().valid_refresh.as_deref(), Some("rt-2"));
    assert_eq!(token_of(&h.fresh("alice", GITHUB).await), "at-2");
    h.make_due("alice", GITHUB).await;
    assert_eq!(token_of(&h.fresh("alice", GITHUB).await), "at-3");
    assert_eq!(h.provider().refresh_calls, 2);

    // No new refresh token in the answer: the old one is kept and still works.
    h.provider().mode = Mode::NoNewRefreshToken;
    h.make_due("alice", GITHUB).await;
    assert_eq!(token_of(&h.fresh("alice", GITHUB).await), "at-4");
    h.provider().mode = Mode::Rotate;
    h.make_due("alice", GITHUB).await;
    assert_eq!(token_of(&h.fresh("alice", GITHUB).await), "at-5");
    assert_eq!(h.provider().refresh_calls, 4);

    // Concurrent callers: one provider refresh.
    h.provider().delay = Duration::from_millis(300);
    h.make_due("alice", GITHUB).await;
    let (a, b) = tokio::join!(h.fresh("alice", GITHUB), h.fresh("alice", GITHUB));
    assert_eq!(token_of(&a), "at-6");
    assert_eq!(token_of(&b), "at-6");
    assert_eq!(h.provider().refresh_calls, 5);

    // Two service instances sharing the database: one provider refresh (the lease).
    let other = AppState::new(h.config.clone())
        .await
        .expect("second instance");
    h.make_due("alice", GITHUB).await;
    let route = h.route(GITHUB);
    let (a, b) = tokio::join!(
        upstream::tokens::fresh_token(&h.state, "alice", &route),
        upstream::tokens::fresh_token(&other, "alice", &route)
    );
    assert_eq!(token_of(&a.expect("a")), "at-7");
    assert_eq!(token_of(&b.expect("b")), "at-7");
    assert_eq!(h.provider().refresh_calls, 6);
    h.provider().delay = Duration::ZERO;

    // Provider down: the token is kept, and the reason carries no token.
    h.provider().mode = Mode::Down;
    h.make_due("alice", GITHUB).await;
    match h.fresh("alice", GITHUB).await {
        Fresh::Unavailable(reason) => {
            assert!(reason.contains("503"), "{reason}");
            assert!(
                !reason.contains("at-") && !reason.contains("rt-"),
                "{reason}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(upstream::tokens::status(&h.state, "alice", &route)
        .await
        .expect("status")
        .is_some());
    // Back up: the kept refresh token still works.
    h.provider().mode = Mode::Rotate;
    assert_eq!(token_of(&h.fresh("alice", GITHUB).await), "at-8");

    // Provider refuses the refresh: deleted, not connected, and listed as a disconnect.
    let (_, etag, _) = h.revocations(None).await;
    let before = now();
    h.provider().mode = Mode::Refuse;
    h.make_due("alice", GITHUB).await;
    assert_eq!(h.fresh("alice", GITHUB).await, Fresh::NotConnected);
    h.assert_disconnect_listed(&etag, "alice", GITHUB, before)
        .await;
    assert_eq!(
        upstream::tokens::status(&h.state, "alice", &route)
            .await
            .expect("status"),
        None
    );
    h.provider().mode = Mode::Rotate;
    other.store.close().await;
}

async fn short_lived_token_is_refreshed_halfway(h: &Harness) {
    let bob = h.session("bob").await;
    h.provider().expires_in = 4;
    let started = h
        .get(
            &format!(
                "/github/.mcpgate/mcp/connect?redirect_url={}",
                urlencode("http://localhost:18080/app")
            ),
            Some(&bob),
        )
        .await;
    let state = h.accept_provider_redirect(&started.location());
    let done = h
        .get(
            &format!("/.mcpgate/upstream/callback?code=good-code&state={state}"),
            Some(&bob),
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text());
    let first = h.fresh("bob", GITHUB).await;
    let Fresh::Token {
        access_token,
        expires_at: Some(expires_at),
        refresh_at: Some(refresh_at),
    } = first
    else {
        panic!("expected a token with expiry, got {first:?}");
    };
    assert_eq!(
        expires_at - refresh_at,
        2,
        "a 4 s token is refreshed after 2 s"
    );
    let calls = h.provider().refresh_calls;
    while now() < refresh_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = h.fresh("bob", GITHUB).await;
    assert_ne!(token_of(&second), access_token);
    assert_eq!(h.provider().refresh_calls, calls + 1);
    h.provider().expires_in = 3600;
}

async fn authorization_reconnects_the_provider(h: &Harness) {
    let carol = h.session("carol").await;
    let route = h.route(DISCOVERED);
    let authorize = |state: &str| {
        let resource = format!("&resource={}", urlencode(DISCOVERED));
        support::authorize_url("static-public", CLIENT_REDIRECT, state, &resource)
    };
    // Through the provider before the code: discovered endpoints, with `resource`.
    let consent = h.get(&authorize("s1"), Some(&carol)).await.location();
    let to_provider = h
        .get(
            &format!("{}?{}", consent.path(), consent.query().unwrap_or("")),
            Some(&carol),
        )
        .await;
    assert_eq!(
        to_provider.status,
        StatusCode::FOUND,
        "{}",
        to_provider.text()
    );
    let location = to_provider.location();
    assert_eq!(
        query(&location, "resource").as_deref(),
        Some(format!("{}/mcp", h.base).as_str())
    );
    let state = h.accept_provider_redirect(&location);
    let done = h
        .get(
            &format!("/.mcpgate/upstream/callback?code=good-code&state={state}"),
            Some(&carol),
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text());
    let back = done.location();
    assert!(back.as_str().starts_with(CLIENT_REDIRECT), "{back}");
    assert_eq!(query(&back, "state").as_deref(), Some("s1"));
    let code = query(&back, "code").expect("code");
    assert_eq!(
        h.provider().resources.last().cloned().flatten(),
        Some(format!("{}/mcp", h.base)),
        "the code exchange names the resource"
    );
    let tokens = h
        .post_form(
            "/.mcpgate/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "static-public"),
                ("code", &code),
                ("redirect_uri", CLIENT_REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let tokens: serde_json::Value = serde_json::from_str(&tokens.text()).expect("json");
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();

    // Connected: the next authorization issues the code directly.
    let consent = h.get(&authorize("s2"), Some(&carol)).await.location();
    let direct = h
        .get(
            &format!("{}?{}", consent.path(), consent.query().unwrap_or("")),
            Some(&carol),
        )
        .await;
    assert!(
        direct.location().as_str().starts_with(CLIENT_REDIRECT),
        "{}",
        direct.location()
    );

    // The upstream token gone: the refresh grant asks for a new authorization, and the MCP
    // client's refresh token is not spent by that.
    upstream::tokens::forget(&h.state, "carol", Some(&route))
        .await
        .expect("forget");
    let refused = h
        .post_form(
            "/.mcpgate/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "static-public"),
                ("refresh_token", &refresh),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.text().contains("invalid_grant"),
        "{}",
        refused.text()
    );
    assert!(
        refused.text().contains("upstream authorization required"),
        "{}",
        refused.text()
    );
}

async fn all_scenarios(database_url: &str) {
    let h = harness(database_url).await;
    connect_and_refresh(&h).await;
    authorization_reconnects_the_provider(&h).await;
    short_lived_token_is_refreshed_halfway(&h).await;
    let (_, etag, _) = h.revocations(None).await;
    let before = now();
    upstream::tokens::forget(&h.state, "bob", None)
        .await
        .expect("forget all");
    assert_eq!(h.fresh("bob", GITHUB).await, Fresh::NotConnected);
    h.assert_disconnect_listed(&etag, "bob", GITHUB, before)
        .await;
    h.state.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_oauth_on_sqlite() {
    all_scenarios("sqlite://{dir}/data/db.sqlite?mode=rwc").await;
}

/// Runs when MCPGATE_TEST_POSTGRES_URL is set, in a fresh schema dropped afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_oauth_on_postgres_when_configured() {
    let Ok(base) = std::env::var("MCPGATE_TEST_POSTGRES_URL") else {
        eprintln!("MCPGATE_TEST_POSTGRES_URL not set; skipping the PostgreSQL upstream test");
        return;
    };
    support::in_postgres_schema(&base, "mcpgate_upstream_", |url| async move {
        all_scenarios(&url).await
    })
    .await;
}
