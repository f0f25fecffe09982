//! What the app asks the gateway with the user's token: the user's servers
//! (`/.mcpgate/mcp/routes`) and forgetting a server's upstream connection
//! (`/.mcpgate/mcp/routes/disconnect`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The user's gateway token (TE), held for one request. No `Serialize`, and `Debug` redacts it, so
/// it cannot end up in a log line or a response by accident.
#[derive(Clone)]
pub struct GatewayToken(String);

impl GatewayToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for GatewayToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GatewayToken(<redacted>)")
    }
}

/// One entry of `/.mcpgate/mcp/routes`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RouteEntry {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub connected: bool,
    #[serde(default)]
    pub needs_oauth: bool,
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl RouteEntry {
    /// The user must consent at the server's provider before the server is usable.
    pub fn needs_connect(&self) -> bool {
        self.needs_oauth && !self.connected
    }
}

#[derive(Deserialize)]
struct RoutesBody {
    servers: Vec<RouteEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("The gateway at {origin} could not be reached ({reason}).")]
    Unreachable { origin: String, reason: String },
    #[error("Your session expired — reload the page.")]
    SessionExpired,
    #[error("The gateway answered HTTP {status} to {what}.")]
    Status { what: &'static str, status: u16 },
    #[error("The gateway's list of servers could not be read ({0}).")]
    BadBody(String),
}

/// The gateway's public origin and an HTTP client for it.
#[derive(Clone)]
pub struct Gateway {
    origin: String,
    http: reqwest::Client,
}

/// How long one request to the gateway may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

impl Gateway {
    pub fn new(origin: &str, http: reqwest::Client) -> Self {
        Self {
            origin: origin.trim_end_matches('/').to_string(),
            http,
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The user's servers, as the gateway's policy lets them see them.
    pub async fn routes(&self, token: &GatewayToken) -> Result<Vec<RouteEntry>, GatewayError> {
        let response = self
            .http
            .get(format!("{}/.mcpgate/mcp/routes", self.origin))
            .bearer_auth(token.expose())
            .header("accept", "application/json")
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        self.check(response.status(), "the list of servers")?;
        let body = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        let parsed: RoutesBody =
            serde_json::from_slice(&body).map_err(|e| GatewayError::BadBody(e.to_string()))?;
        Ok(parsed.servers)
    }

    /// Forgets the user's upstream tokens for the server at `url`.
    pub async fn disconnect(&self, token: &GatewayToken, url: &str) -> Result<(), GatewayError> {
        let response = self
            .http
            .post(format!("{}/.mcpgate/mcp/routes/disconnect", self.origin))
            .bearer_auth(token.expose())
            .json(&serde_json::json!({ "url": url }))
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        self.check(response.status(), "the disconnect")
    }

    fn check(&self, status: reqwest::StatusCode, what: &'static str) -> Result<(), GatewayError> {
        match status.as_u16() {
            200..=299 => Ok(()),
            401 => Err(GatewayError::SessionExpired),
            status => Err(GatewayError::Status { what, status }),
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> GatewayError {
        GatewayError::Unreachable {
            origin: self.origin.clone(),
            reason: describe(e),
        }
    }
}

/// A reqwest error in words a person understands (no URL: the caller names the place).
pub fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "it did not answer in time".into()
    } else if e.is_connect() {
        "connection refused or no route".into()
    } else if e.is_body() || e.is_decode() {
        "the answer broke off".into()
    } else {
        let mut text = String::new();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(current) = source {
            text = current.to_string();
            source = current.source();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted() {
        let token = GatewayToken::new("secret-te");
        assert_eq!(format!("{token:?}"), "GatewayToken(<redacted>)");
        assert_eq!(token.expose(), "secret-te");
    }

    #[test]
    fn routes_body_and_needs_connect() {
        let body = br#"{"servers":[
            {"name":"Notes","url":"http://gw/notes","description":"d","connected":false,"needs_oauth":true},
            {"name":"Sales database","url":"http://gw/sqlite","connected":true,"needs_oauth":false,"expires_at":5}]}"#;
        let parsed: RoutesBody = serde_json::from_slice(body).expect("json");
        assert!(parsed.servers[0].needs_connect());
        assert!(!parsed.servers[1].needs_connect());
        assert_eq!(parsed.servers[1].expires_at, Some(5));
    }

    #[tokio::test]
    async fn unreachable_gateway_is_named() {
        let gateway = Gateway::new("http://127.0.0.1:9/", reqwest::Client::new());
        let error = gateway
            .routes(&GatewayToken::new("t"))
            .await
            .expect_err("nothing listens on port 9");
        let text = error.to_string();
        assert!(
            text.starts_with("The gateway at http://127.0.0.1:9 could not be reached"),
            "{text}"
        );
        assert!(!text.contains("Bearer"));
    }
}
