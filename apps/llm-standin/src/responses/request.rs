//! The body of `POST /v1/responses`, checked field by field; a bad field gets an OpenAI-style
//! error that names it.

use http::{HeaderName, HeaderValue};
use serde_json::Value;

use super::events::McpTool;
use crate::api_error::ApiError;
use crate::mcp::McpServer;

/// A validated request.
#[derive(Debug)]
pub struct ResponsesRequest {
    pub model: String,
    /// The latest user message's text.
    pub question: String,
    pub instructions: Option<String>,
    pub servers: Vec<ServerTool>,
    pub stream: bool,
    pub previous_response_id: Option<String>,
    /// Tool listings already in the input (`mcp_list_tools` items without error), by label.
    pub listed_in_input: Vec<(String, Vec<McpTool>)>,
    /// The request's tools as the response echoes them: without credentials.
    pub echoed_tools: Vec<Value>,
    /// Characters of input, for the usage estimate.
    pub input_chars: usize,
}

/// One `{"type": "mcp", …}` tool.
#[derive(Debug)]
pub struct ServerTool {
    pub server: McpServer,
    pub allowed: AllowedTools,
}

/// `allowed_tools`: a list of names, or a filter by names and/or read-only hint.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AllowedTools {
    pub names: Option<Vec<String>>,
    pub read_only: bool,
}

impl AllowedTools {
    pub fn admits(&self, tool: &McpTool) -> bool {
        let named = self
            .names
            .as_ref()
            .is_none_or(|names| names.contains(&tool.name));
        let read_only = !self.read_only
            || tool
                .annotations
                .as_ref()
                .and_then(|a| a.get("readOnlyHint"))
                .and_then(Value::as_bool)
                == Some(true);
        named && read_only
    }
}

pub fn parse(body: &[u8]) -> Result<ResponsesRequest, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_json(&e.to_string()))?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::bad_json("the body is not a JSON object"));
    };
    let model = match object.get("model") {
        None | Some(Value::Null) => return Err(ApiError::missing("model")),
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                "model",
                "'model' must be a non-empty string.",
            ))
        }
    };
    let instructions = optional_string(object.get("instructions"), "instructions")?;
    let previous_response_id =
        optional_string(object.get("previous_response_id"), "previous_response_id")?;
    let stream = match object.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("stream", "'stream' must be a boolean.")),
    };

    let input = object.get("input").unwrap_or(&Value::Null);
    let (question, listed_in_input) = read_input(input)?;

    let mut servers = Vec::new();
    let mut echoed_tools = Vec::new();
    match object.get("tools") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tools)) => {
            for (i, tool) in tools.iter().enumerate() {
                servers.push(read_tool(tool, i)?);
                let mut echoed = tool.clone();
                if let Some(o) = echoed.as_object_mut() {
                    o.remove("authorization");
                    o.remove("headers");
                }
                echoed_tools.push(echoed);
            }
        }
        Some(_) => return Err(ApiError::invalid("tools", "'tools' must be an array.")),
    }

    let input_chars = input.to_string().len() + instructions.as_deref().map_or(0, str::len);
    Ok(ResponsesRequest {
        model,
        question,
        instructions,
        servers,
        stream,
        previous_response_id,
        listed_in_input,
        echoed_tools,
        input_chars,
    })
}

fn optional_string(value: Option<&Value>, param: &str) -> Result<Option<String>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(
            param,
            format!("'{param}' must be a string."),
        )),
    }
}

type Listings = Vec<(String, Vec<McpTool>)>;

/// The latest user message's text, and the tool listings the input carries.
fn read_input(input: &Value) -> Result<(String, Listings), ApiError> {
    let items = match input {
        Value::Null => return Err(ApiError::missing("input")),
        Value::String(text) => return Ok((text.clone(), Vec::new())),
        Value::Array(items) => items,
        _ => {
            return Err(ApiError::invalid(
                "input",
                "'input' must be a string or an array of input items.",
            ))
        }
    };
    let mut question = None;
    let mut listings = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let kind = item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message");
        match kind {
            "message" if item.get("role").and_then(Value::as_str) == Some("user") => {
                question = Some(message_text(item.get("content")).ok_or_else(|| {
                    ApiError::invalid(
                        format!("input[{i}].content"),
                        "a message's content must be a string or an array of content parts.",
                    )
                })?);
            }
            "mcp_list_tools" => {
                let label = item.get("server_label").and_then(Value::as_str);
                let failed = item.get("error").is_some_and(|e| !e.is_null());
                if let (Some(label), false) = (label, failed) {
                    listings.push((label.to_owned(), listed_tools(item.get("tools"))));
                }
            }
            _ => {}
        }
    }
    let question = question.ok_or_else(|| {
        ApiError::invalid(
            "input",
            "'input' has no user message for the model to answer.",
        )
    })?;
    Ok((question, listings))
}

/// A message's text: a string, or its text parts joined.
fn message_text(content: Option<&Value>) -> Option<String> {
    match content? {
        Value::String(text) => Some(text.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

fn listed_tools(tools: Option<&Value>) -> Vec<McpTool> {
    let Some(Value::Array(tools)) = tools else {
        return Vec::new();
    };
    tools
        .iter()
        .filter_map(|t| {
            Some(McpTool {
                name: t.get("name")?.as_str()?.to_owned(),
                description: t
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                input_schema: t.get("input_schema").cloned().unwrap_or(Value::Null),
                annotations: t.get("annotations").filter(|a| !a.is_null()).cloned(),
            })
        })
        .collect()
}

fn read_tool(tool: &Value, i: usize) -> Result<ServerTool, ApiError> {
    let field = |name: &str| format!("tools[{i}].{name}");
    let kind = tool.get("type").and_then(Value::as_str);
    if kind != Some("mcp") {
        return Err(ApiError::invalid(
            field("type"),
            format!(
                "Unsupported tool type {}: this model serves only 'mcp' tools.",
                kind.map_or("(none)".to_owned(), |k| format!("'{k}'"))
            ),
        ));
    }
    let string = |name: &str| -> Result<Option<String>, ApiError> {
        optional_string(tool.get(name), &field(name))
    };
    let label = string("server_label")?
        .filter(|l| !l.is_empty())
        .ok_or_else(|| ApiError::missing(&field("server_label")))?;
    let url = string("server_url")?
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::missing(&field("server_url")))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ApiError::invalid(
            field("server_url"),
            "'server_url' must be an http:// or https:// URL.",
        ));
    }
    match tool.get("require_approval") {
        Some(Value::String(s)) if s == "never" => {}
        _ => {
            return Err(ApiError::invalid(
                field("require_approval"),
                "This model calls MCP tools without asking for approval; set 'require_approval' to \"never\".",
            ))
        }
    }
    let bearer = string("authorization")?;
    let headers = read_headers(tool.get("headers"), &field("headers"))?;
    if bearer.is_some()
        && headers
            .iter()
            .any(|(n, _)| *n == http::header::AUTHORIZATION)
    {
        return Err(ApiError::invalid(
            field("authorization"),
            "Give the server's credential either in 'authorization' or as an Authorization header, not both.",
        ));
    }
    let allowed = read_allowed(tool.get("allowed_tools"), &field("allowed_tools"))?;
    Ok(ServerTool {
        server: McpServer {
            label,
            url,
            bearer,
            headers,
        },
        allowed,
    })
}

fn read_headers(
    headers: Option<&Value>,
    param: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
    let map = match headers {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(ApiError::invalid(
                param,
                "'headers' must be an object of header names to string values.",
            ))
        }
    };
    map.iter()
        .map(|(name, value)| {
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ApiError::invalid(param, format!("'{name}' is not a valid HTTP header name."))
            })?;
            // The value may be a credential: the error names the header, never the value.
            let value = value
                .as_str()
                .and_then(|v| HeaderValue::from_str(v).ok())
                .ok_or_else(|| {
                    ApiError::invalid(
                        param,
                        format!("The value of header '{name}' must be a string of visible ASCII characters."),
                    )
                })?;
            Ok((header, value))
        })
        .collect()
}

fn read_allowed(allowed: Option<&Value>, param: &str) -> Result<AllowedTools, ApiError> {
    let names = |list: &Vec<Value>| -> Result<Vec<String>, ApiError> {
        list.iter()
            .map(|n| {
                n.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::invalid(param, "tool names in 'allowed_tools' must be strings.")
                })
            })
            .collect()
    };
    match allowed {
        None | Some(Value::Null) => Ok(AllowedTools::default()),
        Some(Value::Array(list)) => Ok(AllowedTools {
            names: Some(names(list)?),
            read_only: false,
        }),
        Some(Value::Object(filter)) => {
            let names = match filter.get("tool_names") {
                None | Some(Value::Null) => None,
                Some(Value::Array(list)) => Some(names(list)?),
                Some(_) => {
                    return Err(ApiError::invalid(
                        param,
                        "'tool_names' must be an array of strings.",
                    ))
                }
            };
            let read_only = match filter.get("read_only") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(ApiError::invalid(param, "'read_only' must be a boolean.")),
            };
            Ok(AllowedTools { names, read_only })
        }
        Some(_) => Err(ApiError::invalid(
            param,
            "'allowed_tools' must be an array of tool names or a filter object.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_json(v: Value) -> Result<ResponsesRequest, ApiError> {
        parse(v.to_string().as_bytes())
    }

    fn mcp_tool(extra: Value) -> Value {
        let mut t = json!({"type": "mcp", "server_label": "sales", "server_url": "http://127.0.0.1:1/mcp", "require_approval": "never"});
        if let (Some(t), Some(extra)) = (t.as_object_mut(), extra.as_object()) {
            t.extend(extra.clone());
        }
        t
    }

    #[test]
    fn a_full_request_parses() {
        let r = parse_json(json!({
            "model": "standin-1",
            "instructions": "be brief",
            "stream": true,
            "input": [
                {"role": "user", "content": "first"},
                {"type": "mcp_list_tools", "server_label": "notes", "tools": [{"name": "search", "input_schema": {}}]},
                {"type": "mcp_list_tools", "server_label": "broken", "tools": [], "error": "401"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "sales by year?"}]}
            ],
            "tools": [mcp_tool(json!({"headers": {"Authorization": "Bearer secret-te"}, "allowed_tools": {"tool_names": ["query"]}}))]
        }))
        .unwrap();
        assert_eq!(r.question, "sales by year?");
        assert!(r.stream);
        assert_eq!(r.instructions.as_deref(), Some("be brief"));
        assert_eq!(r.listed_in_input.len(), 1);
        assert_eq!(r.listed_in_input[0].0, "notes");
        let s = &r.servers[0];
        assert_eq!(s.server.headers[0].0, http::header::AUTHORIZATION);
        assert_eq!(s.allowed.names, Some(vec!["query".to_owned()]));
        // The echo drops the credential.
        assert!(!r.echoed_tools[0].to_string().contains("secret-te"));
        assert!(!format!("{:?}", r.servers).contains("secret-te"));
    }

    #[test]
    fn errors_name_the_field() {
        let param = |v: Value| parse_json(v).unwrap_err().param;
        assert_eq!(parse(b"{not json").unwrap_err().param, None);
        assert_eq!(param(json!({"input": "hi"})), Some("model".into()));
        assert_eq!(param(json!({"model": "standin-1"})), Some("input".into()));
        assert_eq!(
            param(json!({"model": 3, "input": "x"})),
            Some("model".into())
        );
        assert_eq!(
            param(
                json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}]})
            ),
            Some("tools[0].type".into())
        );
        assert_eq!(
            param(
                json!({"model": "m", "input": "x", "tools": [mcp_tool(json!({"require_approval": "always"}))]})
            ),
            Some("tools[0].require_approval".into())
        );
        assert_eq!(
            param(
                json!({"model": "m", "input": "x", "tools": [mcp_tool(json!({"server_url": null}))]})
            ),
            Some("tools[0].server_url".into())
        );
        assert_eq!(
            param(
                json!({"model": "m", "input": "x", "tools": [mcp_tool(json!({"headers": {"bad name": "v"}}))]})
            ),
            Some("tools[0].headers".into())
        );
        assert_eq!(
            param(
                json!({"model": "m", "input": "x", "tools": [mcp_tool(json!({"authorization": "t", "headers": {"authorization": "Bearer t"}}))]})
            ),
            Some("tools[0].authorization".into())
        );
        assert_eq!(
            param(json!({"model": "m", "input": [{"role": "assistant", "content": "x"}]})),
            Some("input".into())
        );
        let e = parse_json(json!({"model": "m", "input": "x", "tools": [mcp_tool(json!({"headers": {"x-k": "bad\nvalue-secret"}}))]})).unwrap_err();
        assert!(!e.message.contains("secret"));
    }

    #[test]
    fn allowed_tools_filter_by_name_and_read_only() {
        let tool = |name: &str, ro: bool| McpTool {
            name: name.into(),
            description: None,
            input_schema: json!({}),
            annotations: Some(json!({"readOnlyHint": ro})),
        };
        let list = read_allowed(Some(&json!(["a"])), "p").unwrap();
        assert!(list.admits(&tool("a", false)) && !list.admits(&tool("b", true)));
        let ro = read_allowed(Some(&json!({"read_only": true})), "p").unwrap();
        assert!(ro.admits(&tool("b", true)) && !ro.admits(&tool("a", false)));
        assert!(AllowedTools::default().admits(&tool("z", false)));
    }
}
