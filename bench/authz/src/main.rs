//! Scenario D: the call-out peer. Envoy's `ext_authz` (HTTP service, request body included) calls
//! this service once per request, the architecture of Pomerium-like gateways. It does the same
//! work as the mcpgate filter's request path, as fast as a small Rust service can:
//!
//! - verifies the EdDSA access token (JWKS from a file), caching verified tokens until `exp`;
//! - checks `iss`, `aud` and `exp`;
//! - parses the JSON-RPC body fully (duplicate fields and batches are rejected: fail closed);
//! - evaluates the benchmark policy (the same dozen rules as bench/config/gateway.yaml.tmpl).
//!
//! Allowed: 200 with `x-envoy-auth-headers-to-remove: authorization` (Envoy strips the token
//! before the upstream). Denied: 403 with a JSON-RPC error carrying the request id. No or bad
//! token: 401 with a `WWW-Authenticate` challenge. It cannot filter `tools/list` answers: ext_authz
//! only sees requests.
//!
//! Usage: mcpgate-bench-authz --listen 127.0.0.1:19101 --jwks FILE --issuer URL --audience URL

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

const CACHE_MAX: usize = 100_000;

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    crv: String,
    #[serde(default)]
    x: String,
    #[serde(default)]
    kid: String,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
pub struct Claims {
    iss: String,
    #[serde(default)]
    sub: String,
    aud: Audience,
    exp: u64,
    #[serde(default)]
    email: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// The JSON-RPC request. serde's derived visitor rejects duplicate fields, and an array (batch)
/// does not deserialize into it: both are denied.
#[derive(Deserialize)]
struct Rpc {
    #[serde(default)]
    id: serde_json::Value,
    method: String,
    #[serde(default)]
    params: Option<Params>,
}

#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "arguments")]
    _arguments: Option<serde::de::IgnoredAny>,
}

struct State {
    keys: HashMap<String, ed25519_compact::PublicKey>,
    issuer: String,
    audience: String,
    cache: RefCell<HashMap<Box<str>, Rc<Claims>>>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl State {
    fn verify(&self, token: &str) -> Result<Rc<Claims>, &'static str> {
        if let Some(c) = self.cache.borrow().get(token) {
            if c.exp > now() {
                return Ok(c.clone());
            }
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("malformed token");
        };
        let header: Header = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("bad header")?;
        if header.alg != "EdDSA" {
            return Err("unexpected alg");
        }
        let key = self.keys.get(&header.kid).ok_or("unknown kid")?;
        let sig = B64.decode(s).map_err(|_| "bad signature encoding")?;
        let sig = ed25519_compact::Signature::from_slice(&sig).map_err(|_| "bad signature")?;
        let signed = &token[..h.len() + 1 + p.len()];
        key.verify(signed.as_bytes(), &sig)
            .map_err(|_| "signature mismatch")?;
        let claims: Claims = B64
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("bad claims")?;
        if claims.iss != self.issuer {
            return Err("wrong issuer");
        }
        let aud_ok = match &claims.aud {
            Audience::One(a) => *a == self.audience,
            Audience::Many(v) => v.contains(&self.audience),
        };
        if !aud_ok {
            return Err("wrong audience");
        }
        if claims.exp <= now() {
            return Err("expired");
        }
        let claims = Rc::new(claims);
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(token.into(), claims.clone());
        Ok(claims)
    }
}

/// The benchmark policy, rule for rule the one in bench/config/gateway.yaml.tmpl.
pub fn policy(c: &Claims, method: &str, tool: Option<&str>) -> Result<(), &'static str> {
    let domain = c.email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    let has_group = |g: &str| c.groups.iter().any(|x| x == g);
    // allow: and
    if !(domain == "company.com" && has_group("engineering")) {
        return Err("not allowed by policy");
    }
    // deny: or
    let t = tool.unwrap_or("");
    let tool_rules = tool.is_some()
        && (t.starts_with("admin_")
            || t.starts_with("internal_")
            || t.ends_with("_unsafe")
            || t == "delete_all"
            || t == "drop_database"
            || t == "shutdown"
            || (t == "deploy" && !has_group("release-managers")));
    if tool_rules
        || c.email == "mallory@company.com"
        || c.sub == "suspended-user"
        || method == "resources/subscribe"
    {
        return Err("denied by policy");
    }
    Ok(())
}

fn respond(status: StatusCode, headers: &[(&str, &str)], body: String) -> Response<Full<Bytes>> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(body)))
        .expect("static response")
}

fn rpc_error(id: &serde_json::Value, message: &str) -> Response<Full<Bytes>> {
    let body =
        serde_json::json!({"jsonrpc":"2.0","id":id,"error":{"code":-32001,"message":message}})
            .to_string();
    respond(
        StatusCode::FORBIDDEN,
        &[("content-type", "application/json")],
        body,
    )
}

async fn check(
    req: Request<Incoming>,
    state: Rc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::to_string);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(respond(StatusCode::BAD_REQUEST, &[], String::new())),
    };
    let unauthorized = |reason: &str| {
        respond(
            StatusCode::UNAUTHORIZED,
            &[
                ("content-type", "application/json"),
                ("www-authenticate", "Bearer error=\"invalid_token\""),
            ],
            serde_json::json!({"error":"invalid_token","error_description":reason}).to_string(),
        )
    };
    let Some(token) = token else {
        return Ok(unauthorized("no token"));
    };
    let claims = match state.verify(&token) {
        Ok(c) => c,
        Err(reason) => return Ok(unauthorized(reason)),
    };
    let (method, tool, id) = if body.is_empty() {
        (String::new(), None, serde_json::Value::Null)
    } else {
        match serde_json::from_slice::<Rpc>(&body) {
            Ok(rpc) => (rpc.method, rpc.params.and_then(|p| p.name), rpc.id),
            Err(_) => {
                return Ok(rpc_error(
                    &serde_json::Value::Null,
                    "request body is not one well-formed JSON-RPC message",
                ))
            }
        }
    };
    if method == "tools/call" && tool.is_none() {
        return Ok(rpc_error(&id, "tools/call without a tool name"));
    }
    match policy(&claims, &method, tool.as_deref()) {
        Ok(()) => Ok(respond(
            StatusCode::OK,
            &[("x-envoy-auth-headers-to-remove", "authorization")],
            String::new(),
        )),
        Err(reason) => Ok(rpc_error(&id, reason)),
    }
}

fn main() {
    let mut listen: SocketAddr = "127.0.0.1:19101".parse().expect("default address");
    let (mut jwks, mut issuer, mut audience) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => {
                listen = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--listen ADDR")
            }
            "--jwks" => jwks = args.next(),
            "--issuer" => issuer = args.next(),
            "--audience" => audience = args.next(),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let jwks_path = jwks.expect("--jwks FILE");
    let text = std::fs::read_to_string(&jwks_path)
        .unwrap_or_else(|e| panic!("cannot read {jwks_path}: {e}"));
    let set: Jwks = serde_json::from_str(&text).expect("JWKS JSON");
    let keys = set
        .keys
        .into_iter()
        .filter(|k| k.kty == "OKP" && k.crv == "Ed25519")
        .filter_map(|k| {
            let x = B64.decode(&k.x).ok()?;
            Some((k.kid, ed25519_compact::PublicKey::from_slice(&x).ok()?))
        })
        .collect::<HashMap<_, _>>();
    assert!(!keys.is_empty(), "no Ed25519 key in {jwks_path}");
    let state = Rc::new(State {
        keys,
        issuer: issuer.expect("--issuer URL"),
        audience: audience.expect("--audience URL"),
        cache: RefCell::new(HashMap::new()),
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
        eprintln!("ext_authz service listening on {listen}");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::task::spawn_local(async move {
                let svc = service_fn(move |req| check(req, state.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
