//! In-process tests of the internal API, the routes listing, browser sign-in with `return_to`,
//! service accounts (library and CLI) and the client_credentials grant (docs/delegation.md).

mod support;

use std::collections::HashSet;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jwt_simple::prelude::*;
use mcpgate_token_service::clock::now;
use mcpgate_token_service::identity::sign_in::{sign_in_redirect, validate_return_to};
use mcpgate_token_service::identity::users::UserClaims;
use mcpgate_token_service::internal_api::{self, InternalSecret};
use mcpgate_token_service::oauth::access_token::{self, Grant};
use mcpgate_token_service::service_accounts::{self, Created, NewAccount};
use mcpgate_token_service::upstream;
use mcpgate_token_service::upstream::provider::TokenSet;
use serde_json::{json, Value};
use support::{
    claims_of, send, Reply, Service as Harness, HOST, ISSUER, PASSWORD, SECRET, STATIC_SECRET,
};

const EVERYTHING: &str = "http://localhost:18080/everything";
const ENG: &str = "http://localhost:18080/eng";
const GITHUB: &str = "http://localhost:18080/github";
const APP: &str = "http://localhost:18080/app";

async fn harness() -> Harness {
    let authorization_server = format!(
        r#"
  clients:
    - client_id: static-basic
      client_secret: {STATIC_SECRET}
      redirect_uris: [https://app.example/cb]"#
    );
    let routes = format!(
        r#"
  - from: {EVERYTHING}
    to: http://127.0.0.1:3001/mcp
    name: Everything
    description: Every tool there is
    mcp: {{server: {{}}}}
  - from: {ENG}
    to: http://127.0.0.1:3002/mcp
    name: Eng
    mcp: {{server: {{}}}}
    policy:
      allow:
        and:
          - groups: {{has: eng}}
  - from: {GITHUB}
    to: http://127.0.0.1:3003/mcp
    name: GitHub
    mcp:
      server:
        upstream_oauth2:
          client_id: Iv1.abc
          client_secret: github-secret
          endpoint:
            auth_url: https://github.example/login/oauth/authorize
            token_url: https://github.example/login/oauth/access_token
  - from: {APP}
    to: http://127.0.0.1:18110
    name: Chat app
    mcp:
      client: {{}}"#
    );
    let gateway = support::Gateway {
        authorization_server: &authorization_server,
        database_url: "sqlite://{dir}/data/db.sqlite?mode=rwc",
        token_service: "  upstream_token_key_file: {dir}/upstream-key",
        routes: &routes,
    };
    gateway
        .start(&[("alice", "ALICE", &["eng"]), ("bob", "BOB", &[])])
        .await
}

fn header_of(jwt: &str) -> Value {
    let h = jwt.split('.').next().expect("header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("b64")).expect("header")
}

fn aud_set(claims: &Value) -> HashSet<String> {
    match &claims["aud"] {
        Value::String(s) => HashSet::from([s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().expect("string").to_string())
            .collect(),
        other => panic!("aud {other}"),
    }
}

impl Harness {
    async fn internal_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        auth: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        send(&self.internal, req.body(body).expect("request")).await
    }

    async fn internal_post(&self, path: &str, body: Value) -> Reply {
        self.internal_call("POST", path, Some(body), Some(&format!("Bearer {SECRET}")))
            .await
    }

    async fn credentials(&self, route: &str, token: &str) -> Reply {
        self.internal_post(
            "/internal/v1/credentials",
            json!({"route": route, "token": token}),
        )
        .await
    }

    async fn revocations(&self) -> Reply {
        self.internal_call(
            "GET",
            "/internal/v1/revocations",
            None,
            Some(&format!("Bearer {SECRET}")),
        )
        .await
    }

    async fn public_get(&self, path: &str, headers: &[(header::HeaderName, &str)]) -> Reply {
        support::get_with(&self.public, path, headers).await
    }

    async fn public_post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(header::HeaderName, String)],
    ) -> Reply {
        support::post_form(&self.public, path, form, headers).await
    }

    /// A TE for a user and one resource, minted and recorded like the token endpoint does.
    async fn te(&self, username: &str, groups: &[&str], resource: &str) -> (String, String) {
        let user = UserClaims {
            username: username.into(),
            email: format!("{username}@example.com"),
            name: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        let grant = Grant {
            issuer: ISSUER,
            user: &user,
            sid: "sid-test",
            client_id: "static-basic",
            resource,
            scope: None,
        };
        let minted = access_token::mint(&self.state.keys, &grant, now(), 600).expect("mint");
        self.state
            .store
            .record_access_token(&minted.jti, "family-test", minted.expires_at)
            .await
            .expect("record");
        (minted.token, minted.jti)
    }

    /// Signs a user in through `GET/POST /.mcpgate/sign_in?return_to=…`; returns the cookie.
    async fn sign_in_for_app(&self, username: &str) -> String {
        let reply = support::sign_in(&self.public, ("return_to", APP), username).await;
        assert_eq!(reply.header(header::LOCATION).as_deref(), Some(APP));
        reply.cookie()
    }

    async fn session(&self, cookie: &str, route: &str) -> Reply {
        let value = cookie.split_once('=').expect("name=value").1;
        self.internal_post(
            "/internal/v1/session",
            json!({"session": value, "route": route}),
        )
        .await
    }

    async fn token_request(&self, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Reply {
        let headers: Vec<(header::HeaderName, String)> = basic
            .map(|(id, secret)| {
                vec![(
                    header::AUTHORIZATION,
                    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
                )]
            })
            .unwrap_or_default();
        self.public_post_form("/.mcpgate/oauth/token", form, &headers)
            .await
    }

    fn public_key(&self) -> Ed25519PublicKey {
        let jwks = self.state.keys.jwks();
        let x = jwks["keys"][0]["x"].as_str().expect("x");
        Ed25519PublicKey::from_bytes(&URL_SAFE_NO_PAD.decode(x).expect("b64")).expect("key")
    }

    async fn service_account(
        &self,
        name: &str,
        routes: &[&str],
        client_credentials: bool,
    ) -> Created {
        service_accounts::create(
            &self.state.store,
            &self.state.keys,
            ISSUER,
            &self.state.routes,
            NewAccount {
                name: name.into(),
                email: format!("{name}@robots.example.com"),
                groups: vec!["robots".into()],
                routes: routes.iter().map(|r| r.to_string()).collect(),
                expires: None,
                client_credentials,
                jwks: None,
            },
            now(),
        )
        .await
        .expect("create service account")
    }
}

#[tokio::test]
async fn internal_api_needs_the_secret_and_is_not_on_the_public_router() {
    let h = harness().await;
    for auth in [
        None,
        Some("Bearer wrong-secret-wrong-secret-wrong-secret"),
        Some(&format!("Bearer {SECRET}x")[..]),
        Some(&format!("Basic {SECRET}")[..]),
        Some("Bearer "),
    ] {
        for (method, path) in [
            ("GET", "/internal/v1/revocations"),
            ("POST", "/internal/v1/credentials"),
            ("POST", "/internal/v1/session"),
            ("POST", "/internal/v1/upstream_rejected"),
            ("GET", "/internal/v1/nothing"),
        ] {
            let reply = h
                .internal_call(
                    method,
                    path,
                    Some(json!({"route": EVERYTHING, "token": "x"})),
                    auth,
                )
                .await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {auth:?}"
            );
            assert_eq!(reply.json()["error"], "unauthorized");
        }
    }
    let ok = h.revocations().await;
    assert_eq!(ok.status, StatusCode::OK);
    let missing = h
        .internal_call(
            "GET",
            "/internal/v1/nothing",
            None,
            Some(&format!("Bearer {SECRET}")),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // The public router serves none of it, with or without the secret.
    for (method, path) in [
        ("GET", "/internal/v1/revocations"),
        ("POST", "/internal/v1/credentials"),
        ("POST", "/internal/v1/session"),
        ("POST", "/internal/v1/upstream_rejected"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, HOST)
            .header(header::AUTHORIZATION, format!("Bearer {SECRET}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .expect("request");
        let reply = send(&h.public, req).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
    }

    assert!(InternalSecret::new("short").is_err());
}

#[tokio::test]
async fn credentials_happy_path_and_refusals() {
    let h = harness().await;
    let (te, jti) = h.te("alice", &["eng"], EVERYTHING).await;
    let reply = h.credentials(EVERYTHING, &te).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.header(header::CACHE_CONTROL).as_deref(),
        Some("no-store")
    );
    let body = reply.json();
    assert_eq!(body["upstream_token"], Value::Null);
    let assertion = body["assertion"].as_str().expect("assertion");
    assert_eq!(header_of(assertion)["typ"], "JWT");
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([ISSUER.to_string()])),
        allowed_audiences: Some(HashSet::from([EVERYTHING.to_string()])),
        ..Default::default()
    };
    let verified = h
        .public_key()
        .verify_token::<Value>(assertion, Some(options))
        .expect("assertion verifies with the JWKS key");
    assert_eq!(verified.subject.as_deref(), Some("alice"));
    assert_eq!(verified.custom["email"], "alice@example.com");
    assert_eq!(verified.custom["groups"], json!(["eng"]));
    let exp = verified.expires_at.expect("exp").as_secs() as i64;
    let cache_until = body["cache_until"].as_i64().expect("cache_until");
    assert_eq!(cache_until, exp - 60);
    assert!(cache_until > now());

    // The assertion itself is never a TE.
    let as_te = h.credentials(EVERYTHING, assertion).await;
    assert_eq!(as_te.status, StatusCode::UNAUTHORIZED);

    // Audience must contain the route.
    let wrong = h.credentials(ENG, &te).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json(), json!({"error": "invalid_token"}));
    assert!(!wrong.text().contains(&te));

    // Unknown route, bad bodies.
    let unknown = h.credentials("http://localhost:18080/nope", &te).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let garbage = h
        .internal_post("/internal/v1/credentials", json!({"token": te}))
        .await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    let big = h
        .internal_post(
            "/internal/v1/credentials",
            json!({"route": EVERYTHING, "token": "x".repeat(20_000)}),
        )
        .await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);

    // An upstream-OAuth route without a stored upstream token: 403 with the connect URL.
    let (gh, _) = h.te("alice", &["eng"], GITHUB).await;
    let connect = h.credentials(GITHUB, &gh).await;
    assert_eq!(connect.status, StatusCode::FORBIDDEN, "{}", connect.text());
    assert_eq!(
        connect.json(),
        json!({"error": "upstream_authorization_required", "connect_url": format!("{GITHUB}/.mcpgate/mcp/connect")})
    );

    // Revoked jti: refused, and listed.
    h.state
        .store
        .revoke_access_token(&jti, now(), now() + 600)
        .await
        .expect("revoke");
    let revoked = h.credentials(EVERYTHING, &te).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    let list = h.revocations().await.json();
    assert!(list["jtis"].as_array().expect("jtis").contains(&json!(jti)));

    // upstream_rejected: valid TE for the route → 204; wrong audience → 401.
    let rejected = h
        .internal_post(
            "/internal/v1/upstream_rejected",
            json!({"route": GITHUB, "token": gh}),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::NO_CONTENT);
    let rejected = h
        .internal_post(
            "/internal/v1/upstream_rejected",
            json!({"route": EVERYTHING, "token": gh}),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revocation_list_has_an_etag() {
    let h = harness().await;
    let first = h.revocations().await;
    assert_eq!(
        first.json(),
        json!({"jtis": [], "subjects": [], "disconnected": []})
    );
    let etag = first.header(header::ETAG).expect("etag");
    let again = h
        .internal_call(
            "GET",
            "/internal/v1/revocations",
            None,
            Some(&format!("Bearer {SECRET}")),
        )
        .await;
    assert_eq!(again.header(header::ETAG).as_deref(), Some(etag.as_str()));
    let req = Request::get("/internal/v1/revocations")
        .header(header::AUTHORIZATION, format!("Bearer {SECRET}"))
        .header(header::IF_NONE_MATCH, &etag)
        .body(Body::empty())
        .expect("request");
    let unchanged = send(&h.internal, req).await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
    assert!(unchanged.body.is_empty());
    h.state
        .store
        .revoke_access_token("some-jti", now(), now() + 60)
        .await
        .expect("revoke");
    let req = Request::get("/internal/v1/revocations")
        .header(header::AUTHORIZATION, format!("Bearer {SECRET}"))
        .header(header::IF_NONE_MATCH, &etag)
        .body(Body::empty())
        .expect("request");
    let changed = send(&h.internal, req).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.json()["jtis"], json!(["some-jti"]));
    assert_ne!(changed.header(header::ETAG), Some(etag));
}

impl Harness {
    /// The revocation list when it differs from `etag`'s: (status, ETag, body).
    async fn revocations_since(&self, etag: Option<&str>) -> (StatusCode, String, Value) {
        let mut req = Request::get("/internal/v1/revocations")
            .header(header::AUTHORIZATION, format!("Bearer {SECRET}"));
        if let Some(etag) = etag {
            req = req.header(header::IF_NONE_MATCH, etag);
        }
        let reply = send(&self.internal, req.body(Body::empty()).expect("request")).await;
        let body = if reply.status == StatusCode::OK {
            reply.json()
        } else {
            Value::Null
        };
        (
            reply.status,
            reply.header(header::ETAG).expect("etag"),
            body,
        )
    }

    /// Stores an upstream token for `username` on GITHUB, as the connect callback does.
    async fn connect_github(&self, username: &str) {
        let route = self
            .state
            .routes
            .iter()
            .find(|r| r.resource == GITHUB)
            .expect("route");
        let tokens = TokenSet {
            access_token: format!("gho-{username}"),
            refresh_token: None,
            expires_in: Some(3600),
            scope: None,
        };
        upstream::tokens::store(&self.state, username, route, &tokens, now())
            .await
            .expect("store upstream token");
    }
}

#[tokio::test]
async fn upstream_disconnects_reach_the_revocation_list() {
    let h = harness().await;
    let (status, etag, body) = h.revocations_since(None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["disconnected"], json!([]));

    // Connected: the credentials carry the upstream token; nothing is listed.
    h.connect_github("alice").await;
    let (gh, _) = h.te("alice", &["eng"], GITHUB).await;
    let granted = h.credentials(GITHUB, &gh).await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.text());
    assert_eq!(granted.json()["upstream_token"], "gho-alice");
    let (status, _, _) = h.revocations_since(Some(&etag)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    // The MCP server rejected it: deleted and listed, under a new ETag.
    let before = now();
    let rejected = h
        .internal_post(
            "/internal/v1/upstream_rejected",
            json!({"route": GITHUB, "token": gh}),
        )
        .await;
    assert_eq!(rejected.status, StatusCode::NO_CONTENT);
    let (status, etag2, body) = h.revocations_since(Some(&etag)).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(etag2, etag);
    let listed = body["disconnected"].as_array().expect("disconnected");
    assert_eq!(listed.len(), 1, "{body}");
    assert_eq!(listed[0]["sub"], "alice");
    assert_eq!(listed[0]["route"], GITHUB);
    let at = listed[0]["at"].as_i64().expect("at");
    assert!(at >= before && at <= now(), "{at}");
    assert!(!body.to_string().contains("gho-"), "no token in the list");
    assert_eq!(
        h.credentials(GITHUB, &gh).await.status,
        StatusCode::FORBIDDEN
    );

    // Disconnecting (forget) every route of a user lists each route that had a token.
    h.connect_github("bob").await;
    let (status, _, _) = h.revocations_since(Some(&etag2)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    upstream::tokens::forget(&h.state, "bob", None)
        .await
        .expect("forget");
    let (status, etag3, body) = h.revocations_since(Some(&etag2)).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(etag3, etag2);
    let subs: Vec<(&str, &str)> = body["disconnected"]
        .as_array()
        .expect("disconnected")
        .iter()
        .map(|d| {
            (
                d["sub"].as_str().expect("sub"),
                d["route"].as_str().expect("route"),
            )
        })
        .collect();
    assert_eq!(subs, vec![("alice", GITHUB), ("bob", GITHUB)]);

    // Nothing stored, nothing deleted: the list stays as it is.
    upstream::tokens::forget(&h.state, "carol", None)
        .await
        .expect("forget nothing");
    let (status, _, _) = h.revocations_since(Some(&etag3)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    // An hour on, the entries have left the list.
    let later = internal_api::revocations(&h.state, now() + 3601)
        .await
        .expect("list");
    assert_eq!(later["disconnected"], json!([]));
}

#[tokio::test]
async fn session_token_audience_and_routes_listing_follow_the_policy() {
    let h = harness().await;
    let alice = h.sign_in_for_app("alice").await;
    let bob = h.sign_in_for_app("bob").await;

    let reply = h.session(&alice, APP).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    let token = body["token"].as_str().expect("token").to_string();
    assert_eq!(header_of(&token)["typ"], "at+jwt");
    let claims = claims_of(&token);
    assert_eq!(claims["client_id"], "mcpgate:client-route");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(
        aud_set(&claims),
        HashSet::from([EVERYTHING, ENG, GITHUB, APP].map(String::from))
    );
    let lifetime = h
        .state
        .config
        .authorization_server
        .access_token_lifetime
        .as_secs() as i64;
    assert_eq!(
        claims["exp"].as_i64(),
        claims["iat"].as_i64().map(|i| i + lifetime)
    );
    let assertion = body["assertion"].as_str().expect("assertion");
    assert_eq!(claims_of(assertion)["aud"], APP);
    assert_eq!(header_of(assertion)["typ"], "JWT");
    assert!(
        body["cache_until"].as_i64().expect("cache_until")
            <= claims_of(assertion)["exp"].as_i64().expect("exp") - 60
    );

    let bob_token = h.session(&bob, APP).await.json()["token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(
        aud_set(&claims_of(&bob_token)),
        HashSet::from([EVERYTHING, GITHUB, APP].map(String::from)),
        "the eng route's policy keeps bob out"
    );

    // Invalid sessions and routes.
    let invalid = h.session("mcpgate_session=nope", APP).await;
    assert_eq!(invalid.status, StatusCode::UNAUTHORIZED);
    assert_eq!(invalid.json(), json!({"error": "invalid_session"}));
    let not_client = h.session(&alice, EVERYTHING).await;
    assert_eq!(not_client.status, StatusCode::BAD_REQUEST);

    // The session TE works on a server route through the credentials call.
    assert_eq!(
        h.credentials(EVERYTHING, &token).await.status,
        StatusCode::OK
    );

    // The routes listing, filtered by policy.
    let auth = format!("Bearer {token}");
    let listing = h
        .public_get("/.mcpgate/mcp/routes", &[(header::AUTHORIZATION, &auth)])
        .await;
    assert_eq!(listing.status, StatusCode::OK, "{}", listing.text());
    let servers = listing.json()["servers"].clone();
    assert_eq!(
        servers,
        json!([
            {"name": "Everything", "url": EVERYTHING, "description": "Every tool there is", "connected": true, "needs_oauth": false},
            {"name": "Eng", "url": ENG, "description": null, "connected": true, "needs_oauth": false},
            {"name": "GitHub", "url": GITHUB, "description": null, "connected": false, "needs_oauth": true},
        ])
    );
    let bob_auth = format!("Bearer {bob_token}");
    let bob_listing = h
        .public_get(
            "/.mcpgate/mcp/routes",
            &[(header::AUTHORIZATION, &bob_auth)],
        )
        .await
        .json();
    let names: Vec<&str> = bob_listing["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["Everything", "GitHub"]);

    // CORS like the other public endpoints.
    let cors = h
        .public_get(
            "/.mcpgate/mcp/routes",
            &[
                (header::AUTHORIZATION, &auth),
                (header::ORIGIN, "https://elsewhere.example"),
            ],
        )
        .await;
    assert_eq!(
        cors.header(header::ACCESS_CONTROL_ALLOW_ORIGIN).as_deref(),
        Some("*")
    );

    // No token, a bad token, an assertion: 401 JSON.
    for auth in [
        None,
        Some("Bearer nope".to_string()),
        Some(format!("Bearer {assertion}")),
    ] {
        let headers: Vec<(header::HeaderName, &str)> = auth
            .as_deref()
            .map(|a| vec![(header::AUTHORIZATION, a)])
            .unwrap_or_default();
        let reply = h.public_get("/.mcpgate/mcp/routes", &headers).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.json()["error"], "invalid_token");
    }

    // Disconnect: all, or one route; 204.
    let disconnect = |body: Option<Value>| {
        let req = Request::post("/.mcpgate/mcp/routes/disconnect")
            .header(header::HOST, HOST)
            .header(header::AUTHORIZATION, &auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .expect("request");
        send(&h.public, req)
    };
    assert_eq!(disconnect(None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        disconnect(Some(json!({"url": GITHUB}))).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        disconnect(Some(json!({"url": "http://localhost:18080/nope"})))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // A revoked session TE stops working for the listing.
    let jti = claims["jti"].as_str().expect("jti");
    h.state
        .store
        .revoke_access_token(jti, now(), now() + 600)
        .await
        .expect("revoke");
    let revoked = h
        .public_get("/.mcpgate/mcp/routes", &[(header::AUTHORIZATION, &auth)])
        .await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn return_to_must_be_a_client_route_or_connect_url() {
    let h = harness().await;
    let ok = |u: &str| validate_return_to(u, &h.state.client_routes, &h.state.routes);
    for good in [
        APP,
        "http://localhost:18080/app/",
        "http://localhost:18080/app/chat?x=1#top",
        "HTTP://LOCALHOST:18080/app/x",
        "http://localhost:18080/github/.mcpgate/mcp/connect?redirect_url=http%3A%2F%2Flocalhost%3A18080%2Fapp",
        "http://localhost:18080/everything/.mcpgate/mcp/connect",
    ] {
        assert!(ok(good).is_ok(), "{good} should be accepted: {:?}", ok(good));
    }
    assert_eq!(
        ok("HTTP://LOCALHOST:18080/app/x").expect("ok").0,
        "http://localhost:18080/app/x"
    );
    assert_eq!(ok(APP).expect("ok").1, "Chat app");
    for bad in [
        "",
        "/app",
        "app",
        "//evil.example/app",
        "///evil.example/app",
        "http:/localhost:18080/app",
        "http://evil.example/app",
        "https://localhost:18080/app",
        "http://localhost:18081/app",
        "http://localhost/app",
        "http://localhost.:18080/app",
        "http://127.0.0.1:18080/app",
        "http://[::1]:18080/app",
        "http://localhost:18080@evil.example/app",
        "http://user@localhost:18080/app",
        "http://user:pw@localhost:18080/app",
        "http://localhost:18080/app//evil.example",
        "http://localhost:18080//evil.example/app",
        "http://localhost:18080\\@evil.example/app",
        "http://localhost:18080/app\\..\\admin",
        "http://localhost:18080/app%5c..%5cadmin",
        "http://localhost:18080/app/%2F%2Fevil.example",
        "http://localhost:18080/app/%2fevil",
        "http://localhost:18080/appx",
        "http://localhost:18080/app/../admin",
        "http://localhost:18080/app/%2e%2e/admin",
        "http://localhost:18080/app/%2E%2E/%2E%2E/.mcpgate/oauth/authorize",
        "http://localhost:18080/.mcpgate/oauth/authorize?client_id=x",
        "http://localhost:18080/app/.mcpgate/mcp/connect",
        "http://localhost:18080/github",
        "http://localhost:18080/github/.mcpgate/mcp/connect/more",
        "http://localhost:18080/github/.mcpgate/mcp/connectx",
        "http://localhost:18081/github/.mcpgate/mcp/connect",
        "javascript:alert(1)//http://localhost:18080/app",
        "data:text/html,<script>alert(1)</script>",
        "http://localhost:18080/app\t",
        "http://localhost:18080/app\n.evil.example",
        "http://localhost:18080/app /x",
        "http://localhost:18080/app\u{0}",
        &format!("http://localhost:18080/app/{}", "a".repeat(5000)),
    ] {
        assert!(ok(bad).is_err(), "{bad:?} must be refused");
    }

    // Through HTTP: a bad return_to is a 400 page, never a redirect.
    let bad = h
        .public_get(&sign_in_redirect("http://evil.example/app"), &[])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.header(header::LOCATION).is_none());
    let bad_post = h
        .public_post_form(
            "/.mcpgate/sign_in",
            &[
                ("return_to", "http://evil.example/app"),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
            &[],
        )
        .await;
    assert_eq!(bad_post.status, StatusCode::BAD_REQUEST);
    assert!(bad_post.header(header::SET_COOKIE).is_none());

    // A good one shows the form, carrying return_to.
    let path = sign_in_redirect(APP);
    assert_eq!(
        path,
        "/.mcpgate/sign_in?return_to=http%3A%2F%2Flocalhost%3A18080%2Fapp"
    );
    let form = h.public_get(&path, &[]).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.text().contains("name=\"return_to\""));
    assert!(form.text().contains("Chat app"));

    // Wrong password: the form again, no cookie.
    let wrong = h
        .public_post_form(
            "/.mcpgate/sign_in",
            &[
                ("return_to", APP),
                ("username", "alice"),
                ("password", "nope"),
            ],
            &[],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.header(header::SET_COOKIE).is_none());

    // A cross-site POST is refused (login CSRF).
    let csrf = h
        .public_post_form(
            "/.mcpgate/sign_in",
            &[
                ("return_to", APP),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
            &[(header::ORIGIN, "https://evil.example".to_string())],
        )
        .await;
    assert_eq!(csrf.status, StatusCode::FORBIDDEN);
    let same = h
        .public_post_form(
            "/.mcpgate/sign_in",
            &[
                ("return_to", APP),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
            &[(header::ORIGIN, ISSUER.to_string())],
        )
        .await;
    assert_eq!(same.status, StatusCode::SEE_OTHER);

    // Signed in: the next visit goes straight back.
    let cookie = h.sign_in_for_app("alice").await;
    let again = h.public_get(&path, &[(header::COOKIE, &cookie)]).await;
    assert_eq!(again.status, StatusCode::FOUND);
    assert_eq!(again.header(header::LOCATION).as_deref(), Some(APP));
}

#[tokio::test]
async fn service_account_tokens_verify_and_revocation_reaches_the_list() {
    let h = harness().await;
    let Created::Token { account, token } = h
        .service_account("robot", &["Everything", ENG], false)
        .await
    else {
        panic!("token expected");
    };
    assert_eq!(header_of(&token)["typ"], "at+jwt");
    let claims = claims_of(&token);
    let sub = format!("sa:{}", account.id);
    assert_eq!(claims["sub"], sub.as_str());
    assert_eq!(claims["sid"], sub.as_str());
    assert_eq!(claims["client_id"], "mcpgate:service-account");
    assert_eq!(claims["name"], "robot");
    assert_eq!(claims["groups"], json!(["robots"]));
    assert!(claims["aud"].is_array());
    assert_eq!(
        aud_set(&claims),
        HashSet::from([EVERYTHING, ENG].map(String::from))
    );
    assert_eq!(
        claims["exp"].as_i64(),
        claims["iat"].as_i64().map(|i| i + 90 * 24 * 3600)
    );
    assert!(access_token::verify(&h.state.keys, ISSUER, &token, 5).is_some());

    let ok = h.credentials(ENG, &token).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(
        claims_of(ok.json()["assertion"].as_str().expect("a"))["sub"],
        sub.as_str()
    );
    assert_eq!(
        h.credentials(GITHUB, &token).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Duplicate names and unknown routes are errors naming the flag.
    let dup = service_accounts::create(
        &h.state.store,
        &h.state.keys,
        ISSUER,
        &h.state.routes,
        NewAccount {
            name: "robot".into(),
            email: "r@example.com".into(),
            groups: vec![],
            routes: vec!["Everything".into()],
            expires: None,
            client_credentials: false,
            jwks: None,
        },
        now(),
    )
    .await
    .expect_err("duplicate");
    assert!(dup.to_string().contains("--name"), "{dup}");
    let unknown = service_accounts::resolve_routes(&h.state.routes, &["Nope".into()])
        .expect_err("unknown route");
    assert!(
        unknown.to_string().contains("--route \"Nope\""),
        "{unknown}"
    );

    service_accounts::revoke(&h.state.store, "robot", now())
        .await
        .expect("revoke");
    assert!(service_accounts::revoke(&h.state.store, "robot", now())
        .await
        .is_err());
    assert_eq!(
        h.credentials(ENG, &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let list = h.revocations().await.json();
    assert_eq!(list["subjects"], json!([sub]));
}

fn cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mcpgate-token-service"))
        .arg("service-account")
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("MCPGATE_CONFIG")
        .env("RUST_LOG", "info")
        .output()
        .expect("run the CLI")
}

#[tokio::test]
async fn service_account_cli_round_trip() {
    let h = harness().await;
    let created = cli(
        &h.config_path,
        &[
            "create",
            "--name",
            "ci-bot",
            "--email",
            "ci@example.com",
            "--group",
            "ci",
            "--route",
            "Everything",
            "--route",
            "http://LOCALHOST:18080/eng/",
            "--expires",
            "7d",
        ],
    );
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(created.status.success(), "{stderr}");
    let token = String::from_utf8(created.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert!(
        !stderr.contains(&token),
        "the token is printed once, on stdout only"
    );
    let claims = claims_of(&token);
    assert_eq!(
        claims["exp"].as_i64(),
        claims["iat"].as_i64().map(|i| i + 7 * 24 * 3600)
    );
    assert_eq!(
        aud_set(&claims),
        HashSet::from([EVERYTHING, ENG].map(String::from))
    );
    assert_eq!(
        h.credentials(EVERYTHING, &token).await.status,
        StatusCode::OK
    );

    let cc = cli(
        &h.config_path,
        &[
            "create",
            "--name",
            "cc-bot",
            "--email",
            "cc@example.com",
            "--route",
            "Eng",
            "--client-credentials",
        ],
    );
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = String::from_utf8(cc.stdout).expect("utf-8");
    assert!(
        out.contains("client_id: sa-") && out.contains("client_secret: "),
        "{out}"
    );
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .expect("secret");

    let list = cli(&h.config_path, &["list"]);
    assert!(list.status.success());
    let table = String::from_utf8(list.stdout).expect("utf-8");
    assert!(
        table.contains("ci-bot") && table.contains("cc-bot"),
        "{table}"
    );
    assert!(table.contains("Everything,Eng"), "{table}");
    assert!(
        !table.contains(&token) && !table.contains(secret),
        "no secrets in the list"
    );

    let unknown = cli(
        &h.config_path,
        &[
            "create",
            "--name",
            "x",
            "--email",
            "x@example.com",
            "--route",
            "Nope",
        ],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("--route"));

    let revoked = cli(&h.config_path, &["revoke", "ci-bot"]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    assert_eq!(
        h.credentials(EVERYTHING, &token).await.status,
        StatusCode::UNAUTHORIZED
    );
    let subjects = h.revocations().await.json()["subjects"].clone();
    assert_eq!(subjects, json!([claims["sub"]]));
    let table = String::from_utf8(cli(&h.config_path, &["list"]).stdout).expect("utf-8");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("ci-bot") && l.ends_with("revoked")),
        "{table}"
    );
}

#[tokio::test]
async fn client_credentials_grant() {
    let h = harness().await;
    let Created::ClientCredentials {
        account,
        client_id,
        client_secret,
    } = h.service_account("etl", &["Everything", "Eng"], true).await
    else {
        panic!("client credentials expected");
    };
    assert_eq!(client_id, format!("sa-{}", account.id));
    assert_eq!(account.expires_at, None);

    // client_secret_basic, all routes.
    let reply = h
        .token_request(
            &[("grant_type", "client_credentials")],
            Some((&client_id, &client_secret)),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().expect("token");
    let claims = claims_of(token);
    assert_eq!(claims["sub"], format!("sa:{}", account.id));
    assert_eq!(
        aud_set(&claims),
        HashSet::from([EVERYTHING, ENG].map(String::from))
    );
    assert_eq!(h.credentials(ENG, token).await.status, StatusCode::OK);

    // client_secret_post with one resource.
    let reply = h
        .token_request(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", &client_secret),
                ("resource", "http://localhost:18080/eng/"),
            ],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        claims_of(reply.json()["access_token"].as_str().expect("t"))["aud"],
        ENG
    );

    // Refusals.
    let not_its_route = h
        .token_request(
            &[("grant_type", "client_credentials"), ("resource", GITHUB)],
            Some((&client_id, &client_secret)),
        )
        .await;
    assert_eq!(not_its_route.json()["error"], "invalid_target");
    let wrong_secret = h
        .token_request(
            &[("grant_type", "client_credentials")],
            Some((&client_id, "nope")),
        )
        .await;
    assert_eq!(wrong_secret.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_secret.json()["error"], "invalid_client");
    assert!(!wrong_secret.text().contains(&client_secret));
    let no_secret = h
        .token_request(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
            ],
            None,
        )
        .await;
    assert_eq!(no_secret.json()["error"], "invalid_client");
    let other_client = h
        .token_request(
            &[("grant_type", "client_credentials")],
            Some(("static-basic", STATIC_SECRET)),
        )
        .await;
    assert_eq!(other_client.status, StatusCode::BAD_REQUEST);
    assert_eq!(other_client.json()["error"], "unauthorized_client");
    let other_wrong = h
        .token_request(
            &[("grant_type", "client_credentials")],
            Some(("static-basic", "nope")),
        )
        .await;
    assert_eq!(other_wrong.json()["error"], "invalid_client");
    let unknown = h
        .token_request(
            &[("grant_type", "client_credentials")],
            Some(("sa-unknown", "x")),
        )
        .await;
    assert_eq!(unknown.json()["error"], "invalid_client");

    // Revoked: invalid_client, and live tokens stop working.
    service_accounts::revoke(&h.state.store, "etl", now())
        .await
        .expect("revoke");
    let revoked = h
        .token_request(
            &[("grant_type", "client_credentials")],
            Some((&client_id, &client_secret)),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    assert_eq!(revoked.json()["error"], "invalid_client");
    assert_eq!(
        h.credentials(ENG, token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.revocations().await.json()["subjects"],
        json!([format!("sa:{}", account.id)])
    );

    // Discovery advertises the grant.
    let meta = h
        .public_get("/.well-known/oauth-authorization-server", &[])
        .await
        .json();
    assert!(meta["grant_types_supported"]
        .as_array()
        .expect("grants")
        .contains(&json!("client_credentials")));
}
