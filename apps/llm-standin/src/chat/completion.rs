//! The chat completion object and its streamed chunks, in OpenAI's shapes (`chat.completion`,
//! `chat.completion.chunk`; a tool call streams as deltas carrying `index`, then the `id`, `type`
//! and function `name`, then pieces of `arguments`).

use serde_json::{json, Value};

use super::conversation::Reply;

/// What every object of one completion shares.
pub struct Head<'a> {
    pub id: &'a str,
    pub created: u64,
    pub model: &'a str,
    /// The id given to a tool call this round.
    pub call_id: &'a str,
}

/// Token counts: `(prompt, completion)`.
pub fn usage(prompt: u64, completion: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0
        }
    })
}

fn arguments_of(reply: &Reply) -> Option<(String, String)> {
    match reply {
        Reply::Call(call) => Some((
            call.tool.clone(),
            Value::Object(call.arguments.clone()).to_string(),
        )),
        Reply::Text(_) => None,
    }
}

/// The non-streamed completion.
pub fn completion(head: &Head, reply: &Reply, usage: Value) -> Value {
    let (message, finish_reason) = match reply {
        Reply::Text(text) => (
            json!({"role": "assistant", "content": text, "refusal": null, "annotations": []}),
            "stop",
        ),
        Reply::Call(_) => {
            let (name, arguments) = arguments_of(reply).unwrap_or_default();
            (
                json!({
                    "role": "assistant",
                    "content": null,
                    "refusal": null,
                    "annotations": [],
                    "tool_calls": [{
                        "id": head.call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments}
                    }]
                }),
                "tool_calls",
            )
        }
    };
    json!({
        "id": head.id,
        "object": "chat.completion",
        "created": head.created,
        "model": head.model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": null
    })
}

/// The streamed chunks, in order (the caller ends the stream with `data: [DONE]`). `text_chunks`
/// are the answer's pieces; with `usage`, a last chunk without choices carries it (and every
/// other chunk has `usage: null`), as with `stream_options.include_usage`.
pub fn chunks(
    head: &Head,
    reply: &Reply,
    text_chunks: &[String],
    usage: Option<Value>,
) -> Vec<Value> {
    let with_usage = usage.is_some();
    let chunk = |delta: Value, finish_reason: Option<&str>| {
        let mut c = json!({
            "id": head.id,
            "object": "chat.completion.chunk",
            "created": head.created,
            "model": head.model,
            "service_tier": "default",
            "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]
        });
        if with_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut out = Vec::new();
    match reply {
        Reply::Text(_) => {
            out.push(chunk(
                json!({"role": "assistant", "content": "", "refusal": null}),
                None,
            ));
            for piece in text_chunks {
                out.push(chunk(json!({"content": piece}), None));
            }
            out.push(chunk(json!({}), Some("stop")));
        }
        Reply::Call(_) => {
            let (name, arguments) = arguments_of(reply).unwrap_or_default();
            out.push(chunk(
                json!({
                    "role": "assistant",
                    "content": null,
                    "refusal": null,
                    "tool_calls": [{
                        "index": 0,
                        "id": head.call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": ""}
                    }]
                }),
                None,
            ));
            for piece in argument_pieces(&arguments) {
                out.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
                    None,
                ));
            }
            out.push(chunk(json!({}), Some("tool_calls")));
        }
    }
    if let Some(usage) = usage {
        out.push(json!({
            "id": head.id,
            "object": "chat.completion.chunk",
            "created": head.created,
            "model": head.model,
            "service_tier": "default",
            "system_fingerprint": null,
            "choices": [],
            "usage": usage
        }));
    }
    out
}

/// Arguments in token-sized pieces, as a model streams them.
fn argument_pieces(arguments: &str) -> Vec<String> {
    let chars: Vec<char> = arguments.chars().collect();
    chars.chunks(12).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::ToolCall;
    use serde_json::Map;

    const HEAD: Head = Head {
        id: "chatcmpl-1",
        created: 1_700_000_000,
        model: "standin-1",
        call_id: "call_1",
    };

    fn call() -> Reply {
        let mut arguments = Map::new();
        arguments.insert(
            "sql".into(),
            json!("SELECT strftime('%Y', order_date) FROM orders"),
        );
        Reply::Call(ToolCall {
            tool: "sqlite__query".into(),
            short: "query".into(),
            arguments,
        })
    }

    #[test]
    fn a_tool_call_round() {
        let c = completion(&HEAD, &call(), usage(10, 5));
        assert_eq!(c["object"], "chat.completion");
        let choice = &c["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        let tc = &choice["message"]["tool_calls"][0];
        assert_eq!(tc["id"], "call_1");
        assert_eq!(tc["type"], "function");
        assert_eq!(tc["function"]["name"], "sqlite__query");
        let args: Value =
            serde_json::from_str(tc["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args["sql"], "SELECT strftime('%Y', order_date) FROM orders");
        assert_eq!(c["usage"]["total_tokens"], 15);
    }

    #[test]
    fn a_final_round() {
        let c = completion(&HEAD, &Reply::Text("Done.".into()), usage(1, 1));
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        assert_eq!(c["choices"][0]["message"]["content"], "Done.");
        assert_eq!(c["choices"][0]["message"]["role"], "assistant");
        assert!(c["choices"][0]["message"].get("tool_calls").is_none());
    }

    #[test]
    fn streamed_tool_call_chunks() {
        let all = chunks(&HEAD, &call(), &[], None);
        for c in &all {
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["id"], "chatcmpl-1");
            assert!(c.get("usage").is_none());
        }
        let first = &all[0]["choices"][0]["delta"];
        assert_eq!(first["role"], "assistant");
        let tc = &first["tool_calls"][0];
        assert_eq!(
            (tc["index"].clone(), tc["id"].clone()),
            (json!(0), json!("call_1"))
        );
        assert_eq!(tc["function"]["name"], "sqlite__query");
        assert_eq!(tc["function"]["arguments"], "");
        // Middle chunks carry only index and argument pieces, which rebuild the arguments.
        let middle = &all[1..all.len() - 1];
        assert!(middle.len() > 1);
        let mut args = String::new();
        for c in middle {
            let tc = &c["choices"][0]["delta"]["tool_calls"][0];
            assert_eq!(tc["index"], 0);
            assert!(tc.get("id").is_none() && tc["function"].get("name").is_none());
            args.push_str(tc["function"]["arguments"].as_str().unwrap());
            assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
        }
        let Reply::Call(expected) = call() else {
            unreachable!()
        };
        assert_eq!(args, Value::Object(expected.arguments).to_string());
        let last = &all[all.len() - 1]["choices"][0];
        assert_eq!(last["delta"], json!({}));
        assert_eq!(last["finish_reason"], "tool_calls");
    }

    #[test]
    fn streamed_text_chunks_with_usage() {
        let pieces = vec!["Hello ".to_owned(), "there.".to_owned()];
        let all = chunks(
            &HEAD,
            &Reply::Text("Hello there.".into()),
            &pieces,
            Some(usage(3, 2)),
        );
        assert_eq!(all.len(), 5);
        assert_eq!(all[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(all[1]["choices"][0]["delta"], json!({"content": "Hello "}));
        assert_eq!(all[2]["choices"][0]["delta"], json!({"content": "there."}));
        assert_eq!(all[3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(all[3]["usage"], Value::Null);
        assert_eq!(all[4]["choices"], json!([]));
        assert_eq!(all[4]["usage"]["total_tokens"], 5);
    }
}
