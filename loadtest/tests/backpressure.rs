//! Backpressure (issue 4): when RabbitMQ blocks publishers or a user queue
//! is at its length limit, the producer answers 503 `unavailable` with
//! Retry-After, never 202 — against a private RabbitMQ node whose memory
//! alarm the test raises, and the machine's Redis and PostgreSQL (a fresh
//! database).

use std::time::{Duration, Instant};

use herald_api::client::Result as ClientResult;
use herald_api::{Accepted, Client, SendMessage};
use herald_loadtest::chaos::cluster::{bin_dir_of_this_build, free_port, PrivateRabbit, Process};
use herald_loadtest::setup;

const ADMIN: &str = "backpressure-admin";

fn bin(name: &str) -> std::path::PathBuf {
    bin_dir_of_this_build().expect("bin dir").join(name)
}

/// One try (the client does not retry): the refusal itself is the subject.
async fn send(client: &Client, n: usize) -> ClientResult<Accepted> {
    client
        .send(&SendMessage::email(format!("bp{n}@example.com"), "s", "t"))
        .await
}

/// Asserts a 503 `unavailable` with Retry-After; returns its message.
fn unavailable(result: ClientResult<Accepted>) -> String {
    let error = result.expect_err("the producer must refuse");
    assert_eq!(error.status().map(|s| s.as_u16()), Some(503), "{error}");
    assert_eq!(error.code(), Some("unavailable"), "{error}");
    assert!(error.retry_after().is_some(), "503 carries Retry-After");
    error
        .detail()
        .map(|d| d.message.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_broker_or_a_full_user_queue_answers_503_never_202() {
    let root = std::env::temp_dir().join(format!("herald-bp-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&root).expect("dir");
    let mut rabbit = PrivateRabbit::new(&root).expect("rabbit");
    rabbit.start().await.expect("the private RabbitMQ starts");
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let database = format!("herald_bp_{suffix}");
    let database_url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    let port = free_port().expect("port");
    let mut producer = Process::new(
        "producer",
        bin("herald-producer"),
        vec![
            ("HERALD_AMQP_URL".into(), rabbit.url()),
            ("HERALD_DATABASE_URL".into(), database_url.clone()),
            ("HERALD_NAMESPACE".into(), format!("bp_{suffix}")),
            ("HERALD_ADMIN_TOKEN".into(), ADMIN.into()),
            ("HERALD_HTTP_ADDR".into(), format!("127.0.0.1:{port}")),
            ("HERALD_USER_QUEUE_MAX_LENGTH".into(), "3".into()),
            ("RUST_LOG".into(), "warn".into()),
        ],
        &root,
    );
    producer.start().expect("producer");
    let url = format!("http://127.0.0.1:{port}");
    let admin = Client::new(&url, ADMIN).expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    let tenant = loop {
        match setup::ensure_tenant(&admin).await {
            Ok(t) => break t,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the producer did not come up: {e:#}"),
        }
    };
    let key = setup::create_key(&admin, &tenant.id).await.expect("key");
    let client = admin.with_token(&key);

    // A memory alarm: RabbitMQ blocks every publishing connection.
    rabbit
        .ctl(&["set_vm_memory_high_watermark", "0.000001"])
        .await
        .expect("raise the memory alarm");
    let began = Instant::now();
    unavailable(send(&client, 0).await);
    assert!(
        began.elapsed() < Duration::from_secs(15),
        "refused in bounded time"
    );
    // While blocked, the answer stays 503.
    unavailable(send(&client, 1).await);
    rabbit
        .ctl(&["set_vm_memory_high_watermark", "0.4"])
        .await
        .expect("clear the alarm");

    // The queue holds 3 (no scheduler drains it). The two publishes the
    // alarm held may land in it once the alarm clears (their records are
    // already failed, so they would never be sent); sends are accepted until
    // the queue is full, then refused.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut accepted = 0;
    let mut n = 10;
    let message = loop {
        n += 1;
        match send(&client, n).await {
            Ok(_) => accepted += 1,
            Err(e) if accepted == 0 && Instant::now() < deadline => {
                // The connection unblocks shortly after the alarm clears.
                let _ = e;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            result @ Err(_) => break unavailable(result),
        }
        assert!(
            accepted <= 3,
            "the queue's limit is 3, yet {accepted} were accepted"
        );
    };
    assert!(accepted >= 1, "sends are accepted again after the alarm");
    assert!(message.contains("retry"), "{message}");

    // Nothing refused is left queued to go out later: the refused records
    // are failed (`unavailable`), the accepted ones queued.
    let pool = sqlx::PgPool::connect(&database_url).await.expect("db");
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM messages GROUP BY status ORDER BY status")
            .fetch_all(&pool)
            .await
            .expect("statuses");
    pool.close().await;
    let queued = rows.iter().find(|(s, _)| s == "queued").map_or(0, |r| r.1);
    assert_eq!(
        queued, accepted as i64,
        "exactly the accepted messages are queued: {rows:?}"
    );

    producer.terminate().await;
    rabbit.stop().await;
    let _ = herald_store::Store::drop_database(&database_url).await;
    let _ = std::fs::remove_dir_all(&root);
}
