//! The MCP server: tools `search` and `fetch` over the notes provider, each called with the
//! provider token the gateway put in the MCP request's `Authorization` header.

use std::sync::Arc;

use axum::http::{header::AUTHORIZATION, request::Parts};
use mcpgate_assertion::Identity;
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{Extensions, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{tool, tool_handler, tool_router, Json, ServerHandler};
use serde::Deserialize;

use crate::notion::{Document, SearchResults};
use crate::provider::{PageId, Provider};

/// Why a tool call cannot reach the provider on the user's behalf.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no provider token: the gateway did not connect this user to the notes provider")]
    Missing,
    #[error("the Authorization header of the MCP request is not `Bearer <provider token>`")]
    NotBearer,
}

/// The provider token from the MCP request's `Authorization: Bearer …` (the gateway's injection).
pub fn provider_token(parts: Option<&Parts>) -> Result<&str, TokenError> {
    let Some(value) = parts.and_then(|p| p.headers.get(AUTHORIZATION)) else {
        return Err(TokenError::Missing);
    };
    let value = value.to_str().map_err(|_| TokenError::NotBearer)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::NotBearer)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(TokenError::NotBearer);
    }
    Ok(token)
}

/// Who is calling, for the log: the verified assertion's email, when there is one.
fn caller(parts: Option<&Parts>) -> String {
    parts
        .and_then(|p| p.extensions.get::<Identity>())
        .map(|i| i.email.clone())
        .unwrap_or_else(|| "an unverified caller".into())
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SearchArgs {
    /// Words to look for in page titles and content, e.g. "Q3 launch" or "travel policy".
    /// An empty string lists every page shared with this integration.
    pub query: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct FetchArgs {
    /// The id of a page, exactly as a `search` result gave it.
    pub id: String,
}

#[derive(Clone)]
pub struct NotesServer {
    provider: Arc<Provider>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl NotesServer {
    pub fn new(provider: Arc<Provider>) -> Self {
        Self {
            provider,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Search the company's notes workspace (a Notion-like wiki: plans, policies, \
        processes, meeting notes, roadmaps) for pages whose title or content matches the query. \
        Returns {\"results\": [{\"id\", \"title\", \"url\"}]}, best matches first, at most 10. \
        Call `fetch` with a result's id to read the page before answering from it."
    )]
    async fn search(
        &self,
        Parameters(args): Parameters<SearchArgs>,
        extensions: Extensions,
    ) -> Result<Json<SearchResults>, String> {
        let parts = extensions.get::<Parts>();
        let token = provider_token(parts).map_err(|e| e.to_string())?;
        let results = self
            .provider
            .search(token, &args.query)
            .await
            .map_err(|e| {
                tracing::warn!(caller = %caller(parts), error = %e, "search failed");
                e.to_string()
            })?;
        tracing::info!(caller = %caller(parts), results = results.results.len(), "search");
        Ok(Json(results))
    }

    #[tool(
        description = "Read one page of the company's notes workspace by the id a `search` result \
        gave. Returns {\"id\", \"title\", \"text\", \"url\", \"metadata\"}: the whole page as plain \
        text (paragraphs separated by blank lines, headings marked with #, list items with -). \
        Cite the page by its title and url."
    )]
    async fn fetch(
        &self,
        Parameters(args): Parameters<FetchArgs>,
        extensions: Extensions,
    ) -> Result<Json<Document>, String> {
        let parts = extensions.get::<Parts>();
        let id = PageId::parse(&args.id).map_err(|e| e.to_string())?;
        let token = provider_token(parts).map_err(|e| e.to_string())?;
        let document = self.provider.fetch(token, &id).await.map_err(|e| {
            tracing::warn!(caller = %caller(parts), page = %id, error = %e, "fetch failed");
            e.to_string()
        })?;
        tracing::info!(caller = %caller(parts), page = %id, "fetch");
        Ok(Json(document))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for NotesServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "mcpgate-server-notes",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "The company's notes workspace. Use `search` to find pages, then `fetch` to read \
                 one; answer from the fetched text and link the page's url.",
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(authorization: Option<&str>) -> Parts {
        let mut builder = Request::post("/mcp");
        if let Some(a) = authorization {
            builder = builder.header(AUTHORIZATION, a);
        }
        builder.body(()).expect("request").into_parts().0
    }

    #[test]
    fn the_provider_token_is_the_bearer_of_the_mcp_request() {
        assert_eq!(
            provider_token(Some(&parts(Some("Bearer ntn_abc")))),
            Ok("ntn_abc")
        );
        assert_eq!(
            provider_token(Some(&parts(Some("bearer  ntn_abc ")))),
            Ok("ntn_abc")
        );
        assert_eq!(provider_token(Some(&parts(None))), Err(TokenError::Missing));
        assert_eq!(provider_token(None), Err(TokenError::Missing));
        for bad in [
            "Basic dXNlcjpwdw==",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "ntn_abc",
        ] {
            assert_eq!(
                provider_token(Some(&parts(Some(bad)))),
                Err(TokenError::NotBearer),
                "{bad}"
            );
        }
    }
}
