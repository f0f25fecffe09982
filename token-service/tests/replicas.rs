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
