//! Who is asking: every request must carry the gateway's assertion (verified before anything is
//! trusted) and the user's gateway token (kept for the request only).

use axum::http::HeaderMap;
use mcpgate_assertion::{Identity, Verifier, VerifyError};

use crate::gateway::GatewayToken;

/// A request the gateway vouched for.
#[derive(Debug)]
pub struct Caller {
    pub identity: Identity,
    pub token: GatewayToken,
}

#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("This app must be reached through the gateway: {0}")]
    NotThroughGateway(VerifyError),
    #[error("The app cannot check who you are right now: {0}")]
    KeysUnavailable(VerifyError),
    #[error(
        "This app must be reached through the gateway: the request carries no token for the user."
    )]
    NoToken,
}

impl CallerError {
    /// 503 when the app could not check (the gateway's keys are unreachable), else 401.
    pub fn status(&self) -> axum::http::StatusCode {
        match self {
            CallerError::KeysUnavailable(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE,
            _ => axum::http::StatusCode::UNAUTHORIZED,
        }
    }
}

/// Verifies the assertion, then takes the bearer token.
pub async fn authenticate(verifier: &Verifier, headers: &HeaderMap) -> Result<Caller, CallerError> {
    let assertion = headers
        .get(mcpgate_assertion::HEADER)
        .and_then(|v| v.to_str().ok());
    let identity = verifier.verify(assertion).await.map_err(|e| match e {
        VerifyError::Jwks { .. } => CallerError::KeysUnavailable(e),
        e => CallerError::NotThroughGateway(e),
    })?;
    let token = bearer(headers).ok_or(CallerError::NoToken)?;
    Ok(Caller {
        identity,
        token: GatewayToken::new(token),
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert("authorization", "Bearer abc".parse().expect("header"));
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert("authorization", "bearer  abc ".parse().expect("header"));
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert("authorization", "Basic abc".parse().expect("header"));
        assert_eq!(bearer(&headers), None);
    }

    #[tokio::test]
    async fn a_request_without_an_assertion_is_refused() {
        let verifier = Verifier::new("http://gw", "http://gw/chat", "http://127.0.0.1:9/jwks");
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer abc".parse().expect("header"));
        let error = authenticate(&verifier, &headers)
            .await
            .expect_err("refused");
        assert_eq!(error.status(), axum::http::StatusCode::UNAUTHORIZED);
        assert!(error
            .to_string()
            .starts_with("This app must be reached through the gateway"));
    }
}
