//! Tenant limits at enqueue against the real Redis, PostgreSQL and
//! RabbitMQ: a daily quota and a rate limit admit exactly what they allow,
//! across two producers, a request is refused whole with 429 and
//! Retry-After, a repeat of an accepted request is still answered, limits
//! change live through PATCH, and a day count Redis lost is counted again
//! from PostgreSQL.

use std::time::{Duration, Instant};

use futures::future::join_all;
use herald_api::TenantPatch;
use herald_testing::{wait_for, Isolation, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ADMIN: &str = "limits-test-admin";

fn email(n: usize) -> Value {
    json!({"channel": "email", "to": format!("u{n}@example.com"), "subject": "s", "text": "t"})
}

/// A plain answer: status, Retry-After (seconds) and body.
struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Value,
}

async fn post(app: &TestApp, key: &str, path: &str, body: &Value) -> Answer {
    let resp = app
        .http
        .post(format!("{}{path}", app.url))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    Answer {
        status,
        retry_after,
        body: resp.json().await.unwrap_or(Value::Null),
    }
}

async fn send(app: &TestApp, key: &str, n: usize) -> Answer {
    post(app, key, "/v1/messages", &email(n)).await
}

async fn batch(app: &TestApp, key: &str, from: usize, count: usize) -> Answer {
    let messages: Vec<Value> = (from..from + count).map(email).collect();
    post(
        app,
        key,
        "/v1/messages/batch",
        &json!({ "messages": messages }),
    )
    .await
}

/// A tenant with `patch` applied, and its key.
async fn tenant(app: &TestApp, patch: TenantPatch) -> (herald_api::Tenant, String) {
    let (t, key) = app
        .tenant_with_key(&herald_testing::unique("lim"))
        .await
        .expect("a tenant");
    let t = app.admin.update_tenant(t.id, &patch).await.expect("patch");
    (t, key)
}

fn quota(q: i64) -> TenantPatch {
    TenantPatch {
        daily_quota: Some(Some(q)),
        ..TenantPatch::default()
    }
}

fn rate(r: i64) -> TenantPatch {
    TenantPatch {
        rate_limit_per_sec: Some(Some(r)),
        ..TenantPatch::default()
    }
}

async fn recorded(app: &TestApp, tenant: &herald_api::Tenant) -> i64 {
    let pool = app.isolation.pool().await.expect("pool");
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM messages WHERE tenant_id = $1")
        .bind(tenant.id.as_uuid())
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

fn seconds_to_utc_midnight() -> u64 {
    let now = chrono::Utc::now().timestamp();
    (86_400 - now.rem_euclid(86_400)) as u64
}

fn assert_refused(a: &Answer, code: &str) {
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert_eq!(a.body["error"]["code"], code, "{}", a.body);
    assert!(
        a.retry_after.is_some_and(|s| s >= 1),
        "Retry-After: {:?}",
        a.retry_after
    );
}

#[tokio::test]
async fn a_daily_quota_admits_exactly_its_messages_and_refuses_whole_requests() {
    let app = TestApp::spawn("limits", ADMIN).await;
    let (t, key) = tenant(&app, quota(20)).await;
    assert_eq!(t.daily_quota, Some(20));

    // 25 single sends one after another: 20 accepted, then 429.
    let mut answers = Vec::new();
    for n in 0..25 {
        answers.push(send(&app, &key, n).await);
    }
    let accepted = answers
        .iter()
        .filter(|a| a.status == StatusCode::ACCEPTED)
        .count();
    assert_eq!(accepted, 20);
    for a in &answers[20..] {
        assert_refused(a, "quota_exceeded");
        let wait = a.retry_after.expect("Retry-After");
        let midnight = seconds_to_utc_midnight();
        assert!(
            wait.abs_diff(midnight) <= 2,
            "Retry-After {wait} s, midnight in {midnight} s"
        );
        let message = a.body["error"]["message"].as_str().expect("a message");
        assert!(
            message.contains("daily quota of 20") && message.contains("0 remain"),
            "{message}"
        );
    }
    // A batch is refused whole too.
    assert_refused(&batch(&app, &key, 100, 3).await, "quota_exceeded");
    assert_eq!(recorded(&app, &t).await, 20);

    // Raised live: 5 more fit; a batch of 7 does not, and says how many
    // remain; nothing of it is recorded.
    app.admin
        .update_tenant(t.id, &quota(25))
        .await
        .expect("patch");
    let a = batch(&app, &key, 200, 7).await;
    assert_refused(&a, "quota_exceeded");
    let message = a.body["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains("5 remain") && message.contains("7 new messages"),
        "{message}"
    );
    assert_eq!(recorded(&app, &t).await, 20);
    assert_eq!(batch(&app, &key, 300, 5).await.status, StatusCode::ACCEPTED);
    assert_eq!(recorded(&app, &t).await, 25);

    // Removed: unlimited again.
    let cleared = TenantPatch {
        daily_quota: Some(None),
        ..TenantPatch::default()
    };
    let t2 = app
        .admin
        .update_tenant(t.id, &cleared)
        .await
        .expect("patch");
    assert_eq!(t2.daily_quota, None);
    assert_eq!(
        batch(&app, &key, 400, 50).await.status,
        StatusCode::ACCEPTED
    );
    app.stop().await;
}

#[tokio::test]
async fn a_repeat_of_an_accepted_request_is_answered_even_when_the_quota_is_used_up() {
    let app = TestApp::spawn("limits", ADMIN).await;
    let (t, key) = tenant(&app, quota(2)).await;
    let keyed = |n: usize| {
        let mut m = email(n);
        m["idempotency_key"] = json!(format!("k{n}"));
        m
    };
    let first = post(&app, &key, "/v1/messages", &keyed(1)).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(
        post(&app, &key, "/v1/messages", &keyed(2)).await.status,
        StatusCode::ACCEPTED
    );
    assert_refused(
        &post(&app, &key, "/v1/messages", &keyed(3)).await,
        "quota_exceeded",
    );
    // The client retries the first request (its answer was lost): the
    // first answer again, not a refusal, and it is not counted twice.
    let again = post(&app, &key, "/v1/messages", &keyed(1)).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.body);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(recorded(&app, &t).await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_rate_limit_admits_a_burst_then_its_rate_and_refuses_oversized_batches() {
    let app = TestApp::spawn("limits", ADMIN).await;
    let (t, key) = tenant(&app, rate(5)).await;

    // 60 at once (as measured before the limit existed: all 60 accepted).
    let began = Instant::now();
    let answers = join_all((0..60).map(|n| send(&app, &key, n))).await;
    let elapsed = began.elapsed().as_secs_f64();
    let accepted = answers
        .iter()
        .filter(|a| a.status == StatusCode::ACCEPTED)
        .count();
    // The burst of 5, plus 5 a second while the 60 were answered.
    let most = 5 + (elapsed * 5.0).ceil() as usize;
    assert!(
        (5..=most).contains(&accepted),
        "{accepted} accepted in {elapsed:.2} s"
    );
    for a in answers.iter().filter(|a| a.status != StatusCode::ACCEPTED) {
        assert_refused(a, "rate_limited");
        assert_eq!(a.retry_after, Some(1), "{}", a.body);
    }

    // More than the limit admits at once: 422 on `messages`, never 429.
    let a = batch(&app, &key, 100, 6).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(a.body["error"]["field"], "messages");

    // A second later the bucket has refilled: a batch of 5 goes whole.
    let recorded_before = recorded(&app, &t).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(batch(&app, &key, 200, 5).await.status, StatusCode::ACCEPTED);
    assert_eq!(recorded(&app, &t).await, recorded_before + 5);

    // Lifted live: 60 at once all go.
    let lifted = TenantPatch {
        rate_limit_per_sec: Some(None),
        ..TenantPatch::default()
    };
    app.admin.update_tenant(t.id, &lifted).await.expect("patch");
    let answers = join_all((300..360).map(|n| send(&app, &key, n))).await;
    assert!(answers.iter().all(|a| a.status == StatusCode::ACCEPTED));
    app.stop().await;
}

#[tokio::test]
async fn two_producers_keep_one_quota_and_hear_each_others_changes() {
    let isolation = Isolation::new("limits");
    let one = TestApp::start(isolation.clone(), ADMIN)
        .await
        .expect("producer 1");
    let two = TestApp::start(isolation.clone(), ADMIN)
        .await
        .expect("producer 2");
    let (t, key) = tenant(&one, quota(37)).await;

    // 100 concurrent sends, half to each producer.
    let answers = join_all((0..100).map(|n| {
        let app = if n % 2 == 0 { &one } else { &two };
        let key = key.clone();
        async move { send(app, &key, n).await }
    }))
    .await;
    let accepted = answers
        .iter()
        .filter(|a| a.status == StatusCode::ACCEPTED)
        .count();
    assert_eq!(accepted, 37);
    assert_eq!(recorded(&one, &t).await, 37);
    for a in answers.iter().filter(|a| a.status != StatusCode::ACCEPTED) {
        assert_refused(a, "quota_exceeded");
    }

    // Raised through producer 1: producer 2 (whose key cache holds the old
    // quota) applies it at once, without waiting for the cache to expire.
    one.admin
        .update_tenant(t.id, &quota(40))
        .await
        .expect("patch");
    let accepted_on_two = wait_for(Duration::from_secs(3), || async {
        send(&two, &key, 1000).await.status == StatusCode::ACCEPTED
    })
    .await;
    assert!(
        accepted_on_two,
        "producer 2 still refuses after the quota was raised"
    );

    let mut two = two;
    two.shutdown().await.expect("producer 2 stops");
    one.stop().await;
}

#[tokio::test]
async fn a_day_count_redis_lost_is_counted_again_from_the_records() {
    let app = TestApp::spawn("limits", ADMIN).await;
    let (t, key) = tenant(&app, quota(20)).await;
    assert_eq!(batch(&app, &key, 0, 15).await.status, StatusCode::ACCEPTED);

    // Redis forgets the tenant's count (a restart without persistence).
    let client = redis::Client::open(
        std::env::var("HERALD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    )
    .expect("redis");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let day_key = format!("{}:tl:{{{}}}:day", app.isolation.namespace, t.id);
    let deleted: i64 = redis::cmd("DEL")
        .arg(&day_key)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    assert_eq!(deleted, 1, "{day_key} held the count");

    // 10 single sends: the 15 recorded today still count, so 5 go.
    let mut accepted = 0;
    for n in 100..110 {
        if send(&app, &key, n).await.status == StatusCode::ACCEPTED {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 5);
    assert_eq!(recorded(&app, &t).await, 20);
    app.stop().await;
}

#[tokio::test]
async fn grpc_sends_are_refused_with_resource_exhausted_and_the_api_code() {
    let app = TestApp::spawn("limits", ADMIN).await;
    let (_, key) = tenant(&app, quota(1)).await;
    let mut client = herald_proto::grpc::connect(&app.grpc_url, &key)
        .await
        .expect("grpc");
    let request = |n: usize| herald_proto::v1::SendRequest {
        channel: herald_proto::v1::Channel::Email as i32,
        to: format!("u{n}@example.com"),
        subject: "s".into(),
        text: "t".into(),
        ..Default::default()
    };
    client.send(request(1)).await.expect("the first fits");
    let status = client.send(request(2)).await.expect_err("over the quota");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    let detail = herald_proto::grpc::error_detail(&status).expect("a detail");
    assert_eq!(detail.code, "quota_exceeded");
    assert!(detail.retry_after >= 1, "{detail:?}");
    app.stop().await;
}
