//! The stand-in's deterministic playbook: which tools to call for a question, with which arguments,
//! and what to answer from their results (the contract's rules 1–7). Plain functions, no I/O: the
//! Responses API and chat completions both drive it, one with MCP calls of its own, the other
//! through the app's tool loop.

mod answer;
mod format;

use serde_json::{json, Map, Value};

pub use answer::unlisted_servers;
pub use format::{format_amount, format_count};

/// The canonical "sales by year" query of the demo's sales database.
pub const SALES_BY_YEAR_SQL: &str = "SELECT strftime('%Y', o.order_date) AS year, \
ROUND(SUM(l.unit_price * l.quantity * (1 - l.discount)), 2) AS sales \
FROM orders o JOIN order_lines l ON l.order_id = o.order_id \
GROUP BY year ORDER BY year";

/// The salaries query (the demo's policy denies it; the answer then reports the refusal).
pub const SALARIES_SQL: &str = "SELECT first_name || ' ' || last_name AS employee, title, salary \
FROM employees ORDER BY salary DESC";

/// One tool call the playbook wants made.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The tool's name exactly as it was offered (a chat function may be `sqlite__query`).
    pub tool: String,
    /// The playbook's own name for the tool (`query`), used in answers.
    pub short: String,
    pub arguments: Map<String, Value>,
}

/// What became of one tool call.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The tool's result as text (the reference servers put JSON in it).
    Output(String),
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    /// The error's own words, quoted in the answer.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A JSON-RPC error answered the call (the gateway's policy denial is one).
    Rejected,
    /// The tool ran and reported an error (`isError: true`).
    ToolError,
    /// The call did not get an MCP answer at all (HTTP error, connection refused, timeout).
    Transport,
}

/// A made call and its outcome, in the order the calls were made.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    pub call: ToolCall,
    pub outcome: Outcome,
}

/// The rule that applies to a question, holding the tool names it matched.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    SalesByYear {
        query: String,
    },
    Salaries {
        query: String,
    },
    Notes {
        search: String,
        fetch: String,
        topic: String,
    },
    WhoAmI {
        whoami: String,
    },
    Tables {
        list_tables: String,
    },
    Echo {
        echo: String,
        message: String,
    },
    /// No rule applies: the answer lists the tools and example questions.
    Help {
        tools: Vec<String>,
    },
}

/// The plan for one question: the rule, stepped through with [`Plan::next_call`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub rule: Rule,
}

/// Picks the first rule that applies to `question` given the tool names on offer.
pub fn plan(question: &str, tools: &[String]) -> Plan {
    let text = question.trim();
    let lower = text.to_lowercase();
    let find = |wanted: &str| find_tool(tools, wanted).map(str::to_owned);

    let rule = if lower.contains("sales") && (lower.contains("year") || lower.contains("annual")) {
        find("query").map(|query| Rule::SalesByYear { query })
    } else {
        None
    }
    .or_else(|| {
        (lower.contains("salary") || lower.contains("salaries"))
            .then(|| find("query").map(|query| Rule::Salaries { query }))
            .flatten()
    })
    .or_else(|| {
        if !mentions_notes(&lower) {
            return None;
        }
        Some(Rule::Notes {
            search: find("search")?,
            fetch: find("fetch")?,
            topic: topic_of(text),
        })
    })
    .or_else(|| {
        ["who am i", "whoami", "my identity"]
            .iter()
            .any(|p| lower.contains(p))
            .then(|| find("whoami").map(|whoami| Rule::WhoAmI { whoami }))
            .flatten()
    })
    .or_else(|| {
        (lower.contains("tables") || lower.contains("what data"))
            .then(|| find("list_tables").map(|list_tables| Rule::Tables { list_tables }))
            .flatten()
    })
    .or_else(|| {
        let message = echo_message(text)?;
        find("echo").map(|echo| Rule::Echo { echo, message })
    })
    .unwrap_or_else(|| Rule::Help {
        tools: tools.to_vec(),
    });
    Plan { rule }
}

impl Plan {
    /// The next call to make after `done`, or `None` when the answer can be written.
    pub fn next_call(&self, done: &[StepResult]) -> Option<ToolCall> {
        let first = |tool: &str, short: &str, arguments: Value| {
            done.is_empty().then(|| call(tool, short, arguments))
        };
        match &self.rule {
            Rule::SalesByYear { query } => {
                first(query, "query", json!({ "sql": SALES_BY_YEAR_SQL }))
            }
            Rule::Salaries { query } => first(query, "query", json!({ "sql": SALARIES_SQL })),
            Rule::WhoAmI { whoami } => first(whoami, "whoami", json!({})),
            Rule::Tables { list_tables } => first(list_tables, "list_tables", json!({})),
            Rule::Echo { echo, message } => first(echo, "echo", json!({ "message": message })),
            Rule::Help { .. } => None,
            Rule::Notes {
                search,
                fetch,
                topic,
            } => match done {
                [] => Some(call(search, "search", json!({ "query": topic }))),
                // Search done: fetch its first result, if it gave one.
                [searched] => {
                    let Outcome::Output(text) = &searched.outcome else {
                        return None;
                    };
                    let id = first_search_result(text)?.id;
                    Some(call(fetch, "fetch", json!({ "id": id })))
                }
                _ => None,
            },
        }
    }

    /// The final answer, from every call's outcome.
    pub fn answer(&self, done: &[StepResult]) -> String {
        answer::write(&self.rule, done)
    }
}

fn call(tool: &str, short: &str, arguments: Value) -> ToolCall {
    let arguments = match arguments {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    ToolCall {
        tool: tool.to_owned(),
        short: short.to_owned(),
        arguments,
    }
}

/// The offered tool for `wanted`: named exactly so, or `<server>__<wanted>` (how the chat app
/// names functions). The first match wins.
pub fn find_tool<'a>(tools: &'a [String], wanted: &str) -> Option<&'a str> {
    tools.iter().map(String::as_str).find(|name| {
        name.eq_ignore_ascii_case(wanted)
            || name
                .len()
                .checked_sub(wanted.len() + 2)
                .and_then(|at| name.get(at..))
                .is_some_and(|tail| {
                    tail.starts_with("__") && tail[2..].eq_ignore_ascii_case(wanted)
                })
    })
}

/// `/\bnotes?\b|wiki|document/` on the lower-cased question.
fn mentions_notes(lower: &str) -> bool {
    lower.contains("wiki")
        || lower.contains("document")
        || lower
            .split(|c: char| !c.is_alphanumeric())
            .any(|word| word == "note" || word == "notes")
}

/// The search topic: the words after the first "about", "on" or "for" up to `?`, else the whole
/// question.
fn topic_of(question: &str) -> String {
    let mut rest = None;
    let mut start = None;
    for (i, c) in question.char_indices().chain([(question.len(), ' ')]) {
        if c.is_alphanumeric() {
            start.get_or_insert(i);
            continue;
        }
        if let Some(s) = start.take() {
            let word = &question[s..i];
            if ["about", "on", "for"]
                .iter()
                .any(|m| word.eq_ignore_ascii_case(m))
            {
                rest = Some(&question[i..]);
                break;
            }
        }
    }
    let clean = |s: &str| {
        let upto = s.split('?').next().unwrap_or(s);
        upto.trim_matches(|c: char| c.is_whitespace() || ".,;:!\"'".contains(c))
            .to_owned()
    };
    match rest.map(clean).filter(|t| !t.is_empty()) {
        Some(topic) => topic,
        None => clean(question),
    }
}

/// `/^echo (.+)/`, case-insensitively: the text after "echo " on the first line.
fn echo_message(question: &str) -> Option<String> {
    let head = question.get(..5)?;
    if !head.eq_ignore_ascii_case("echo ") {
        return None;
    }
    let message = question[5..].lines().next().unwrap_or("");
    (!message.is_empty()).then(|| message.to_owned())
}

pub(crate) struct SearchHit {
    pub id: String,
    pub title: String,
    pub url: Option<String>,
}

pub(crate) fn search_hits(text: &str) -> Option<Vec<SearchHit>> {
    let value: Value = serde_json::from_str(text).ok()?;
    let results = value.get("results")?.as_array()?;
    Some(
        results
            .iter()
            .filter_map(|r| {
                let id = match r.get("id")? {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                Some(SearchHit {
                    id,
                    title: r
                        .get("title")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    url: r.get("url").and_then(Value::as_str).map(str::to_owned),
                })
            })
            .collect(),
    )
}

fn first_search_result(text: &str) -> Option<SearchHit> {
    search_hits(text)?.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sales_by_year_picks_query_with_the_canonical_sql() {
        let tools = names(&["list_tables", "describe_table", "query"]);
        for q in [
            "What were our sales by year?",
            "Show ANNUAL SALES please",
            "which year had the best sales",
        ] {
            let p = plan(q, &tools);
            assert_eq!(
                p.rule,
                Rule::SalesByYear {
                    query: "query".into()
                },
                "{q}"
            );
            let c = p.next_call(&[]).unwrap();
            assert_eq!(c.tool, "query");
            assert_eq!(c.arguments["sql"], SALES_BY_YEAR_SQL);
        }
    }

    #[test]
    fn rules_need_their_tools() {
        // Sales without a query tool falls through to help.
        let p = plan("sales by year", &names(&["echo"]));
        assert!(matches!(p.rule, Rule::Help { .. }));
        assert_eq!(p.next_call(&[]), None);
        // Notes need both search and fetch.
        let p = plan("search my notes", &names(&["search"]));
        assert!(matches!(p.rule, Rule::Help { .. }));
    }

    #[test]
    fn first_rule_that_applies_wins() {
        let tools = names(&["query", "search", "fetch", "whoami", "list_tables", "echo"]);
        let rule = |q: &str| plan(q, &tools).rule;
        assert!(matches!(
            rule("salaries of employees"),
            Rule::Salaries { .. }
        ));
        assert!(matches!(rule("who am I?"), Rule::WhoAmI { .. }));
        assert!(matches!(rule("Tell me my identity"), Rule::WhoAmI { .. }));
        assert!(matches!(rule("what tables are there"), Rule::Tables { .. }));
        assert!(matches!(
            rule("What data do you have?"),
            Rule::Tables { .. }
        ));
        assert!(matches!(
            rule("any document on salaries?"),
            Rule::Salaries { .. }
        ));
        assert!(matches!(
            rule("the wiki page for tables"),
            Rule::Notes { .. }
        ));
        assert_eq!(
            rule("echo Hello, World"),
            Rule::Echo {
                echo: "echo".into(),
                message: "Hello, World".into()
            }
        );
        assert!(matches!(rule("say echo hi"), Rule::Help { .. }));
        assert!(matches!(rule("notebook"), Rule::Help { .. }));
        assert!(matches!(rule("hello"), Rule::Help { .. }));
    }

    #[test]
    fn chat_function_names_match_by_suffix() {
        let tools = names(&["notes__search", "notes__fetch", "sqlite__query", "myquery"]);
        assert_eq!(find_tool(&tools, "query"), Some("sqlite__query"));
        assert_eq!(find_tool(&tools, "fetch"), Some("notes__fetch"));
        assert_eq!(find_tool(&tools, "whoami"), None);
        assert_eq!(find_tool(&names(&["__"]), "x"), None);
        assert_eq!(find_tool(&names(&["é__query"]), "query"), Some("é__query"));
    }

    #[test]
    fn notes_topic_is_the_words_after_about_on_or_for() {
        assert_eq!(
            topic_of("What do my notes say about onboarding?"),
            "onboarding"
        );
        assert_eq!(
            topic_of("notes on the Q3 launch plan? thanks"),
            "the Q3 launch plan"
        );
        assert_eq!(
            topic_of("Search the wiki for deploy steps."),
            "deploy steps"
        );
        assert_eq!(topic_of("my notes"), "my notes");
        assert_eq!(topic_of("notes about?"), "notes about");
        // "on" inside a word does not count.
        assert_eq!(topic_of("online notes about cats"), "cats");
    }

    #[test]
    fn notes_search_then_fetch_the_first_result() {
        let tools = names(&["search", "fetch"]);
        let p = plan("What do my notes say about onboarding?", &tools);
        let search = p.next_call(&[]).unwrap();
        assert_eq!(search.tool, "search");
        assert_eq!(search.arguments["query"], "onboarding");

        let searched = StepResult {
            call: search.clone(),
            outcome: Outcome::Output(
                r#"{"results":[{"id":"n-7","title":"Onboarding","url":"http://x/n-7"},{"id":"n-9","title":"B","url":"u"}]}"#
                    .into(),
            ),
        };
        let fetch = p.next_call(std::slice::from_ref(&searched)).unwrap();
        assert_eq!(fetch.tool, "fetch");
        assert_eq!(fetch.arguments["id"], "n-7");

        let fetched = StepResult {
            call: fetch,
            outcome: Outcome::Output(
                r#"{"id":"n-7","title":"Onboarding","text":"x","url":"u"}"#.into(),
            ),
        };
        assert_eq!(p.next_call(&[searched.clone(), fetched]), None);

        // No result, or a failed search: nothing to fetch.
        let empty = StepResult {
            call: search.clone(),
            outcome: Outcome::Output(r#"{"results":[]}"#.into()),
        };
        assert_eq!(p.next_call(&[empty]), None);
        let failed = StepResult {
            call: search,
            outcome: Outcome::Failed(Failure {
                kind: FailureKind::ToolError,
                message: "the notes provider refused the token".into(),
            }),
        };
        assert_eq!(p.next_call(&[failed]), None);
    }

    #[test]
    fn single_step_rules_stop_after_one_call() {
        let p = plan("echo hi", &names(&["echo"]));
        let c = p.next_call(&[]).unwrap();
        assert_eq!(c.arguments["message"], "hi");
        let done = [StepResult {
            call: c,
            outcome: Outcome::Output("Echo: hi".into()),
        }];
        assert_eq!(p.next_call(&done), None);
    }
}
