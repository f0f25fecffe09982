//! The MCP face of the database: three tools an LLM can use to explore it and ask questions.

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{tool, tool_handler, tool_router, ServerHandler};
use serde::Deserialize;

use crate::database::{Database, QueryError, QueryResult, TableDescription, TableList};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct DescribeTableArgs {
    #[schemars(description = "The table's name, as list_tables shows it.")]
    pub table: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct QueryArgs {
    #[schemars(
        description = "One read-only SQLite statement: SELECT (WITH … SELECT, EXPLAIN QUERY PLAN and read-only PRAGMAs such as table_info also work). Write literal values into the SQL; parameters are not supported."
    )]
    pub sql: String,
}

/// The server; one per MCP request or session, all sharing the database.
#[derive(Clone)]
pub struct SqlServer {
    database: Arc<Database>,
    tool_router: ToolRouter<Self>,
}

impl SqlServer {
    pub fn new(database: Arc<Database>) -> Self {
        Self {
            database,
            tool_router: Self::tool_router(),
        }
    }

    /// Runs blocking SQLite work off the async runtime; a failure becomes the tool error.
    async fn run<T: Send + 'static>(
        &self,
        tool: &'static str,
        work: impl FnOnce(&Database) -> Result<T, QueryError> + Send + 'static,
    ) -> Result<Json<T>, String> {
        let database = Arc::clone(&self.database);
        let outcome = match tokio::task::spawn_blocking(move || work(&database)).await {
            Ok(Ok(value)) => Ok(Json(value)),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("the query failed unexpectedly".into()),
        };
        match &outcome {
            Ok(_) => tracing::info!(tool, "tool call answered"),
            Err(reason) => tracing::info!(tool, %reason, "tool call failed"),
        }
        outcome
    }
}

#[tool_router]
impl SqlServer {
    #[tool(
        description = "List the tables of the database with their row counts. Start here to see what data there is.",
        annotations(title = "List tables", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_tables(&self) -> Result<Json<TableList>, String> {
        self.run("list_tables", |db| db.list_tables()).await
    }

    #[tool(
        description = "Describe one table: each column's name, declared SQLite type, whether it is NOT NULL and part of the primary key, and the foreign keys to other tables (for joins). Use it before writing a query against the table.",
        annotations(
            title = "Describe a table",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn describe_table(
        &self,
        Parameters(DescribeTableArgs { table }): Parameters<DescribeTableArgs>,
    ) -> Result<Json<TableDescription>, String> {
        self.run("describe_table", move |db| db.describe_table(&table))
            .await
    }

    #[tool(
        description = "Run one read-only SQL query (SQLite dialect) and get the columns and rows as JSON. Exactly one statement; anything that writes (INSERT, UPDATE, DELETE, CREATE, DROP, …), ATTACH and state-changing PRAGMAs are refused with the reason. Rows are capped (truncated: true when more matched, so aggregate or add LIMIT), and a query running longer than a few seconds is stopped. Dates are TEXT 'YYYY-MM-DD': use strftime('%Y', col) and friends.",
        annotations(
            title = "Query (read-only SQL)",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn query(
        &self,
        Parameters(QueryArgs { sql }): Parameters<QueryArgs>,
    ) -> Result<Json<QueryResult>, String> {
        self.run("query", move |db| db.query(&sql)).await
    }
}

#[tool_handler(
    router = self.tool_router,
    name = "mcpgate-server-sqlite",
    instructions = "Read-only SQL over one SQLite database. Call list_tables, then describe_table for the tables you need, then query with one SELECT."
)]
impl ServerHandler for SqlServer {}
