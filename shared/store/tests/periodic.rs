//! The leader lock, the outbox and key expiry (issue 15), against a fresh
//! database on the local PostgreSQL.

use std::time::Duration;

use herald_store::NewRecord;
use herald_testing::{fixtures, Isolation};

#[tokio::test]
async fn one_process_leads_at_a_time_and_another_takes_over_when_it_ends() {
    let isolation = Isolation::new("lead");
    let a = isolation.store(2).await;
    let b = isolation.store(2).await;
    let name = format!("herald-leader:{}", isolation.namespace);

    let mut first = a
        .try_lead(&name)
        .await
        .expect("try")
        .expect("the first leads");
    assert!(first.check().await, "the leader holds its lock");
    assert!(
        b.try_lead(&name).await.expect("try").is_none(),
        "a second process does not lead while the first does"
    );
    assert!(
        b.try_lead("another-namespace")
            .await
            .expect("try")
            .is_some(),
        "another deployment's lock is its own"
    );
    // The first leader stops (its connection ends, as when it dies).
    first.resign().await;
    let mut second = b
        .try_lead(&name)
        .await
        .expect("try")
        .expect("the second leads");
    assert!(second.check().await);
    // A leader whose database session was ended from outside knows it.
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_locks
         WHERE locktype = 'advisory' AND objid = (hashtextextended($1, 0) & 4294967295)::oid",
    )
    .bind(&name)
    .execute(a.pool())
    .await
    .expect("terminate");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!second.check().await, "a lost lock is noticed");
    assert!(
        a.try_lead(&name).await.expect("try").is_some(),
        "and taken over"
    );
    isolation.teardown().await;
}

#[tokio::test]
async fn the_outbox_keeps_a_job_until_its_confirm_and_hands_out_only_stale_waiting_ones() {
    let isolation = Isolation::new("outbox");
    let store = isolation.store(4).await;
    let tenant = fixtures::tenant(&store, "o").await;
    let record = |i: usize| NewRecord {
        envelope: Some(vec![i as u8; 8]),
        ..fixtures::queued("email", &format!("o{i}@example.com"))
    };
    let records: Vec<NewRecord> = (0..3).map(record).collect();
    store
        .insert_messages(tenant, &records)
        .await
        .expect("insert");
    let (count, _) = store.unconfirmed_backlog().await.expect("backlog");
    assert_eq!(count, 3, "every due job waits in the outbox");

    // The first is confirmed; the second was cancelled meanwhile.
    store
        .confirmed(&[records[0].id.as_uuid()])
        .await
        .expect("confirmed");
    store
        .cancel_message(tenant, records[1].id)
        .await
        .expect("cancel");
    let young = store
        .stale_unconfirmed(Duration::from_secs(30), 100)
        .await
        .expect("stale");
    assert_eq!(young.locked, 0, "nothing is stale yet");
    drop(young);

    sqlx::query("UPDATE unconfirmed_jobs SET created_at = now() - interval '1 minute'")
        .execute(store.pool())
        .await
        .expect("age");
    let stale = store
        .stale_unconfirmed(Duration::from_secs(30), 100)
        .await
        .expect("stale");
    assert_eq!(stale.locked, 2, "the cancelled one and the waiting one");
    let ids: Vec<_> = stale.jobs.iter().map(|j| j.message_id).collect();
    assert_eq!(
        ids,
        vec![records[2].id],
        "only a waiting message is republished"
    );
    assert_eq!(stale.jobs[0].envelope, vec![2u8; 8]);
    stale.republished().await.expect("commit");
    let (count, _) = store.unconfirmed_backlog().await.expect("backlog");
    assert_eq!(count, 0, "republished and finished rows leave the outbox");
    isolation.teardown().await;
}

#[tokio::test]
async fn idempotency_keys_older_than_a_day_are_deleted_in_batches() {
    let isolation = Isolation::new("keys");
    let store = isolation.store(2).await;
    let tenant = fixtures::tenant(&store, "k").await;
    let records: Vec<NewRecord> = (0..5)
        .map(|i| NewRecord {
            idempotency_key: Some(format!("key-{i}")),
            ..fixtures::queued("email", &format!("k{i}@example.com"))
        })
        .collect();
    store
        .insert_messages(tenant, &records)
        .await
        .expect("insert");
    sqlx::query(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key <> 'key-4'",
    )
    .execute(store.pool())
    .await
    .expect("age");
    assert_eq!(store.expire_idempotency_keys(3).await.expect("expire"), 3);
    assert_eq!(store.expire_idempotency_keys(3).await.expect("expire"), 1);
    assert_eq!(store.expire_idempotency_keys(3).await.expect("expire"), 0);
    let left: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys")
        .fetch_all(store.pool())
        .await
        .expect("keys");
    assert_eq!(left, vec!["key-4".to_owned()], "a live key stays");
    isolation.teardown().await;
}
