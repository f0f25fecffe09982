//! A gateway under test: one VM configured like a rendered gateway file (a server route with a
//! policy, an upstream-OAuth route, a client route, the internal API), a mock host, signing keys
//! and tokens, and one call per host event so a test reads as the sequence Envoy would deliver.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use jwt_simple::prelude::Ed25519KeyPair;
use mcpgate_config::filter::SigningAlgorithm;
use mcpgate_config::filter::{
    DEFAULT_AUDIT_MAX_ARGUMENT_BYTES, DEFAULT_BODY_ARRIVAL_TIMEOUT_SECONDS,
    DEFAULT_MAX_REQUEST_BYTES,
};
use mcpgate_config::{FilterClientRoute, FilterConfig, FilterRoute, HeaderMode};
use serde_json::{json, Value};

use super::exchange::Exchange;
use super::host::Action;
use super::mock_host::{MockHost, SentCall};
use super::vm::{SharedVm, Vm};
use crate::refresh;
use crate::test_support::{claims, test_key, token, ISSUER, NOW, ROUTE_A};

pub const TOKEN_SERVICE: &str = "token_service";
pub const INTERNAL: &str = "internal_api";
pub const SECRET: &str = "0123456789abcdef0123456789abcdef";
pub const GITHUB: &str = "http://localhost:18080/github";
pub const APP: &str = "http://localhost:18080/app";
pub const SIGN_IN: &str = "http://localhost:18080/.mcpgate/sign_in";

pub const ALLOWED: &[u8] =
    br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
pub const DENIED: &[u8] =
    br#"{"jsonrpc":"2.0","id":"req-9","method":"tools/call","params":{"name":"admin_reset","arguments":{}}}"#;
pub const TOOLS_LIST: &[u8] = br#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;

/// How the gateway under test is set up.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub mode: HeaderMode,
    /// The internal API is configured (credentials call-outs, client routes).
    pub internal: bool,
    /// The signing keys are in shared data (another VM fetched them).
    pub keys: bool,
}

impl Setup {
    pub fn new(mode: HeaderMode) -> Self {
        Setup {
            mode,
            internal: false,
            keys: true,
        }
    }

    pub fn internal(self) -> Self {
        Setup {
            internal: true,
            ..self
        }
    }

    pub fn without_keys(self) -> Self {
        Setup {
            keys: false,
            ..self
        }
    }
}

pub struct Gateway {
    pub host: MockHost,
    pub vm: SharedVm,
    pair: Ed25519KeyPair,
    pub jwks: String,
    next_context: Cell<u32>,
}

fn route(name: &str, path: &str, policy: Option<Value>) -> FilterRoute {
    FilterRoute {
        name: name.into(),
        scheme: "http".into(),
        host: "localhost".into(),
        port: 18080,
        path_prefix: path.into(),
        resource: format!("http://localhost:18080{path}"),
        resource_metadata_url: format!(
            "http://localhost:18080/.well-known/oauth-protected-resource{path}"
        ),
        scopes: vec![],
        policy,
        max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        audit_redact: vec![],
        audit_max_argument_bytes: DEFAULT_AUDIT_MAX_ARGUMENT_BYTES,
        upstream_oauth: false,
        connect_url: String::new(),
    }
}

pub fn config(setup: Setup) -> FilterConfig {
    let deny_admin = json!({"deny": {"and": [{"mcp_tool": {"starts_with": "admin_"}}]}});
    let mut routes = vec![route("everything", "/everything", Some(deny_admin))];
    let mut client_routes = vec![];
    if setup.internal {
        let mut github = route("github", "/github", None);
        github.upstream_oauth = true;
        github.connect_url = format!("{GITHUB}/.mcpgate/mcp/connect");
        routes.push(github);
        client_routes.push(FilterClientRoute {
            name: "app".into(),
            scheme: "http".into(),
            host: "localhost".into(),
            port: 18080,
            path_prefix: "/app".into(),
            url: APP.into(),
        });
    }
    // A route only one group may use, to decide a body-less request on identity alone.
    routes.push(route(
        "admins-only",
        "/admins",
        Some(json!({"allow": {"and": [{"groups": {"has": "nobody"}}]}})),
    ));
    FilterConfig {
        issuer: ISSUER.into(),
        algorithm: SigningAlgorithm::EdDSA,
        token_service_cluster: TOKEN_SERVICE.into(),
        token_service_authority: "ts.local".into(),
        jwks_refresh_seconds: 60,
        leeway_seconds: 5,
        routes,
        internal_cluster: if setup.internal {
            INTERNAL.into()
        } else {
            String::new()
        },
        internal_authority: "internal.local".into(),
        revocations_refresh_seconds: 2,
        sign_in_url: SIGN_IN.into(),
        client_routes,
        header_mode: setup.mode,
        body_arrival_timeout_seconds: DEFAULT_BODY_ARRIVAL_TIMEOUT_SECONDS,
    }
}

impl Gateway {
    pub fn new(setup: Setup) -> Self {
        Gateway::with(setup, |_| {})
    }

    /// [`Gateway::new`] with the configuration edited first.
    pub fn with(setup: Setup, edit: impl FnOnce(&mut FilterConfig)) -> Self {
        let (pair, jwk) = test_key("k1");
        let jwks = format!(r#"{{"keys":[{jwk}]}}"#);
        let host = MockHost::at(NOW);
        if setup.keys {
            let key = format!("mcpgate.jwks|{TOKEN_SERVICE}|ts.local");
            host.put_shared(&key, &refresh::encode_shared(NOW, jwks.as_bytes()));
        }
        let secret = setup.internal.then(|| SECRET.to_owned());
        let mut config = config(setup);
        edit(&mut config);
        let vm = Vm::new(config, secret).expect("the test configuration compiles");
        Gateway {
            host,
            vm: Rc::new(RefCell::new(vm)),
            pair,
            jwks,
            next_context: Cell::new(1),
        }
    }

    pub fn mode(mode: HeaderMode) -> Self {
        Gateway::new(Setup::new(mode))
    }

    /// A TE for `aud`, signed with the gateway's key.
    pub fn token_for(&self, aud: &str) -> String {
        token(&self.pair, &claims(aud))
    }

    pub fn token(&self) -> String {
        self.token_for(ROUTE_A)
    }

    /// A new request's state machine (as the root context creates one per request).
    pub fn exchange(&self) -> Rc<RefCell<Exchange>> {
        let id = self.next_context.get();
        self.next_context.set(id + 1);
        Exchange::shared(Some(Rc::clone(&self.vm)), id)
    }

    /// A POST of a JSON-RPC body to `path` with `token`, as an MCP client sends it.
    pub fn post(&self, path: &str, token: &str, extra: &[(&str, &str)]) {
        let authorization = format!("Bearer {token}");
        let mut headers = vec![
            (":method", "POST"),
            (":path", path),
            (":authority", "localhost:18080"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("accept-encoding", "gzip"),
            ("x-request-id", "rid-1"),
            ("x-mcpgate-assertion", "forged"),
            ("authorization", authorization.as_str()),
        ];
        headers.extend_from_slice(extra);
        self.host.new_request(&headers);
    }

    pub fn get(&self, path: &str, token: &str) {
        let authorization = format!("Bearer {token}");
        self.host.new_request(&[
            (":method", "GET"),
            (":path", path),
            (":authority", "localhost:18080"),
            ("accept", "text/event-stream"),
            ("x-request-id", "rid-2"),
            ("authorization", authorization.as_str()),
        ]);
    }

    pub fn headers(&self, exchange: &Rc<RefCell<Exchange>>, end_of_stream: bool) -> Action {
        exchange
            .borrow_mut()
            .on_request_headers(&self.host, end_of_stream)
    }

    /// `bytes` arrive; the body callback runs with everything buffered so far.
    pub fn body(&self, exchange: &Rc<RefCell<Exchange>>, bytes: &[u8], end: bool) -> Action {
        let size = self.host.push_request_body(bytes);
        exchange.borrow_mut().on_request_body(&self.host, size, end)
    }

    pub fn trailers(&self, exchange: &Rc<RefCell<Exchange>>) -> Action {
        exchange.borrow_mut().on_request_trailers(&self.host)
    }

    /// The last call-out sent (for this request).
    pub fn last_call(&self) -> SentCall {
        self.host.calls().pop().expect("a call-out was sent")
    }

    /// Answers the last call-out with `status` and a JSON body.
    pub fn answer(&self, exchange: &Rc<RefCell<Exchange>>, status: Option<&str>, body: &str) {
        let call = self.last_call();
        let size = self.host.answer(status, &[], body.as_bytes());
        exchange
            .borrow_mut()
            .on_call_answer(&self.host, call.token, size);
    }

    /// The credentials the token service grants: an assertion, and on upstream-OAuth routes the
    /// user's provider token.
    pub fn grant(&self, exchange: &Rc<RefCell<Exchange>>, upstream_token: Option<&str>) {
        let body = json!({
            "assertion": "assertion-1",
            "upstream_token": upstream_token,
            "cache_until": NOW + 60,
        });
        self.answer(exchange, Some("200"), &body.to_string());
    }

    /// The counters as Envoy would see them after the tick's flush.
    pub fn counter(&self, name: &str) -> u64 {
        self.vm.borrow().flush_counters(&self.host);
        self.host.counter(name)
    }

    /// The tick at `now`: the held requests whose body did not come get their answer.
    pub fn tick_at(&self, now: u64) -> usize {
        self.host.set_now(now);
        let expired = self.vm.borrow_mut().expired_requests(&self.host);
        let count = expired.len();
        for (_, exchange) in expired {
            exchange.borrow_mut().on_body_timeout(&self.host);
        }
        count
    }

    pub fn held_requests(&self) -> usize {
        self.vm.borrow().held.len()
    }
}

/// The JSON body of a local reply.
pub fn json_body(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("a JSON body")
}
