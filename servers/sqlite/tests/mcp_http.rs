//! The server in-process on a loopback port, spoken to over streamable HTTP with real JSON-RPC
//! bodies, the way an MCP client behind the gateway does.

use std::sync::Arc;
use std::time::Duration;

use mcpgate_assertion::Verifier;
use mcpgate_server_sqlite::database::{Database, Limits};
use mcpgate_server_sqlite::http::{router, HttpOptions};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

struct Server {
    url: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(verifier: Option<Arc<Verifier>>) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sales.db");
    create_database(&path);
    let database = Database::open(
        &path,
        Limits {
            max_rows: 500,
            time_limit: Duration::from_secs(5),
        },
    )
    .expect("open");
    let shutdown = CancellationToken::new();
    let app = router(
        Arc::new(database),
        HttpOptions {
            verifier,
            allowed_hosts: vec![],
            shutdown: shutdown.clone(),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    Server {
        url: format!("http://{addr}/mcp"),
        shutdown,
        _dir: dir,
    }
}

/// Two of the demo's tables, a few rows.
fn create_database(path: &std::path::Path) {
    rusqlite::Connection::open(path)
        .expect("create")
        .execute_batch(
            "CREATE TABLE categories (category_id INTEGER PRIMARY KEY, name TEXT NOT NULL, description TEXT);
             CREATE TABLE orders (order_id INTEGER PRIMARY KEY, customer_id TEXT NOT NULL,
                 employee_id INTEGER NOT NULL, order_date TEXT NOT NULL, shipped_date TEXT,
                 ship_country TEXT NOT NULL);
             CREATE TABLE order_lines (order_id INTEGER NOT NULL REFERENCES orders,
                 product_id INTEGER NOT NULL, unit_price REAL NOT NULL, quantity INTEGER NOT NULL,
                 discount REAL NOT NULL DEFAULT 0, PRIMARY KEY (order_id, product_id));
             INSERT INTO orders VALUES
                 (1, 'ALFKI', 1, '2022-03-01', NULL, 'Germany'),
                 (2, 'ALFKI', 1, '2023-03-01', NULL, 'Germany'),
                 (3, 'BONAP', 2, '2024-05-09', NULL, 'France'),
                 (4, 'BONAP', 2, '2025-12-31', NULL, 'France');
             INSERT INTO order_lines VALUES
                 (1, 1, 10.0, 3, 0), (2, 1, 10.0, 4, 0.5), (3, 2, 2.5, 10, 0), (4, 3, 100.0, 1, 0.1);",
        )
        .expect("setup");
}

async fn post(url: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// The JSON-RPC message of an answer, whether it came as JSON or as one SSE event.
async fn message(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    let sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let text = response.text().await.expect("body");
    let json = if sse {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .find(|d| !d.is_empty())
            .expect("an SSE data line")
            .to_string()
    } else {
        text
    };
    serde_json::from_str(&json).expect("JSON-RPC message")
}

#[tokio::test]
async fn a_client_initializes_lists_the_tools_and_queries() {
    let server = start(None).await;
    let init = message(
        post(
            &server.url,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"}}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        init["result"]["serverInfo"]["name"],
        "mcpgate-server-sqlite"
    );

    let initialized = post(
        &server.url,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(initialized.status(), 202);

    let list = message(
        post(
            &server.url,
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await,
    )
    .await;
    let mut names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["describe_table", "list_tables", "query"]);

    let sql = "SELECT strftime('%Y', o.order_date) AS year, \
               ROUND(SUM(l.unit_price * l.quantity * (1 - l.discount)), 2) AS sales \
               FROM orders o JOIN order_lines l ON l.order_id = o.order_id \
               GROUP BY year ORDER BY year";
    let call = message(
        post(
            &server.url,
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                   "params": {"name": "query", "arguments": {"sql": sql}}}),
        )
        .await,
    )
    .await;
    let result = &call["result"];
    assert_eq!(result["isError"], false);
    let structured = &result["structuredContent"];
    assert_eq!(structured["columns"], json!(["year", "sales"]));
    assert_eq!(
        structured["rows"],
        json!([
            ["2022", 30.0],
            ["2023", 20.0],
            ["2024", 25.0],
            ["2025", 90.0]
        ])
    );
    let text = result["content"][0]["text"].as_str().expect("text");
    assert_eq!(
        &serde_json::from_str::<Value>(text).expect("text is JSON"),
        structured
    );

    let refused = message(
        post(
            &server.url,
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                   "params": {"name": "query", "arguments": {"sql": "INSERT INTO categories (name) VALUES ('x')"}}}),
        )
        .await,
    )
    .await;
    assert_eq!(refused["result"]["isError"], true);
    assert_eq!(
        refused["result"]["content"][0]["text"],
        "refused: only read-only statements are allowed (INSERT writes)"
    );
}

#[tokio::test]
async fn with_an_issuer_a_request_without_an_assertion_is_403() {
    let verifier = Arc::new(Verifier::new(
        "http://localhost:18080",
        "http://localhost:18080/sqlite",
        "http://127.0.0.1:9/.well-known/jwks.json",
    ));
    let server = start(Some(verifier)).await;
    let response = post(
        &server.url,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("json body");
    assert_eq!(body["error"], "invalid_assertion");
    assert!(body["reason"]
        .as_str()
        .expect("reason")
        .contains("x-mcpgate-assertion"));
}
