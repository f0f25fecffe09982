//! The MCP server: one tool, `whoami`.

use axum::http::request::Parts;
use mcpgate_assertion::Identity;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Json;
use rmcp::{tool, tool_handler, tool_router, ServerHandler};

use crate::whoami::Whoami;

#[derive(Clone)]
pub struct WhoamiServer {
    tool_router: ToolRouter<Self>,
}

impl Default for WhoamiServer {
    fn default() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl WhoamiServer {
    #[tool(
        description = "Tell who the caller is, as the mcpgate gateway vouched for them on this request: subject, email, groups, display name, the issuing gateway, this server's route URL (audience) and when the assertion expires.",
        annotations(title = "Who am I", read_only_hint = true, open_world_hint = false)
    )]
    async fn whoami(&self, Extension(parts): Extension<Parts>) -> Result<Json<Whoami>, String> {
        // The assertion layer put the verified identity into this HTTP request's extensions.
        parts
            .extensions
            .get::<Identity>()
            .map(|identity| Json(Whoami::from(identity)))
            .ok_or_else(|| "this request carries no verified identity assertion".to_string())
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "mcpgate-server-whoami",
    instructions = "Call whoami to see who the gateway says you are."
)]
impl ServerHandler for WhoamiServer {}
