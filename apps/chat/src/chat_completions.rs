//! A chat completions API (`POST <base_url>/chat/completions`, not streamed) as the tool loop's
//! [`LanguageModel`].

use std::time::Duration;

use serde_json::{json, Value};

use crate::models::Model;
use crate::responses::{error_message, ModelCallError};
use crate::tool_loop::{Completion, FunctionCall, LanguageModel};

/// How long one completion may take.
pub const TIMEOUT: Duration = Duration::from_secs(180);

pub struct ChatCompletions<'a> {
    pub http: &'a reqwest::Client,
    pub model: &'a Model,
}

impl LanguageModel for ChatCompletions<'_> {
    async fn complete(
        &self,
        messages: &[Value],
        tools: &[Value],
    ) -> Result<Completion, ModelCallError> {
        let base_url = &self.model.base_url;
        let mut body = json!({"model": self.model.id, "messages": messages, "stream": false});
        if !tools.is_empty() {
            body["tools"] = json!(tools);
            body["tool_choice"] = json!("auto");
        }
        let mut request = self
            .http
            .post(format!("{base_url}/chat/completions"))
            .timeout(TIMEOUT)
            .json(&body);
        if let Some(key) = &self.model.api_key {
            request = request.bearer_auth(key);
        }
        let unreachable = |e: reqwest::Error| ModelCallError::Unreachable {
            base_url: base_url.clone(),
            reason: crate::gateway::describe(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(ModelCallError::Status {
                base_url: base_url.clone(),
                status: status.as_u16(),
                message: error_message(&bytes),
            });
        }
        let bad = |reason: String| ModelCallError::BadAnswer {
            base_url: base_url.clone(),
            reason,
        };
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON ({e})")))?;
        parse_completion(&value).map_err(bad)
    }
}

/// `choices[0].message` → text and function calls.
pub fn parse_completion(body: &Value) -> Result<Completion, String> {
    let message = body
        .pointer("/choices/0/message")
        .ok_or("no choices[0].message")?;
    let content = match message.get("content") {
        Some(Value::String(text)) => Some(text.clone()),
        Some(Value::Array(parts)) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<String>(),
        ),
        _ => None,
    };
    let mut tool_calls = Vec::new();
    for (i, call) in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("tool_calls[{i}].function.name is missing"))?;
        let arguments = match call.pointer("/function/arguments") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Null) | None => "{}".to_string(),
            Some(other) => other.to_string(),
        };
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("call_auto_{i}"));
        tool_calls.push(FunctionCall {
            id,
            name: name.to_string(),
            arguments,
        });
    }
    Ok(Completion {
        content,
        tool_calls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_with_text_and_calls() {
        let body = json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "Sales_database__query", "arguments": "{\"sql\":\"x\"}"}},
            {"type": "function", "function": {"name": "Who_am_I__whoami"}}
        ]}, "finish_reason": "tool_calls"}]});
        let completion = parse_completion(&body).expect("valid");
        assert_eq!(completion.content, None);
        assert_eq!(completion.tool_calls[0].id, "call_1");
        assert_eq!(completion.tool_calls[0].arguments, "{\"sql\":\"x\"}");
        assert_eq!(completion.tool_calls[1].id, "call_auto_1");
        assert_eq!(completion.tool_calls[1].arguments, "{}");
        let text =
            parse_completion(&json!({"choices": [{"message": {"content": "Hi"}}]})).expect("valid");
        assert_eq!(text.content.as_deref(), Some("Hi"));
        assert!(text.tool_calls.is_empty());
        assert!(parse_completion(&json!({"choices": []})).is_err());
    }
}
