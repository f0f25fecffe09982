//! The app's own MCP client (rmcp, streamable HTTP): it lists a server's tools for the sidebar and,
//! in tool-loop mode, calls them. Every request goes through the gateway with the user's token.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ServiceError, ServiceExt};
use serde::Serialize;
use serde_json::Value;

use crate::denial::{self, Denial};
use crate::events::{result_value, ToolOutcome};
use crate::gateway::GatewayToken;

/// How long connecting (initialize) and one request may take.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// A tool as the sidebar and the tool loop need it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolInfo {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip)]
    pub input_schema: Value,
}

/// Why a server could not be used, in words for the sidebar and the conversation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McpError {
    #[error("needs connecting to its provider first")]
    NeedsConnect,
    #[error("the gateway refused the token; reload the page")]
    TokenRefused,
    #[error("denied by policy: {}", .0.reason.as_deref().unwrap_or(&.0.message))]
    Denied(Denial),
    #[error("did not answer within {} seconds", TIMEOUT.as_secs())]
    Timeout,
    #[error("is unreachable ({0})")]
    Unreachable(String),
    #[error("answered with an error: {0}")]
    Protocol(String),
}

/// One MCP session with one server route, for the length of one app request.
pub struct McpSession {
    service: RunningService<RoleClient, ClientConfig>,
}

/// Where the app's MCP client reaches a server: its listed URL, or the same path under
/// `--mcp-base` when the app reaches the gateway by another address.
pub fn dial_url(server_url: &str, gateway_origin: &str, mcp_base: Option<&str>) -> String {
    match (mcp_base, server_url.strip_prefix(gateway_origin)) {
        (Some(base), Some(path)) if path.is_empty() || path.starts_with('/') => {
            format!("{}{path}", base.trim_end_matches('/'))
        }
        _ => server_url.to_string(),
    }
}

impl McpSession {
    /// Opens a session (initialize) with `url`, authorised by `token`.
    pub async fn connect(url: &str, token: &GatewayToken) -> Result<Self, McpError> {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(url.to_string())
                .auth_header(token.expose()),
        );
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("mcpgate-chat", env!("CARGO_PKG_VERSION")),
        );
        let service = within(info.serve(transport))
            .await?
            .map_err(|e| classify_init(&e))?;
        Ok(Self { service })
    }

    /// Every tool the server lists.
    pub async fn tools(&self) -> Result<Vec<ToolInfo>, McpError> {
        let tools = within(self.service.list_all_tools())
            .await?
            .map_err(|e| classify(&e))?;
        Ok(tools
            .into_iter()
            .map(|t| ToolInfo {
                name: t.name.to_string(),
                description: t
                    .description
                    .map(|d| d.to_string())
                    .or(t.title)
                    .filter(|d| !d.trim().is_empty()),
                input_schema: Value::Object((*t.input_schema).clone()),
            })
            .collect())
    }

    /// Calls `tool`; a denial, a tool error and a broken call are all outcomes, not errors.
    pub async fn call(&self, tool: &str, arguments: Value) -> ToolOutcome {
        let arguments = match arguments {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            other => {
                return ToolOutcome::Failed {
                    message: format!("the arguments must be a JSON object, not {other}"),
                }
            }
        };
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        match within(self.service.call_tool(params)).await {
            Err(e) => ToolOutcome::Failed {
                message: format!("the server {e}"),
            },
            Ok(Ok(result)) => outcome_of(result),
            Ok(Err(e)) => match classify(&e) {
                McpError::Denied(denial) => ToolOutcome::Denied { denial },
                other => ToolOutcome::Failed {
                    message: format!("the server {other}"),
                },
            },
        }
    }

    pub async fn close(mut self) {
        let _ = self
            .service
            .close_with_timeout(Duration::from_secs(2))
            .await;
    }
}

async fn within<T>(future: impl Future<Output = T>) -> Result<T, McpError> {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .map_err(|_| McpError::Timeout)
}

/// A tool result → the outcome shown: `isError` is a failure with the tool's text.
pub fn outcome_of(result: CallToolResult) -> ToolOutcome {
    let text: Vec<String> = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    let text = text.join("\n");
    if result.is_error == Some(true) {
        return ToolOutcome::Failed {
            message: if text.is_empty() {
                "the tool reported an error without details".into()
            } else {
                text
            },
        };
    }
    let result = match result.structured_content {
        Some(value) if !value.is_null() => value,
        _ => result_value(&text),
    };
    ToolOutcome::Ok { result }
}

fn classify(e: &ServiceError) -> McpError {
    if let Some(challenge) = e.auth_challenge() {
        return from_challenge(challenge);
    }
    match e {
        ServiceError::McpError(error) => {
            let data = error.data.as_ref();
            denial::from_jsonrpc_error(i64::from(error.code.0), &error.message, data)
                .map(McpError::Denied)
                .unwrap_or_else(|| McpError::Protocol(error.message.to_string()))
        }
        ServiceError::Timeout { .. } => McpError::Timeout,
        ServiceError::TransportSend(transport) => {
            McpError::Unreachable(innermost(transport.error.as_ref()))
        }
        other => McpError::Unreachable(innermost(other)),
    }
}

fn classify_init(e: &rmcp::service::ClientInitializeError) -> McpError {
    use rmcp::service::ClientInitializeError as E;
    if let Some(challenge) = e.auth_challenge() {
        return from_challenge(challenge);
    }
    match e {
        E::JsonRpcError(error) => {
            denial::from_jsonrpc_error(i64::from(error.code.0), &error.message, error.data.as_ref())
                .map(McpError::Denied)
                .unwrap_or_else(|| McpError::Protocol(error.message.to_string()))
        }
        E::TransportError { error, .. } => McpError::Unreachable(innermost(error.error.as_ref())),
        E::LegacyFallbackFailed { fallback, .. } => classify_init(fallback),
        other => McpError::Unreachable(innermost(other)),
    }
}

/// The gateway's 401 says whether the user must connect the provider or sign in again.
fn from_challenge(challenge: &str) -> McpError {
    if challenge.contains("upstream authorization required") {
        McpError::NeedsConnect
    } else {
        McpError::TokenRefused
    }
}

/// The deepest cause of an error chain: the part that names what actually went wrong.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(current) = source {
        let next = current.to_string();
        if !next.trim().is_empty() {
            text = next;
        }
        source = current.source();
    }
    text
}

/// Lists the tools of several servers at once; each gets its own result.
pub async fn list_tools_of(
    urls: Vec<(String, String)>,
    token: &GatewayToken,
) -> HashMap<String, Result<Vec<ToolInfo>, McpError>> {
    let lookups = urls.into_iter().map(|(key, dial)| async move {
        let result = match McpSession::connect(&dial, token).await {
            Ok(session) => {
                let tools = session.tools().await;
                session.close().await;
                tools
            }
            Err(e) => Err(e),
        };
        (key, result)
    });
    futures_util::future::join_all(lookups)
        .await
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ContentBlock as Content;
    use serde_json::json;

    #[test]
    fn dial_urls() {
        assert_eq!(
            dial_url(
                "http://localhost:18080/sqlite",
                "http://localhost:18080",
                Some("http://127.0.0.1:18080/")
            ),
            "http://127.0.0.1:18080/sqlite"
        );
        assert_eq!(
            dial_url(
                "http://localhost:18080/sqlite",
                "http://localhost:18080",
                None
            ),
            "http://localhost:18080/sqlite"
        );
        assert_eq!(
            dial_url(
                "http://localhost:180801/x",
                "http://localhost:18080",
                Some("http://b")
            ),
            "http://localhost:180801/x"
        );
    }

    #[test]
    fn tool_results() {
        let ok = CallToolResult::success(vec![Content::text("{\"rows\":[[1]]}")]);
        assert_eq!(
            outcome_of(ok),
            ToolOutcome::Ok {
                result: json!({"rows": [[1]]})
            }
        );
        let refused = CallToolResult::error(vec![Content::text(
            "refused: only read-only statements are allowed",
        )]);
        assert_eq!(
            outcome_of(refused),
            ToolOutcome::Failed {
                message: "refused: only read-only statements are allowed".into()
            }
        );
    }

    #[test]
    fn challenges() {
        assert_eq!(
            from_challenge(
                r#"Bearer error="invalid_token", error_description="upstream authorization required""#
            ),
            McpError::NeedsConnect
        );
        assert_eq!(
            from_challenge(r#"Bearer resource_metadata="x""#),
            McpError::TokenRefused
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_readable_error() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let error = McpSession::connect("http://127.0.0.1:9/mcp", &GatewayToken::new("t"))
            .await
            .err()
            .expect("nothing listens on port 9");
        assert!(matches!(error, McpError::Unreachable(_)), "{error:?}");
    }
}
