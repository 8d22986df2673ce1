//! Group commit against the real PostgreSQL and RabbitMQ: concurrent
//! requests share commits, yet each is answered for its own messages, a
//! request whose key conflicts fails alone, and every accepted message has
//! its record and its job on its own tenant's queue.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use herald_broker::lapin::options::BasicGetOptions;
use herald_domain::{Channel, TenantId};
use herald_testing::{Isolation, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ADMIN: &str = "group-test-admin";

fn email(n: usize, key: Option<&str>) -> Value {
    let mut body =
        json!({"channel": "email", "to": format!("u{n}@example.com"), "subject": "s", "text": "t"});
    if let Some(key) = key {
        body["idempotency_key"] = json!(key);
    }
    body
}

/// Every job on `tenant`'s email queue: (message id, marked as a copy).
async fn drain_jobs(app: &TestApp, tenant: TenantId) -> Vec<(String, bool)> {
    let broker = herald_broker::connect(
        &app.isolation.settings().amqp_url,
        "group-test",
        std::time::Duration::from_secs(10),
    )
    .await
    .expect("broker");
    let queue = app.isolation.topology().user_queue(tenant, Channel::Email);
    let ch = broker.channel().await.expect("channel");
    let mut jobs = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
    {
        for job in herald_proto::jobs::decode(&m.delivery.data).expect("jobs") {
            jobs.push((job.message_id, job.republished));
        }
    }
    broker.close().await;
    jobs
}

/// `name`'s value in the Prometheus text `metrics`.
fn metric(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn concurrent_requests_share_commits_and_each_gets_its_own_answer() {
    herald_telemetry::install_metrics();
    // One commit at a time: whatever arrives while it runs forms the next
    // group, so grouping is certain, not a matter of timing.
    let app = TestApp::start_with(Isolation::new("group"), ADMIN, |s| {
        s.group.commits_in_flight = 1;
    })
    .await
    .expect("producer");
    let (a, key_a) = app.tenant_with_key("group-a").await.expect("tenant a");
    let (b, key_b) = app.tenant_with_key("group-b").await.expect("tenant b");
    let post = |key: String, path: &'static str, body: Value| {
        let (http, url) = (app.http.clone(), format!("{}{}", app.url, path));
        async move {
            let resp = http
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .expect("request");
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, first) = post(key_a.clone(), "/v1/messages", email(0, Some("taken"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");

    // 40 single sends and a batch of 10 from A, 20 from B, one of A's
    // reusing "taken" with another body, two of A's with the same new key.
    let mut calls = Vec::new();
    for n in 1..=40 {
        let key = format!("a-{n}");
        calls.push((
            "a",
            post(key_a.clone(), "/v1/messages", email(n, Some(&key))),
        ));
    }
    for n in 1..=20 {
        calls.push(("b", post(key_b.clone(), "/v1/messages", email(n, None))));
    }
    calls.push((
        "conflict",
        post(key_a.clone(), "/v1/messages", email(99, Some("taken"))),
    ));
    for _ in 0..2 {
        calls.push((
            "dup",
            post(key_a.clone(), "/v1/messages", email(7, Some("dup"))),
        ));
    }
    let batch: Vec<Value> = (100..110).map(|n| email(n, None)).collect();
    calls.push((
        "batch",
        post(
            key_a.clone(),
            "/v1/messages/batch",
            json!({"messages": batch}),
        ),
    ));
    let (kinds, futures): (Vec<&str>, Vec<_>) = calls.into_iter().unzip();
    // B's gRPC unary sends at the same time, through the same committer.
    let grpc = herald_proto::grpc::connect(&app.grpc_url, &key_b)
        .await
        .expect("gRPC client");
    let unary = (0..10).map(|n| {
        let mut client = grpc.clone();
        async move {
            let request = herald_proto::v1::SendRequest {
                channel: herald_proto::v1::Channel::Email as i32,
                to: format!("g{n}@example.com"),
                subject: "s".into(),
                text: "t".into(),
                ..Default::default()
            };
            client.send(request).await.map(|r| r.into_inner().id)
        }
    });
    let (answers, unary) = tokio::join!(join_all(futures), join_all(unary));
    let unary: Vec<String> = unary
        .into_iter()
        .map(|r| r.expect("a gRPC send is accepted"))
        .collect();

    let mut ids: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (kind, (status, body)) in kinds.iter().zip(&answers) {
        if *kind == "conflict" {
            assert_eq!(*status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(body["error"]["code"], "idempotency_conflict", "{body}");
            continue;
        }
        assert_eq!(*status, StatusCode::ACCEPTED, "{kind}: {body}");
        let entry = ids.entry(kind).or_default();
        match body["ids"].as_array() {
            Some(batch) => {
                entry.extend(batch.iter().map(|i| i.as_str().expect("an id").to_owned()))
            }
            None => entry.push(body["id"].as_str().expect("an id").to_owned()),
        }
    }
    assert_eq!(ids["a"].len(), 40);
    assert_eq!(ids["b"].len(), 20);
    assert_eq!(ids["batch"].len(), 10);
    let dup: BTreeSet<&String> = ids["dup"].iter().collect();
    assert_eq!(dup.len(), 1, "one key, one message: {:?}", ids["dup"]);

    // A's records: the first, 40, the key shared twice, the batch.
    let mut want_a: BTreeSet<String> = ids["a"].iter().chain(&ids["batch"]).cloned().collect();
    want_a.extend(dup.iter().map(|s| (*s).clone()));
    want_a.insert(first["id"].as_str().expect("an id").to_owned());
    let want_b: BTreeSet<String> = ids["b"].iter().chain(&unary).cloned().collect();
    assert_eq!(
        want_b.len(),
        30,
        "every HTTP and gRPC send of B has its own id"
    );
    let store = app.isolation.store(2).await;
    for (tenant, want) in [(a.id, &want_a), (b.id, &want_b)] {
        let stored: BTreeSet<String> =
            sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM messages WHERE tenant_id = $1")
                .bind(tenant.as_uuid())
                .fetch_all(store.pool())
                .await
                .expect("records")
                .into_iter()
                .map(|id| id.to_string())
                .collect();
        assert_eq!(
            &stored, want,
            "each tenant has exactly its accepted records"
        );
        // Every accepted message has its job on its own tenant's queue; a
        // second copy only of the key sent twice (replayed while its first
        // confirm was not yet recorded), and marked as one.
        let jobs = drain_jobs(&app, tenant).await;
        let on_queue: BTreeSet<String> = jobs.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(
            &on_queue, want,
            "each tenant's queue holds exactly its jobs"
        );
        let copies: Vec<&(String, bool)> = jobs.iter().filter(|(_, copy)| *copy).collect();
        assert_eq!(jobs.len(), want.len() + copies.len(), "{jobs:?}");
        assert!(copies.iter().all(|(id, _)| dup.contains(id)), "{copies:?}");
    }

    let metrics = herald_telemetry::render_metrics();
    let requests = metric(&metrics, "herald_producer_group_requests_sum").expect("sum");
    let groups = metric(&metrics, "herald_producer_group_requests_count").expect("count");
    assert_eq!(
        requests,
        1.0 + (answers.len() + unary.len()) as f64,
        "{metrics}"
    );
    assert!(
        groups < requests,
        "{requests} requests in {groups} groups: concurrent requests were grouped"
    );
    store.pool().close().await;
    app.stop().await;
}
