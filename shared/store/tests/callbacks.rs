//! Callback events against the real PostgreSQL (decision 0027): a
//! redelivered batch is stored once, and whatever order and batching the
//! events come in, a message's status only moves forward by rank.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use herald_domain::{status_rank, EventKind, MessageId, MessageStatus};
use herald_store::{NewCallback, Store};
use herald_testing::{fixtures, Isolation};
use proptest::prelude::*;
use uuid::Uuid;

/// A sent email of a fresh tenant, sent through `provider`.
async fn sent_message(store: &Store, provider: Uuid) -> MessageId {
    let tenant = fixtures::tenant(store, &herald_testing::unique("cb")).await;
    let id = fixtures::queued_record(store, tenant, "email", "ada@example.com").await;
    sqlx::query(
        "UPDATE messages SET status = 'sent', sent_at = now(), provider_id = $2 WHERE id = $1",
    )
    .bind(id.as_uuid())
    .bind(provider)
    .execute(store.pool())
    .await
    .expect("sent");
    id
}

fn event(
    provider: Uuid,
    message: MessageId,
    kind: EventKind,
    at: DateTime<Utc>,
    n: u32,
) -> NewCallback {
    NewCallback {
        id: Uuid::now_v7(),
        provider_id: provider,
        message_id: Some(message.as_uuid()),
        recipient: None,
        event: kind,
        occurred_at: at,
        received_at: Utc::now(),
        detail: serde_json::json!({"n": n}),
        raw: format!("event {n}"),
        dedupe_key: format!("{message}:{n}").into_bytes(),
    }
}

async fn status(store: &Store, id: MessageId) -> (MessageStatus, Option<DateTime<Utc>>) {
    let (status, delivered): (String, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT status, delivered_at FROM messages WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_one(store.pool())
            .await
            .expect("status");
    (status.parse().expect("a status"), delivered)
}

#[tokio::test]
async fn a_redelivered_batch_is_stored_once_and_changes_nothing_more() {
    let isolation = Isolation::new("cbdup");
    let store = isolation.store(2).await;
    let provider = Uuid::now_v7();
    let id = sent_message(&store, provider).await;
    // Whole seconds: PostgreSQL keeps microseconds.
    let t0 = Utc::now().trunc_subsecs(0) - TimeDelta::seconds(10);
    let batch = vec![
        event(provider, id, EventKind::Delivered, t0, 1),
        event(provider, id, EventKind::Read, t0 + TimeDelta::seconds(1), 2),
    ];
    let first = store.record_callbacks(&batch).await.expect("stored");
    assert_eq!((first.processed, first.duplicates, first.moved), (2, 0, 1));
    // The worker died after its commit and before its ack: the same
    // deliveries again (the producer's ids differ, the dedupe keys do not).
    let again: Vec<NewCallback> = batch
        .iter()
        .cloned()
        .map(|mut e| {
            e.id = Uuid::now_v7();
            e
        })
        .collect();
    let second = store.record_callbacks(&again).await.expect("stored");
    assert_eq!(
        (second.processed, second.duplicates, second.moved),
        (0, 2, 0)
    );
    assert_eq!(store.message_events(id).await.expect("events").len(), 2);
    assert_eq!(status(&store, id).await, (MessageStatus::Read, Some(t0)));
    isolation.teardown().await;
}

const KINDS: [EventKind; 6] = EventKind::ALL;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn status_only_moves_forward_whatever_the_order_and_batching(
        events in proptest::collection::vec((0usize..6, 0i64..600, any::<bool>()), 1..10)
    ) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let isolation = Isolation::new("cbrank");
            let store = isolation.store(2).await;
            let provider = Uuid::now_v7();
            let id = sent_message(&store, provider).await;
            let base = Utc::now().trunc_subsecs(0) - TimeDelta::hours(1);
            let mut best = status_rank(MessageStatus::Sent);
            let mut delivered: Option<DateTime<Utc>> = None;
            let mut batch = Vec::new();
            let mut last_rank = best;
            for (n, (k, secs, cut)) in events.iter().enumerate() {
                let kind = KINDS[*k];
                let at = base + TimeDelta::seconds(*secs);
                batch.push(event(provider, id, kind, at, n as u32));
                best = best.max(Some(kind.rank()));
                if kind.implies_delivery() {
                    delivered = Some(delivered.map_or(at, |d: DateTime<Utc>| d.min(at)));
                }
                if *cut || n + 1 == events.len() {
                    store.record_callbacks(&batch).await.expect("stored");
                    batch.clear();
                    let (now, _) = status(&store, id).await;
                    assert!(status_rank(now) >= last_rank, "never backwards");
                    last_rank = status_rank(now);
                }
            }
            let (final_status, final_delivered) = status(&store, id).await;
            assert_eq!(status_rank(final_status), best, "the highest rank wins");
            assert_eq!(final_delivered, delivered, "the earliest delivery");
            isolation.teardown().await;
        });
    }
}
