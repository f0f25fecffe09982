//! The internal listener's operations endpoints: `/healthz`, `/readyz` (database and keys) and
//! `/metrics` (OpenMetrics), without the internal secret and never on the public router; and
//! metrics recorded where outcomes are known.

mod support;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use mcpgate_token_service::telemetry::metrics::sample;
use support::{send, Reply, Service, HOST};

const ROUTES: &str = r#"
  - from: http://localhost:18080/everything
    to: http://127.0.0.1:3001/mcp
    mcp: {server: {}}"#;

async fn service(routes: &str) -> Service {
    support::Gateway {
        authorization_server: "",
        database_url: "sqlite://{dir}/data/db.sqlite?mode=rwc",
        token_service: "",
        routes,
    }
    .start(&[])
    .await
}

async fn get(router: &axum::Router, path: &str) -> Reply {
    let req = Request::get(path)
        .header(header::HOST, HOST)
        .body(Body::empty())
        .expect("request");
    send(router, req).await
}

async fn metrics(s: &Service) -> String {
    let reply = get(&s.internal, "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.headers[header::CONTENT_TYPE]
        .to_str()
        .expect("ascii")
        .starts_with("application/openmetrics-text"));
    reply.text()
}

#[tokio::test]
async fn health_readiness_and_metrics_need_no_secret_and_stay_internal() {
    let s = service(ROUTES).await;
    let health = get(&s.internal, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = get(&s.internal, "/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");
    let text = metrics(&s).await;
    assert!(text.contains("mcpgate_build_info{version="), "{text}");
    assert_eq!(
        sample(&text, "mcpgate_db_pool_max_connections", &[]),
        Some(8.0)
    );
    // The public router serves none of them.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            get(&s.public, path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }

    // A database that does not answer: not ready, still alive.
    s.state.store.close().await;
    let ready = get(&s.internal, "/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["reason"], "database unavailable");
    assert_eq!(get(&s.internal, "/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn requests_and_grants_are_counted_with_bounded_labels() {
    let s = service(ROUTES).await;
    let form = |body: &str| {
        Request::post("/.mcpgate/oauth/token")
            .header(header::HOST, HOST)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.to_string()))
            .expect("request")
    };
    let reply = send(
        &s.public,
        form("grant_type=refresh_token&refresh_token=nope&client_id=nobody"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = send(&s.public, form("grant_type=password&client_id=alice")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    get(&s.public, "/everything/.mcpgate/mcp/connect").await;
    get(&s.public, "/some/user/id/42").await;
    get(
        &s.public,
        "/.well-known/oauth-protected-resource/everything",
    )
    .await;

    let text = metrics(&s).await;
    let v = |name: &str, labels: &[(&str, &str)]| sample(&text, name, labels);
    assert_eq!(
        v(
            "mcpgate_token_grants_total",
            &[
                ("grant_type", "refresh_token"),
                ("result", "invalid_client")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "mcpgate_token_grants_total",
            &[("grant_type", "other"), ("result", "invalid_client")]
        ),
        Some(1.0)
    );
    let requests = |route: &str, class: &str| {
        v(
            "mcpgate_http_request_duration_seconds_count",
            &[
                ("listener", "public"),
                ("route", route),
                ("status_class", class),
            ],
        )
    };
    assert_eq!(requests("/.mcpgate/oauth/token", "4xx"), Some(2.0));
    assert!(requests("connect", "4xx").is_some() || requests("connect", "3xx").is_some());
    assert_eq!(requests("other", "4xx"), Some(1.0));
    assert_eq!(
        requests("/.well-known/oauth-protected-resource/{*path}", "2xx"),
        Some(1.0)
    );
    // The scrape before this one was counted on the internal listener.
    assert_eq!(
        v(
            "mcpgate_http_request_duration_seconds_count",
            &[("listener", "internal"), ("route", "/metrics")]
        ),
        None,
        "a request is counted once it is answered"
    );
    assert!(!text.contains("nobody") && !text.contains("alice") && !text.contains("/42"));
    let again = metrics(&s).await;
    assert_eq!(
        sample(
            &again,
            "mcpgate_http_request_duration_seconds_count",
            &[("listener", "internal"), ("route", "/metrics")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn metrics_can_be_switched_off() {
    let routes = format!("{ROUTES}\ntelemetry:\n  metrics: false");
    let s = service(&routes).await;
    assert_eq!(
        get(&s.internal, "/metrics").await.status,
        StatusCode::UNAUTHORIZED,
        "without metrics, /metrics is just another internal path"
    );
    assert_eq!(get(&s.internal, "/healthz").await.status, StatusCode::OK);
}
