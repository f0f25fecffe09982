//! `mcpgate-bench native`: what the filter's own logic costs per request, natively (release
//! build, no Envoy, no Wasm), on the very bodies, answers, policy and tokens scenario B uses.
//! Set beside B's figures, it shows how much of B's cost is the filter's work and how much is
//! the proxy-wasm host (host calls, buffering, the V8 boundary). Prints one JSON object of
//! microseconds per operation.

use std::path::Path;
use std::time::{Duration, Instant};

use mcpgate_filter::access_token::{self, VerifyParams};
use mcpgate_filter::audit::Redaction;
use mcpgate_filter::decision::{self, DecisionContext};
use mcpgate_filter::jwks::KeySet;
use mcpgate_filter::list_response::ListResponse;
use mcpgate_filter::revocation::Revocations;
use mcpgate_filter::token_cache::{hash_token, TokenCache};
use mcpgate_protocol::jsonrpc::{self, Limits};

/// How long each operation is repeated.
const PER_OP: Duration = Duration::from_millis(400);

pub struct Inputs<'a> {
    /// The gateway file (its first server route's policy and audit settings).
    pub config: &'a Path,
    /// `bench.py bodies` output: call_1k.json, call_64k.json, list.json.
    pub bodies: &'a Path,
    /// The backend's `tools/list` answers, as JSON and as SSE.
    pub list_json: &'a Path,
    pub list_sse: &'a Path,
    pub jwks: &'a Path,
    /// Tokens for the route, one per line: the first is reused, the rest are each seen once.
    pub tokens: &'a Path,
}

/// Runs `op` for [`PER_OP`] and gives microseconds per call.
fn time<T>(mut op: impl FnMut(usize) -> T) -> f64 {
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < PER_OP {
        for _ in 0..16 {
            std::hint::black_box(op(n));
            n += 1;
        }
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The SSE answer cut in three, as the backend sends it.
fn thirds(body: &[u8]) -> [&[u8]; 3] {
    let (a, rest) = body.split_at(body.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    [a, b, c]
}

pub fn run(inputs: &Inputs<'_>) -> Result<String, String> {
    let gateway = mcpgate_config::GatewayConfig::load(inputs.config).map_err(|e| e.to_string())?;
    let config = gateway.filter_config().map_err(|e| e.to_string())?;
    let route = config
        .routes
        .first()
        .ok_or("the gateway file has no server route")?;
    let policy = mcpgate_config::filter::compile_policy(route.policy.as_ref(), "routes[0].policy")
        .map_err(|e| e.to_string())?;
    let redaction = Redaction::compile(&route.audit_redact, route.audit_max_argument_bytes)?;
    let keys = KeySet::parse(&read(inputs.jwks)?).map_err(|e| format!("jwks: {e}"))?;
    let tokens_text = String::from_utf8(read(inputs.tokens)?).map_err(|e| e.to_string())?;
    let tokens: Vec<&str> = tokens_text.lines().filter(|l| !l.is_empty()).collect();
    let (first, fresh) = tokens.split_first().ok_or("no tokens")?;
    let params = VerifyParams {
        issuer: &config.issuer,
        algorithm: config.algorithm.as_str(),
        leeway_seconds: config.leeway_seconds,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let revocations = Revocations::default();
    let leeway = config.leeway_seconds;

    // A token seen for the first time: signature and claims (B's new-token kind).
    let mut fresh_iter = fresh.iter().cycle();
    let token_new = time(|_| {
        let token = fresh_iter.next().unwrap_or(first);
        access_token::verify_signed(token, &keys, &params, now)
            .and_then(|c| c.identity_for_route(&route.resource, now, leeway, &revocations))
            .is_ok()
    });
    // The same token again: hash, cache lookup, claims checked for the route.
    let mut cache = TokenCache::default();
    let claims = access_token::verify_signed(first, &keys, &params, now)
        .map_err(|e| format!("the bench token does not verify: {e}"))?;
    cache.insert(hash_token(first), claims, now, leeway);
    let token_cached = time(|_| {
        cache
            .get(&hash_token(first), now, leeway)
            .map(|c| c.identity_for_route(&route.resource, now, leeway, &revocations))
            .is_some()
    });
    let identity = cache
        .get(&hash_token(first), now, leeway)
        .ok_or("cache miss")?
        .identity_for_route(&route.resource, now, leeway, &revocations)
        .map_err(|e| format!("the bench token is refused: {e}"))?;
    let ctx = DecisionContext {
        policy: &policy,
        identity: &identity,
        request_id: "bench",
        protocol_version: Some("2025-06-18"),
        redaction: &redaction,
    };
    let limits = Limits::default();
    // Parse, policy and audit fields of a request body.
    let decide = |body: &[u8]| decision::decide_body(&ctx, jsonrpc::parse(body, &limits));
    let call_1k = read(&inputs.bodies.join("call_1k.json"))?;
    let call_64k = read(&inputs.bodies.join("call_64k.json"))?;
    let list_request = read(&inputs.bodies.join("list.json"))?;
    let call_1k_us = time(|_| decide(&call_1k).verdict);
    let call_64k_us = time(|_| decide(&call_64k).verdict);

    // The list answer filtered: the request recorded, the answer parsed, filtered, rewritten.
    let lists = || {
        decide(&list_request)
            .lists
            .ok_or("the list request recorded no list")
    };
    let lists = lists()?;
    let answer_json = read(inputs.list_json)?;
    let answer_sse = read(inputs.list_sse)?;
    let filter_json = || {
        let mut response = ListResponse::new(lists.clone());
        response.plan(Some("application/json"), None);
        response.filter_json(&answer_json, &policy, &identity)
    };
    let filter_sse = || {
        let mut response = ListResponse::new(lists.clone());
        response.plan(Some("text/event-stream"), None);
        let mut out = Vec::new();
        for chunk in thirds(&answer_sse) {
            out.extend(response.push_sse(chunk, &policy, &identity));
        }
        out.extend(response.finish_sse(&policy, &identity));
        out
    };
    // Timed only if they filter: half the tools go, no error replaces the answer.
    for (kind, out) in [
        ("JSON", filter_json().unwrap_or_default()),
        ("SSE", filter_sse()),
    ] {
        let text = String::from_utf8_lossy(&out);
        let tools = text.matches("\"inputSchema\"").count();
        if tools != 50 || text.contains("\"error\"") {
            return Err(format!(
                "the {kind} list answer was not filtered to 50 tools ({tools})"
            ));
        }
    }
    let list_json_us = time(|_| filter_json().map(|b| b.len()));
    let list_sse_us = time(|_| filter_sse().len());
    Ok(serde_json::json!({
        "token_new_us": token_new,
        "token_cached_us": token_cached,
        "call_1k_us": call_1k_us,
        "call_64k_us": call_64k_us,
        "list_json_us": list_json_us,
        "list_sse_us": list_sse_us,
        "list_json_bytes": answer_json.len(),
    })
    .to_string())
}
