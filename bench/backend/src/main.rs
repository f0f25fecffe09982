//! A tiny MCP-shaped JSON-RPC responder: the upstream of every benchmark scenario.
//!
//! It must never be the bottleneck, so it does not parse JSON on the hot path: it finds the
//! request's `"id"` and `"method"` by a byte scan of the first bytes and answers from
//! precomputed bodies.
//!
//! - `tools/call` → a small result.
//! - `tools/list` → 100 tools (half of them named so the benchmark policy denies them), as JSON,
//!   or as an SSE stream when the request carries `x-bench-response: sse`.
//! - anything else → an empty result.
//!
//! With `x-bench-parse: 1` it parses the body for real (serde_json, last duplicate key wins, as
//! most MCP servers' JSON parsers do), answers `called <tool>` and counts the tool calls it
//! executed; `GET /stats` shows the counts, `POST /stats/reset` clears them. The bypass
//! demonstration uses this to show what actually reached the server.
//!
//! `GET /.well-known/jwks.json` serves `--jwks FILE` when given (the JWKS stub for runs without a
//! token service).
//!
//! Usage: mcpgate-bench-backend --listen 127.0.0.1:19100 [--jwks FILE] [--tools 100]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use memchr::memmem;

/// Tool names the benchmark policy denies (one per deny rule family) and allows.
pub fn tool_names(n: usize) -> Vec<String> {
    let mut names = Vec::with_capacity(n);
    let half = n / 2;
    // Denied half: mostly `admin_*`, plus the other deny rules' shapes.
    let specials = [
        "delete_all",
        "drop_database",
        "shutdown",
        "internal_debug",
        "internal_metrics",
        "exec_unsafe",
        "eval_unsafe",
    ];
    for (i, s) in specials.iter().enumerate() {
        if i < half {
            names.push((*s).to_string());
        }
    }
    let mut i = 0;
    while names.len() < half {
        names.push(format!("admin_tool_{i:02}"));
        i += 1;
    }
    // Allowed half.
    let verbs = ["search", "read", "list", "get", "summarize"];
    let mut j = 0;
    while names.len() < n {
        names.push(format!("{}_item_{:02}", verbs[j % verbs.len()], j));
        j += 1;
    }
    names
}

struct Bodies {
    list_result: String,
}

impl Bodies {
    fn new(tools: usize) -> Self {
        let tools: Vec<serde_json::Value> = tool_names(tools)
            .into_iter()
            .map(|name| {
                serde_json::json!({
                    "name": name,
                    "description": format!("Benchmark tool {name}: does one thing and reports back."),
                    "inputSchema": {
                        "type": "object",
                        "properties": {
                            "query": {"type": "string", "description": "What to look for"},
                            "limit": {"type": "integer", "minimum": 1, "maximum": 100}
                        },
                        "required": ["query"]
                    }
                })
            })
            .collect();
        let list_result = serde_json::json!({"tools": tools}).to_string();
        Self { list_result }
    }
}

#[derive(Default)]
struct Stats {
    requests: u64,
    calls: BTreeMap<String, u64>,
}

type Body = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// The raw JSON text of the value of `"key":` in the first bytes of `body` (no parsing).
fn scan_value<'a>(body: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let window = &body[..body.len().min(512)];
    let at = memmem::find(window, key)?;
    let mut rest = &window[at + key.len()..];
    while let Some((c, r)) = rest.split_first() {
        if *c == b' ' || *c == b':' {
            rest = r;
        } else {
            break;
        }
    }
    if rest.first() == Some(&b'"') {
        let end = memchr::memchr(b'"', &rest[1..])?;
        return Some(&rest[..end + 2]);
    }
    let end = rest.iter().position(|c| *c == b',' || *c == b'}')?;
    Some(&rest[..end])
}

fn rpc_result(id: &[u8], result: &str) -> String {
    let id = std::str::from_utf8(id).unwrap_or("null");
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{result}}}")
}

fn json_response(body: String) -> Response<Body> {
    Response::builder()
        .header("content-type", "application/json")
        .body(full(body))
        .expect("static response")
}

/// SSE in three frames, split inside the event, so a filter has to carry partial events.
fn sse_response(message: String) -> Response<Body> {
    let event = format!("event: message\nid: 1\ndata: {message}\n\n");
    let mid = event.len() / 2;
    let (a, b) = event.split_at(mid);
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(b": mcp stream\n\n"))),
        Ok(Frame::data(Bytes::copy_from_slice(a.as_bytes()))),
        Ok(Frame::data(Bytes::copy_from_slice(b.as_bytes()))),
    ];
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(BodyExt::boxed(frames_body(frames)))
        .expect("static response")
}

/// A body that yields the given frames one by one (each one a chunk on the wire).
fn frames_body(
    items: Vec<Result<Frame<Bytes>, Infallible>>,
) -> impl hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static {
    struct Frames(std::collections::VecDeque<Result<Frame<Bytes>, Infallible>>);
    impl hyper::body::Body for Frames {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            std::task::Poll::Ready(self.0.pop_front())
        }
        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }
    Frames(items.into())
}

/// Full parse (duplicate keys: last wins, like serde_json::Value and JSON.parse).
fn parsed_call(body: &[u8], stats: &RefCell<Stats>) -> String {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return serde_json::json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":format!("parse error: {e}")}}).to_string()
        }
    };
    let one = |m: &serde_json::Value| -> serde_json::Value {
        let id = m.get("id").cloned().unwrap_or(serde_json::Value::Null);
        let method = m.get("method").and_then(|x| x.as_str()).unwrap_or("");
        if method == "tools/call" {
            let name = m
                .pointer("/params/name")
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_string();
            *stats.borrow_mut().calls.entry(name.clone()).or_default() += 1;
            serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":format!("called {name}")}],"isError":false}})
        } else {
            serde_json::json!({"jsonrpc":"2.0","id":id,"result":{}})
        }
    };
    match &v {
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(one).collect()).to_string()
        }
        m => one(m).to_string(),
    }
}

async fn handle(
    req: Request<Incoming>,
    bodies: Rc<Bodies>,
    stats: Rc<RefCell<Stats>>,
    jwks: Rc<Option<String>>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if path == "/.well-known/jwks.json" {
        return Ok(match jwks.as_ref() {
            Some(j) => json_response(j.clone()),
            None => Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(full(""))
                .expect("static"),
        });
    }
    if path == "/stats" {
        if method == hyper::Method::POST {
            *stats.borrow_mut() = Stats::default();
        }
        let s = stats.borrow();
        return Ok(json_response(
            serde_json::json!({"requests": s.requests, "calls": s.calls}).to_string(),
        ));
    }
    if path == "/healthz" {
        return Ok(json_response("{}".into()));
    }
    let sse = req
        .headers()
        .get("x-bench-response")
        .is_some_and(|v| v.as_bytes() == b"sse");
    let parse = req
        .headers()
        .get("x-bench-parse")
        .is_some_and(|v| v.as_bytes() == b"1");
    if method != hyper::Method::POST {
        return Ok(Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .body(full(""))
            .expect("static"));
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(full(""))
                .expect("static"))
        }
    };
    stats.borrow_mut().requests += 1;
    if parse {
        return Ok(json_response(parsed_call(&body, &stats)));
    }
    let id = scan_value(&body, b"\"id\"").unwrap_or(b"null");
    let rpc_method = scan_value(&body, b"\"method\"").unwrap_or(b"\"\"");
    let message = match rpc_method {
        b"\"tools/list\"" => rpc_result(id, &bodies.list_result),
        b"\"tools/call\"" => rpc_result(
            id,
            r#"{"content":[{"type":"text","text":"ok"}],"isError":false}"#,
        ),
        _ => rpc_result(id, "{}"),
    };
    Ok(if sse {
        sse_response(message)
    } else {
        json_response(message)
    })
}

fn main() {
    let mut listen: SocketAddr = "127.0.0.1:19100".parse().expect("default address");
    let mut jwks_file: Option<String> = None;
    let mut tools = 100usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => {
                listen = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--listen ADDR")
            }
            "--jwks" => jwks_file = args.next(),
            "--tools" => tools = args.next().and_then(|v| v.parse().ok()).expect("--tools N"),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let jwks = jwks_file
        .map(|f| std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("cannot read {f}: {e}")));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
        eprintln!("backend listening on {listen}");
        let bodies = Rc::new(Bodies::new(tools));
        let stats = Rc::new(RefCell::new(Stats::default()));
        let jwks = Rc::new(jwks);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (bodies, stats, jwks) = (bodies.clone(), stats.clone(), jwks.clone());
            tokio::task::spawn_local(async move {
                let svc =
                    service_fn(move |req| handle(req, bodies.clone(), stats.clone(), jwks.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
