//! The notes provider's API (Notion's public API shape), called with the user's provider token:
//! `POST /v1/search`, `GET /v1/pages/{id}`, `GET /v1/blocks/{id}/children`.

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::notion::{search_results, Block, Document, List, Page, SearchResults};

/// The API version this server speaks (Notion requires the header on every call).
pub const NOTION_VERSION: &str = "2022-06-28";
/// One call to the provider.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Results per search: enough for a model to choose from, few enough to read.
pub const SEARCH_PAGE_SIZE: u32 = 10;
/// Pages of 100 blocks read per document; a longer page is cut there.
const MAX_BLOCK_PAGES: usize = 10;
/// Longest provider error message repeated in a tool error.
const MAX_DETAIL: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(
        "the notes provider refused the token (401): the user must reconnect the notes provider"
    )]
    Unauthorized,
    #[error("no page with id {0} is shared with this integration (404)")]
    NotFound(String),
    #[error("cannot reach the notes provider at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the notes provider at {url} answered HTTP {status}{detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("the notes provider at {url} sent an answer this server cannot read: {reason}")]
    Unreadable { url: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--provider-api must be an http(s) URL such as http://127.0.0.1:18106, not {0:?}")]
    ProviderApi(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// A page id as `fetch` takes it: a UUID with or without dashes (checked so that nothing else
/// reaches the provider's URL path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageId(String);

#[derive(Debug, thiserror::Error)]
#[error("id must be a page id from the search results (a UUID, with or without dashes), not {0:?}")]
pub struct InvalidPageId(String);

impl PageId {
    pub fn parse(id: &str) -> Result<Self, InvalidPageId> {
        let id = id.trim();
        let hex: String = id.chars().filter(|c| *c != '-').collect();
        let dashes_ok = id.len() == 32 || (id.len() == 36 && id.matches('-').count() == 4);
        if hex.len() == 32 && dashes_ok && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            let h = hex.to_ascii_lowercase();
            Ok(Self(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )))
        } else {
            Err(InvalidPageId(id.chars().take(64).collect()))
        }
    }
}

impl fmt::Display for PageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The JSON body of a search for `query` (pages only, [`SEARCH_PAGE_SIZE`] of them).
pub fn search_body(query: &str) -> Value {
    json!({
        "query": query,
        "filter": {"property": "object", "value": "page"},
        "page_size": SEARCH_PAGE_SIZE,
    })
}

/// A client of one provider's API.
#[derive(Debug, Clone)]
pub struct Provider {
    origin: Url,
    http: reqwest::Client,
}

impl Provider {
    /// `api`: the provider's origin (`http://127.0.0.1:18106`); a trailing `/v1` is accepted too.
    pub fn new(api: &str) -> Result<Self, ConfigError> {
        let trimmed = api.trim().trim_end_matches('/');
        let trimmed = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
        let origin = Url::parse(&format!("{trimmed}/"))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| ConfigError::ProviderApi(api.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("mcpgate-server-notes/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))?;
        Ok(Self { origin, http })
    }

    /// The provider's origin, as errors name it.
    pub fn origin(&self) -> &str {
        self.origin.as_str().trim_end_matches('/')
    }

    /// `path` (no leading slash) under the provider's origin.
    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    pub async fn search(&self, token: &str, query: &str) -> Result<SearchResults, ProviderError> {
        let list: List<Page> = self
            .call(
                self.http
                    .post(self.endpoint("v1/search"))
                    .json(&search_body(query)),
                token,
                None,
            )
            .await?;
        Ok(search_results(&list))
    }

    /// The page and the text of its (top-level) blocks.
    pub async fn fetch(&self, token: &str, id: &PageId) -> Result<Document, ProviderError> {
        let page: Page = self
            .call(
                self.http.get(self.endpoint(&format!("v1/pages/{id}"))),
                token,
                Some(id),
            )
            .await?;
        let mut blocks: Vec<Block> = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_BLOCK_PAGES {
            let mut request = self
                .http
                .get(self.endpoint(&format!("v1/blocks/{id}/children")))
                .query(&[("page_size", "100")]);
            if let Some(c) = &cursor {
                request = request.query(&[("start_cursor", c.as_str())]);
            }
            let list: List<Block> = self.call(request, token, Some(id)).await?;
            blocks.extend(list.results);
            match list.next_cursor {
                Some(next) if list.has_more => cursor = Some(next),
                _ => break,
            }
        }
        Ok(page.document(&blocks))
    }

    /// Sends `request` with the token and the version header; maps the answer.
    async fn call<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        token: &str,
        page: Option<&PageId>,
    ) -> Result<T, ProviderError> {
        let url = self.origin().to_string();
        let response = request
            .bearer_auth(token)
            .header("Notion-Version", NOTION_VERSION)
            .send()
            .await
            .map_err(|e| ProviderError::Unreachable {
                url: url.clone(),
                reason: describe(e),
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| ProviderError::Unreachable {
                url: url.clone(),
                reason: describe(e),
            })?;
        match status {
            s if s.is_success() => {
                serde_json::from_slice(&body).map_err(|e| ProviderError::Unreadable {
                    url,
                    reason: e.to_string(),
                })
            }
            StatusCode::UNAUTHORIZED => Err(ProviderError::Unauthorized),
            StatusCode::NOT_FOUND if page.is_some() => Err(ProviderError::NotFound(
                page.map(ToString::to_string).unwrap_or_default(),
            )),
            s => Err(ProviderError::Status {
                url,
                status: s.as_u16(),
                detail: error_detail(&body),
            }),
        }
    }
}

/// A transport error with its causes ("connection refused"), without the request URL (the error
/// names the provider's origin already).
fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {} s", TIMEOUT.as_secs());
    }
    let error = error.without_url();
    let mut reason = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

/// `" (code: message)"` from a Notion error body, or nothing.
pub fn error_detail(body: &[u8]) -> String {
    let Ok(error) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let code = error.get("code").and_then(Value::as_str);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map(|m| m.chars().take(MAX_DETAIL).collect::<String>());
    match (code, message) {
        (Some(c), Some(m)) => format!(" ({c}: {m})"),
        (Some(c), None) => format!(" ({c})"),
        (None, Some(m)) => format!(" ({m})"),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_ids_are_uuids_with_or_without_dashes() {
        let canonical = "3f2a9c14-6b7d-4e21-8a5f-0c9d1e2b3a41";
        for given in [
            canonical,
            "3f2a9c146b7d4e218a5f0c9d1e2b3a41",
            " 3F2A9C14-6B7D-4E21-8A5F-0C9D1E2B3A41 ",
        ] {
            assert_eq!(PageId::parse(given).expect(given).to_string(), canonical);
        }
        for bad in [
            "",
            "../oauth/token",
            "3f2a9c14-6b7d-4e21-8a5f-0c9d1e2b3a4",
            "3f2a9c14-6b7d-4e21-8a5f-0c9d1e2b3a41/children",
            "3f2a9c14--6b7d4e21-8a5f-0c9d1e2b3a41x",
            "zf2a9c146b7d4e218a5f0c9d1e2b3a41",
        ] {
            let error = PageId::parse(bad).expect_err(bad).to_string();
            assert!(error.starts_with("id must be a page id"), "{error}");
        }
    }

    #[test]
    fn a_search_asks_for_pages_only() {
        assert_eq!(
            search_body("launch"),
            json!({"query": "launch", "filter": {"property": "object", "value": "page"}, "page_size": 10})
        );
    }

    #[test]
    fn the_provider_origin_is_normalised_and_checked() {
        for given in [
            "http://127.0.0.1:18106",
            "http://127.0.0.1:18106/",
            "http://127.0.0.1:18106/v1",
            "http://127.0.0.1:18106/v1/",
        ] {
            let p = Provider::new(given).expect(given);
            assert_eq!(p.endpoint("v1/search"), "http://127.0.0.1:18106/v1/search");
            assert_eq!(p.origin(), "http://127.0.0.1:18106");
        }
        for bad in ["", "127.0.0.1:18106", "ftp://x", "http://"] {
            assert!(
                matches!(Provider::new(bad), Err(ConfigError::ProviderApi(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn notion_error_bodies_give_their_code_and_message() {
        assert_eq!(
            error_detail(br#"{"object":"error","status":400,"code":"missing_version","message":"Notion-Version header should be defined"}"#),
            " (missing_version: Notion-Version header should be defined)"
        );
        assert_eq!(error_detail(b"<html>busy</html>"), "");
        assert_eq!(
            error_detail(format!(r#"{{"message":"{}"}}"#, "x".repeat(500)).as_bytes()).len(),
            MAX_DETAIL + 3
        );
    }
}
