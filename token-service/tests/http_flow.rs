//! In-process HTTP tests of the token service router (`tower::ServiceExt::oneshot`): discovery
//! documents, registration, and authorize → sign_in → consent → code → token → refresh.

mod support;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use support::{claims_of, query, Reply, Service, HOST, STATIC_SECRET, VERIFIER};

const RESOURCE: &str = "http://localhost:18080/everything";

struct Harness {
    service: Service,
}

async fn harness() -> Harness {
    let authorization_server = format!(
        r#"
  clients:
    - client_id: static-public
      token_endpoint_auth_method: none
      redirect_uris: [http://127.0.0.1:9999/cb]
    - client_id: static-basic
      client_secret: {STATIC_SECRET}
      redirect_uris: [https://app.example/cb]
  dynamic_registration:
    max_metadata_bytes: 1024"#
    );
    let gateway = support::Gateway {
        authorization_server: &authorization_server,
        database_url: "sqlite://{dir}/data/db.sqlite?mode=rwc",
        token_service: "",
        routes: r#"
  - from: http://localhost:18080/everything
    to: http://127.0.0.1:3001/mcp
    name: Everything
    mcp:
      server:
        scopes: [mcp:tools]
        default_resource: true
  - from: http://localhost:18080/second
    to: http://127.0.0.1:3002/mcp
    mcp: {server: {}}"#,
    };
    Harness {
        service: gateway.start(&[("alice", "Alice", &["eng"])]).await,
    }
}

impl Harness {
    async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        support::get(&self.service.public, path, cookie).await
    }

    async fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
        extra: &[(header::HeaderName, String)],
    ) -> Reply {
        support::post_form(&self.service.public, path, form, extra).await
    }

    async fn register(&self, body: Value) -> Reply {
        let req = Request::post("/.mcpgate/oauth/register")
            .header(header::HOST, HOST)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        support::send(&self.service.public, req).await
    }

    fn authorize_url(&self, client_id: &str, redirect_uri: &str, extra: &str) -> String {
        support::authorize_url(client_id, redirect_uri, "st4te", extra)
    }

    /// Signs alice in for a pending request; returns the session cookie and the consent URL.
    async fn sign_in(&self, request: &str) -> (String, url::Url) {
        let reply = support::sign_in(&self.service.public, ("request", request), "alice").await;
        let set_cookie = reply.header(header::SET_COOKIE).expect("cookie");
        assert!(
            set_cookie.contains("HttpOnly")
                && set_cookie.contains("SameSite=Lax")
                && set_cookie.contains("Path=/")
        );
        (reply.cookie(), reply.location())
    }
}

#[tokio::test]
async fn discovery_documents() {
    let h = harness().await;
    let meta = h.get("/.well-known/oauth-authorization-server", None).await;
    assert_eq!(meta.status, StatusCode::OK);
    assert_eq!(
        meta.headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.as_bytes()),
        Some(&b"*"[..])
    );
    let doc = meta.json();
    assert_eq!(doc["issuer"], "http://localhost:18080");
    assert_eq!(
        doc["authorization_endpoint"],
        "http://localhost:18080/.mcpgate/oauth/authorize"
    );
    assert_eq!(
        doc["registration_endpoint"],
        "http://localhost:18080/.mcpgate/oauth/register"
    );
    assert_eq!(
        doc["jwks_uri"],
        "http://localhost:18080/.well-known/jwks.json"
    );
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    let oidc = h
        .get("/.well-known/openid-configuration", None)
        .await
        .json();
    assert_eq!(
        oidc["subject_types_supported"],
        serde_json::json!(["public"])
    );

    let prm = h
        .get("/.well-known/oauth-protected-resource/everything", None)
        .await;
    assert_eq!(prm.status, StatusCode::OK);
    assert!(prm
        .headers
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    let prm = prm.json();
    assert_eq!(prm["resource"], RESOURCE);
    assert_eq!(
        prm["authorization_servers"],
        serde_json::json!(["http://localhost:18080"])
    );
    assert_eq!(
        prm["bearer_methods_supported"],
        serde_json::json!(["header"])
    );
    assert_eq!(prm["scopes_supported"], serde_json::json!(["mcp:tools"]));
    assert_eq!(prm["resource_name"], "Everything");
    assert_eq!(
        h.get("/.well-known/oauth-protected-resource/nothing", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let root = h.get("/.well-known/oauth-protected-resource", None).await;
    assert_eq!(root.status, StatusCode::NOT_FOUND);
    assert_eq!(
        root.json()["resource_metadata_urls"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let jwks = h.get("/.well-known/jwks.json", None).await.json();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
    assert_eq!(
        h.get("/.mcpgate/healthz", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn registration_validates_fields_and_size() {
    let h = harness().await;
    let ok = h
        .register(
            serde_json::json!({"redirect_uris": ["https://app.example/cb"], "client_name": "App"}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text());
    let body = ok.json();
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    assert!(body["client_secret"]
        .as_str()
        .is_some_and(|s| s.len() >= 32));
    assert_eq!(body["client_secret_expires_at"], 0);
    assert!(body["client_id_issued_at"].is_i64());
    let public = h.register(serde_json::json!({"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"})).await;
    assert!(public.json().get("client_secret").is_none());
    let bad = h
        .register(serde_json::json!({"redirect_uris": ["http://evil.example/cb"]}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"], "invalid_redirect_uri");
    assert!(bad.json()["error_description"]
        .as_str()
        .unwrap_or("")
        .contains("redirect_uris[0]"));
    let bad = h.register(serde_json::json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["implicit"]})).await;
    assert_eq!(bad.json()["error"], "invalid_client_metadata");
    let big = h.register(serde_json::json!({"redirect_uris": ["https://a.example/cb"], "client_name": "x".repeat(2000)})).await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(big.json()["error_description"]
        .as_str()
        .unwrap_or("")
        .contains("1024 bytes"));
}

#[tokio::test]
async fn authorize_errors_never_redirect_to_unverified_uris() {
    let h = harness().await;
    let page = h
        .get(
            &h.authorize_url("static-public", "http://127.0.0.1:9999/cc", ""),
            None,
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.headers.get(header::LOCATION).is_none());
    assert!(page.text().contains("redirect_uri"));
    let unknown = h
        .get(
            &h.authorize_url("nobody", "http://127.0.0.1:9999/cb", ""),
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.headers.get(header::LOCATION).is_none());

    // Verified client and redirect URI: errors go back to the client, with state and iss.
    let no_pkce = h
        .get("/.mcpgate/oauth/authorize?client_id=static-public&redirect_uri=http%3A%2F%2F127.0.0.1%3A4444%2Fcb&response_type=code&state=s1", None)
        .await;
    assert_eq!(no_pkce.status, StatusCode::FOUND);
    let loc = no_pkce.location();
    assert_eq!(
        loc.port(),
        Some(4444),
        "loopback port may differ from the registered one"
    );
    assert_eq!(query(&loc, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query(&loc, "state").as_deref(), Some("s1"));
    assert_eq!(
        query(&loc, "iss").as_deref(),
        Some("http://localhost:18080")
    );
    let target = h
        .get(
            &h.authorize_url(
                "static-public",
                "http://127.0.0.1:9999/cb",
                "&resource=http%3A%2F%2Flocalhost%3A18080%2Fnope",
            ),
            None,
        )
        .await;
    assert_eq!(
        query(&target.location(), "error").as_deref(),
        Some("invalid_target")
    );
}

#[tokio::test]
async fn dynamic_client_full_flow_with_consent_refresh_and_reuse_detection() {
    let h = harness().await;
    let redirect_uri = "http://127.0.0.1:7777/callback";
    let reg = h.register(serde_json::json!({
        "redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none", "client_name": "Test Client"
    }))
    .await
    .json();
    let client_id = reg["client_id"].as_str().expect("client_id").to_string();

    // authorize → sign-in page
    let start = h
        .get(
            &h.authorize_url(
                &client_id,
                redirect_uri,
                "&resource=http%3A%2F%2Flocalhost%3A18080%2Feverything",
            ),
            None,
        )
        .await;
    assert_eq!(start.status, StatusCode::FOUND, "{}", start.text());
    let sign_in_url = start.location();
    assert_eq!(sign_in_url.path(), "/.mcpgate/sign_in");
    let request = query(&sign_in_url, "request").expect("request id");
    let form = h
        .get(&format!("/.mcpgate/sign_in?request={request}"), None)
        .await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.text().contains("name=\"password\""));
    assert!(form.text().contains("Test Client"));

    // wrong password → 401, generic message
    let wrong = h
        .post_form(
            "/.mcpgate/sign_in",
            &[
                ("request", &request),
                ("username", "alice"),
                ("password", "nope"),
            ],
            &[],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text().contains("not correct"));
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());

    // sign in → consent page showing the redirect host and route
    let (cookie, consent_url) = h.sign_in(&request).await;
    assert!(cookie.starts_with("mcpgate_session="));
    let consent = h
        .get(
            &format!(
                "{}?{}",
                consent_url.path(),
                consent_url.query().unwrap_or("")
            ),
            Some(&cookie),
        )
        .await;
    assert_eq!(consent.status, StatusCode::OK);
    let html = consent.text();
    assert!(
        html.contains("127.0.0.1:7777") && html.contains("Everything") && html.contains(&client_id)
    );
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf")
        .to_string();

    // a forged consent (wrong CSRF) is refused; the real one redirects with code, state and iss
    let forged = h
        .post_form(
            "/.mcpgate/consent",
            &[
                ("request", &request),
                ("csrf", "x"),
                ("decision", "approve"),
            ],
            &[(header::COOKIE, cookie.clone())],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let approved = h
        .post_form(
            "/.mcpgate/consent",
            &[
                ("request", &request),
                ("csrf", &csrf),
                ("decision", "approve"),
            ],
            &[(header::COOKIE, cookie.clone())],
        )
        .await;
    assert_eq!(
        approved.status,
        StatusCode::SEE_OTHER,
        "{}",
        approved.text()
    );
    let back = approved.location();
    assert_eq!(
        format!("{}://{}{}", back.scheme(), back.authority(), back.path()),
        redirect_uri
    );
    assert_eq!(query(&back, "state").as_deref(), Some("st4te"));
    assert_eq!(
        query(&back, "iss").as_deref(),
        Some("http://localhost:18080")
    );
    let code = query(&back, "code").expect("code");

    // wrong verifier → invalid_grant; the code is not burnt by it
    let token_form = |verifier: &'static str| {
        vec![
            ("grant_type", "authorization_code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ]
    };
    let mut bad = token_form("wrong-verifier-wrong-verifier-wrong-verifier-x");
    bad.push(("code", &code));
    let r = h.post_form("/.mcpgate/oauth/token", &bad, &[]).await;
    assert_eq!(r.json()["error"], "invalid_grant");

    // exchange
    let mut good = token_form(VERIFIER);
    good.push(("code", &code));
    good.push(("resource", RESOURCE));
    let r = h.post_form("/.mcpgate/oauth/token", &good, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    assert_eq!(
        r.headers.get(header::PRAGMA).map(|v| v.as_bytes()),
        Some(&b"no-cache"[..])
    );
    let tokens = r.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    assert_eq!(tokens["scope"], "mcp:tools");
    let access = tokens["access_token"].as_str().expect("access token");
    let claims = claims_of(access);
    assert_eq!(claims["aud"], RESOURCE);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], client_id.as_str());
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"], serde_json::json!(["eng"]));
    assert_eq!(claims["name"], "Alice");
    assert!(
        claims["sid"]
            .as_str()
            .is_some_and(|sid| !cookie.contains(sid)),
        "sid is not the cookie secret"
    );
    let refresh1 = tokens["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();

    // refresh rotates
    let refresh = |token: String| {
        let client_id = client_id.clone();
        let h = &h;
        async move {
            h.post_form(
                "/.mcpgate/oauth/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("client_id", &client_id),
                    ("refresh_token", &token),
                ],
                &[],
            )
            .await
        }
    };
    let r2 = refresh(refresh1.clone()).await;
    assert_eq!(r2.status, StatusCode::OK, "{}", r2.text());
    let refresh2 = r2.json()["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_string();
    assert_ne!(refresh1, refresh2);
    assert_eq!(
        claims_of(r2.json()["access_token"].as_str().expect("at"))["aud"],
        RESOURCE
    );

    // reusing the spent refresh token revokes the whole family
    let reuse = refresh(refresh1.clone()).await;
    assert_eq!(reuse.status, StatusCode::BAD_REQUEST);
    assert_eq!(reuse.json()["error"], "invalid_grant");
    let after = refresh(refresh2.clone()).await;
    assert_eq!(
        after.json()["error"],
        "invalid_grant",
        "the family is revoked"
    );

    // the code is single use
    let again = h.post_form("/.mcpgate/oauth/token", &good, &[]).await;
    assert_eq!(again.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn pre_registered_client_skips_consent_and_authenticates_with_basic() {
    let h = harness().await;
    let start = h
        .get(
            &h.authorize_url("static-basic", "https://app.example/cb", ""),
            None,
        )
        .await;
    let request = query(&start.location(), "request").expect("request");
    let (cookie, consent_url) = h.sign_in(&request).await;
    let direct = h
        .get(
            &format!(
                "{}?{}",
                consent_url.path(),
                consent_url.query().unwrap_or("")
            ),
            Some(&cookie),
        )
        .await;
    assert_eq!(direct.status, StatusCode::FOUND, "{}", direct.text());
    let back = direct.location();
    assert_eq!(back.host_str(), Some("app.example"));
    let code = query(&back, "code").expect("code");

    // with a session, a new authorization goes straight to the consent step
    let again = h
        .get(
            &h.authorize_url("static-basic", "https://app.example/cb", ""),
            Some(&cookie),
        )
        .await;
    assert_eq!(again.location().path(), "/.mcpgate/consent");

    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://app.example/cb"),
        ("code_verifier", VERIFIER),
    ];
    let basic = |secret: &str| {
        (
            header::AUTHORIZATION,
            format!(
                "Basic {}",
                STANDARD.encode(format!("static-basic:{secret}"))
            ),
        )
    };
    let wrong = h
        .post_form(
            "/.mcpgate/oauth/token",
            &form,
            &[basic("wrong-secret-0000000")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json()["error"], "invalid_client");
    assert!(wrong
        .headers
        .get(header::WWW_AUTHENTICATE)
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("Basic")));
    let mut as_post = form.to_vec();
    as_post.extend([
        ("client_id", "static-basic"),
        ("client_secret", STATIC_SECRET),
    ]);
    let wrong_method = h.post_form("/.mcpgate/oauth/token", &as_post, &[]).await;
    assert_eq!(wrong_method.status, StatusCode::UNAUTHORIZED);
    let ok = h
        .post_form("/.mcpgate/oauth/token", &form, &[basic(STATIC_SECRET)])
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let refresh = ok.json()["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    assert_eq!(
        claims_of(ok.json()["access_token"].as_str().expect("at"))["aud"],
        RESOURCE,
        "default resource"
    );

    // revocation of the refresh token revokes its family
    let revoked = h
        .post_form(
            "/.mcpgate/oauth/revoke",
            &[("token", &refresh)],
            &[basic(STATIC_SECRET)],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    let unknown = h
        .post_form(
            "/.mcpgate/oauth/revoke",
            &[("token", "unknown")],
            &[basic(STATIC_SECRET)],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::OK);
    let after = h
        .post_form(
            "/.mcpgate/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
            &[basic(STATIC_SECRET)],
        )
        .await;
    assert_eq!(after.json()["error"], "invalid_grant");
}

/// Sign-out is CSRF-safe: a GET (a link or redirect from any site, which carries the Lax session
/// cookie) only asks; a POST from another origin is refused; the confirm page's own POST ends the
/// session and clears the cookie.
#[tokio::test]
async fn sign_out_asks_on_get_and_refuses_cross_origin_posts() {
    let h = harness().await;
    let start = h
        .get(
            &h.authorize_url("static-public", "http://127.0.0.1:9999/cb", ""),
            None,
        )
        .await;
    let request = query(&start.location(), "request").expect("request");
    let (cookie, _) = h.sign_in(&request).await;
    let signed_in = |reply: &Reply| reply.text().contains("You are signed in as");

    let asked = h.get("/.mcpgate/sign_out", Some(&cookie)).await;
    assert_eq!(asked.status, StatusCode::OK);
    assert!(signed_in(&asked), "{}", asked.text());
    assert!(asked
        .text()
        .contains(r#"<form method="post" action="/.mcpgate/sign_out">"#));
    assert!(
        asked.header(header::SET_COOKIE).is_none(),
        "a GET clears nothing"
    );

    let cross = h
        .post_form(
            "/.mcpgate/sign_out",
            &[],
            &[
                (header::COOKIE, cookie.clone()),
                (header::ORIGIN, "https://evil.example".into()),
            ],
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN, "{}", cross.text());
    assert!(cross.header(header::SET_COOKIE).is_none());
    assert!(
        signed_in(&h.get("/.mcpgate/sign_out", Some(&cookie)).await),
        "still signed in"
    );

    let own = h
        .post_form(
            "/.mcpgate/sign_out",
            &[],
            &[
                (header::COOKIE, cookie.clone()),
                (header::ORIGIN, format!("http://{}", support::HOST)),
            ],
        )
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text());
    assert!(own.text().contains("You are signed out"));
    assert!(own
        .header(header::SET_COOKIE)
        .is_some_and(|c| c.contains("Max-Age=0")));
    let after = h.get("/.mcpgate/sign_out", Some(&cookie)).await;
    assert!(!signed_in(&after) && after.text().contains("You are signed out"));
    let again = h
        .get(
            &h.authorize_url("static-public", "http://127.0.0.1:9999/cb", ""),
            Some(&cookie),
        )
        .await;
    assert_eq!(
        again.location().path(),
        "/.mcpgate/sign_in",
        "sign-in needed again"
    );
}
