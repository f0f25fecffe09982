//! Drives `/v1/responses` (streamed) through the stand-in's router against a real rmcp server on
//! loopback: the stand-in must connect with the credential it was handed, list and call the
//! tools, and stream events carrying the tool's output.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use mcpgate_llm_standin::api::{router, AppState};
use mcpgate_llm_standin::mcp::RmcpClient;
use mcpgate_llm_standin::playbook::SALES_BY_YEAR_SQL;
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::{
    session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
};
use rmcp::{schemars, tool, tool_handler, tool_router, ServerHandler};
use serde_json::{json, Value};
use tower::ServiceExt;

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct QueryArgs {
    sql: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    message: String,
}

#[derive(Debug, Clone)]
struct TestServer {
    tool_router: ToolRouter<Self>,
    seen_sql: Arc<Mutex<Vec<String>>>,
}

#[tool_router]
impl TestServer {
    #[tool(description = "Run a read-only SQL query")]
    fn query(&self, Parameters(QueryArgs { sql }): Parameters<QueryArgs>) -> String {
        self.seen_sql.lock().unwrap().push(sql);
        json!({"columns": ["year", "sales"], "rows": [["2024", 1234567.5], ["2025", 42]], "row_count": 2, "truncated": false})
            .to_string()
    }

    #[tool(description = "Echo a message back")]
    fn echo(&self, Parameters(EchoArgs { message }): Parameters<EchoArgs>) -> String {
        format!("Echo: {message}")
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TestServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// The Authorization header of every request the MCP server got.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

const GOOD_TOKENS: [&str; 2] = ["Bearer te-123", "Bearer tok-2"];

/// Starts the MCP server at `/mcp`; it answers 401 to any other credential than the good ones.
async fn start_mcp_server() -> (String, Seen, Arc<Mutex<Vec<String>>>) {
    let seen: Seen = Arc::default();
    let seen_sql: Arc<Mutex<Vec<String>>> = Arc::default();
    let service: StreamableHttpService<TestServer, LocalSessionManager> =
        StreamableHttpService::new(
            {
                let seen_sql = seen_sql.clone();
                move || {
                    Ok(TestServer {
                        tool_router: TestServer::tool_router(),
                        seen_sql: seen_sql.clone(),
                    })
                }
            },
            Default::default(),
            StreamableHttpServerConfig::default().with_sse_keep_alive(None),
        );
    let record = {
        let seen = seen.clone();
        move |request: Request, next: Next| {
            let seen = seen.clone();
            async move {
                let auth = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                seen.lock().unwrap().push(auth.clone());
                if !auth.as_deref().is_some_and(|a| GOOD_TOKENS.contains(&a)) {
                    return (StatusCode::UNAUTHORIZED, "no entry").into_response();
                }
                next.run(request).await
            }
        }
    };
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(middleware::from_fn(record));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/mcp"), seen, seen_sql)
}

fn standin() -> axum::Router {
    let state = AppState::new(
        RmcpClient::new(Duration::from_secs(10)),
        Some("sk-standin".into()),
        Duration::ZERO,
    );
    router(Arc::new(state))
}

/// POSTs to the stand-in; returns the status, content type and body.
async fn post(app: &axum::Router, path: &str, body: Value) -> (StatusCode, String, String) {
    let request = axum::http::Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer sk-standin")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response: Response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

/// `event:` / `data:` pairs of a server-sent event stream.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut kind = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(k) = line.strip_prefix("event: ") {
                    kind = k.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (kind, serde_json::from_str(&data).unwrap())
        })
        .collect()
}

fn mcp_tool(url: &str, credential: Value) -> Value {
    let mut tool = json!({"type": "mcp", "server_label": "sales", "server_url": url, "require_approval": "never"});
    if let (Some(t), Some(c)) = (tool.as_object_mut(), credential.as_object()) {
        t.extend(c.clone());
    }
    tool
}

#[tokio::test]
async fn streamed_response_calls_the_mcp_server_with_the_bearer_it_was_handed() {
    let (url, seen, _) = start_mcp_server().await;
    let app = standin();
    let (status, content_type, body) = post(
        &app,
        "/v1/responses",
        json!({
            "model": "standin-1",
            "input": [{"role": "user", "content": "echo hello from the stand-in"}],
            "stream": true,
            "tools": [mcp_tool(&url, json!({"headers": {"Authorization": "Bearer te-123"}}))]
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );

    let events = sse_events(&body);
    for (i, (kind, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], json!(kind));
        assert_eq!(data["sequence_number"], json!(i));
    }
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds[..12],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.mcp_list_tools.in_progress",
            "response.mcp_list_tools.completed",
            "response.output_item.done",
            "response.output_item.added",
            "response.mcp_call.in_progress",
            "response.mcp_call_arguments.delta",
            "response.mcp_call_arguments.done",
            "response.mcp_call.completed",
            "response.output_item.done",
        ]
    );
    assert_eq!(kinds.last(), Some(&"response.completed"));

    // The listing has both tools, with their schemas.
    let listing = &events[5].1["item"];
    let names: Vec<&str> = listing["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"query") && names.contains(&"echo"),
        "{names:?}"
    );
    assert!(listing["tools"][0]["input_schema"].is_object());

    // The call carries the tool's real output, and the answer quotes it.
    let call = &events[11].1["item"];
    assert_eq!(call["name"], "echo");
    assert_eq!(
        call["arguments"],
        r#"{"message":"hello from the stand-in"}"#
    );
    assert_eq!(call["output"], "Echo: hello from the stand-in");
    let completed = &events.last().unwrap().1["response"];
    assert_eq!(completed["status"], "completed");
    let text = completed["output"][2]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(text.contains("Echo: hello from the stand-in"), "{text}");
    // Credentials are not echoed back.
    assert!(!body.contains("te-123"));

    // Every request the MCP server got carried the bearer, verbatim.
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(
        seen.iter().all(|a| a.as_deref() == Some("Bearer te-123")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn the_authorization_field_becomes_a_bearer_and_the_sales_query_runs() {
    let (url, seen, seen_sql) = start_mcp_server().await;
    let app = standin();
    let (status, _, body) = post(
        &app,
        "/v1/responses",
        json!({
            "model": "standin-1",
            "input": "What were the sales by year?",
            "tools": [mcp_tool(&url, json!({"authorization": "tok-2", "allowed_tools": ["query"]}))]
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(response["object"], "response");
    assert!(response["id"].as_str().unwrap().starts_with("resp_"));
    let tools = response["output"][0]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 1, "allowed_tools keeps only query");
    let text = response["output"][2]["content"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        text.contains("| 2024 | 1,234,567.50 |\n| 2025 | 42.00 |"),
        "{text}"
    );
    assert_eq!(
        seen_sql.lock().unwrap().clone(),
        vec![SALES_BY_YEAR_SQL.to_owned()]
    );
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .all(|a| a.as_deref() == Some("Bearer tok-2")));
    assert!(response["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn a_refused_listing_is_reported_and_streamed_as_failed() {
    let (url, _, _) = start_mcp_server().await;
    let app = standin();
    let (status, _, body) = post(
        &app,
        "/v1/responses",
        json!({
            "model": "standin-1",
            "input": "echo hi",
            "stream": true,
            "tools": [mcp_tool(&url, json!({"authorization": "wrong"}))]
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let events = sse_events(&body);
    assert!(events
        .iter()
        .any(|(k, _)| k == "response.mcp_list_tools.failed"));
    let done = events
        .iter()
        .find(|(k, d)| k == "response.output_item.done" && d["item"]["type"] == "mcp_list_tools")
        .unwrap();
    let error = done.1["item"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("Error retrieving tool list from MCP server: 'sales'."),
        "{error}"
    );
    assert!(!body.contains("wrong\""));
}

#[tokio::test]
async fn errors_look_like_openais() {
    let app = standin();
    let (status, _, body) = post(
        &app,
        "/v1/responses",
        json!({"model": "gpt-9", "input": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "model_not_found");
    assert_eq!(error["error"]["type"], "invalid_request_error");

    let (status, _, body) = post(&app, "/v1/chat/completions", json!({"messages": []})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["param"],
        "model"
    );

    let request = axum::http::Request::get("/v1/models")
        .header(header::AUTHORIZATION, "Bearer nope")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let error: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(error["error"]["code"], "invalid_api_key");
    assert!(!String::from_utf8_lossy(&bytes).contains("nope"));

    let request = axum::http::Request::get("/v1/models")
        .header(header::AUTHORIZATION, "Bearer sk-standin")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let models: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "standin-1");
    assert_eq!(models["data"][0]["owned_by"], "mcpgate-standin");
}

#[tokio::test]
async fn chat_completions_stream_a_tool_call_then_the_answer() {
    let app = standin();
    let tools = json!([{"type": "function", "function": {"name": "sales__query", "description": "SQL", "parameters": {"type": "object"}}}]);
    let (status, content_type, body) = post(
        &app,
        "/v1/chat/completions",
        json!({"model": "standin-1", "stream": true, "messages": [{"role": "user", "content": "sales by year?"}], "tools": tools}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/event-stream"));
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"));
    let first: Value = serde_json::from_str(data[0]).unwrap();
    let call_id = first["choices"][0]["delta"]["tool_calls"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(call_id.starts_with("call_"));
    let finish: Value = serde_json::from_str(data[data.len() - 2]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");

    let (_, _, body) = post(
        &app,
        "/v1/chat/completions",
        json!({"model": "standin-1", "tools": tools, "messages": [
            {"role": "user", "content": "sales by year?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": call_id, "type": "function", "function": {"name": "sales__query", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "{\"columns\":[\"year\",\"sales\"],\"rows\":[[\"2023\",5000]]}"}
        ]}),
    )
    .await;
    let completion: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    let text = completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert!(text.ends_with("| 2023 | 5,000.00 |"), "{text}");
}
