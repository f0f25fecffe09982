//! Several replicas on one PostgreSQL database (docs/operations.md, "Running several
//! token-service replicas"): each replica is a `Store` of its own (its own pool) on one schema.
//! Runs when MCPGATE_TEST_POSTGRES_URL is set, in a fresh schema dropped afterwards; the SQLite
//! part runs always.

mod support;

use mcpgate_token_service::store::{self, RefreshToken, Store};

fn refresh(hash: &str, family: &str, t: i64) -> RefreshToken {
    RefreshToken {
        token_hash: hash.into(),
        family_id: family.into(),
        client_id: "cli".into(),
        resource: "http://localhost:18080/everything".into(),
        username: "alice".into(),
        sid: "sid".into(),
        claims: "{}".into(),
        scope: None,
        issued_at: t,
        expires_at: t + 3600,
        spent_at: None,
    }
}

/// What the refresh grant does with the store, reduced to its database steps: spend the token;
/// the winner records its access token and inserts the next refresh token, every loser revokes
/// the family (reuse). Returns whether this one won.
async fn redeem(store: &Store, family: &str, i: usize, t: i64) -> bool {
    if store.spend_refresh_token("r1", t).await.expect("spend") {
        store
            .record_access_token("winner-jti", family, t + 600)
            .await
            .expect("record the access token");
        store
            .insert_refresh_token(&refresh("r2", family, t))
            .await
            .expect("insert the next refresh token");
        true
    } else {
        store
            .revoke_family(family, &format!("refresh token reused ({i})"), t, t + 3600)
            .await
            .expect("revoke the family");
        false
    }
}

/// The interleaving a concurrent reuse can produce: the winner spent the token, a loser on
/// another replica revoked the family (finding no access token yet), then the winner records its
/// access token. That token must still end up revoked.
async fn access_token_recorded_after_its_family_was_revoked(winner: &Store, loser: &Store) {
    let t = 1_700_000_000;
    winner
        .insert_refresh_token(&refresh("late-r1", "late-family", t))
        .await
        .expect("insert");
    assert!(winner
        .spend_refresh_token("late-r1", t)
        .await
        .expect("spend"));
    assert!(!loser
        .spend_refresh_token("late-r1", t)
        .await
        .expect("spend"));
    loser
        .revoke_family("late-family", "refresh token reused", t, t + 3600)
        .await
        .expect("revoke");
    assert!(winner
        .record_access_token("late-jti", "late-family", t + 600)
        .await
        .expect("record"));
    assert!(loser
        .is_access_token_revoked("late-jti")
        .await
        .expect("lookup"));
}

#[tokio::test]
async fn an_access_token_issued_into_a_revoked_family_is_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/db.sqlite?mode=rwc", dir.path().display());
    let (winner, loser) = (
        Store::connect(&url).await.expect("connect"),
        Store::connect(&url).await.expect("connect"),
    );
    access_token_recorded_after_its_family_was_revoked(&winner, &loser).await;
}

#[tokio::test]
async fn concurrent_replicas_on_postgres() {
    let Ok(base) = std::env::var("MCPGATE_TEST_POSTGRES_URL") else {
        eprintln!("MCPGATE_TEST_POSTGRES_URL not set; skipping the PostgreSQL replica test");
        return;
    };
    support::in_postgres_schema(&base, "mcpgate_replicas_", |url| async move {
        // Replicas starting at once: sqlx serializes the migrations under an advisory lock, so
        // none fails and each migration is applied once.
        let connects = (0..4).map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Store::connect(&url).await })
        });
        let mut replicas = Vec::new();
        for c in connects {
            replicas.push(
                c.await
                    .expect("task")
                    .expect("a concurrent start migrates or waits"),
            );
        }
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(replicas[0].pool())
            .await
            .expect("migrations table");
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .expect("migrations dir")
            .count();
        assert_eq!(
            applied,
            i64::try_from(files).expect("count"),
            "each migration once"
        );

        // Concurrent redemptions of one refresh token, over two replicas, many rounds: exactly
        // one wins, and the family ends revoked with the winner's access token listed, whichever
        // way the winner's writes and the losers' revocations interleave.
        let (a, b) = (replicas[0].clone(), replicas[1].clone());
        access_token_recorded_after_its_family_was_revoked(&a, &b).await;
        let t = 1_700_000_000;
        for round in 0..20 {
            let family = format!("family-{round}");
            // Fresh tables for each round: the token and the jti are reused names.
            for table in [
                "refresh_tokens",
                "issued_access_tokens",
                "revoked_access_tokens",
            ] {
                sqlx::query(&format!("DELETE FROM {table}"))
                    .execute(a.pool())
                    .await
                    .expect("clear");
            }
            a.insert_refresh_token(&refresh("r1", &family, t))
                .await
                .expect("insert r1");
            let tasks: Vec<_> = (0..40)
                .map(|i| {
                    let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                    let family = family.clone();
                    tokio::spawn(async move { redeem(&store, &family, i, t).await })
                })
                .collect();
            let mut winners = 0;
            for task in tasks {
                winners += usize::from(task.await.expect("task"));
            }
            assert_eq!(winners, 1, "round {round}: exactly one redemption wins");
            for store in [&a, &b] {
                assert!(
                    store
                        .is_access_token_revoked("winner-jti")
                        .await
                        .expect("lookup"),
                    "round {round}: the winner's access token is revoked with its family"
                );
                assert_eq!(
                    store
                        .refresh_token_for_grant("r2")
                        .await
                        .expect("lookup")
                        .map(|(_, revoked)| revoked),
                    Some(true),
                    "round {round}: the winner's refresh token belongs to a revoked family"
                );
            }
        }
        for r in replicas {
            r.close().await;
        }
    })
    .await;
}

/// A database that went away is "unavailable" (503), not an internal error (500).
#[tokio::test]
async fn a_closed_pool_is_unavailable_and_a_bad_query_is_not() {
    let store = Store::connect("sqlite::memory:").await.expect("connect");
    let bad = sqlx::query("SELECT * FROM no_such_table")
        .execute(store.pool())
        .await
        .map_err(anyhow::Error::from)
        .expect_err("no such table");
    assert!(!store::is_unavailable(&bad), "{bad:#}");
    store.close().await;
    let gone = store.ping().await.expect_err("closed");
    assert!(store::is_unavailable(&gone), "{gone:#}");
    assert!(store::is_unavailable(&gone.context("while answering")));
}

/// `serve --listen --internal-listen`: a reload of the shared gateway file keeps this replica's
/// listeners, and does not report them as settings that need a restart.
#[tokio::test]
async fn a_reload_keeps_the_command_line_listeners() {
    use mcpgate_token_service::internal_api::InternalSecret;
    use mcpgate_token_service::runtime::reload::{self, ListenOverride, LiveConfig};
    use std::sync::Arc;

    let gateway = support::Gateway {
        authorization_server: "",
        database_url: "\"sqlite::memory:\"",
        token_service: "",
        routes: "  - from: http://localhost:18080/a\n    to: http://127.0.0.1:3001/mcp\n    mcp: {server: {}}\n",
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, gateway.yaml(dir.path())).expect("write");
    let listen = ListenOverride {
        listen: Some("127.0.0.1:28090".parse().expect("addr")),
        internal_listen: Some("127.0.0.1:28190".parse().expect("addr")),
    };
    let config = listen
        .apply(mcpgate_config::GatewayConfig::load(&path).expect("load"))
        .expect("override");
    let state = mcpgate_token_service::state::AppState::new(config)
        .await
        .expect("state");
    let live = LiveConfig::with_listen_override(
        state,
        Arc::new(InternalSecret::new(support::SECRET).expect("secret")),
        listen,
    );
    let changed = format!(
        "{}  - from: http://localhost:18080/b\n    to: http://127.0.0.1:3002/mcp\n    mcp: {{server: {{}}}}\n",
        gateway.routes
    );
    let next = support::Gateway {
        routes: &changed,
        ..gateway
    };
    std::fs::write(&path, next.yaml(dir.path())).expect("rewrite");
    let reloaded = reload::reload(&live, &path).expect("reload");
    assert!(
        reloaded.restart_only.is_empty(),
        "{:?}",
        reloaded.restart_only
    );
    assert!(
        !reloaded
            .changed
            .iter()
            .any(|c| c.starts_with("token_service")),
        "{:?}",
        reloaded.changed
    );
    let state = live.state();
    assert_eq!(state.routes.len(), 2, "the reload applied");
    assert_eq!(
        state.config.token_service.listen,
        listen.listen.expect("set")
    );
    assert_eq!(
        state.config.internal_listen(),
        listen.internal_listen.expect("set")
    );
}
