//! The final answer of each rule, written from the calls' outcomes. A failed call is always told,
//! with the error's own words.

use serde_json::Value;

use super::format::{plain, table, Column};
use super::{find_tool, search_hits, Failure, FailureKind, Outcome, Rule, StepResult};

/// Longest tool output quoted back when it is not what a rule expected.
const QUOTE_LIMIT: usize = 1500;

pub(super) fn write(rule: &Rule, done: &[StepResult]) -> String {
    match rule {
        Rule::Help { tools } => help(tools),
        Rule::Notes { topic, .. } => notes(topic, done),
        _ => {
            let Some(step) = done.first() else {
                return "I could not call the tool this question needs.".to_owned();
            };
            let text = match &step.outcome {
                Outcome::Failed(failure) => return describe_failure(&step.call.short, failure),
                Outcome::Output(text) => text,
            };
            let written = match rule {
                Rule::SalesByYear { .. } => sales_by_year(text),
                Rule::Salaries { .. } => salaries(text),
                Rule::WhoAmI { .. } => whoami(text),
                Rule::Tables { .. } => tables(text),
                Rule::Echo { .. } => Some(format!("The `echo` tool replied:\n\n{}", quote(text))),
                Rule::Help { .. } | Rule::Notes { .. } => None,
            };
            written.unwrap_or_else(|| unexpected(&step.call.short, text))
        }
    }
}

/// The servers whose tools could not be listed, `(label, error)`, said before the answer.
pub fn unlisted_servers(failures: &[(String, String)]) -> Option<String> {
    let lines: Vec<String> = failures
        .iter()
        .map(|(label, error)| {
            format!("I could not get the tools of the MCP server `{label}`: {error}")
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n\n"))
}

/// One sentence naming what failed, quoting the error.
pub(super) fn describe_failure(tool: &str, failure: &Failure) -> String {
    let message = failure.message.trim();
    match failure.kind {
        FailureKind::Rejected if message.starts_with("mcpgate:") => {
            format!("The gateway refused the call to `{tool}`: {message}")
        }
        FailureKind::Rejected => format!("The MCP server rejected the call to `{tool}`: {message}"),
        FailureKind::ToolError => format!("The `{tool}` tool reported an error: {message}"),
        FailureKind::Transport => format!("The call to `{tool}` could not be made: {message}"),
    }
}

fn unexpected(tool: &str, text: &str) -> String {
    let shown: String = text.chars().take(QUOTE_LIMIT).collect();
    let more = if shown.len() < text.len() {
        "\n…"
    } else {
        ""
    };
    format!(
        "The `{tool}` tool answered, but not with the data I expected:\n\n```\n{shown}{more}\n```"
    )
}

/// A query result: `{"columns":[…],"rows":[[…]],…}` → (columns, rows).
fn query_result(text: &str) -> Option<(Vec<String>, Vec<Vec<Value>>)> {
    let value: Value = serde_json::from_str(text).ok()?;
    let columns = value
        .get("columns")?
        .as_array()?
        .iter()
        .map(plain)
        .collect::<Vec<_>>();
    let rows = value
        .get("rows")?
        .as_array()?
        .iter()
        .map(|row| row.as_array().cloned().unwrap_or_default())
        .collect();
    Some((columns, rows))
}

/// Rows reordered to `wanted` columns (by name, else by position).
fn pick(columns: &[String], rows: Vec<Vec<Value>>, wanted: &[&str]) -> Vec<Vec<Value>> {
    let at: Vec<usize> = wanted
        .iter()
        .enumerate()
        .map(|(i, w)| {
            columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(w))
                .unwrap_or(i)
        })
        .collect();
    rows.into_iter()
        .map(|row| {
            at.iter()
                .map(|&i| row.get(i).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect()
}

fn sales_by_year(text: &str) -> Option<String> {
    let (columns, rows) = query_result(text)?;
    if rows.is_empty() {
        return Some("The sales database has no orders yet, so there are no sales to show.".into());
    }
    let rows = pick(&columns, rows, &["year", "sales"]);
    Some(format!(
        "Here are the total sales by year (unit price × quantity × (1 − discount), summed over every order line):\n\n{}",
        table(&[("Year", Column::Text), ("Sales", Column::Amount)], &rows)
    ))
}

fn salaries(text: &str) -> Option<String> {
    let (columns, rows) = query_result(text)?;
    if rows.is_empty() {
        return Some("There are no employees in the database.".into());
    }
    let rows = pick(&columns, rows, &["employee", "title", "salary"]);
    Some(format!(
        "Employees by salary, highest first:\n\n{}",
        table(
            &[
                ("Employee", Column::Text),
                ("Title", Column::Text),
                ("Salary", Column::Amount)
            ],
            &rows
        )
    ))
}

fn whoami(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    let field = |k: &str| value.get(k).map(plain).filter(|s| !s.is_empty());
    let email = field("email");
    let name = field("name")
        .or_else(|| email.clone())
        .or_else(|| field("sub"))?;
    let groups = match value.get("groups") {
        Some(Value::Array(list)) if !list.is_empty() => {
            list.iter().map(plain).collect::<Vec<_>>().join(", ")
        }
        _ => "none".to_owned(),
    };
    let mut out = format!(
        "You are signed in as **{name}**.\n\n- Email: {}\n- Groups: {groups}",
        email.as_deref().unwrap_or("(none given)")
    );
    if let Some(sub) = field("sub") {
        out.push_str(&format!("\n- Subject: `{sub}`"));
    }
    Some(out)
}

fn tables(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    let list = value.get("tables")?.as_array()?;
    if list.is_empty() {
        return Some("The database has no tables.".into());
    }
    let rows: Vec<Vec<Value>> = list
        .iter()
        .map(|t| {
            vec![
                t.get("name").cloned().unwrap_or(Value::Null),
                t.get("rows").cloned().unwrap_or(Value::Null),
            ]
        })
        .collect();
    let noun = if rows.len() == 1 { "table" } else { "tables" };
    Some(format!(
        "The database has {} {noun}:\n\n{}",
        rows.len(),
        table(&[("Table", Column::Text), ("Rows", Column::Count)], &rows)
    ))
}

fn notes(topic: &str, done: &[StepResult]) -> String {
    let Some(searched) = done.first() else {
        return "I could not search your notes.".to_owned();
    };
    let text = match &searched.outcome {
        Outcome::Failed(failure) => return describe_failure(&searched.call.short, failure),
        Outcome::Output(text) => text,
    };
    let Some(hits) = search_hits(text) else {
        return unexpected(&searched.call.short, text);
    };
    let Some(first) = hits.first() else {
        return format!("I found nothing in your notes about “{topic}”.");
    };
    let Some(fetched) = done.get(1) else {
        return format!(
            "Your notes have a page on this: {}.",
            link(&first.title, first.url.as_deref())
        );
    };
    let text = match &fetched.outcome {
        Outcome::Failed(failure) => {
            return format!(
                "I found {} in your notes, but could not read it. {}",
                link(&first.title, first.url.as_deref()),
                describe_failure(&fetched.call.short, failure)
            )
        }
        Outcome::Output(text) => text,
    };
    let Ok(page) = serde_json::from_str::<Value>(text) else {
        return unexpected(&fetched.call.short, text);
    };
    let title = page
        .get("title")
        .map(plain)
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| first.title.clone());
    let url = page
        .get("url")
        .and_then(Value::as_str)
        .or(first.url.as_deref());
    let body = page.get("text").map(plain).unwrap_or_default();
    let mut out = format!("Your notes have a page on this: {}.", link(&title, url));
    if let Some(paragraph) = first_paragraph(&body) {
        out.push_str("\n\n");
        out.push_str(&quote(paragraph));
    }
    out
}

fn link(title: &str, url: Option<&str>) -> String {
    let title = if title.is_empty() { "untitled" } else { title };
    match url {
        Some(url) if !url.is_empty() => format!("[{}]({url})", title.replace(['[', ']'], "")),
        _ => format!("**{title}**"),
    }
}

/// The first paragraph of a page that is not a heading.
fn first_paragraph(text: &str) -> Option<&str> {
    text.split("\n\n")
        .map(str::trim)
        .find(|p| !p.is_empty() && !p.lines().all(|l| l.trim_start().starts_with('#')))
}

/// Markdown block quote.
fn quote(text: &str) -> String {
    text.trim()
        .lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn help(tools: &[String]) -> String {
    let has = |t: &str| find_tool(tools, t).is_some();
    let mut examples = Vec::new();
    if has("query") {
        examples.push("What were the sales by year?");
        examples.push("What are the employees' salaries?");
    }
    if has("list_tables") {
        examples.push("What tables are there?");
    }
    if has("search") && has("fetch") {
        examples.push("What do my notes say about onboarding?");
    }
    if has("whoami") {
        examples.push("Who am I?");
    }
    if has("echo") {
        examples.push("echo hello");
    }
    let list = |examples: &[&str]| {
        examples
            .iter()
            .map(|e| format!("- “{e}”"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if tools.is_empty() {
        return format!(
            "I have no tools to use for this question, so I cannot look anything up. Connect an MCP server, then try for example:\n\n{}",
            list(&["What were the sales by year?", "Who am I?"])
        );
    }
    let names = tools
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if examples.is_empty() {
        return format!(
            "I can use these tools: {names}.\n\nNone of them fits a question I know how to answer."
        );
    }
    format!(
        "I can use these tools: {names}.\n\nTry asking:\n\n{}",
        list(&examples)
    )
}

#[cfg(test)]
mod tests {
    use super::super::{plan, ToolCall};
    use super::*;
    use serde_json::Map;

    fn step(short: &str, outcome: Outcome) -> StepResult {
        StepResult {
            call: ToolCall {
                tool: short.to_owned(),
                short: short.to_owned(),
                arguments: Map::new(),
            },
            outcome,
        }
    }

    fn out(text: &str) -> Outcome {
        Outcome::Output(text.to_owned())
    }

    fn failed(kind: FailureKind, message: &str) -> Outcome {
        Outcome::Failed(Failure {
            kind,
            message: message.to_owned(),
        })
    }

    fn answer(question: &str, tools: &[&str], done: &[StepResult]) -> String {
        let tools: Vec<String> = tools.iter().map(|s| s.to_string()).collect();
        plan(question, &tools).answer(done)
    }

    #[test]
    fn sales_answer_is_a_sentence_then_every_row() {
        let done = [step(
            "query",
            out(
                r#"{"columns":["year","sales"],"rows":[["2022",1234567.891],["2023",987654.5],["2024",1000],["2025",0.5]],"row_count":4,"truncated":false}"#,
            ),
        )];
        let a = answer("sales by year", &["query"], &done);
        let (sentence, table) = a.split_once("\n\n").unwrap();
        assert!(sentence.starts_with("Here are the total sales by year"));
        assert_eq!(
            table,
            "| Year | Sales |\n|---|---:|\n| 2022 | 1,234,567.89 |\n| 2023 | 987,654.50 |\n| 2024 | 1,000.00 |\n| 2025 | 0.50 |"
        );
    }

    #[test]
    fn a_denied_call_is_told_with_the_gateway_error() {
        let msg = "mcpgate: tools/call 'query' denied by policy (request 42)";
        let done = [step("query", failed(FailureKind::Rejected, msg))];
        assert_eq!(
            answer("what are the salaries?", &["query"], &done),
            format!("The gateway refused the call to `query`: {msg}")
        );
    }

    #[test]
    fn other_failures_are_told_too() {
        let cases = [
            (
                FailureKind::ToolError,
                "refused: only read-only statements are allowed (INSERT writes)",
                "The `query` tool reported an error: refused: only read-only",
            ),
            (
                FailureKind::Rejected,
                "Invalid params",
                "The MCP server rejected the call to `query`: Invalid params",
            ),
            (
                FailureKind::Transport,
                "HTTP 502",
                "The call to `query` could not be made: HTTP 502",
            ),
        ];
        for (kind, msg, want) in cases {
            let a = answer(
                "sales by year",
                &["query"],
                &[step("query", failed(kind, msg))],
            );
            assert!(a.starts_with(want), "{a}");
        }
    }

    #[test]
    fn unexpected_output_is_quoted_not_hidden() {
        let a = answer(
            "sales by year",
            &["query"],
            &[step("query", out("no JSON here"))],
        );
        assert!(a.contains("not with the data I expected"));
        assert!(a.contains("no JSON here"));
    }

    #[test]
    fn salaries_table_when_allowed() {
        let done = [step(
            "query",
            out(
                r#"{"columns":["employee","title","salary"],"rows":[["Ada Lovelace","CTO",250000]],"row_count":1,"truncated":false}"#,
            ),
        )];
        let a = answer("salaries", &["query"], &done);
        assert!(a.ends_with("| Employee | Title | Salary |\n|---|---|---:|\n| Ada Lovelace | CTO | 250,000.00 |"), "{a}");
    }

    #[test]
    fn notes_answer_links_the_title_and_quotes_the_first_paragraph() {
        let tools = ["search", "fetch"];
        let q = "what do my notes say about onboarding?";
        let done = [
            step(
                "search",
                out(r#"{"results":[{"id":"n1","title":"Onboarding","url":"http://notes/n1"}]}"#),
            ),
            step(
                "fetch",
                out(
                    r##"{"id":"n1","title":"Onboarding guide","text":"# Onboarding\n\nNew hires get a laptop\non day one.\n\nSecond paragraph.","url":"http://notes/n1","metadata":{}}"##,
                ),
            ),
        ];
        assert_eq!(
            answer(q, &tools, &done),
            "Your notes have a page on this: [Onboarding guide](http://notes/n1).\n\n> New hires get a laptop\n> on day one."
        );
        let none = [step("search", out(r#"{"results":[]}"#))];
        assert_eq!(
            answer(q, &tools, &none),
            "I found nothing in your notes about “onboarding”."
        );
        let refused = [step(
            "search",
            failed(
                FailureKind::ToolError,
                "the notes provider refused the token",
            ),
        )];
        assert_eq!(
            answer(q, &tools, &refused),
            "The `search` tool reported an error: the notes provider refused the token"
        );
    }

    #[test]
    fn whoami_lists_email_and_groups() {
        let done = [step(
            "whoami",
            out(
                r#"{"sub":"u-1","email":"demo@example.com","groups":["sales","staff"],"name":"Demo User","issuer":"i","audience":"a","expires_at":1}"#,
            ),
        )];
        assert_eq!(
            answer("who am i", &["whoami"], &done),
            "You are signed in as **Demo User**.\n\n- Email: demo@example.com\n- Groups: sales, staff\n- Subject: `u-1`"
        );
    }

    #[test]
    fn tables_are_listed_with_row_counts() {
        let done = [step(
            "list_tables",
            out(r#"{"tables":[{"name":"orders","rows":4321},{"name":"products","rows":77}]}"#),
        )];
        assert_eq!(
            answer("what tables do you have", &["list_tables"], &done),
            "The database has 2 tables:\n\n| Table | Rows |\n|---|---:|\n| orders | 4,321 |\n| products | 77 |"
        );
    }

    #[test]
    fn echo_quotes_the_reply() {
        let done = [step("echo", out("Echo: hi there"))];
        assert_eq!(
            answer("echo hi there", &["echo"], &done),
            "The `echo` tool replied:\n\n> Echo: hi there"
        );
    }

    #[test]
    fn unlisted_servers_are_named_with_their_error() {
        assert_eq!(unlisted_servers(&[]), None);
        assert_eq!(
            unlisted_servers(&[("notes".into(), "HTTP 401 Unauthorized".into())]).unwrap(),
            "I could not get the tools of the MCP server `notes`: HTTP 401 Unauthorized"
        );
    }

    #[test]
    fn help_lists_tools_and_examples() {
        let a = answer("hello", &["sqlite__query", "whoami__whoami"], &[]);
        assert!(a.starts_with("I can use these tools: `sqlite__query`, `whoami__whoami`."));
        assert!(a.contains("“What were the sales by year?”"));
        assert!(a.contains("“Who am I?”"));
        assert!(!a.contains("echo"));
        assert!(answer("hello", &[], &[]).starts_with("I have no tools to use"));
        assert!(answer("hello", &["add"], &[]).contains("None of them fits"));
    }
}
