//! The hot tables' statistics follow their growth (decision 0011), against
//! a fresh database on the local PostgreSQL.

use std::time::Duration;

use herald_store::{NewRecord, Store};
use herald_testing::{fixtures, wait_for, Isolation};

async fn reltuples(store: &Store, table: &str) -> f32 {
    sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE relname = $1")
        .bind(table)
        .fetch_one(store.pool())
        .await
        .expect("pg_class")
}

/// Waits until PostgreSQL's activity statistics count `rows` live rows in
/// `messages` (backends report them within about a second).
async fn wait_live(store: &Store, rows: i64) {
    let counted = wait_for(Duration::from_secs(10), || async {
        let live: Option<i64> = sqlx::query_scalar(
            "SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'messages'",
        )
        .fetch_optional(store.pool())
        .await
        .expect("pg_stat_user_tables");
        live.unwrap_or(0) >= rows
    })
    .await;
    assert!(counted, "the activity statistics never counted {rows} rows");
}

#[tokio::test]
async fn a_hot_table_is_analyzed_when_it_doubles_and_not_before() {
    let isolation = Isolation::new("stats");
    let store = isolation.store(2).await;
    // Autovacuum must not analyze behind the test's back.
    sqlx::query("ALTER TABLE messages SET (autovacuum_enabled = false)")
        .execute(store.pool())
        .await
        .expect("alter");
    let tenant = fixtures::tenant(&store, "s").await;
    // Adds `n` records, waits until the activity statistics see `total`,
    // and answers what the refresh analyzed.
    let grow = |n: usize, total: i64| {
        let store = store.clone();
        async move {
            let records: Vec<NewRecord> = (0..n)
                .map(|i| fixtures::queued("email", &format!("r{i}@example.com")))
                .collect();
            store
                .insert_messages(tenant, &records)
                .await
                .expect("insert");
            wait_live(&store, total).await;
            store.refresh_hot_statistics().await.expect("refresh")
        }
    };
    let analyzed = vec!["messages".to_owned()];

    // Too small to matter: left to autovacuum.
    assert!(grow(100, 100).await.is_empty());
    // Grown past the threshold with no statistics: analyzed, once.
    assert_eq!(grow(2_000, 2_100).await, analyzed);
    assert_eq!(reltuples(&store, "messages").await, 2_100.0);
    assert!(grow(0, 2_100).await.is_empty());
    // Half again is not double: nothing; past double: analyzed again.
    assert!(grow(1_000, 3_100).await.is_empty());
    assert_eq!(grow(1_500, 4_600).await, analyzed);
    assert_eq!(reltuples(&store, "messages").await, 4_600.0);

    store.pool().close().await;
    isolation.teardown().await;
}
