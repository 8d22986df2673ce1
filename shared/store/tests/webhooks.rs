//! The tenant-webhook outbox against the real PostgreSQL (decision 0028):
//! a delivery is written by the very statement that changes a message's
//! status, only for a tenant whose webhook takes the event; a claim is a
//! lease, so the deliveries of a worker that died mid-post come back.

use std::time::Duration;

use chrono::Utc;
use herald_domain::{DeliveryState, MessageId, MessageStatus, TenantId};
use herald_store::{Attempt, Outcome, Store};
use herald_testing::{fixtures, unique, Isolation};
use uuid::Uuid;

/// A record of `tenant` that a worker has claimed (`sending`).
async fn sending(store: &Store, tenant: TenantId, provider: Uuid) -> MessageId {
    let id = fixtures::queued_record(store, tenant, "email", "ada@example.com").await;
    sqlx::query("UPDATE messages SET status = 'sending', provider_id = $2 WHERE id = $1")
        .bind(id.as_uuid())
        .bind(provider)
        .execute(store.pool())
        .await
        .expect("sending");
    id
}

async fn hooked(store: &Store, code: &str, events: Option<&[&str]>) -> TenantId {
    let tenant = fixtures::tenant(store, &unique(code)).await;
    sqlx::query("UPDATE tenants SET webhook_url = 'http://127.0.0.1:9/hooks', webhook_events = $2 WHERE id = $1")
        .bind(tenant.as_uuid())
        .bind(events.map(|e| e.iter().map(|s| s.to_string()).collect::<Vec<_>>()))
        .execute(store.pool())
        .await
        .expect("webhook set");
    tenant
}

async fn deliveries(store: &Store) -> Vec<(Uuid, String, serde_json::Value)> {
    sqlx::query_as("SELECT message_id, event, detail FROM webhook_deliveries ORDER BY id")
        .fetch_all(store.pool())
        .await
        .expect("deliveries")
}

fn outcome(id: MessageId, status: MessageStatus, code: Option<&str>) -> Outcome {
    Outcome {
        id: id.as_uuid(),
        status,
        error_code: code.map(str::to_owned),
        error_message: code.map(|c| format!("because {c}")),
    }
}

#[tokio::test]
async fn outcomes_write_their_deliveries_in_the_same_statement_for_selected_events_only() {
    let isolation = Isolation::new("hookbox");
    let store = isolation.store(2).await;
    let provider = Uuid::now_v7();
    let selective = hooked(&store, "sel", Some(&["sent", "failed"])).await;
    let everything = hooked(&store, "all", None).await;
    let silent = fixtures::tenant(&store, &unique("none")).await;

    let sent = sending(&store, selective, provider).await;
    let failed = sending(&store, selective, provider).await;
    let retried = sending(&store, selective, provider).await;
    let in_doubt = sending(&store, selective, provider).await;
    let all_sent = sending(&store, everything, provider).await;
    let unhooked = sending(&store, silent, provider).await;
    let changed = store
        .record_outcomes(&[
            outcome(sent, MessageStatus::Sent, None),
            outcome(failed, MessageStatus::Failed, Some("rejected")),
            // A retry waits `pending`: not an event.
            outcome(retried, MessageStatus::Pending, Some("timeout")),
            // Not among the selective tenant's events.
            outcome(in_doubt, MessageStatus::InDoubt, Some("in_doubt")),
            outcome(all_sent, MessageStatus::Sent, None),
            outcome(unhooked, MessageStatus::Sent, None),
        ])
        .await
        .expect("recorded");
    assert_eq!(changed, 6, "every row changed, as before the outbox");
    let written = deliveries(&store).await;
    let mut got: Vec<(Uuid, &str)> = written.iter().map(|(m, e, _)| (*m, e.as_str())).collect();
    got.sort();
    let mut want = vec![
        (sent.as_uuid(), "sent"),
        (failed.as_uuid(), "failed"),
        (all_sent.as_uuid(), "sent"),
    ];
    want.sort();
    assert_eq!(got, want);
    let failure = written
        .iter()
        .find(|(m, _, _)| *m == failed.as_uuid())
        .expect("failed");
    assert_eq!(failure.2["error_code"], "rejected");
    assert_eq!(failure.2["provider_id"], provider.to_string());

    // A late duplicate of the outcomes changes no row, so writes none.
    let again = store
        .record_outcomes(&[outcome(sent, MessageStatus::Sent, None)])
        .await
        .expect("recorded");
    assert_eq!(again, 0);
    assert_eq!(deliveries(&store).await.len(), 3);

    // A cancel is an event too (the everything tenant takes every event).
    let queued = fixtures::queued_record(&store, everything, "email", "bo@example.com").await;
    assert_eq!(
        store
            .cancel_message(everything, queued)
            .await
            .expect("cancel"),
        Some(true)
    );
    assert!(deliveries(&store)
        .await
        .iter()
        .any(|(m, e, _)| *m == queued.as_uuid() && e == "cancelled"));
    isolation.teardown().await;
}

#[tokio::test]
async fn a_claim_is_a_lease_and_attempts_move_deliveries_on() {
    let isolation = Isolation::new("hooklease");
    let store = isolation.store(2).await;
    let tenant = hooked(&store, "lease", None).await;
    for _ in 0..3 {
        let id = sending(&store, tenant, Uuid::now_v7()).await;
        store
            .record_outcomes(&[outcome(id, MessageStatus::Sent, None)])
            .await
            .expect("recorded");
    }
    let claimed = store
        .claim_webhook_deliveries(10, Duration::from_millis(400))
        .await
        .expect("claimed");
    assert_eq!(claimed.len(), 3);
    assert!(claimed
        .iter()
        .all(|d| d.webhook_url.is_some() && d.attempts == 0));
    assert_eq!(
        claimed[0].recipient.as_deref(),
        Some("ada@example.com"),
        "the claim carries the message's recipient"
    );
    // Held: a second worker finds nothing due.
    let second = store
        .claim_webhook_deliveries(10, Duration::from_secs(60))
        .await
        .expect("claimed");
    assert!(second.is_empty(), "{second:?}");

    // The first worker "dies" without recording; after the lease the
    // deliveries are due again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let back = store
        .claim_webhook_deliveries(10, Duration::from_secs(60))
        .await
        .expect("claimed");
    assert_eq!(back.len(), 3, "the dead claimer's deliveries came back");

    let now = Utc::now();
    let attempts = vec![
        Attempt {
            id: back[0].id,
            tried: true,
            state: DeliveryState::Delivered,
            status: Some(200),
            error: None,
            next_attempt_at: None,
        },
        Attempt {
            id: back[1].id,
            tried: true,
            state: DeliveryState::Pending,
            status: Some(503),
            error: Some("HTTP 503".into()),
            next_attempt_at: Some(now),
        },
        Attempt {
            id: back[2].id,
            tried: true,
            state: DeliveryState::Failed,
            status: None,
            error: Some("connection refused; gave up".into()),
            next_attempt_at: None,
        },
    ];
    assert_eq!(
        store
            .record_webhook_attempts(&attempts)
            .await
            .expect("recorded"),
        3
    );
    // A second record of the same round (a retried write) changes only
    // what is still pending.
    assert_eq!(
        store
            .record_webhook_attempts(&attempts)
            .await
            .expect("recorded"),
        1
    );
    let due = store
        .claim_webhook_deliveries(10, Duration::from_secs(60))
        .await
        .expect("claimed");
    assert_eq!(due.len(), 1, "only the retried one is due");
    assert_eq!(due[0].id, back[1].id);
    assert_eq!(due[0].attempts, 2);

    // A resend makes a finished delivery due again, with a fresh day.
    let log = store
        .resend_webhook_delivery(tenant, back[2].id, Duration::from_secs(86_400))
        .await
        .expect("resend")
        .expect("found");
    assert_eq!(log.state, "pending");
    assert!(log.give_up_at > Utc::now() + chrono::TimeDelta::hours(23));
    let other = fixtures::tenant(&store, &unique("other")).await;
    assert!(store
        .resend_webhook_delivery(other, back[2].id, Duration::from_secs(60))
        .await
        .expect("resend")
        .is_none());
    isolation.teardown().await;
}
