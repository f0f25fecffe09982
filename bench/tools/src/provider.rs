//! Scenario E: a tiny OAuth provider on 127.0.0.1, served by the load client itself, so bench users
//! can connect an `upstream_oauth2` route through the token service's real flow.
//!
//! - `GET /authorize?response_type=code&client_id&redirect_uri&state&code_challenge&code_challenge_method=S256`
//!   → 302 to `redirect_uri?code=…&state=…` (no page: the "user" always approves).
//! - `POST /token` (client authentication: HTTP Basic or `client_id`/`client_secret` in the body)
//!   - `grant_type=authorization_code`: the code is single use and must match its `redirect_uri`
//!     and PKCE challenge → `{"access_token", "token_type": "bearer", "expires_in": 30 days,
//!     "refresh_token"}`.
//!   - `grant_type=refresh_token`: rotates (counted: during a run there should be none).
//!
//! The browser driver tells the provider which bench user a code belongs to ([`Provider::claim`])
//! when it follows the redirect, so the provider knows the access token it issued to each user and
//! the load can check every answer of the token service against it. Tokens are random and never
//! printed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

/// Must match `routes[…].mcp.server.upstream_oauth2` in `bench/config/gateway.yaml.tmpl`.
pub const CLIENT_ID: &str = "bench-upstream-client";
pub const CLIENT_SECRET: &str = "bench-upstream-secret";
/// Lifetime of the access tokens it issues: far beyond any run, so the token service never
/// refreshes them while the load runs.
pub const EXPIRES_IN: u64 = 30 * 24 * 3600;

struct PendingCode {
    challenge: String,
    redirect_uri: String,
    user: Option<String>,
}

#[derive(Default)]
pub struct Provider {
    codes: HashMap<String, PendingCode>,
    /// user → the access token issued last.
    issued: HashMap<String, String>,
    /// refresh token → user.
    refresh: HashMap<String, String>,
    pub code_grants: u64,
    pub refresh_grants: u64,
    /// Requests it refused (what was wrong, never a token).
    pub refused: Vec<String>,
}

pub type Shared = Rc<RefCell<Provider>>;

fn random(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        B64.encode(ed25519_compact::Seed::generate().as_ref())
    )
}

impl Provider {
    /// Records that `code` (from the provider's redirect) was issued in `user`'s browser.
    pub fn claim(&mut self, code: &str, user: &str) -> bool {
        match self.codes.get_mut(code) {
            Some(p) if p.user.is_none() => {
                p.user = Some(user.to_string());
                true
            }
            _ => false,
        }
    }

    /// The access token the provider issued to `user` last.
    pub fn token_of(&self, user: &str) -> Option<&str> {
        self.issued.get(user).map(String::as_str)
    }

    fn refuse(&mut self, status: u16, error: &str, why: String) -> (u16, String, Option<String>) {
        if self.refused.len() < 5 {
            self.refused.push(why);
        }
        (
            status,
            serde_json::json!({ "error": error }).to_string(),
            None,
        )
    }

    fn authorize(&mut self, query: &str) -> (u16, String, Option<String>) {
        let q: HashMap<String, String> = parse_form(query);
        let get = |k: &str| q.get(k).cloned().unwrap_or_default();
        if get("response_type") != "code"
            || get("client_id") != CLIENT_ID
            || get("code_challenge_method") != "S256"
            || get("code_challenge").is_empty()
            || get("redirect_uri").is_empty()
        {
            let why = format!(
                "authorize: response_type={:?} client_id={:?} code_challenge_method={:?}",
                get("response_type"),
                get("client_id"),
                get("code_challenge_method")
            );
            return self.refuse(400, "invalid_request", why);
        }
        let code = random("bench-up-code-");
        let redirect_uri = get("redirect_uri");
        let sep = if redirect_uri.contains('?') { '&' } else { '?' };
        let location = format!(
            "{redirect_uri}{sep}code={}&state={}",
            crate::tsload::pct(&code),
            crate::tsload::pct(&get("state"))
        );
        self.codes.insert(
            code,
            PendingCode {
                challenge: get("code_challenge"),
                redirect_uri,
                user: None,
            },
        );
        (302, String::new(), Some(location))
    }

    fn issue(&mut self, user: &str) -> (u16, String, Option<String>) {
        let access = random("bench-up-at-");
        let refresh = random("bench-up-rt-");
        self.issued.insert(user.to_string(), access.clone());
        self.refresh.retain(|_, u| u != user);
        self.refresh.insert(refresh.clone(), user.to_string());
        let body = serde_json::json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": EXPIRES_IN,
            "refresh_token": refresh,
            "scope": "bench",
        });
        (200, body.to_string(), None)
    }

    fn token(&mut self, authorization: Option<&str>, body: &str) -> (u16, String, Option<String>) {
        let f = parse_form(body);
        let get = |k: &str| f.get(k).cloned().unwrap_or_default();
        let basic = authorization
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(i, p)| (crate::tsload::pct_decode(i), crate::tsload::pct_decode(p)))
            });
        let (id, secret) = basic.unwrap_or_else(|| (get("client_id"), get("client_secret")));
        if id != CLIENT_ID || secret != CLIENT_SECRET {
            return self.refuse(
                401,
                "invalid_client",
                "token: client authentication failed".into(),
            );
        }
        match get("grant_type").as_str() {
            "authorization_code" => {
                let Some(p) = self.codes.remove(&get("code")) else {
                    return self.refuse(400, "invalid_grant", "token: unknown or used code".into());
                };
                let challenge = B64.encode(Sha256::digest(get("code_verifier").as_bytes()));
                if challenge != p.challenge || get("redirect_uri") != p.redirect_uri {
                    return self.refuse(
                        400,
                        "invalid_grant",
                        "token: PKCE verifier or redirect_uri does not match the code".into(),
                    );
                }
                let Some(user) = p.user else {
                    return self.refuse(
                        400,
                        "invalid_grant",
                        "token: the code was not claimed by a bench user's browser".into(),
                    );
                };
                self.code_grants += 1;
                self.issue(&user)
            }
            "refresh_token" => {
                let Some(user) = self.refresh.get(&get("refresh_token")).cloned() else {
                    return self.refuse(
                        400,
                        "invalid_grant",
                        "token: unknown refresh token".into(),
                    );
                };
                self.refresh_grants += 1;
                self.issue(&user)
            }
            other => {
                let why = format!("token: grant_type {other:?}");
                self.refuse(400, "unsupported_grant_type", why)
            }
        }
    }
}

fn parse_form(s: &str) -> HashMap<String, String> {
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (crate::tsload::pct_decode(k), crate::tsload::pct_decode(v))
        })
        .collect()
}

async fn handle(
    p: Shared,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (status, text, location) = match (method.as_str(), path.as_str()) {
        ("GET", "/authorize") => p.borrow_mut().authorize(&query),
        ("POST", "/token") => p
            .borrow_mut()
            .token(authorization.as_deref(), &String::from_utf8_lossy(&body)),
        _ => (404, r#"{"error":"not_found"}"#.to_string(), None),
    };
    let mut b = hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store");
    if let Some(l) = location {
        b = b.header("location", l);
    }
    Ok(b.body(Full::new(Bytes::from(text)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new()))))
}

/// Binds `listen` and serves the provider on the current `LocalSet` until the process ends.
pub async fn start(listen: &str) -> Result<Shared, String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("the upstream provider cannot listen on {listen}: {e}"))?;
    let p: Shared = Rc::new(RefCell::new(Provider::default()));
    let shared = p.clone();
    tokio::task::spawn_local(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let p = shared.clone();
            tokio::task::spawn_local(async move {
                let svc = service_fn(move |req| handle(p.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(p)
}
