//! Notion's API objects (the parts this server reads) and their mapping to the contract's search
//! and fetch results (OpenAI's search/fetch convention).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `{"object": "list"}` answer: search results (pages) or a page's blocks.
#[derive(Debug, Deserialize)]
pub struct List<T> {
    pub results: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// A page object, or a database object in search results (skipped: `object` says which).
#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default = "page_object")]
    pub object: String,
    pub id: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub created_time: Option<String>,
    #[serde(default)]
    pub last_edited_time: Option<String>,
    /// Property name → property; the one of type `title` holds the page's title, whatever its name
    /// ("title" for workspace pages, "Name" in databases).
    #[serde(default)]
    pub properties: serde_json::Map<String, Value>,
}

fn page_object() -> String {
    "page".into()
}

/// A block: `type` names the field holding its content (`"paragraph": {"rich_text": […]}`).
#[derive(Debug, Deserialize)]
pub struct Block {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(flatten)]
    pub content: serde_json::Map<String, Value>,
}

/// One search result of the `search` tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SearchHit {
    /// The page id, for `fetch`.
    pub id: String,
    pub title: String,
    /// Where a person can open the page.
    pub url: String,
}

/// The `search` tool's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SearchResults {
    pub results: Vec<SearchHit>,
}

/// The `fetch` tool's result: a page's full text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Document {
    pub id: String,
    pub title: String,
    /// The page's content as plain text: paragraphs separated by a blank line, headings marked
    /// with `#`, list items with `-`, to-dos with `[ ]` or `[x]`.
    pub text: String,
    pub url: String,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Metadata {
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_edited_time: Option<String>,
}

const UNTITLED: &str = "Untitled";

impl Page {
    /// The plain text of the page's title property, or "Untitled".
    pub fn title(&self) -> String {
        let title = self
            .properties
            .values()
            .find(|p| p.get("type").and_then(Value::as_str) == Some("title"))
            .and_then(|p| p.get("title"))
            .map(plain_text)
            .unwrap_or_default();
        if title.trim().is_empty() {
            UNTITLED.into()
        } else {
            title
        }
    }

    pub fn hit(&self) -> SearchHit {
        SearchHit {
            id: self.id.clone(),
            title: self.title(),
            url: self.url.clone().unwrap_or_default(),
        }
    }

    /// The page with its blocks' text.
    pub fn document(&self, blocks: &[Block]) -> Document {
        Document {
            id: self.id.clone(),
            title: self.title(),
            text: text_of(blocks),
            url: self.url.clone().unwrap_or_default(),
            metadata: Metadata {
                source: "notes".into(),
                created_time: self.created_time.clone(),
                last_edited_time: self.last_edited_time.clone(),
            },
        }
    }
}

/// Search results: the pages (databases skipped) as hits.
pub fn search_results(list: &List<Page>) -> SearchResults {
    SearchResults {
        results: list
            .results
            .iter()
            .filter(|p| p.object == "page")
            .map(Page::hit)
            .collect(),
    }
}

/// The concatenated `plain_text` of a rich-text array.
fn plain_text(rich_text: &Value) -> String {
    rich_text
        .as_array()
        .map(|runs| {
            runs.iter()
                .filter_map(|r| r.get("plain_text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

impl Block {
    fn body(&self) -> Option<&Value> {
        self.content.get(&self.kind)
    }

    /// The block as one line of text, or None for blocks without text (dividers, images…).
    pub fn line(&self) -> Option<String> {
        let body = self.body()?;
        let text = plain_text(body.get("rich_text")?);
        let prefix = match self.kind.as_str() {
            "heading_1" => "# ",
            "heading_2" => "## ",
            "heading_3" => "### ",
            "bulleted_list_item" => "- ",
            "numbered_list_item" => "1. ",
            "quote" => "> ",
            "to_do" if body.get("checked").and_then(Value::as_bool) == Some(true) => "[x] ",
            "to_do" => "[ ] ",
            _ => "",
        };
        Some(format!("{prefix}{text}"))
    }

    fn is_list_item(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "bulleted_list_item" | "numbered_list_item" | "to_do"
        )
    }
}

/// The text of a page's blocks: a blank line between blocks, one newline between consecutive
/// items of the same kind of list (so a list stays one paragraph).
pub fn text_of(blocks: &[Block]) -> String {
    let mut text = String::new();
    let mut previous_item: Option<&str> = None;
    for block in blocks {
        let Some(line) = block.line() else {
            // A divider or an image ends a list too.
            previous_item = None;
            continue;
        };
        let item = block.is_list_item().then_some(block.kind.as_str());
        if !text.is_empty() {
            text.push_str(if item.is_some() && item == previous_item {
                "\n"
            } else {
                "\n\n"
            });
        }
        text.push_str(&line);
        previous_item = item;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rich(runs: &[&str]) -> Value {
        Value::Array(
            runs.iter()
                .map(|t| {
                    json!({"type": "text", "text": {"content": t, "link": null},
                           "annotations": {"bold": false}, "plain_text": t, "href": null})
                })
                .collect(),
        )
    }

    // Shapes as Notion's API (and the e2e stand-in) sends them.
    fn search_answer() -> Value {
        json!({
            "object": "list",
            "results": [
                {"object": "page", "id": "3f2a9c14-6b7d-4e21-8a5f-0c9d1e2b3a41",
                 "created_time": "2025-05-12T09:14:00.000Z", "last_edited_time": "2025-07-28T16:42:00.000Z",
                 "parent": {"type": "workspace", "workspace": true}, "archived": false,
                 "properties": {"title": {"id": "title", "type": "title", "title": rich(&["Q3 ", "launch plan"])}},
                 "url": "https://www.notion.so/Q3-launch-plan-3f2a9c146b7d4e218a5f0c9d1e2b3a41"},
                {"object": "database", "id": "d1", "title": rich(&["Tasks"]), "properties": {}},
                {"object": "page", "id": "p2",
                 "properties": {"Status": {"id": "s", "type": "select", "select": null},
                                "Name": {"id": "title", "type": "title", "title": rich(&["Row in a database"])}},
                 "url": "https://www.notion.so/p2"},
                {"object": "page", "id": "p3", "properties": {"title": {"type": "title", "title": []}}}
            ],
            "next_cursor": null, "has_more": false, "type": "page_or_database", "page_or_database": {}
        })
    }

    #[test]
    fn search_answers_become_hits_with_titles_from_the_title_property() {
        let list: List<Page> = serde_json::from_value(search_answer()).expect("list");
        let hits = search_results(&list).results;
        assert_eq!(
            hits,
            vec![
                SearchHit {
                    id: "3f2a9c14-6b7d-4e21-8a5f-0c9d1e2b3a41".into(),
                    title: "Q3 launch plan".into(),
                    url: "https://www.notion.so/Q3-launch-plan-3f2a9c146b7d4e218a5f0c9d1e2b3a41"
                        .into(),
                },
                SearchHit {
                    id: "p2".into(),
                    title: "Row in a database".into(),
                    url: "https://www.notion.so/p2".into(),
                },
                SearchHit {
                    id: "p3".into(),
                    title: "Untitled".into(),
                    url: String::new(),
                },
            ]
        );
    }

    #[test]
    fn blocks_become_text_with_lists_kept_together() {
        let blocks: List<Block> = serde_json::from_value(json!({
            "object": "list",
            "results": [
                {"object": "block", "id": "b1", "type": "paragraph", "has_children": false,
                 "paragraph": {"rich_text": rich(&["Launches on ", "16 September", "."]), "color": "default"}},
                {"object": "block", "id": "b2", "type": "heading_2",
                 "heading_2": {"rich_text": rich(&["Milestones"]), "is_toggleable": false}},
                {"object": "block", "id": "b3", "type": "bulleted_list_item",
                 "bulleted_list_item": {"rich_text": rich(&["Contracts"])}},
                {"object": "block", "id": "b4", "type": "bulleted_list_item",
                 "bulleted_list_item": {"rich_text": rich(&["Samples"])}},
                {"object": "block", "id": "b5", "type": "divider", "divider": {}},
                {"object": "block", "id": "b6", "type": "to_do",
                 "to_do": {"rich_text": rich(&["Badge"]), "checked": true}},
                {"object": "block", "id": "b7", "type": "to_do",
                 "to_do": {"rich_text": rich(&["Laptop"]), "checked": false}},
                {"object": "block", "id": "b8", "type": "heading_1",
                 "heading_1": {"rich_text": rich(&["Risks"])}},
                {"object": "block", "id": "b9", "type": "image", "image": {"type": "external"}}
            ],
            "next_cursor": null, "has_more": false, "type": "block", "block": {}
        }))
        .expect("blocks");
        assert_eq!(
            text_of(&blocks.results),
            "Launches on 16 September.\n\n## Milestones\n\n- Contracts\n- Samples\n\n\
             [x] Badge\n[ ] Laptop\n\n# Risks"
        );
    }

    #[test]
    fn a_document_carries_the_page_metadata() {
        let list: List<Page> = serde_json::from_value(search_answer()).expect("list");
        let block: Block = serde_json::from_value(json!({
            "type": "paragraph", "paragraph": {"rich_text": rich(&["Hello."])}
        }))
        .expect("block");
        let doc = list.results[0].document(&[block]);
        assert_eq!(doc.title, "Q3 launch plan");
        assert_eq!(doc.text, "Hello.");
        assert_eq!(
            serde_json::to_value(&doc.metadata).expect("json"),
            json!({"source": "notes", "created_time": "2025-05-12T09:14:00.000Z",
                   "last_edited_time": "2025-07-28T16:42:00.000Z"})
        );
    }
}
