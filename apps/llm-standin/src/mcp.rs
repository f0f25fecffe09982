//! Talking to MCP servers the way a hosted LLM does: connect over streamable HTTP with the
//! credentials the request handed over, list the tools, call them. Behind a trait so the
//! orchestration can be tested with a fake.

use std::future::Future;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{ClientInitializeError, RoleClient, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::DynamicTransportError;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{Map, Value};

use crate::playbook::{Failure, FailureKind, Outcome};
use crate::responses::events::McpTool;

/// One MCP server of a request, with what to send it.
#[derive(Clone)]
pub struct McpServer {
    pub label: String,
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` (the tool's `authorization`).
    pub bearer: Option<String>,
    /// Sent verbatim on every request (the tool's `headers`, `Authorization` included).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

// Credentials never reach a log line through Debug.
impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("label", &self.label)
            .field("url", &self.url)
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

pub trait McpClient: Send + Sync + 'static {
    type Session: McpSession;
    /// Opens a session (the MCP `initialize` handshake); the error says why not.
    fn connect(
        &self,
        server: &McpServer,
    ) -> impl Future<Output = Result<Self::Session, String>> + Send;
}

pub trait McpSession: Send + 'static {
    fn list_tools(&mut self) -> impl Future<Output = Result<Vec<McpTool>, String>> + Send;
    fn call_tool(
        &mut self,
        name: &str,
        arguments: Map<String, Value>,
    ) -> impl Future<Output = Outcome> + Send;
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// The real client: rmcp over reqwest, each step bounded by `timeout`.
#[derive(Debug, Clone)]
pub struct RmcpClient {
    timeout: Duration,
}

impl RmcpClient {
    pub fn new(timeout: Duration) -> Self {
        // rmcp's reqwest is built without a TLS provider of its own and panics without a process
        // default; ring is the one the workspace already uses. Already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        RmcpClient { timeout }
    }
}

pub struct RmcpSession {
    service: RunningService<RoleClient, ClientConfig>,
    timeout: Duration,
}

impl McpClient for RmcpClient {
    type Session = RmcpSession;

    async fn connect(&self, server: &McpServer) -> Result<RmcpSession, String> {
        let mut config = StreamableHttpClientTransportConfig::with_uri(server.url.clone())
            .custom_headers(server.headers.iter().cloned().collect());
        if let Some(token) = &server.bearer {
            config = config.auth_header(token.clone());
        }
        let transport = StreamableHttpClientTransport::from_config(config);
        let hello = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("mcpgate-llm-standin", env!("CARGO_PKG_VERSION")),
        );
        match tokio::time::timeout(self.timeout, hello.serve(transport)).await {
            Ok(Ok(service)) => Ok(RmcpSession {
                service,
                timeout: self.timeout,
            }),
            Ok(Err(e)) => Err(initialize_error(&e)),
            Err(_) => Err(timed_out(self.timeout)),
        }
    }
}

impl McpSession for RmcpSession {
    async fn list_tools(&mut self) -> Result<Vec<McpTool>, String> {
        let tools = match tokio::time::timeout(self.timeout, self.service.list_all_tools()).await {
            Ok(Ok(tools)) => tools,
            Ok(Err(e)) => return Err(service_error(&e)),
            Err(_) => return Err(timed_out(self.timeout)),
        };
        Ok(tools
            .into_iter()
            .map(|t| McpTool {
                name: t.name.into_owned(),
                description: t.description.map(|d| d.into_owned()),
                input_schema: Value::Object((*t.input_schema).clone()),
                annotations: t.annotations.and_then(|a| serde_json::to_value(a).ok()),
            })
            .collect())
    }

    async fn call_tool(&mut self, name: &str, arguments: Map<String, Value>) -> Outcome {
        let params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
        let result = match tokio::time::timeout(self.timeout, self.service.call_tool(params)).await
        {
            Ok(Ok(result)) => result,
            Ok(Err(ServiceError::McpError(e))) => {
                return failed(FailureKind::Rejected, rejection_message(&e))
            }
            Ok(Err(e)) => return failed(FailureKind::Transport, service_error(&e)),
            Err(_) => return failed(FailureKind::Transport, timed_out(self.timeout)),
        };
        let mut text = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
            .collect::<Vec<_>>()
            .join("\n");
        if text.is_empty() {
            if let Some(structured) = &result.structured_content {
                text = structured.to_string();
            }
        }
        if result.is_error == Some(true) {
            failed(FailureKind::ToolError, text)
        } else {
            Outcome::Output(text)
        }
    }

    async fn close(self) {
        // Ends the session (HTTP DELETE); a server that is gone already is fine.
        let _ = tokio::time::timeout(self.timeout, self.service.cancel()).await;
    }
}

/// A JSON-RPC error as one line: its message, and the `data.reason` a gateway's policy denial
/// carries (the one machine-readable part a person needs to see why).
fn rejection_message(error: &rmcp::model::ErrorData) -> String {
    let reason = error
        .data
        .as_ref()
        .and_then(|d| d.get("reason"))
        .and_then(Value::as_str);
    match reason {
        Some(reason) => format!("{} (reason: {reason})", error.message),
        None => error.message.to_string(),
    }
}

fn failed(kind: FailureKind, message: String) -> Outcome {
    Outcome::Failed(Failure { kind, message })
}

fn timed_out(timeout: Duration) -> String {
    format!("no answer within {} s", timeout.as_secs())
}

fn service_error(e: &ServiceError) -> String {
    match e {
        ServiceError::McpError(data) => data.message.to_string(),
        ServiceError::TransportSend(transport) => transport_error(transport),
        other => other.to_string(),
    }
}

fn initialize_error(e: &ClientInitializeError) -> String {
    match e {
        ClientInitializeError::TransportError { error, .. } => transport_error(error),
        ClientInitializeError::JsonRpcError(data) => data.message.to_string(),
        other => other.to_string(),
    }
}

/// What went wrong on the wire, without the transport's type names: the HTTP status when there
/// was one, else the cause (connection refused, DNS…).
fn transport_error(e: &DynamicTransportError) -> String {
    let text = error_chain(e.error.as_ref());
    // rmcp says "Auth required: authorization required: <WWW-Authenticate>" for a 401 challenge.
    let challenge = |t: &str| t.rsplit_once("required: ").map(|(_, c)| c.to_owned());
    if text.starts_with("Auth required") {
        return match challenge(&text) {
            Some(c) => format!("HTTP 401 Unauthorized (WWW-Authenticate: {c})"),
            None => "HTTP 401 Unauthorized".to_owned(),
        };
    }
    if text.starts_with("Insufficient scope") {
        return "HTTP 403 Forbidden (insufficient scope)".to_owned();
    }
    ["unexpected server response: ", "Client error: "]
        .iter()
        .fold(text.as_str(), |t, prefix| {
            t.strip_prefix(prefix).unwrap_or(t)
        })
        .to_owned()
}

/// An error and its causes, each said once (wrappers often repeat their source's words).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}
