use super::*;

fn code(hash: &str, family: &str, t: i64) -> AuthorizationCode {
    AuthorizationCode {
        code_hash: hash.into(),
        client_id: "cli".into(),
        redirect_uri: "https://a.example/cb".into(),
        code_challenge: "ch".into(),
        resource: "http://localhost:18080/everything".into(),
        username: "alice".into(),
        sid: "sid".into(),
        claims: "{}".into(),
        scope: None,
        family_id: family.into(),
        created_at: t,
        expires_at: t + 60,
        used_at: None,
    }
}

fn refresh(hash: &str, family: &str, t: i64) -> RefreshToken {
    RefreshToken {
        token_hash: hash.into(),
        family_id: family.into(),
        client_id: "cli".into(),
        resource: "http://localhost:18080/everything".into(),
        username: "alice".into(),
        sid: "sid".into(),
        claims: "{}".into(),
        scope: Some("mcp:tools".into()),
        issued_at: t,
        expires_at: t + 3600,
        spent_at: None,
    }
}

/// Every query, on whichever database `store` is.
/// The OpenID Connect rows: single-use sign-ins, the check lease, token versions, ending a
/// session and revoking what it started.
async fn exercise_oidc(store: &Store) {
    let t = 1_000;
    let sign_in = OidcSignIn {
        state_hash: "st".into(),
        browser_hash: "br".into(),
        provider: "corp".into(),
        ciphertext: "c".into(),
        nonce: "n".into(),
        created_at: t,
        expires_at: t + 600,
    };
    store
        .insert_oidc_sign_in(&sign_in)
        .await
        .expect("insert sign-in");
    assert_eq!(
        store.take_oidc_sign_in("st", t).await.expect("take"),
        Some(sign_in)
    );
    assert_eq!(
        store.take_oidc_sign_in("st", t).await.expect("take again"),
        None
    );

    let session = OidcSession {
        sid: "oidc-sid".into(),
        provider: "corp".into(),
        subject: "u1".into(),
        ciphertext: "c1".into(),
        nonce: "n1".into(),
        token_version: 1,
        has_refresh_token: true,
        id_token_expires_at: t + 60,
        checked_at: t,
        ended_at: None,
        created_at: t,
        expires_at: t + 3600,
    };
    store
        .insert_oidc_session(&session)
        .await
        .expect("insert session");
    assert!(store
        .acquire_oidc_lease("oidc-sid", "a", t + 30, t)
        .await
        .expect("lease a"));
    assert!(!store
        .acquire_oidc_lease("oidc-sid", "b", t + 30, t)
        .await
        .expect("lease b"));
    let tokens = CheckedTokens {
        ciphertext: "c2",
        nonce: "n2",
        new_refresh_token: true,
        has_refresh_token: true,
        id_token_expires_at: t + 120,
    };
    assert!(!store
        .record_oidc_check("oidc-sid", "b", &tokens, t + 5)
        .await
        .expect("not b"));
    assert!(store
        .record_oidc_check("oidc-sid", "a", &tokens, t + 5)
        .await
        .expect("a records"));
    let row = store
        .oidc_session("oidc-sid")
        .await
        .expect("row")
        .expect("present");
    assert_eq!(
        (row.token_version, row.checked_at, row.ciphertext.as_str()),
        (2, t + 5, "c2")
    );
    // Released: another holder may take it now.
    assert!(store
        .acquire_oidc_lease("oidc-sid", "b", t + 40, t + 6)
        .await
        .expect("lease b"));
    store
        .release_oidc_lease("oidc-sid", "b")
        .await
        .expect("release");

    store
        .insert_refresh_token(&RefreshToken {
            sid: "oidc-sid".into(),
            ..refresh("oidc-rt", "oidc-fam", t)
        })
        .await
        .expect("rt");
    assert!(store
        .end_oidc_session("oidc-sid", "test", t + 7)
        .await
        .expect("end"));
    assert!(!store
        .end_oidc_session("oidc-sid", "test", t + 8)
        .await
        .expect("end once"));
    assert_eq!(
        store
            .revoke_session("oidc-sid", "test", t + 7, t + 9999)
            .await
            .expect("revoke"),
        1
    );
    let (_, revoked) = store
        .refresh_token_for_grant(
            &RefreshToken {
                sid: "oidc-sid".into(),
                ..refresh("oidc-rt", "oidc-fam", t)
            }
            .token_hash,
        )
        .await
        .expect("grant")
        .expect("present");
    assert!(revoked, "the session's family is revoked");
    assert!(!store
        .acquire_oidc_lease("oidc-sid", "c", t + 40, t + 100)
        .await
        .expect("ended"));
}

async fn exercise(store: &Store) {
    exercise_oidc(store).await;
    let t = 1_700_000_000;
    store.ping().await.expect("ping");

    // An assertion's jti is used once per issuer, and purged after its exp.
    assert!(store.use_assertion("idp:a", "j1", 100).await.expect("use"));
    assert!(!store
        .use_assertion("idp:a", "j1", 100)
        .await
        .expect("replay"));
    assert!(store
        .use_assertion("client:c", "j1", 100)
        .await
        .expect("other issuer"));
    store.purge_expired(101).await.expect("purge");
    assert!(store
        .use_assertion("idp:a", "j1", t + 120)
        .await
        .expect("purged"));

    let client = StoredClient {
        client_id: "cli".into(),
        secret_hash: None,
        token_endpoint_auth_method: "none".into(),
        metadata: "{\"redirect_uris\":[]}".into(),
        created_at: t,
    };
    store.insert_client(&client).await.expect("insert client");
    assert_eq!(store.client("cli").await.expect("client"), Some(client));
    assert_eq!(store.client("other").await.expect("client"), None);

    let pending = PendingAuthorization {
        id_hash: "p1".into(),
        client_id: "cli".into(),
        redirect_uri: "https://a.example/cb".into(),
        state: None,
        code_challenge: "ch".into(),
        resource: "r".into(),
        scope: Some("a b".into()),
        sid: None,
        csrf_hash: None,
        created_at: t,
        expires_at: t + 600,
    };
    store
        .insert_pending(&pending)
        .await
        .expect("insert pending");
    assert_eq!(
        store.pending("p1", t).await.expect("pending").as_ref(),
        Some(&pending)
    );
    assert_eq!(store.pending("p1", t + 600).await.expect("expired"), None);
    store
        .bind_pending_to_consent("p1", "sid", "csrf")
        .await
        .expect("bind");
    assert_eq!(
        store
            .pending("p1", t)
            .await
            .expect("pending")
            .and_then(|p| p.csrf_hash)
            .as_deref(),
        Some("csrf")
    );
    assert!(store.take_pending("p1", t).await.expect("take"));
    assert!(!store.take_pending("p1", t).await.expect("take twice"));

    store
        .insert_code(&code("c1", "f1", t))
        .await
        .expect("insert code");
    assert_eq!(
        store.code("c1").await.expect("code").map(|c| c.used_at),
        Some(None)
    );
    let (a, b) = tokio::join!(store.consume_code("c1", t), store.consume_code("c1", t));
    assert!(
        a.expect("first") ^ b.expect("second"),
        "exactly one concurrent exchange wins"
    );
    assert_eq!(
        store
            .code("c1")
            .await
            .expect("code")
            .and_then(|c| c.used_at),
        Some(t)
    );

    let session = Session {
        secret_hash: "s1".into(),
        sid: "sid".into(),
        username: "alice".into(),
        claims: "{}".into(),
        created_at: t,
        expires_at: t + 100,
    };
    store
        .insert_session(&session)
        .await
        .expect("insert session");
    assert_eq!(
        store.session("s1", t).await.expect("session"),
        Some(session)
    );
    assert_eq!(
        store.session("s1", t + 100).await.expect("expired session"),
        None
    );

    store
        .insert_refresh_token(&refresh("r1", "f1", t))
        .await
        .expect("insert refresh");
    store
        .insert_refresh_token(&refresh("r2", "f1", t))
        .await
        .expect("insert refresh");
    assert!(store.spend_refresh_token("r1", t).await.expect("spend"));
    assert!(!store
        .spend_refresh_token("r1", t)
        .await
        .expect("spend twice"));
    store
        .record_access_token("jti1", "f1", t + 300)
        .await
        .expect("record jti");
    let family_revoked = |hash: &'static str| {
        let store = &store;
        async move {
            store
                .refresh_token_for_grant(hash)
                .await
                .expect("lookup")
                .map(|(_, revoked)| revoked)
        }
    };
    assert_eq!(family_revoked("r2").await, Some(false));
    assert_eq!(family_revoked("nope").await, None);
    store
        .revoke_family("f1", "test", t, t + 3600)
        .await
        .expect("revoke");
    store
        .revoke_family("f1", "test", t, t + 3600)
        .await
        .expect("revoke is idempotent");
    assert_eq!(family_revoked("r2").await, Some(true));
    assert!(store
        .refresh_token("r2")
        .await
        .expect("r2")
        .and_then(|r| r.spent_at)
        .is_some());
    assert!(store.is_access_token_revoked("jti1").await.expect("jti"));
    store
        .revoke_access_token("jti2", t, t + 10)
        .await
        .expect("revoke jti");
    store
        .revoke_access_token("jti2", t, t + 10)
        .await
        .expect("revoke jti twice");
    assert!(store.is_access_token_revoked("jti2").await.expect("jti"));

    store
        .record_consent("alice", "cli", "r", Some("a"), t)
        .await
        .expect("consent");
    store
        .record_consent("alice", "cli", "r", None, t + 1)
        .await
        .expect("consent again");

    let account = ServiceAccount {
        id: "0a1b".into(),
        name: "robot".into(),
        email: "robot@example.com".into(),
        groups: vec!["ci".into()],
        routes: vec!["http://localhost:18080/everything".into()],
        created_at: t,
        expires_at: None,
        revoked_at: None,
        client_id: Some("sa-0a1b".into()),
        client_secret_hash: Some("h".into()),
        client_jwks: None,
    };
    store
        .insert_service_account(&account)
        .await
        .expect("insert service account");
    assert!(store.insert_service_account(&account).await.is_err());
    assert_eq!(
        store.service_account("0a1b").await.expect("by id").as_ref(),
        Some(&account)
    );
    assert_eq!(
        store
            .service_account_by_client_id("sa-0a1b")
            .await
            .expect("by client id")
            .map(|a| a.name),
        Some("robot".into())
    );
    assert!(store
        .revoked_service_accounts()
        .await
        .expect("revoked")
        .is_empty());
    assert!(store
        .revoke_service_account("robot", t)
        .await
        .expect("revoke"));
    assert!(!store
        .revoke_service_account("robot", t)
        .await
        .expect("twice"));
    assert_eq!(
        store.service_accounts().await.expect("all")[0].revoked_at,
        Some(t)
    );
    assert_eq!(
        store
            .revoked_service_accounts()
            .await
            .expect("revoked")
            .len(),
        1
    );
    assert_eq!(
        store.revoked_access_token_ids(t).await.expect("jtis"),
        vec!["jti1".to_string(), "jti2".to_string()]
    );
    assert_eq!(
        store.revoked_access_token_ids(t + 10).await.expect("jtis"),
        vec!["jti1".to_string()]
    );

    // Upstream disconnects: one row per (user, route) with the latest moment, listed for an
    // hour.
    store
        .record_upstream_disconnect("alice", "http://r/gh", t)
        .await
        .expect("disconnect");
    store
        .record_upstream_disconnect("alice", "http://r/gh", t - 5)
        .await
        .expect("an older one");
    store
        .record_upstream_disconnect("alice", "http://r/gl", t - 10)
        .await
        .expect("another route");
    store
        .record_upstream_disconnect("bob", "http://r/gh", t - 4000)
        .await
        .expect("an old one");
    assert_eq!(
        store.upstream_disconnects(t - 3600).await.expect("list"),
        vec![
            ("alice".to_string(), "http://r/gh".to_string(), t),
            ("alice".to_string(), "http://r/gl".to_string(), t - 10),
        ]
    );
    store
        .record_upstream_disconnect("alice", "http://r/gl", t + 1)
        .await
        .expect("a later one");
    assert_eq!(
        store.upstream_disconnects(t).await.expect("list"),
        vec![("alice".to_string(), "http://r/gl".to_string(), t + 1)]
    );
    store
        .purge_expired(t)
        .await
        .expect("purge an old disconnect");
    assert_eq!(store.upstream_disconnects(0).await.expect("list").len(), 2);

    assert!(store.purge_expired(t + 100_000).await.expect("purge") >= 5);
    assert!(store
        .upstream_disconnects(0)
        .await
        .expect("list")
        .is_empty());
    assert_eq!(store.code("c1").await.expect("code"), None);
    assert!(!store.is_access_token_revoked("jti2").await.expect("purged"));
}

#[tokio::test]
async fn sqlite_store_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "sqlite://{}/nested/dir/db.sqlite?mode=rwc",
        dir.path().display()
    );
    let store = Store::connect(&url).await.expect("connect");
    exercise(&store).await;
    store.close().await;
    let reopened = Store::connect(&url)
        .await
        .expect("reconnect and re-run migrations");
    assert!(
        reopened.client("cli").await.expect("client").is_some(),
        "clients survive a restart"
    );
}

/// Runs when MCPGATE_TEST_POSTGRES_URL is set, in a fresh schema dropped afterwards.
#[tokio::test]
async fn postgres_store_when_configured() {
    let Ok(base) = std::env::var("MCPGATE_TEST_POSTGRES_URL") else {
        eprintln!("MCPGATE_TEST_POSTGRES_URL not set; skipping the PostgreSQL store test");
        return;
    };
    sqlx::any::install_default_drivers();
    let schema = format!(
        "mcpgate_test_{}",
        crate::oauth::opaque_token::generate()
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
    );
    let admin = AnyPoolOptions::new()
        .max_connections(1)
        .connect(&base)
        .await
        .expect("connect to postgres");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .expect("create schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let result = async move {
        let store = Store::connect(&url).await.expect("connect with schema");
        exercise(&store).await;
        store.close().await;
    };
    let outcome = tokio::spawn(result).await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .expect("drop schema");
    outcome.expect("postgres store test");
}
