//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` with the status
//! OpenAI uses for each.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A request field with a bad value; `param` names it.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: None,
        }
    }

    pub fn missing(param: &str) -> Self {
        ApiError {
            code: Some("missing_required_parameter"),
            ..Self::invalid(param, format!("Missing required parameter: '{param}'."))
        }
    }

    pub fn bad_json(reason: &str) -> Self {
        ApiError {
            param: None,
            ..Self::invalid(
                "",
                format!("We could not parse the JSON body of your request: {reason}. The API expects a JSON payload."),
            )
        }
    }

    pub fn model_not_found(model: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("The model `{model}` does not exist or you do not have access to it."),
            kind: "invalid_request_error",
            param: None,
            code: Some("model_not_found"),
        }
    }

    pub fn previous_response_not_found(id: &str) -> Self {
        ApiError {
            code: Some("previous_response_not_found"),
            ..Self::invalid(
                "previous_response_id",
                format!("Previous response with id '{id}' not found."),
            )
        }
    }

    /// A wrong key; the message never repeats the key.
    pub fn invalid_api_key() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "Incorrect API key provided.".into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }
    }

    pub fn missing_api_key() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "You didn't provide an API key. Provide it in an Authorization header using Bearer auth (Authorization: Bearer YOUR_KEY).".into(),
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    }

    pub fn unknown_url(method: &str, path: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("Invalid URL ({method} {path})"),
            kind: "invalid_request_error",
            param: None,
            code: None,
        }
    }

    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_openais_four_fields() {
        let e = ApiError::missing("model");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.body(),
            json!({"error": {"message": "Missing required parameter: 'model'.", "type": "invalid_request_error", "param": "model", "code": "missing_required_parameter"}})
        );
        let e = ApiError::model_not_found("gpt-x");
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.body()["error"]["code"], "model_not_found");
        assert_eq!(e.body()["error"]["param"], serde_json::Value::Null);
        assert_eq!(ApiError::invalid_api_key().status, StatusCode::UNAUTHORIZED);
    }
}
