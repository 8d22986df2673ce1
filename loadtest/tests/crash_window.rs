//! The producer's crash window (issue 15): a 202 means the broker has the
//! job. The producer reaches RabbitMQ through a relay that partitions
//! them; requests arrive, write their records and wait for confirms that
//! never come; the producer is killed with kill -9 and the bytes the
//! partition held back are dropped. After a restart, the batch is retried
//! with the same idempotency keys (its jobs are published before the
//! answer) and the single message is not (the leader's reconciler
//! publishes it): every message arrives at the simulator exactly once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use herald_api::SendMessage;
use herald_loadtest::sim;
use herald_loadtest::stack::{Stack, StackOptions};
use uuid::Uuid;

fn message(run: &str, n: usize) -> SendMessage {
    let mut m = SendMessage::email(format!("{run}-{n}@example.com"), "crash window", "text");
    m.idempotency_key = Some(format!("{run}-{n}"));
    m
}

async fn records(db: &sqlx::PgPool, run: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages WHERE recipient LIKE $1")
        .bind(format!("{run}-%"))
        .fetch_one(db)
        .await
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_killed_with_publishes_in_flight_loses_nothing_and_sends_nothing_twice() {
    let mut stack = Stack::start(StackOptions {
        scheduler_env: vec![("HERALD_RECONCILE_AFTER_SECS".into(), "3".into())],
        relay: true,
        ..StackOptions::new("crash", 1)
    })
    .await
    .expect("the private stack starts");
    let run = format!("cw{}", &Uuid::new_v4().simple().to_string()[..8]);
    let batch: Vec<SendMessage> = (0..20).map(|n| message(&run, n)).collect();
    let single = message(&run, 20);

    // The partition: the requests' records are written, their publishes
    // wait for confirms that never come.
    stack.relay.as_ref().expect("relay").partition();
    let client = stack.client.clone();
    let in_flight_batch = tokio::spawn({
        let (client, batch) = (client.clone(), batch.clone());
        async move { client.send_batch(&batch).await }
    });
    let in_flight_single = tokio::spawn({
        let (client, single) = (client.clone(), single.clone());
        async move { client.send(&single).await }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while records(&stack.db, &run).await < 21 {
        assert!(Instant::now() < deadline, "the records were not written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.producer.kill().await;
    let relay = stack.relay.as_ref().expect("relay");
    relay.drop_connections();
    relay.heal();
    assert!(
        in_flight_batch.await.expect("task").is_err(),
        "the batch was never answered 202"
    );
    assert!(
        in_flight_single.await.expect("task").is_err(),
        "the single message was never answered 202"
    );
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM unconfirmed_jobs")
        .fetch_one(&stack.db)
        .await
        .expect("outbox");
    assert_eq!(pending, 21, "every job waits in the outbox for its confirm");

    stack.producer.start().expect("the producer starts again");
    herald_loadtest::stack::wait_ready(&stack.producer_url, Duration::from_secs(60))
        .await
        .expect("the producer is ready again");
    // The client's retry, as API.md tells it: the same keys, the same ids.
    let retried = client
        .with_retries()
        .send_batch(&batch)
        .await
        .expect("the retried batch is accepted");
    assert_eq!(retried.ids.len(), 20);

    // Every message reaches the simulator: the batch through the replay,
    // the single one through the reconciler.
    let deadline = Instant::now() + Duration::from_secs(90);
    let counts = loop {
        let ids = sim::ids(&stack.sim_url, "email").await.expect("sim ids");
        let by_id: HashMap<String, u32> = ids.ids;
        let statuses: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT id, status FROM messages WHERE recipient LIKE $1")
                .bind(format!("{run}-%"))
                .fetch_all(&stack.db)
                .await
                .expect("records");
        let arrived = statuses
            .iter()
            .filter(|(id, _)| by_id.contains_key(&id.to_string()))
            .count();
        if arrived == 21 && statuses.iter().all(|(_, s)| s == "sent") {
            break statuses
                .iter()
                .map(|(id, _)| by_id[&id.to_string()])
                .collect::<Vec<u32>>();
        }
        assert!(
            Instant::now() < deadline,
            "{arrived} of 21 arrived; statuses {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        counts.iter().all(|n| *n == 1),
        "each arrived once: {counts:?}"
    );
    // Copies still on their way (the reconciler may have republished a
    // replayed job too) are claimed and dropped, never sent.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stats = sim::fetch(&stack.sim_url).await.expect("sim stats");
    assert_eq!(stats.smtp.duplicates, 0, "nothing was sent twice");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM unconfirmed_jobs")
        .fetch_one(&stack.db)
        .await
        .expect("outbox");
    assert_eq!(
        left, 0,
        "the outbox is empty once every confirm is recorded"
    );
    let retried_ids: Vec<String> = retried.ids.iter().map(|id| id.to_string()).collect();
    let stored: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE recipient LIKE $1 AND recipient <> $2 ORDER BY recipient",
    )
    .bind(format!("{run}-%"))
    .bind(format!("{run}-20@example.com"))
    .fetch_all(&stack.db)
    .await
    .expect("ids");
    let mut a: Vec<String> = stored.iter().map(Uuid::to_string).collect();
    let mut b = retried_ids;
    a.sort();
    b.sort();
    assert_eq!(a, b, "the retry answered with the first request's ids");
    stack.stop(false).await;
}
