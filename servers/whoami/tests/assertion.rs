//! The router with the assertion check, driven with tower's oneshot, against a JWKS served by a
//! small axum server on a loopback port.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use mcpgate_assertion::{AssertionClaims, Verifier};
use mcpgate_server_whoami::http::{router, HttpOptions};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const ISSUER: &str = "http://localhost:18080";
const ROUTE: &str = "http://localhost:18080/whoami";

/// Serves `key`'s public half as a JWKS; returns its URL.
async fn serve_jwks(key: &Ed25519KeyPair) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.public_key().to_bytes());
    let document = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA", "use": "sig"}
    ]});
    let app = Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { axum::Json(document) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/.well-known/jwks.json")
}

fn assertion(key: &Ed25519KeyPair, audience: &str) -> String {
    let claims = Claims::with_custom_claims(
        AssertionClaims {
            email: "alice@example.com".into(),
            groups: vec!["sales".into()],
            name: Some("Alice Example".into()),
        },
        Duration::from_secs(300),
    )
    .with_issuer(ISSUER)
    .with_audience(audience)
    .with_subject("alice");
    let options = HeaderOptions {
        signature_type: Some("JWT".into()),
        ..Default::default()
    };
    key.sign_with_options(claims, &options).expect("sign")
}

async fn app(key: &Ed25519KeyPair) -> Router {
    let jwks_url = serve_jwks(key).await;
    router(HttpOptions {
        verifier: Arc::new(Verifier::new(ISSUER, ROUTE, jwks_url)),
        allowed_hosts: vec![],
        shutdown: CancellationToken::new(),
    })
}

/// POSTs one JSON-RPC message to /mcp; the answer's status and JSON body.
async fn post(app: &Router, assertion: Option<&str>, body: Value) -> (StatusCode, Value) {
    let mut request = Request::post("/mcp")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(assertion) = assertion {
        request = request.header("x-mcpgate-assertion", assertion);
    }
    let request = request.body(Body::from(body.to_string())).expect("request");
    let response = app.clone().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (status, body)
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}})
}

#[tokio::test]
async fn a_request_without_an_assertion_is_403_with_the_reason() {
    let key = Ed25519KeyPair::generate().with_key_id("k1");
    let app = app(&key).await;
    let (status, body) = post(&app, None, initialize()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "invalid_assertion");
    assert!(body["reason"]
        .as_str()
        .expect("reason")
        .contains("no `x-mcpgate-assertion` header"));
}

#[tokio::test]
async fn assertions_for_another_route_or_from_another_key_are_403() {
    let key = Ed25519KeyPair::generate().with_key_id("k1");
    let app = app(&key).await;

    let (status, body) = post(
        &app,
        Some(&assertion(&key, "http://localhost:18080/sqlite")),
        initialize(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["reason"].as_str().expect("reason").contains("is for"));

    let stranger = Ed25519KeyPair::generate().with_key_id("k1");
    let (status, _) = post(&app, Some(&assertion(&stranger, ROUTE)), initialize()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, _) = post(&app, Some("not-a-jwt"), initialize()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn whoami_answers_from_the_requests_assertion() {
    let key = Ed25519KeyPair::generate().with_key_id("k1");
    let app = app(&key).await;
    let token = assertion(&key, ROUTE);

    let (status, init) = post(&app, Some(&token), initialize()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        init["result"]["serverInfo"]["name"],
        "mcpgate-server-whoami"
    );

    let (status, call) = post(
        &app,
        Some(&token),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "whoami", "arguments": {}}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let result = &call["result"];
    assert_eq!(result["isError"], false);
    let answer = &result["structuredContent"];
    assert_eq!(answer["sub"], "alice");
    assert_eq!(answer["email"], "alice@example.com");
    assert_eq!(answer["groups"], json!(["sales"]));
    assert_eq!(answer["name"], "Alice Example");
    assert_eq!(answer["issuer"], ISSUER);
    assert_eq!(answer["audience"], ROUTE);
    assert!(answer["expires_at"].as_u64().expect("expires_at") > 0);
    let text = result["content"][0]["text"].as_str().expect("text");
    assert_eq!(&serde_json::from_str::<Value>(text).expect("JSON"), answer);
}
