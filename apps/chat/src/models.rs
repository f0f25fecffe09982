//! The models file (`--models`): which language models the picker offers and how the app talks to
//! each one. Validated at start; every error names the field.
//!
//! ```yaml
//! models:
//!   - id: standin-1                       # the model name sent to the API
//!     key: standin-responses              # optional; unique; default `<id>-<api>`
//!     label: "Stand-in (Responses API)"
//!     api: responses                      # responses | chat_completions
//!     base_url: http://127.0.0.1:18111/v1
//!     api_key_env: OPENAI_API_KEY         # optional: the environment variable holding the key
//!     standin: true                       # optional: the UI says "stand-in model, not a real LLM"
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// How the app talks to a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// The model's API calls the MCP servers itself (`tools: [{type: "mcp"}]`).
    Responses,
    /// The app runs the tool loop and calls the MCP servers.
    ChatCompletions,
}

impl Api {
    fn as_str(self) -> &'static str {
        match self {
            Api::Responses => "responses",
            Api::ChatCompletions => "chat_completions",
        }
    }
}

/// One entry of the picker, validated.
#[derive(Clone, Serialize)]
pub struct Model {
    pub key: String,
    pub id: String,
    pub label: String,
    pub api: Api,
    /// Without a trailing slash.
    pub base_url: String,
    #[serde(skip)]
    pub api_key: Option<String>,
    pub standin: bool,
}

// The API key stays out of every log line.
impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("key", &self.key)
            .field("id", &self.id)
            .field("api", &self.api)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("standin", &self.standin)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error("models file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("models file: {0}")]
    Syntax(String),
    #[error("models file: {field}: {reason}")]
    Invalid { field: String, reason: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    models: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    #[serde(default)]
    key: Option<String>,
    label: String,
    api: Api,
    base_url: String,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    standin: bool,
}

/// Reads and validates the file at `path`; `env` looks up `api_key_env` variables.
pub fn load(path: &str, env: impl Fn(&str) -> Option<String>) -> Result<Vec<Model>, ModelsError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelsError::Read {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    parse(&text, env)
}

/// Parses and validates a models file.
pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Vec<Model>, ModelsError> {
    let file: File =
        serde_yaml_ng::from_str(text).map_err(|e| ModelsError::Syntax(e.to_string()))?;
    if file.models.is_empty() {
        return Err(invalid("models", "lists no model"));
    }
    let mut models: Vec<Model> = Vec::with_capacity(file.models.len());
    for (i, entry) in file.models.into_iter().enumerate() {
        let field = |name: &str| format!("models[{i}].{name}");
        let id = entry.id.trim().to_string();
        if id.is_empty() {
            return Err(invalid(field("id"), "is empty"));
        }
        let label = entry.label.trim().to_string();
        if label.is_empty() {
            return Err(invalid(field("label"), "is empty"));
        }
        let key = entry
            .key
            .map(|k| k.trim().to_string())
            .unwrap_or_else(|| format!("{id}-{}", entry.api.as_str()));
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                field("key"),
                format!("`{key}` must be letters, digits, `-`, `_` or `.`"),
            ));
        }
        if let Some(other) = models.iter().position(|m| m.key == key) {
            return Err(invalid(
                field("key"),
                format!(
                    "`{key}` is also the key of models[{other}]; give each entry its own `key`"
                ),
            ));
        }
        let base_url = entry.base_url.trim().trim_end_matches('/').to_string();
        match reqwest::Url::parse(&base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => {
                return Err(invalid(
                    field("base_url"),
                    format!("`{base_url}` is not an http(s) URL"),
                ))
            }
        }
        let api_key = match entry.api_key_env {
            None => None,
            Some(name) if name.trim().is_empty() => {
                return Err(invalid(field("api_key_env"), "is empty"))
            }
            Some(name) => match env(name.trim()) {
                Some(value) if !value.trim().is_empty() => Some(value.trim().to_string()),
                _ => {
                    return Err(invalid(
                        field("api_key_env"),
                        format!("the environment variable {} is not set", name.trim()),
                    ))
                }
            },
        };
        models.push(Model {
            key,
            id,
            label,
            api: entry.api,
            base_url,
            api_key,
            standin: entry.standin,
        });
    }
    Ok(models)
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ModelsError {
    ModelsError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const TWO: &str = r#"
models:
  - id: standin-1
    label: "Stand-in (Responses API)"
    api: responses
    base_url: http://127.0.0.1:18111/v1/
    standin: true
  - id: standin-1
    label: "Stand-in (chat completions; tools run by the app)"
    api: chat_completions
    base_url: http://127.0.0.1:18111/v1
    standin: true
"#;

    fn error_of(text: &str) -> String {
        parse(text, no_env).expect_err("invalid").to_string()
    }

    #[test]
    fn the_demo_file_gets_distinct_default_keys() {
        let models = parse(TWO, no_env).expect("valid");
        assert_eq!(models.len(), 2);
        assert_eq!(models[0].key, "standin-1-responses");
        assert_eq!(models[1].key, "standin-1-chat_completions");
        assert_eq!(models[0].base_url, "http://127.0.0.1:18111/v1");
        assert_eq!(models[1].api, Api::ChatCompletions);
        assert!(models[0].standin);
    }

    #[test]
    fn duplicate_keys_name_the_field() {
        let text = TWO.replace("    standin: true\n", "    standin: true\n    key: same\n");
        assert_eq!(
            error_of(&text),
            "models file: models[1].key: `same` is also the key of models[0]; give each entry its own `key`"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        assert!(
            error_of(&TWO.replace("api: responses", "api: completions")).contains("models[0].api")
        );
        assert_eq!(
            error_of(&TWO.replacen("http://127.0.0.1:18111/v1/", "ftp://x", 1)),
            "models file: models[0].base_url: `ftp://x` is not an http(s) URL"
        );
        assert_eq!(
            error_of(&TWO.replacen("\"Stand-in (Responses API)\"", "\" \"", 1)),
            "models file: models[0].label: is empty"
        );
        assert!(
            error_of(&TWO.replacen("standin: true", "standin: true\n    colour: red", 1))
                .contains("colour")
        );
        assert_eq!(
            error_of("models: []"),
            "models file: models: lists no model"
        );
        assert!(
            error_of("models: [{id: a, api: responses, base_url: http://x}]").contains("label")
        );
    }

    #[test]
    fn api_key_comes_from_the_named_variable_and_is_not_debug_printed() {
        let text = TWO.replacen("standin: true", "standin: true\n    api_key_env: MY_KEY", 1);
        assert_eq!(
            error_of(&text),
            "models file: models[0].api_key_env: the environment variable MY_KEY is not set"
        );
        let models = parse(&text, |name| {
            (name == "MY_KEY").then(|| "sk-secret".to_string())
        })
        .expect("valid");
        assert_eq!(models[0].api_key.as_deref(), Some("sk-secret"));
        assert!(!format!("{:?}", models[0]).contains("sk-secret"));
        assert!(!serde_json::to_string(&models[0])
            .expect("json")
            .contains("sk-secret"));
    }
}
