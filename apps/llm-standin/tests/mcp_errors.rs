//! What the MCP client says when a server cannot be reached or refuses the connection: the HTTP
//! status (and challenge) in plain words, without the transport's type names.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;
use mcpgate_llm_standin::mcp::{McpClient, McpServer, RmcpClient};

#[tokio::test]
async fn connect_errors_name_the_http_status() {
    let challenge = || async {
        let mut headers = HeaderMap::new();
        headers.insert(
            "www-authenticate",
            "Bearer resource_metadata=\"http://x/.well-known/oauth-protected-resource\""
                .parse()
                .unwrap(),
        );
        (StatusCode::UNAUTHORIZED, headers, "").into_response()
    };
    let app = axum::Router::new()
        .route(
            "/plain401",
            any(|| async { (StatusCode::UNAUTHORIZED, "nope").into_response() }),
        )
        .route("/challenge", any(challenge))
        .route(
            "/forbidden",
            any(|| async { (StatusCode::FORBIDDEN, "forbidden").into_response() }),
        )
        .route(
            "/broken",
            any(|| async { StatusCode::INTERNAL_SERVER_ERROR.into_response() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let client = RmcpClient::new(Duration::from_secs(5));
    let error = |path: String| {
        let client = client.clone();
        async move {
            let server = McpServer {
                label: "x".into(),
                url: path,
                bearer: Some("secret-token".into()),
                headers: Vec::new(),
            };
            match client.connect(&server).await {
                Ok(_) => panic!("connected"),
                Err(e) => e,
            }
        }
    };
    let at = |p: &str| format!("http://{addr}/{p}");
    assert_eq!(error(at("plain401")).await, "HTTP 401 Unauthorized: nope");
    assert_eq!(
        error(at("challenge")).await,
        "HTTP 401 Unauthorized (WWW-Authenticate: Bearer resource_metadata=\"http://x/.well-known/oauth-protected-resource\")"
    );
    assert_eq!(
        error(at("forbidden")).await,
        "HTTP 403 Forbidden: forbidden"
    );
    assert_eq!(error(at("broken")).await, "HTTP 500");
    let refused = error("http://127.0.0.1:1/mcp".into()).await;
    assert!(refused.starts_with("error sending request"), "{refused}");
    assert!(!refused.contains("secret-token"));
}
