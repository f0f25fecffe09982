//! Scenario E: a load client for the token service's OAuth endpoints.
//!
//! 1. Signs in like a browser (follows redirects from `/authorize`, fills the sign-in form with
//!    `username`/`password`, approves a consent form if one is shown) and obtains `--codes`
//!    authorization codes with PKCE S256 (measured: authorizations/s).
//! 2. Exchanges every code at the token endpoint (measured: code exchanges/s).
//! 3. Runs `--concurrency` refresh-token chains for `--duration` seconds, each grant rotating the
//!    refresh token (measured: refresh grants/s).
//! 4. With `--upstream-resource`, the upstream-token fetch: serves a tiny OAuth provider
//!    (`provider.rs`) on `--provider-listen`, connects it for every `--upstream-users` user through
//!    the token service's real flow (authorize → sign-in → consent → provider → upstream callback →
//!    code → token), then posts `/internal/v1/credentials` (on `--internal-base`, with
//!    `MCPGATE_INTERNAL_API_SECRET`) with those users' TEs for `--duration` seconds, checking every
//!    answer (measured: credentials answers/s, each with an upstream token decrypted from the
//!    database).
//!
//! Requests go straight to the token service (`--base`) with `Host` set to the issuer's
//! authority, so Envoy is not part of this measurement. Each worker keeps one HTTP/1.1
//! keep-alive connection. Prints one JSON object.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

use crate::provider;

type Res<T> = Result<T, String>;

#[derive(Clone)]
pub struct Config {
    pub base: String,
    pub issuer: String,
    pub resource: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub username: String,
    pub password: String,
    pub scope: Option<String>,
    pub codes: usize,
    pub concurrency: usize,
    pub duration: Duration,
    pub upstream: Option<Upstream>,
}

/// The upstream-token fetch (phase 4): bench users connect the provider of an `upstream_oauth2`
/// route through the real flow, then the load posts `/internal/v1/credentials` with their TEs.
#[derive(Clone)]
pub struct Upstream {
    /// The route's resource URL (`from` of the route with `upstream_oauth2`).
    pub resource: String,
    /// Bench users (password `--password`) who connect the provider, one TE each.
    pub users: Vec<String>,
    /// Where this process serves the tiny provider (the route's `endpoint` points here).
    pub provider_listen: String,
    /// The token service's internal listener, `http://127.0.0.1:PORT`.
    pub internal_base: String,
    /// `MCPGATE_INTERNAL_API_SECRET`.
    pub secret: String,
}

struct Conn {
    addr: String,
    host: String,
    tx: Option<SendRequest<Full<Bytes>>>,
}

struct Reply {
    status: u16,
    location: Option<String>,
    set_cookies: Vec<String>,
    body: Bytes,
}

impl Conn {
    fn new(cfg: &Config) -> Self {
        Self::to(&cfg.base, &cfg.issuer)
    }

    /// A connection to `base` (`http://host:port`) sending `Host` = the authority of `host_of`.
    fn to(base: &str, host_of: &str) -> Self {
        let authority = |u: &str| {
            u.trim_start_matches("http://")
                .trim_start_matches("https://")
                .split('/')
                .next()
                .unwrap_or("")
                .to_string()
        };
        Self {
            addr: authority(base),
            host: authority(host_of),
            tx: None,
        }
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Option<String>,
    ) -> Res<Reply> {
        for attempt in 0..2 {
            if self.tx.as_ref().is_none_or(|t| t.is_closed()) {
                let stream = tokio::net::TcpStream::connect(&self.addr)
                    .await
                    .map_err(|e| format!("connect {}: {e}", self.addr))?;
                let _ = stream.set_nodelay(true);
                let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::task::spawn_local(async move {
                    let _ = conn.await;
                });
                self.tx = Some(tx);
            }
            let Some(tx) = self.tx.as_mut() else { continue };
            if tx.ready().await.is_err() {
                self.tx = None;
                continue;
            }
            let mut b = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", &self.host);
            for (k, v) in headers {
                b = b.header(*k, v);
            }
            if body.is_some()
                && !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                b = b.header("content-type", "application/x-www-form-urlencoded");
            }
            let req = b
                .body(Full::new(Bytes::from(body.clone().unwrap_or_default())))
                .map_err(|e| e.to_string())?;
            match tx.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let location = resp
                        .headers()
                        .get("location")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let set_cookies = resp
                        .headers()
                        .get_all("set-cookie")
                        .iter()
                        .filter_map(|v| v.to_str().ok().map(str::to_string))
                        .collect();
                    let body = resp
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?
                        .to_bytes();
                    return Ok(Reply {
                        status,
                        location,
                        set_cookies,
                        body,
                    });
                }
                Err(e) if attempt == 0 => {
                    self.tx = None;
                    let _ = e;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("connection failed twice".into())
    }
}

pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn pct_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match h {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    let q = q.split('#').next().unwrap_or(q);
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| pct_decode(v))
    })
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Attributes of one HTML start tag's inside (`input type="hidden" name=x value='y'`).
fn attrs(tag: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let s = tag.as_bytes();
    let mut i = 0;
    // skip the tag name
    while i < s.len() && !s[i].is_ascii_whitespace() {
        i += 1;
    }
    while i < s.len() {
        while i < s.len() && (s[i].is_ascii_whitespace() || s[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < s.len() && !s[i].is_ascii_whitespace() && s[i] != b'=' && s[i] != b'>' {
            i += 1;
        }
        let name = tag[start..i].to_ascii_lowercase();
        if name.is_empty() {
            i += 1;
            continue;
        }
        if i < s.len() && s[i] == b'=' {
            i += 1;
            let (value, next) = if i < s.len() && (s[i] == b'"' || s[i] == b'\'') {
                let q = s[i];
                let vs = i + 1;
                let mut j = vs;
                while j < s.len() && s[j] != q {
                    j += 1;
                }
                (&tag[vs..j.min(s.len())], j + 1)
            } else {
                let vs = i;
                let mut j = vs;
                while j < s.len() && !s[j].is_ascii_whitespace() && s[j] != b'>' {
                    j += 1;
                }
                (&tag[vs..j], j)
            };
            out.insert(name, html_unescape(value));
            i = next;
        } else {
            out.insert(name, String::new());
        }
    }
    out
}

struct Form {
    action: Option<String>,
    fields: Vec<(String, String)>,
    has_password: bool,
    submits: Vec<(String, String)>,
}

fn parse_form(html: &str) -> Option<Form> {
    let lower = html.to_ascii_lowercase();
    let start = lower.find("<form")?;
    let end = lower[start..]
        .find("</form>")
        .map(|e| start + e)
        .unwrap_or(html.len());
    let tag_end = lower[start..].find('>')? + start;
    let form_attrs = attrs(&html[start + 1..tag_end]);
    let mut f = Form {
        action: form_attrs.get("action").cloned(),
        fields: vec![],
        has_password: false,
        submits: vec![],
    };
    let mut pos = tag_end;
    while let Some(rel) = lower[pos..end].find('<') {
        let at = pos + rel;
        let Some(close) = lower[at..end].find('>') else {
            break;
        };
        let inner = &html[at + 1..at + close];
        let inner_lower = &lower[at + 1..at + close];
        if inner_lower.starts_with("input") || inner_lower.starts_with("button") {
            let a = attrs(inner);
            let ty = a
                .get("type")
                .map(|t| t.to_ascii_lowercase())
                .unwrap_or_else(|| {
                    if inner_lower.starts_with("button") {
                        "submit".into()
                    } else {
                        "text".into()
                    }
                });
            if let Some(name) = a.get("name") {
                let value = a.get("value").cloned().unwrap_or_default();
                match ty.as_str() {
                    "submit" => f.submits.push((name.clone(), value)),
                    "password" => {
                        f.has_password = true;
                        f.fields.push((name.clone(), value));
                    }
                    "checkbox" | "radio" => {
                        if a.contains_key("checked") {
                            f.fields.push((name.clone(), value));
                        }
                    }
                    _ => f.fields.push((name.clone(), value)),
                }
            }
        }
        pos = at + close + 1;
    }
    Some(f)
}

struct Flow {
    cfg: Config,
    cookies: RefCell<HashMap<String, String>>,
    /// The in-process upstream provider: `/authorize` redirects to it are followed (and the code
    /// claimed for `cfg.username`) instead of being refused as off the gateway.
    provider: Option<(String, provider::Shared)>,
}

impl Flow {
    fn cookie_header(&self) -> Vec<(&'static str, String)> {
        let c = self.cookies.borrow();
        if c.is_empty() {
            return vec![];
        }
        vec![(
            "cookie",
            c.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        )]
    }

    fn store(&self, set: &[String]) {
        let mut c = self.cookies.borrow_mut();
        for s in set {
            let pair = s.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                c.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }

    /// A URL the token service handed out, as a request path on `--base`.
    fn local_path(&self, url: &str, current: &str) -> Option<String> {
        for origin in [&self.cfg.issuer, &self.cfg.base] {
            if let Some(rest) = url.strip_prefix(origin.trim_end_matches('/')) {
                return Some(if rest.is_empty() {
                    "/".into()
                } else {
                    rest.to_string()
                });
            }
        }
        if url.starts_with('/') {
            return Some(url.to_string());
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return None;
        }
        let dir = current
            .split('?')
            .next()
            .unwrap_or("/")
            .rsplit_once('/')
            .map(|(d, _)| d)
            .unwrap_or("");
        Some(format!("{dir}/{url}"))
    }

    fn authorize_path(&self, challenge: &str, state: &str) -> String {
        let mut p = vec![
            ("response_type".to_string(), "code".to_string()),
            ("client_id".into(), self.cfg.client_id.clone()),
            ("redirect_uri".into(), self.cfg.redirect_uri.clone()),
            ("code_challenge".into(), challenge.to_string()),
            ("code_challenge_method".into(), "S256".into()),
            ("state".into(), state.to_string()),
            ("resource".into(), self.cfg.resource.clone()),
        ];
        if let Some(s) = &self.cfg.scope {
            p.push(("scope".into(), s.clone()));
        }
        format!("/.mcpgate/oauth/authorize?{}", form(&p))
    }

    /// Drives `/authorize` like a browser until the redirect to the client carries a code.
    async fn obtain_code(&self, conn: &mut Conn, challenge: &str, state: &str) -> Res<String> {
        let mut method = "GET".to_string();
        let mut path = self.authorize_path(challenge, state);
        let mut body: Option<String> = None;
        let mut trail = Vec::new();
        let mut provider_conn: Option<Conn> = None;
        for _ in 0..16 {
            trail.push(format!("{method} {}", path.split('?').next().unwrap_or("")));
            let r = conn
                .send(&method, &path, &self.cookie_header(), body.take())
                .await?;
            self.store(&r.set_cookies);
            if (300..400).contains(&r.status) {
                let loc = r.location.ok_or("redirect without Location")?;
                if loc.starts_with(&self.cfg.redirect_uri) {
                    if let Some(code) = query_param(&loc, "code") {
                        if query_param(&loc, "state").as_deref() != Some(state) {
                            return Err("state mismatch".into());
                        }
                        return Ok(code);
                    }
                    return Err(format!("authorization error: {loc}"));
                }
                if let Some((origin, p)) = &self.provider {
                    if let Some(rest) = loc.strip_prefix(origin.as_str()) {
                        // The upstream provider (this process): it approves at once and redirects
                        // to the token service's callback with a code, which this user claims.
                        trail.push(format!(
                            "GET provider {}",
                            rest.split('?').next().unwrap_or("")
                        ));
                        let pc = provider_conn.get_or_insert_with(|| Conn::to(origin, origin));
                        let pr = pc.send("GET", rest, &[], None).await?;
                        let back = match (pr.status, pr.location) {
                            (302, Some(back)) => back,
                            (status, _) => {
                                return Err(format!(
                                    "the upstream provider answered {status} after {}: {}",
                                    trail.join(" → "),
                                    String::from_utf8_lossy(&pr.body)
                                ))
                            }
                        };
                        let code = query_param(&back, "code").unwrap_or_default();
                        if !p.borrow_mut().claim(&code, &self.cfg.username) {
                            return Err("the upstream provider's code could not be claimed".into());
                        }
                        path = self
                            .local_path(&back, &path)
                            .ok_or_else(|| "the provider redirected off the gateway".to_string())?;
                        method = "GET".into();
                        continue;
                    }
                }
                path = self
                    .local_path(&loc, &path)
                    .ok_or_else(|| format!("redirect off the gateway: {loc}"))?;
                method = "GET".into();
                continue;
            }
            let text = String::from_utf8_lossy(&r.body).into_owned();
            if r.status == 200 {
                if let Some(f) = parse_form(&text) {
                    let mut fields = f.fields.clone();
                    if f.has_password {
                        for (k, v) in fields.iter_mut() {
                            if k == "password" {
                                *v = self.cfg.password.clone();
                            }
                        }
                    }
                    if fields.iter().any(|(k, _)| k == "username") || f.has_password {
                        for (k, v) in fields.iter_mut() {
                            if k == "username" {
                                *v = self.cfg.username.clone();
                            }
                        }
                        if !fields.iter().any(|(k, _)| k == "username") {
                            fields.push(("username".into(), self.cfg.username.clone()));
                        }
                    }
                    let approve = f
                        .submits
                        .iter()
                        .find(|(n, v)| {
                            let s = format!("{n} {v}").to_ascii_lowercase();
                            ["approve", "allow", "accept", "consent", "yes", "sign"]
                                .iter()
                                .any(|w| s.contains(w))
                        })
                        .or_else(|| f.submits.first());
                    if let Some((n, v)) = approve {
                        fields.push((n.clone(), v.clone()));
                    }
                    let action = f.action.clone().unwrap_or_else(|| path.clone());
                    path = self
                        .local_path(&action, &path)
                        .ok_or_else(|| format!("form posts off the gateway: {action}"))?;
                    method = "POST".into();
                    body = Some(form(&fields));
                    continue;
                }
            }
            let snippet: String = text.chars().take(300).collect();
            return Err(format!(
                "{} after {}: {snippet}",
                r.status,
                trail.join(" → ")
            ));
        }
        Err(format!("too many steps: {}", trail.join(" → ")))
    }

    async fn token(
        &self,
        conn: &mut Conn,
        params: Vec<(String, String)>,
    ) -> Res<serde_json::Value> {
        let r = conn
            .send(
                "POST",
                "/.mcpgate/oauth/token",
                &[("accept", "application/json".into())],
                Some(form(&params)),
            )
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|_| format!("{}: {}", r.status, String::from_utf8_lossy(&r.body)))?;
        if r.status != 200 {
            return Err(format!("{}: {v}", r.status));
        }
        Ok(v)
    }
}

fn pkce() -> (String, String) {
    let mut seed = [0u8; 32];
    seed.copy_from_slice(ed25519_compact::Seed::generate().as_ref());
    let verifier = B64.encode(seed);
    let challenge = B64.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

#[derive(Default)]
struct Phase {
    lat_us: Vec<u64>,
    errors: u64,
    samples: Vec<String>,
}

impl Phase {
    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.samples.len() < 5 {
            self.samples.push(e);
        }
    }
    fn summary(mut self, elapsed: Duration) -> serde_json::Value {
        self.lat_us.sort_unstable();
        let q = |p: f64| -> Option<u64> {
            if self.lat_us.is_empty() {
                return None;
            }
            let i = ((p * self.lat_us.len() as f64).ceil() as usize)
                .saturating_sub(1)
                .min(self.lat_us.len() - 1);
            Some(self.lat_us[i])
        };
        let secs = elapsed.as_secs_f64();
        serde_json::json!({
            "ok": self.lat_us.len(),
            "errors": self.errors,
            "seconds": secs,
            "rps": if secs > 0.0 { self.lat_us.len() as f64 / secs } else { 0.0 },
            "p50_us": q(0.50), "p99_us": q(0.99), "p999_us": q(0.999),
            "error_samples": self.samples,
        })
    }
}

pub async fn run(cfg: Config) -> serde_json::Value {
    let flow = Rc::new(Flow {
        cfg: cfg.clone(),
        cookies: RefCell::new(HashMap::new()),
        provider: None,
    });
    let mut out = serde_json::Map::new();

    // Sign in once (the first code), so every worker shares the session cookie.
    let mut conn = Conn::new(&cfg);
    let (verifier, challenge) = pkce();
    let t = Instant::now();
    let first = match flow.obtain_code(&mut conn, &challenge, "s0").await {
        Ok(code) => code,
        Err(e) => {
            out.insert(
                "error".into(),
                format!("sign-in/authorize failed: {e}").into(),
            );
            return out.into();
        }
    };
    out.insert(
        "sign_in_ms".into(),
        (t.elapsed().as_secs_f64() * 1000.0).into(),
    );

    // Phase 1: authorization codes.
    let codes: Rc<RefCell<Vec<(String, String)>>> = Rc::new(RefCell::new(vec![(first, verifier)]));
    let phase = Rc::new(RefCell::new(Phase::default()));
    let next = Rc::new(RefCell::new(1usize));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..cfg.concurrency {
        let (flow, codes, phase, next, cfg) = (
            flow.clone(),
            codes.clone(),
            phase.clone(),
            next.clone(),
            cfg.clone(),
        );
        tasks.push(tokio::task::spawn_local(async move {
            let mut conn = Conn::new(&cfg);
            loop {
                let i = {
                    let mut n = next.borrow_mut();
                    if *n >= cfg.codes {
                        break;
                    }
                    *n += 1;
                    *n
                };
                let (v, c) = pkce();
                let s = Instant::now();
                match flow.obtain_code(&mut conn, &c, &format!("s{i}")).await {
                    Ok(code) => {
                        phase
                            .borrow_mut()
                            .lat_us
                            .push(s.elapsed().as_micros() as u64);
                        codes.borrow_mut().push((code, v));
                    }
                    Err(e) => phase.borrow_mut().error(e),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let p = std::mem::take(&mut *phase.borrow_mut());
    out.insert("authorize".into(), p.summary(t.elapsed()));

    // Phase 2: code exchanges.
    let work: Rc<RefCell<Vec<(String, String)>>> =
        Rc::new(RefCell::new(std::mem::take(&mut *codes.borrow_mut())));
    let grants: Rc<RefCell<Vec<(String, String)>>> = Rc::new(RefCell::new(Vec::new()));
    let phase = Rc::new(RefCell::new(Phase::default()));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..cfg.concurrency {
        let (flow, work, grants, phase, cfg) = (
            flow.clone(),
            work.clone(),
            grants.clone(),
            phase.clone(),
            cfg.clone(),
        );
        tasks.push(tokio::task::spawn_local(async move {
            let mut conn = Conn::new(&cfg);
            loop {
                let Some((code, verifier)) = work.borrow_mut().pop() else {
                    break;
                };
                let params = vec![
                    ("grant_type".to_string(), "authorization_code".to_string()),
                    ("code".into(), code),
                    ("redirect_uri".into(), cfg.redirect_uri.clone()),
                    ("client_id".into(), cfg.client_id.clone()),
                    ("code_verifier".into(), verifier),
                    ("resource".into(), cfg.resource.clone()),
                ];
                let s = Instant::now();
                match flow.token(&mut conn, params).await {
                    Ok(v) => {
                        phase
                            .borrow_mut()
                            .lat_us
                            .push(s.elapsed().as_micros() as u64);
                        match (v["refresh_token"].as_str(), v["access_token"].as_str()) {
                            (Some(r), Some(a)) => {
                                grants.borrow_mut().push((r.to_string(), a.to_string()))
                            }
                            _ => phase
                                .borrow_mut()
                                .error(format!("no refresh_token/access_token in {v}")),
                        }
                    }
                    Err(e) => phase.borrow_mut().error(e),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let p = std::mem::take(&mut *phase.borrow_mut());
    out.insert("exchange".into(), p.summary(t.elapsed()));

    // Phase 3: refresh grants, one rotating chain per worker.
    let pool = grants.borrow().clone();
    if pool.is_empty() {
        out.insert(
            "refresh".into(),
            serde_json::json!({"error": "no refresh tokens (the exchanges failed)"}),
        );
    } else {
        let phase = Rc::new(RefCell::new(Phase::default()));
        let pool = Rc::new(RefCell::new(pool));
        let deadline = Instant::now() + cfg.duration;
        let t = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..cfg.concurrency {
            let (flow, pool, phase, cfg) = (flow.clone(), pool.clone(), phase.clone(), cfg.clone());
            tasks.push(tokio::task::spawn_local(async move {
                let mut conn = Conn::new(&cfg);
                let Some((mut rt, _)) = pool.borrow_mut().pop() else {
                    return;
                };
                while Instant::now() < deadline {
                    let params = vec![
                        ("grant_type".to_string(), "refresh_token".to_string()),
                        ("refresh_token".into(), rt.clone()),
                        ("client_id".into(), cfg.client_id.clone()),
                        ("resource".into(), cfg.resource.clone()),
                    ];
                    let s = Instant::now();
                    match flow.token(&mut conn, params).await {
                        Ok(v) => match v["refresh_token"].as_str() {
                            Some(r) => {
                                phase
                                    .borrow_mut()
                                    .lat_us
                                    .push(s.elapsed().as_micros() as u64);
                                rt = r.to_string();
                            }
                            None => {
                                phase
                                    .borrow_mut()
                                    .error(format!("no rotated refresh_token in {v}"));
                                break;
                            }
                        },
                        Err(e) => {
                            phase.borrow_mut().error(e);
                            // A broken chain takes the next unused token, if any.
                            match pool.borrow_mut().pop() {
                                Some((r, _)) => rt = r,
                                None => break,
                            }
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let p = std::mem::take(&mut *phase.borrow_mut());
        out.insert("refresh".into(), p.summary(t.elapsed()));
    }

    // Phase 4: the upstream-token fetch (the filter's call-out on a credentials cache miss).
    if let Some(up) = &cfg.upstream {
        out.insert("upstream_token".into(), upstream_token(&cfg, up).await);
    }
    out.into()
}

/// Phase 4. Every bench user connects the provider once through the real flow (`/authorize` with
/// `resource` = the route, sign-in, consent, the token service's redirect to the provider, the
/// provider's redirect to `/.mcpgate/upstream/callback`, the code, `/token`); then, for
/// `--duration`, `POST /internal/v1/credentials` with those users' TEs in turn. Every answer must
/// be 200 with the upstream token the provider issued to that user, an assertion and a future
/// `cache_until`; tokens are never printed.
async fn upstream_token(cfg: &Config, up: &Upstream) -> serde_json::Value {
    let origin = format!("http://{}", up.provider_listen);
    let provider = match provider::start(&up.provider_listen).await {
        Ok(p) => p,
        Err(e) => return serde_json::json!({ "error": e }),
    };
    if up.users.is_empty() {
        return serde_json::json!({"error": "no bench users to connect the provider"});
    }

    // Connect the provider: one browser (cookie jar) per user.
    let connected: Rc<RefCell<Vec<(String, String)>>> = Rc::new(RefCell::new(Vec::new()));
    let connect = Rc::new(RefCell::new(Phase::default()));
    let next = Rc::new(RefCell::new(0usize));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..cfg.concurrency.min(up.users.len()).max(1) {
        let (connected, connect, next, provider, origin, cfg, up) = (
            connected.clone(),
            connect.clone(),
            next.clone(),
            provider.clone(),
            origin.clone(),
            cfg.clone(),
            up.clone(),
        );
        tasks.push(tokio::task::spawn_local(async move {
            let mut conn = Conn::new(&cfg);
            loop {
                let i = {
                    let mut n = next.borrow_mut();
                    *n += 1;
                    *n - 1
                };
                let Some(user) = up.users.get(i).cloned() else {
                    break;
                };
                let flow = Flow {
                    cfg: Config {
                        username: user.clone(),
                        resource: up.resource.clone(),
                        ..cfg.clone()
                    },
                    cookies: RefCell::new(HashMap::new()),
                    provider: Some((origin.clone(), provider.clone())),
                };
                let (verifier, challenge) = pkce();
                let s = Instant::now();
                let te: Res<String> = async {
                    let code = flow
                        .obtain_code(&mut conn, &challenge, &format!("u{i}"))
                        .await?;
                    let params = vec![
                        ("grant_type".to_string(), "authorization_code".to_string()),
                        ("code".into(), code),
                        ("redirect_uri".into(), cfg.redirect_uri.clone()),
                        ("client_id".into(), cfg.client_id.clone()),
                        ("code_verifier".into(), verifier),
                        ("resource".into(), up.resource.clone()),
                    ];
                    let v = flow.token(&mut conn, params).await?;
                    if provider.borrow().token_of(&user).is_none() {
                        return Err("the authorization did not go through the provider".into());
                    }
                    v["access_token"]
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "no access_token in the token answer".into())
                }
                .await;
                match te {
                    Ok(te) => {
                        connect
                            .borrow_mut()
                            .lat_us
                            .push(s.elapsed().as_micros() as u64);
                        connected.borrow_mut().push((user, te));
                    }
                    Err(e) => connect.borrow_mut().error(format!("{user}: {e}")),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let connect = std::mem::take(&mut *connect.borrow_mut()).summary(t.elapsed());
    let users: Rc<Vec<(String, String)>> = Rc::new(std::mem::take(&mut *connected.borrow_mut()));
    if connect["errors"].as_u64() != Some(0) || users.len() != up.users.len() {
        let mut p = provider.borrow().refused.clone();
        p.truncate(2);
        return serde_json::json!({
            "error": format!("connecting the provider failed for {} of {} users", up.users.len() - users.len(), up.users.len()),
            "connect": connect,
            "provider_refused": p,
        });
    }

    // The load: the call the filter makes on a credentials cache miss.
    let phase = Rc::new(RefCell::new(Phase::default()));
    let deadline = Instant::now() + cfg.duration;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..cfg.concurrency {
        let (phase, provider, users, up) =
            (phase.clone(), provider.clone(), users.clone(), up.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut conn = Conn::to(&up.internal_base, &up.internal_base);
            let headers = [
                ("authorization", format!("Bearer {}", up.secret)),
                ("content-type", "application/json".to_string()),
                ("accept", "application/json".to_string()),
            ];
            let mut j = w;
            while Instant::now() < deadline {
                let (user, te) = &users[j % users.len()];
                j += 1;
                let body = serde_json::json!({"route": up.resource, "token": te}).to_string();
                let s = Instant::now();
                let r = match conn
                    .send("POST", "/internal/v1/credentials", &headers, Some(body))
                    .await
                {
                    Ok(r) => r,
                    Err(e) => {
                        phase.borrow_mut().error(e);
                        break;
                    }
                };
                let elapsed = s.elapsed().as_micros() as u64;
                match check_credentials(&r, provider.borrow().token_of(user), user) {
                    Ok(()) => phase.borrow_mut().lat_us.push(elapsed),
                    Err(e) => {
                        phase.borrow_mut().error(e);
                        if phase.borrow().errors > 100 {
                            break;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut p = std::mem::take(&mut *phase.borrow_mut());
    let (code_grants, refresh_grants) = {
        let pr = provider.borrow();
        (pr.code_grants, pr.refresh_grants)
    };
    if refresh_grants > 0 {
        p.error(format!(
            "the token service refreshed upstream tokens {refresh_grants} times (none was due)"
        ));
    }
    let mut v = p.summary(t.elapsed());
    v["users"] = users.len().into();
    v["connect"] = connect;
    v["provider_code_grants"] = code_grants.into();
    v["provider_refresh_grants"] = refresh_grants.into();
    v
}

/// One `/internal/v1/credentials` answer: 200, JSON, the provider's token for `user`, an
/// assertion (a JWT) and a `cache_until` in the future. Errors never quote a token.
fn check_credentials(r: &Reply, expected: Option<&str>, user: &str) -> Res<()> {
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    if r.status != 200 {
        return Err(format!(
            "HTTP {} ({})",
            r.status,
            v["error"].as_str().unwrap_or("no error code")
        ));
    }
    match v["upstream_token"].as_str() {
        None => return Err(format!("200 without an upstream_token ({user})")),
        Some(t) if Some(t) != expected => {
            return Err(format!(
                "200 with an upstream_token that is not the one the provider issued to {user}"
            ))
        }
        Some(_) => {}
    }
    if v["assertion"]
        .as_str()
        .is_none_or(|a| a.split('.').count() != 3)
    {
        return Err(format!("200 without an assertion JWT ({user})"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if v["cache_until"].as_i64().is_none_or(|c| c <= now) {
        return Err(format!("200 without a future cache_until ({user})"));
    }
    Ok(())
}
