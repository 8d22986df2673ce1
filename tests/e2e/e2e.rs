//! The whole flow: producer → user queue → scheduler → central queue →
//! worker → simulator → PostgreSQL.

use std::time::Duration;

use herald_api::SendMessage;
use herald_domain::{Channel, MessageStatus};
use herald_e2e::Harness;
use herald_sim::SimChannel;
use herald_testing::{unique, wait_for, wait_for_value};
use serde_json::json;

async fn send_batches(h: &Harness, key: &str, messages: Vec<SendMessage>) -> Vec<String> {
    let client = h.app.client(key);
    let mut ids = Vec::new();
    for chunk in messages.chunks(500) {
        let accepted = client.send_batch(chunk).await.expect("batch request");
        ids.extend(accepted.ids.iter().map(ToString::to_string));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_message_of_two_tenants_arrives_exactly_once_and_is_recorded_sent() {
    let h = Harness::start(2).await.expect("herald starts");
    h.sim_providers().await.expect("providers");
    let (_a, key_a) = h.tenant(&unique("shop")).await.expect("tenant a");
    let (_b, key_b) = h.tenant(&unique("crm")).await.expect("tenant b");

    let emails: Vec<SendMessage> = (0..1000)
        .map(|i| {
            let mut m = SendMessage::new(
                Channel::Email,
                format!("user{i}@example.com"),
                format!("message {i}"),
            );
            m.subject = Some("Hello".into());
            m
        })
        .collect();
    let wework: Vec<SendMessage> = (0..200)
        .map(|i| {
            let mut m =
                SendMessage::new(Channel::Wework, format!("u{i}|v{i}"), format!("notice {i}"));
            m.priority = Some(8);
            m
        })
        .collect();
    let (email_ids, wework_ids) = tokio::join!(
        send_batches(&h, &key_a, emails),
        send_batches(&h, &key_b, wework)
    );
    assert_eq!(email_ids.len(), 1000);
    assert_eq!(wework_ids.len(), 200);

    let db = h.db().await.expect("db");
    let all: Vec<uuid::Uuid> = email_ids
        .iter()
        .chain(&wework_ids)
        .filter_map(|s| s.parse().ok())
        .collect();
    let done = wait_for(Duration::from_secs(120), || {
        let (db, all) = (db.clone(), all.clone());
        async move { Harness::sent(&db, &all).await == 1200 }
    })
    .await;
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM messages GROUP BY status")
            .fetch_all(&db)
            .await
            .expect("counts");
    assert!(done, "not every message was recorded sent: {counts:?}");

    for id in &email_ids {
        assert_eq!(h.sim.count(SimChannel::Email, id), 1, "email {id}");
    }
    for id in &wework_ids {
        assert_eq!(h.sim.count(SimChannel::Wework, id), 1, "wework {id}");
    }
    let stats = h.sim.stats();
    assert_eq!(stats.smtp.duplicates, 0);
    assert_eq!(stats.wework.duplicates, 0);
    assert_eq!(stats.wework.cost, 400, "two users per WeWork message");
    db.close().await;
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_message_is_not_sent_before_its_time_and_a_cancelled_one_never() {
    let h = Harness::start(1).await.expect("herald starts");
    h.sim_providers().await.expect("providers");
    let (_t, key) = h.tenant(&unique("sched")).await.expect("tenant");
    let at = chrono_like_in(3);
    let client = h.app.client(&key);
    let mut later = SendMessage::new(Channel::Wework, "u1", "later");
    later.scheduled_at = Some(at.clone());
    let body = client.send(&later).await.expect("send");
    assert_eq!(body.status, MessageStatus::Scheduled);
    let id = body.id.to_string();
    let mut never = SendMessage::new(Channel::Wework, "u2", "never");
    never.scheduled_at = Some(at);
    let cancel_me = client.send(&never).await.expect("send");
    let cancel_id = cancel_me.id.to_string();
    client.cancel(&cancel_id).await.expect("cancel");

    // Deliberately lets time pass (half the delay) to show nothing is sent
    // early: there is no state to wait for.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        h.sim.count(SimChannel::Wework, &id),
        0,
        "sent before its time"
    );
    let arrived = wait_for(Duration::from_secs(15), || async {
        h.sim.count(SimChannel::Wework, &id) == 1
    })
    .await;
    if !arrived {
        let db = h.db().await.expect("db");
        let row: Option<(String, Option<String>, i32)> = sqlx::query_as(
            "SELECT status, error_message, attempts FROM messages WHERE id = $1::uuid",
        )
        .bind(&id)
        .fetch_optional(&db)
        .await
        .expect("row");
        panic!(
            "the scheduled message did not arrive: record {row:?}, sim {:?}",
            h.sim.stats()
        );
    }
    // Released within about a second of its time (the poller runs every
    // 500 ms), then placed and sent.
    // The simulator counts it a moment before the worker records it.
    let db = h.db().await.expect("db");
    let late: Option<f64> = wait_for_value(
        Duration::from_secs(5),
        || async {
            sqlx::query_scalar(
                "SELECT extract(epoch FROM sent_at - scheduled_at)::float8 FROM messages WHERE id = $1::uuid",
            )
            .bind(&id)
            .fetch_one(&db)
            .await
            .expect("timing")
        },
        Option::is_some,
    )
    .await;
    let late = late.expect("the send is recorded");
    assert!(
        (0.0..3.0).contains(&late),
        "sent {late:.3} s after its scheduled time"
    );
    // Deliberately lets another second pass: the cancelled one, due with
    // the first, must still not arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        h.sim.count(SimChannel::Wework, &cancel_id),
        0,
        "a cancelled message was sent"
    );
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_message_is_delivered_once_with_a_signature_the_receiver_verifies() {
    let h = Harness::start(1).await.expect("herald starts");
    let provider = h.sim_webhook().await.expect("provider");
    assert_eq!(provider.channel, Channel::Webhook);
    let (_t, key) = h.tenant(&unique("hooks")).await.expect("tenant");
    let to = format!("http://127.0.0.1:{}/webhook/orders", h.sim_http_port);
    let mut message = SendMessage::new(Channel::Webhook, to.clone(), "order shipped");
    message.metadata = Some([("order".to_owned(), "A-1".to_owned())].into());
    let body = h.app.client(&key).send(&message).await.expect("send");
    let id = body.id.to_string();

    let db = h.db().await.expect("db");
    let sent = wait_for(Duration::from_secs(30), || {
        let (db, id) = (db.clone(), id.clone());
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM messages WHERE id = $1::uuid")
                .bind(&id)
                .fetch_optional(&db)
                .await
                .ok()
                .flatten()
                .is_some_and(|status| status == "sent")
        }
    })
    .await;
    let record: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT status, error_message FROM messages WHERE id = $1::uuid")
            .bind(&id)
            .fetch_optional(&db)
            .await
            .expect("row");
    assert!(
        sent,
        "not recorded sent: {record:?}, sim {:?}",
        h.sim.stats()
    );

    // The receiver counts only deliveries whose signature it verified.
    assert_eq!(h.sim.count(SimChannel::Webhook, &id), 1);
    let stats = h.sim.stats().webhook;
    assert_eq!(
        (stats.received, stats.duplicates, stats.signature_failures),
        (1, 0, 0)
    );
    let last = h
        .sim
        .last(SimChannel::Webhook, &id)
        .expect("the delivery's detail");
    assert_eq!(last["body"]["id"], id.as_str());
    assert_eq!(last["body"]["to"], to.as_str());
    assert_eq!(last["body"]["text"], "order shipped");
    assert_eq!(last["body"]["metadata"], json!({"order": "A-1"}));
    db.close().await;
    h.stop().await.expect("clean stop");
}

/// RFC 3339 time `secs` from now.
fn chrono_like_in(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339()
}
