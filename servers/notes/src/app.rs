//! The HTTP application: the MCP endpoint at `/mcp` (behind the assertion check when configured)
//! and `/healthz`.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use mcpgate_assertion::Verifier;
use rmcp::transport::streamable_http_server::{
    session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
};

use crate::provider::Provider;
use crate::tools::NotesServer;
use mcpgate_assertion::axum_layer::require_assertion;

/// `verifier`: None trusts every caller (a warning at startup says so).
pub fn router(
    provider: Arc<Provider>,
    verifier: Option<Arc<Verifier>>,
    config: StreamableHttpServerConfig,
) -> Router {
    let mcp = StreamableHttpService::new(
        move || Ok(NotesServer::new(provider.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let mcp = Router::new().nest_service("/mcp", mcp);
    let mcp = match verifier {
        Some(v) => mcp.layer(axum::middleware::from_fn_with_state(v, require_assertion)),
        None => mcp,
    };
    mcp.route("/healthz", get(|| async { "ok" }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, Request, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::post;
    use axum::Json;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    const PAGE: &str = "3f2a9c14-6b7d-4e21-8a5f-0c9d1e2b3a41";
    const GOOD: &str = "ntn_good_token_for_alice";
    const REVOKED: &str = "ntn_revoked_token";

    /// What the stand-in provider saw: (path, bearer, Notion-Version) per call.
    type Calls = Arc<Mutex<Vec<(String, Option<String>, Option<String>)>>>;

    fn rich(text: &str) -> Value {
        json!([{"type": "text", "text": {"content": text, "link": null}, "plain_text": text, "href": null}])
    }

    /// Records the call; None when the bearer is the provider's (Notion's) 401.
    fn admit(calls: &Calls, path: String, headers: &HeaderMap) -> Option<axum::response::Response> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let bearer =
            header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_string));
        calls
            .lock()
            .expect("calls")
            .push((path, bearer.clone(), header("notion-version")));
        (bearer.as_deref() != Some(GOOD)).then(|| {
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"object": "error", "status": 401, "code": "unauthorized", "message": "API token is invalid."})),
            )
                .into_response()
        })
    }

    fn page() -> Value {
        json!({"object": "page", "id": PAGE, "created_time": "2025-05-12T09:14:00.000Z",
               "last_edited_time": "2025-07-28T16:42:00.000Z",
               "properties": {"title": {"id": "title", "type": "title", "title": rich("Q3 launch plan")}},
               "url": format!("http://notes.example/Q3-launch-plan-{}", PAGE.replace('-', ""))})
    }

    /// An in-process stand-in of the provider's API on 127.0.0.1:0; its origin and call record.
    async fn stand_in() -> (String, Calls) {
        let calls: Calls = Arc::default();
        let api = Router::new()
            .route(
                "/v1/search",
                post(|State(calls): State<Calls>, headers: HeaderMap, Json(body): Json<Value>| async move {
                    if let Some(refused) = admit(&calls, "/v1/search".into(), &headers) {
                        return refused;
                    }
                    let hit = body["query"].as_str().is_some_and(|q| q.to_lowercase().contains("launch"));
                    let results = if hit { vec![page()] } else { vec![] };
                    Json(json!({"object": "list", "results": results, "has_more": false, "next_cursor": null}))
                        .into_response()
                }),
            )
            .route(
                "/v1/pages/{id}",
                get(|State(calls): State<Calls>, headers: HeaderMap, Path(id): Path<String>| async move {
                    if let Some(refused) = admit(&calls, format!("/v1/pages/{id}"), &headers) {
                        return refused;
                    }
                    if id != PAGE {
                        return (StatusCode::NOT_FOUND, Json(json!({"object": "error", "status": 404, "code": "object_not_found", "message": "Could not find page."}))).into_response();
                    }
                    Json(page()).into_response()
                }),
            )
            .route(
                "/v1/blocks/{id}/children",
                get(|State(calls): State<Calls>, headers: HeaderMap, Path(id): Path<String>, Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    if let Some(refused) = admit(&calls, format!("/v1/blocks/{id}/children"), &headers) {
                        return refused;
                    }
                    // Two pages of blocks, to exercise the cursor.
                    let answer = match q.get("start_cursor").map(String::as_str) {
                        None => json!({"object": "list", "has_more": true, "next_cursor": "c2", "results": [
                            {"object": "block", "type": "paragraph", "paragraph": {"rich_text": rich("Launch on 16 September 2025; Sofia owns it.")}},
                            {"object": "block", "type": "heading_2", "heading_2": {"rich_text": rich("Milestones")}}]}),
                        Some("c2") => json!({"object": "list", "has_more": false, "next_cursor": null, "results": [
                            {"object": "block", "type": "bulleted_list_item", "bulleted_list_item": {"rich_text": rich("Samples by 18 August")}}]}),
                        Some(_) => return (StatusCode::BAD_REQUEST, "bad cursor").into_response(),
                    };
                    Json(answer).into_response()
                }),
            )
            .with_state(calls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, api).await });
        (origin, calls)
    }

    fn app_for(provider_api: &str) -> Router {
        let provider = Arc::new(Provider::new(provider_api).expect("provider"));
        router(provider, None, StreamableHttpServerConfig::default())
    }

    /// One JSON-RPC POST to /mcp; the status, the session id and the JSON-RPC answer (or, when
    /// there is none, the body as JSON).
    async fn post_mcp(
        app: &Router,
        session: Option<&str>,
        headers: &[(&str, &str)],
        message: Value,
    ) -> (StatusCode, Option<String>, Option<Value>) {
        let mut request = Request::post("/mcp")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(s) = session {
            request = request
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-06-18");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Body::from(message.to_string()))
            .expect("request");
        let response = app.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = tokio::time::timeout(
            std::time::Duration::from_secs(15),
            axum::body::to_bytes(response.into_body(), 1 << 20),
        )
        .await
        .expect("the answer ends")
        .expect("body");
        let body = String::from_utf8_lossy(&body).to_string();
        // An SSE stream ("data: {…}") or plain JSON; the answer is the message with an id.
        let answer = body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .chain(std::iter::once(body.as_str()))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m.get("id").is_some())
            .or_else(|| serde_json::from_str(&body).ok());
        (status, session, answer)
    }

    /// A session's id after initialize and notifications/initialized, each sent with `headers`.
    async fn initialized(app: &Router, headers: &[(&str, &str)]) -> String {
        let (status, session, answer) = post_mcp(
            app,
            None,
            headers,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "notes-test", "version": "0"}}}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer:?}");
        let answer = answer.expect("initialize answer");
        assert_eq!(
            answer["result"]["serverInfo"]["name"],
            "mcpgate-server-notes"
        );
        let session = session.expect("a session id");
        let (status, _, _) = post_mcp(
            app,
            Some(&session),
            headers,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        session
    }

    async fn call_tool(
        app: &Router,
        session: &str,
        authorization: Option<&str>,
        name: &str,
        arguments: Value,
    ) -> Value {
        let (status, _, answer) = post_mcp(
            app,
            Some(session),
            &authorization
                .map(|a| vec![("authorization", a)])
                .unwrap_or_default(),
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": name, "arguments": arguments}}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        answer.expect("a tools/call answer")["result"].clone()
    }

    fn text_of(result: &Value) -> &str {
        result["content"][0]["text"].as_str().expect("a text item")
    }

    #[tokio::test]
    async fn search_and_fetch_forward_the_bearer_and_answer_the_contract() {
        let (origin, calls) = stand_in().await;
        let app = app_for(&origin);
        let session = initialized(&app, &[]).await;
        let bearer = format!("Bearer {GOOD}");

        let (_, _, tools) = post_mcp(
            &app,
            Some(&session),
            &[],
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
        let tools = tools.expect("tools")["result"]["tools"].clone();
        let mut names: Vec<_> = tools
            .as_array()
            .expect("tools")
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["fetch", "search"]);
        for tool in tools.as_array().expect("tools") {
            assert!(
                tool["description"].as_str().is_some_and(|d| d.len() > 80),
                "{tool}"
            );
            assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
        }

        let found = call_tool(
            &app,
            &session,
            Some(&bearer),
            "search",
            json!({"query": "Q3 launch"}),
        )
        .await;
        assert_eq!(found["isError"], false);
        let expected = json!({"results": [{"id": PAGE, "title": "Q3 launch plan",
            "url": format!("http://notes.example/Q3-launch-plan-{}", PAGE.replace('-', ""))}]});
        assert_eq!(found["structuredContent"], expected);
        assert_eq!(
            serde_json::from_str::<Value>(text_of(&found)).expect("json text"),
            expected
        );

        let fetched = call_tool(
            &app,
            &session,
            Some(&bearer),
            "fetch",
            json!({"id": PAGE.replace('-', "")}),
        )
        .await;
        assert_eq!(fetched["isError"], false, "{fetched}");
        let doc = &fetched["structuredContent"];
        assert_eq!(doc["id"], PAGE);
        assert_eq!(doc["title"], "Q3 launch plan");
        assert_eq!(
            doc["text"],
            "Launch on 16 September 2025; Sofia owns it.\n\n## Milestones\n\n- Samples by 18 August"
        );
        assert_eq!(
            doc["metadata"]["last_edited_time"],
            "2025-07-28T16:42:00.000Z"
        );

        let calls = calls.lock().expect("calls").clone();
        let paths: Vec<_> = calls.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/v1/search".to_string(),
                format!("/v1/pages/{PAGE}"),
                format!("/v1/blocks/{PAGE}/children"),
                format!("/v1/blocks/{PAGE}/children"),
            ]
        );
        for (path, bearer, version) in &calls {
            assert_eq!(bearer.as_deref(), Some(GOOD), "{path}");
            assert_eq!(version.as_deref(), Some("2022-06-28"), "{path}");
        }
    }

    #[tokio::test]
    async fn a_refused_or_missing_token_and_a_bad_id_are_clear_tool_errors() {
        let (origin, calls) = stand_in().await;
        let app = app_for(&origin);
        let session = initialized(&app, &[]).await;

        let refused = call_tool(
            &app,
            &session,
            Some(&format!("Bearer {REVOKED}")),
            "search",
            json!({"query": "launch"}),
        )
        .await;
        assert_eq!(refused["isError"], true);
        assert!(
            text_of(&refused).starts_with("the notes provider refused the token (401)"),
            "{refused}"
        );
        assert!(!text_of(&refused).contains(REVOKED));

        let missing = call_tool(&app, &session, None, "fetch", json!({"id": PAGE})).await;
        assert_eq!(missing["isError"], true);
        assert_eq!(
            text_of(&missing),
            "no provider token: the gateway did not connect this user to the notes provider"
        );

        let bad_id = call_tool(
            &app,
            &session,
            Some(&format!("Bearer {GOOD}")),
            "fetch",
            json!({"id": "../oauth/token"}),
        )
        .await;
        assert_eq!(bad_id["isError"], true);
        assert!(
            text_of(&bad_id).starts_with("id must be a page id"),
            "{bad_id}"
        );

        let unknown = call_tool(
            &app,
            &session,
            Some(&format!("Bearer {GOOD}")),
            "fetch",
            json!({"id": "00000000-0000-4000-8000-000000000000"}),
        )
        .await;
        assert_eq!(unknown["isError"], true);
        assert!(
            text_of(&unknown).contains("no page with id 00000000-0000-4000-8000-000000000000"),
            "{unknown}"
        );

        // Only the refused search and the unknown page reached the provider.
        assert_eq!(calls.lock().expect("calls").len(), 2);
    }

    #[tokio::test]
    async fn a_provider_that_is_down_is_named_without_the_token() {
        // A port nothing listens on any more.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let app = app_for(&origin);
        let session = initialized(&app, &[]).await;
        let down = call_tool(
            &app,
            &session,
            Some(&format!("Bearer {GOOD}")),
            "search",
            json!({"query": "x"}),
        )
        .await;
        assert_eq!(down["isError"], true);
        let text = text_of(&down);
        assert!(
            text.starts_with(&format!("cannot reach the notes provider at {origin}")),
            "{text}"
        );
        assert!(!text.contains(GOOD), "{text}");
    }

    #[tokio::test]
    async fn with_an_issuer_a_request_without_an_assertion_is_refused() {
        // The JWKS is never fetched: a missing header is refused first.
        let verifier = Arc::new(Verifier::new(
            "http://localhost:18080",
            "http://localhost:18080/notes",
            "http://127.0.0.1:9/.well-known/jwks.json",
        ));
        let provider = Arc::new(Provider::new("http://127.0.0.1:9").expect("provider"));
        let app = router(
            provider,
            Some(verifier),
            StreamableHttpServerConfig::default(),
        );
        let (status, _, answer) = post_mcp(
            &app,
            None,
            &[],
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let answer = answer.expect("a JSON reason");
        assert_eq!(answer["error"], "invalid_assertion");
        assert!(answer["reason"]
            .as_str()
            .expect("reason")
            .contains("x-mcpgate-assertion"));

        let health = app
            .clone()
            .oneshot(
                Request::get("/healthz")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(health.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_gateway_assertion_for_this_route_is_accepted_and_another_refused() {
        use jwt_simple::prelude::*;
        let key = Ed25519KeyPair::generate().with_key_id("k1");
        let x = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            key.public_key().to_bytes(),
        );
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA", "use": "sig"}]});
        let gateway = Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let jwks = jwks.clone();
                async move { Json(jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, gateway).await });
        let route = "http://localhost:18080/notes";
        let assertion_for = |audience: &str| {
            let claims = Claims::with_custom_claims(
                mcpgate_assertion::AssertionClaims {
                    email: "alice@example.com".into(),
                    groups: vec!["sales".into()],
                    name: Some("Alice".into()),
                },
                jwt_simple::prelude::Duration::from_secs(300),
            )
            .with_issuer(&issuer)
            .with_audience(audience)
            .with_subject("alice");
            let typ = HeaderOptions {
                signature_type: Some("JWT".into()),
                ..Default::default()
            };
            key.sign_with_options(claims, &typ).expect("sign")
        };

        let verifier = Arc::new(Verifier::new(
            issuer.clone(),
            route,
            format!("{issuer}/.well-known/jwks.json"),
        ));
        let provider = Arc::new(Provider::new("http://127.0.0.1:9").expect("provider"));
        let app = router(
            provider,
            Some(verifier),
            StreamableHttpServerConfig::default(),
        );

        let good = assertion_for(route);
        initialized(&app, &[(mcpgate_assertion::HEADER, good.as_str())]).await;

        let other = assertion_for("http://localhost:18080/sqlite");
        let (status, _, answer) = post_mcp(
            &app,
            None,
            &[(mcpgate_assertion::HEADER, other.as_str())],
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let reason = answer.expect("a JSON reason")["reason"].clone();
        assert!(
            reason.as_str().expect("reason").contains("/sqlite"),
            "{reason}"
        );
    }
}
