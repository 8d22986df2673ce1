//! The producer's HTTP contract against the real PostgreSQL and RabbitMQ:
//! every bad input gets the error shape of docs/API.md, never a 5xx.

use std::collections::BTreeSet;

use herald_testing::TestApp;
use reqwest::StatusCode;
use serde_json::{json, Value};

const ADMIN: &str = "api-test-admin";

async fn spawn_app() -> TestApp {
    TestApp::spawn("api", ADMIN).await
}

/// Raw calls: these tests check the wire's error bodies, so they read
/// JSON, not the typed client's answers.
trait Raw {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value);

    async fn tenant_key(&self) -> String;
}

impl Raw for TestApp {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn tenant_key(&self) -> String {
        let (_, key) = self
            .tenant_with_key(&herald_testing::unique("t"))
            .await
            .expect("a tenant and its key");
        key
    }
}

fn email(i: usize) -> Value {
    json!({"channel": "email", "to": format!("u{i}@example.com"), "subject": "s", "text": "t"})
}

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn bad_requests_get_the_error_shape_with_the_right_status() {
    let app = spawn_app().await;
    let key = app.tenant_key().await;
    let post = reqwest::Method::POST;

    let (s, b) = app
        .call(post.clone(), "/v1/messages", None, Some(email(0)))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_error(&b, "unauthorized");

    let (s, b) = app
        .call(
            post.clone(),
            "/v1/messages",
            Some("hk_wrong"),
            Some(email(0)),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_error(&b, "unauthorized");

    let resp = app
        .http
        .post(format!("{}/v1/messages", app.url))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_error(&resp.json().await.expect("json"), "invalid_json");

    let resp = app
        .http
        .post(format!("{}/v1/messages", app.url))
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error(&resp.json().await.expect("json"), "unsupported_media_type");

    let (s, b) = app
        .call(
            post.clone(),
            "/v1/messages",
            Some(&key),
            Some(json!({"channel": "email", "to": "nope", "subject": "s", "text": "t"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&b, "invalid_field");
    assert_eq!(b["error"]["field"], "to");

    let big = "x".repeat(1024 * 1024 + 10);
    let (s, b) = app
        .call(
            post.clone(),
            "/v1/messages",
            Some(&key),
            Some(json!({"channel": "wework", "to": "u", "text": big})),
        )
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&b, "payload_too_large");

    let (s, b) = app
        .call(reqwest::Method::GET, "/v1/nowhere", Some(&key), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&b, "not_found");

    let (s, b) = app
        .call(
            reqwest::Method::DELETE,
            "/v1/messages/batch",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&b, "method_not_allowed");

    let (s, b) = app
        .call(
            reqwest::Method::GET,
            "/v1/messages/not-a-uuid",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&b, "not_found");

    let (s, b) = app
        .call(
            reqwest::Method::GET,
            "/v1/admin/tenants",
            Some("wrong"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_error(&b, "unauthorized");
    app.stop().await;
}

#[tokio::test]
async fn one_bad_item_rejects_the_whole_batch_naming_its_index() {
    let app = spawn_app().await;
    let key = app.tenant_key().await;
    let mut items: Vec<Value> = (0..10).map(email).collect();
    items[7] = json!({"channel": "email", "to": "x@example.com", "subject": "s", "text": "t", "priority": 42});
    let (s, b) = app
        .call(
            reqwest::Method::POST,
            "/v1/messages/batch",
            Some(&key),
            Some(json!({"messages": items})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["index"], 7, "{b}");
    assert_eq!(b["error"]["field"], "priority");
    let (_, list) = app
        .call(reqwest::Method::GET, "/v1/messages", Some(&key), None)
        .await;
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(0),
        "nothing of a rejected batch is recorded"
    );

    let too_many: Vec<Value> = (0..1001).map(email).collect();
    let (s, b) = app
        .call(
            reqwest::Method::POST,
            "/v1/messages/batch",
            Some(&key),
            Some(json!({"messages": too_many})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["field"], "messages");
    app.stop().await;
}

#[tokio::test]
async fn a_tenant_cannot_read_another_tenants_message_and_lists_page_by_cursor() {
    let app = spawn_app().await;
    let (a, b) = (app.tenant_key().await, app.tenant_key().await);
    let items: Vec<Value> = (0..5).map(email).collect();
    let (s, r) = app
        .call(
            reqwest::Method::POST,
            "/v1/messages/batch",
            Some(&a),
            Some(json!({"messages": items})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let ids: Vec<String> = r["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids.len(), 5);

    let (s, mine) = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/messages/{}", ids[0]),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(mine["status"], "queued");
    assert_eq!(mine["to"], "u0@example.com");
    let (s, _) = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/messages/{}", ids[0]),
            Some(&b),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (_, p1) = app
        .call(reqwest::Method::GET, "/v1/messages?limit=3", Some(&a), None)
        .await;
    assert_eq!(p1["items"].as_array().map(Vec::len), Some(3));
    let cursor = p1["next_cursor"].as_str().expect("a next page").to_owned();
    let (_, p2) = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/messages?limit=3&cursor={cursor}"),
            Some(&a),
            None,
        )
        .await;
    assert_eq!(p2["items"].as_array().map(Vec::len), Some(2));
    assert!(p2["next_cursor"].is_null());
    let (s, e) = app
        .call(
            reqwest::Method::GET,
            "/v1/messages?status=lost",
            Some(&a),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["field"], "status");
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_response_and_refuses_a_different_body() {
    let app = spawn_app().await;
    let key = app.tenant_key().await;
    let mut body = email(1);
    body["idempotency_key"] = json!("order-42");
    let (s1, r1) = app
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&key),
            Some(body.clone()),
        )
        .await;
    let (s2, r2) = app
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&key),
            Some(body.clone()),
        )
        .await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(r1, r2);
    body["subject"] = json!("another");
    let (s3, r3) = app
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&key),
            Some(body),
        )
        .await;
    assert_eq!(s3, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&r3, "idempotency_conflict");
    let (_, list) = app
        .call(reqwest::Method::GET, "/v1/messages", Some(&key), None)
        .await;
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(1),
        "one message for one key"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_scheduled_message_can_be_cancelled_once() {
    let app = spawn_app().await;
    let key = app.tenant_key().await;
    let at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (s, r) = app
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&key),
            Some(json!({"channel": "wework", "to": "u1", "text": "x", "scheduled_at": at})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(r["status"], "scheduled");
    let id = r["id"].as_str().expect("id");
    let (s, c) = app
        .call(
            reqwest::Method::POST,
            &format!("/v1/messages/{id}/cancel"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "cancelled");
    let (s, c) = app
        .call(
            reqwest::Method::POST,
            &format!("/v1/messages/{id}/cancel"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&c, "conflict");
    app.stop().await;
}

#[tokio::test]
async fn provider_configs_are_validated_and_secrets_never_shown() {
    let app = spawn_app().await;
    let post = reqwest::Method::POST;
    let (s, b) = app
        .call(post.clone(), "/v1/admin/providers", Some(ADMIN), Some(json!({"name": "x", "kind": "smtp", "config": {"host": "h", "port": 25, "tls": "ssl"}})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["field"], "config.tls", "{b}");
    let (s, b) = app
        .call(
            post,
            "/v1/admin/providers",
            Some(ADMIN),
            Some(json!({"name": "ww", "kind": "wework", "config": {"corp_id": "c", "corp_secret": "very-secret", "agent_id": 1}, "quota": {"per_minute": 10}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["config"]["corp_secret"], "***");
    assert_eq!(b["channel"], "wework");
    let id = b["id"].as_str().expect("id");
    let (s, b) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/admin/providers/{id}"),
            Some(ADMIN),
            Some(json!({"quota": {"per_minute": 0}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["field"], "quota.per_minute");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_score_is_explained_from_its_live_state() {
    let app = spawn_app().await;
    let (s, b) = app
        .call(
            reqwest::Method::POST,
            "/v1/admin/providers",
            Some(ADMIN),
            Some(json!({"name": "scored", "kind": "wework", "config": {"corp_id": "c", "corp_secret": "s", "agent_id": 1}, "quota": {"per_minute": 10}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id: uuid::Uuid = b["id"].as_str().expect("id").parse().expect("uuid");

    // Four of ten used this minute, as a scheduler would reserve them.
    let capacity = herald_capacity::Capacity::connect(
        &app.isolation.settings().redis_url,
        &app.isolation.namespace,
    )
    .await
    .expect("redis");
    let limits = herald_scoring::limits_for(
        &serde_json::from_value(json!({"per_minute": 10})).expect("quota"),
        herald_domain::Channel::Wework,
    );
    for _ in 0..4 {
        let r = capacity
            .reserve(id, &limits, 1, &["u".into()])
            .await
            .expect("reserve");
        assert!(
            matches!(r, herald_capacity::Reservation::Granted { .. }),
            "{r:?}"
        );
    }
    let path = format!("/v1/admin/providers/{id}/score");
    let (s, b) = app
        .call(reqwest::Method::GET, &path, Some(ADMIN), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["state"], "ready", "{b}");
    assert_eq!(b["eligible"], true);
    let quota = b["parts"]["quota"].as_f64().expect("quota part");
    assert!((quota - 0.6).abs() < 1e-9, "six of ten left: {b}");
    let minute = b["load"]["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .find(|w| w["window_secs"] == 60)
        .cloned()
        .expect("a minute window");
    assert_eq!(minute["used"], 4);
    assert_eq!(minute["limit"], 10);
    let total = b["total"].as_f64().expect("total");
    assert!(total > 0.0 && total <= 1.0, "{b}");

    // Failures open the circuit: the explanation says so.
    let failures = herald_capacity::Observation {
        failures: 10,
        latency_ms_sum: 1_000,
        latency_count: 10,
        ..Default::default()
    };
    capacity
        .observe(id, &failures, &herald_capacity::HealthPolicy::default())
        .await
        .expect("observe");
    let (_, b) = app
        .call(reqwest::Method::GET, &path, Some(ADMIN), None)
        .await;
    assert_eq!(b["state"], "circuit_open", "{b}");
    assert_eq!(b["eligible"], false);
    assert!(
        b["parts"]["success"].as_f64().expect("success") < 1.0,
        "{b}"
    );

    let (s, b) = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/admin/providers/{}/score", uuid::Uuid::new_v4()),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, _) = app.call(reqwest::Method::GET, &path, None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_replayed_by_filter_and_the_rest_kept() {
    use herald_domain::{MessageId, MessageStatus, TenantId};
    use herald_proto::Message as _;
    let app = spawn_app().await;
    let post = reqwest::Method::POST;
    let mut tenants = Vec::new();
    for code in ["dla", "dlb"] {
        let (s, t) = app
            .call(
                post.clone(),
                "/v1/admin/tenants",
                Some(ADMIN),
                Some(json!({"code": code, "name": code})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        tenants.push(TenantId(
            t["id"].as_str().expect("id").parse().expect("uuid"),
        ));
    }
    let (a, b) = (tenants[0], tenants[1]);
    let store = app.isolation.store(2).await;
    let provider = uuid::Uuid::new_v4();
    // Three dead jobs: two of tenant A (different reasons), one of B.
    let mut jobs = Vec::new();
    for (tenant, code, status) in [
        (a, "smtp_rejected", MessageStatus::Failed),
        (a, "in_doubt", MessageStatus::InDoubt),
        (b, "smtp_rejected", MessageStatus::Sent),
    ] {
        let id = MessageId::new();
        store
            .insert_messages(
                tenant,
                &[herald_store::NewRecord {
                    id,
                    status,
                    ..herald_testing::fixtures::queued("email", "x@example.com")
                }],
            )
            .await
            .expect("record");
        let job = herald_proto::v1::Job {
            message_id: id.to_string(),
            tenant_id: tenant.to_string(),
            channel: herald_proto::v1::Channel::Email as i32,
            recipients: vec!["x@example.com".into()],
            attempt: 4,
            assignment: Some(herald_proto::v1::Assignment {
                provider_id: provider.to_string(),
                reserved_at_ms: 1,
                cost: 1,
            }),
            ..Default::default()
        };
        jobs.push((id, code, job));
    }
    let amqp = app.isolation.settings().amqp_url;
    let broker = herald_broker::connect(&amqp, "replay-test", std::time::Duration::from_secs(5))
        .await
        .expect("broker");
    let publisher = herald_broker::Publisher::new(&broker)
        .await
        .expect("publisher");
    let topology = app.isolation.topology();
    let mut out: Vec<herald_broker::Outbound> = jobs
        .iter()
        .map(|(_, code, job)| topology.dead_letter(job.encode_to_vec(), code, "because"))
        .collect();
    out.push(topology.dead_letter(b"not a job".to_vec(), "undecodable", "garbage"));
    publisher.publish_all(&out).await.expect("publish");

    // Bad filters are refused, naming the field.
    for (body, field) in [
        (json!({"tenant_id": "x"}), "tenant_id"),
        (json!({"limit": 0}), "limit"),
        (json!({"queue": "all"}), "queue"),
    ] {
        let (s, b) = app
            .call(
                post.clone(),
                "/v1/admin/dead-letters/replay",
                Some(ADMIN),
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["error"]["field"], field, "{b}");
    }

    let replay = |body: Value| {
        let app = &app;
        let post = post.clone();
        async move {
            let (s, b) = app
                .call(
                    post,
                    "/v1/admin/dead-letters/replay",
                    Some(ADMIN),
                    Some(body),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
            (
                b["scanned"].as_u64(),
                b["replayed"].as_u64(),
                b["kept"].as_u64(),
            )
        }
    };
    let status = |id: MessageId| {
        let store = &store;
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM messages WHERE id = $1")
                .bind(id.0)
                .fetch_one(store.pool())
                .await
                .expect("status")
        }
    };
    // Tenant A's rejected one only.
    assert_eq!(
        replay(json!({"tenant_id": a.to_string(), "reason": "smtp_rejected"})).await,
        (Some(4), Some(1), Some(3))
    );
    assert_eq!(status(jobs[0].0).await, "queued");
    assert_eq!(status(jobs[1].0).await, "in_doubt");
    // By provider: A's in-doubt one; B's was sent, so it stays a dead letter.
    assert_eq!(
        replay(json!({"provider_id": provider.to_string()})).await,
        (Some(3), Some(1), Some(2))
    );
    assert_eq!(status(jobs[1].0).await, "queued");
    assert_eq!(status(jobs[2].0).await, "sent");

    // The two replayed jobs wait in the return queue, attempts reset and no
    // provider assigned; the other two are still dead letters.
    let ch = broker.channel().await.expect("channel");
    let mut replayed = Vec::new();
    while let Some(m) = ch
        .basic_get(
            topology.return_queue().into(),
            herald_broker::lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .expect("get")
    {
        replayed.push(herald_proto::v1::Job::decode(m.delivery.data.as_slice()).expect("a job"));
    }
    let ids: Vec<String> = replayed.iter().map(|j| j.message_id.clone()).collect();
    assert_eq!(ids, vec![jobs[0].0.to_string(), jobs[1].0.to_string()]);
    assert!(replayed
        .iter()
        .all(|j| j.attempt == 0 && j.assignment.is_none()));
    let dead = ch
        .queue_declare(
            topology.dead_letter_queue().into(),
            herald_broker::lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            herald_broker::lapin::types::FieldTable::default(),
        )
        .await
        .expect("dlq")
        .message_count();
    assert_eq!(dead, 2);
    let _ = ch.close(200, "done".into()).await;
    broker.close().await;
    store.pool().close().await;
    app.stop().await;
}

// ---- /openapi.json ----

/// Every route the producer serves (method, path). A route added to the
/// router without its documentation, or documented without being served,
/// fails `the_document_covers_every_route`.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/v1/messages"),
    ("get", "/v1/messages"),
    ("post", "/v1/messages/batch"),
    ("get", "/v1/messages/{id}"),
    ("post", "/v1/messages/{id}/cancel"),
    ("post", "/v1/templates"),
    ("get", "/v1/templates"),
    ("get", "/v1/templates/{id}"),
    ("put", "/v1/templates/{id}"),
    ("delete", "/v1/templates/{id}"),
    ("get", "/v1/suppressions"),
    ("post", "/v1/suppressions"),
    ("delete", "/v1/suppressions/{address}"),
    ("get", "/v1/webhooks"),
    ("post", "/v1/webhooks/secret"),
    ("get", "/v1/webhooks/deliveries"),
    ("get", "/v1/webhooks/deliveries/{id}"),
    ("post", "/v1/webhooks/deliveries/{id}/resend"),
    ("get", "/t/o/{token}"),
    ("get", "/t/c/{token}"),
    ("get", "/u/{token}"),
    ("post", "/u/{token}"),
    ("post", "/v1/callbacks/{provider_id}"),
    ("get", "/v1/callbacks/wework/{provider_id}"),
    ("post", "/v1/callbacks/wework/{provider_id}"),
    ("post", "/v1/admin/tenants"),
    ("get", "/v1/admin/tenants"),
    ("get", "/v1/admin/tenants/{id}"),
    ("patch", "/v1/admin/tenants/{id}"),
    ("post", "/v1/admin/tenants/{id}/disable"),
    ("post", "/v1/admin/tenants/{id}/enable"),
    ("post", "/v1/admin/tenants/{id}/keys"),
    ("post", "/v1/admin/tenants/{id}/webhook-secret"),
    ("get", "/v1/admin/tenants/{id}/suppressions"),
    ("post", "/v1/admin/tenants/{id}/suppressions"),
    ("delete", "/v1/admin/tenants/{id}/suppressions/{address}"),
    ("delete", "/v1/admin/tenants/{id}/keys/{key_id}"),
    ("post", "/v1/admin/providers"),
    ("get", "/v1/admin/providers"),
    ("get", "/v1/admin/providers/{id}"),
    ("patch", "/v1/admin/providers/{id}"),
    ("delete", "/v1/admin/providers/{id}"),
    ("get", "/v1/admin/providers/{id}/score"),
    ("get", "/v1/admin/messages/{id}"),
    ("get", "/v1/admin/queues"),
    ("post", "/v1/admin/dead-letters/replay"),
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

/// Every `$ref` in `value` names an existing component.
fn check_refs(value: &Value, doc: &Value, at: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let pointer = r
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("{at}: $ref {r} is not local to the document"));
                assert!(
                    doc.pointer(pointer).is_some(),
                    "{at}: $ref {r} names nothing"
                );
            }
            for (k, v) in map {
                check_refs(v, doc, &format!("{at}/{k}"));
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_refs(v, doc, &format!("{at}/{i}"));
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_covers_every_route() {
    let app = spawn_app().await;
    let http = app.http.clone();
    let response = http
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("body");

    // Valid: it parses as OpenAPI 3.1 and every reference resolves.
    let spec = oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    let doc: Value = serde_json::from_str(&text).expect("json");
    check_refs(&doc, &doc, "#");

    // Every operation has an id, a summary and a documented error shape.
    let mut documented = BTreeSet::new();
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for method in METHODS {
            let Some(op) = item.get(*method) else {
                continue;
            };
            documented.insert((method.to_string(), path.clone()));
            assert!(
                op["operationId"].is_string(),
                "{method} {path} has no operationId"
            );
            assert!(op["summary"].is_string(), "{method} {path} has no summary");
            // Provider callbacks are authenticated by the provider's own
            // signature, not a bearer token.
            let scheme = if path.starts_with("/v1/admin/") {
                Some("admin_token")
            } else if path.starts_with("/v1/callbacks/") {
                assert!(
                    op.get("security").is_none(),
                    "{method} {path} takes no bearer token"
                );
                assert!(
                    op["responses"].get("401").is_some(),
                    "{method} {path} documents its signature refusal"
                );
                None
            } else if path.starts_with("/v1/") {
                Some("api_key")
            } else {
                None
            };
            if let Some(scheme) = scheme {
                assert!(
                    op["security"][0].get(scheme).is_some(),
                    "{method} {path} does not require {scheme}: {}",
                    op["security"]
                );
                for status in ["401", "403"] {
                    let schema = &op["responses"][status]["content"]["application/json"]["schema"];
                    assert_eq!(
                        schema["$ref"], "#/components/schemas/ErrorBody",
                        "{method} {path}: {status} must be documented with the error body"
                    );
                }
            }
            if path.starts_with("/v1/") {
                let responses = op["responses"].as_object().expect("responses");
                assert!(
                    responses.keys().any(|k| k.starts_with('4')),
                    "{method} {path} documents no error"
                );
            }
        }
    }
    for scheme in ["api_key", "admin_token"] {
        assert_eq!(
            doc["components"]["securitySchemes"][scheme]["scheme"], "bearer",
            "{scheme}"
        );
    }
    assert_eq!(
        doc["paths"]["/v1/messages"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/SendMessage"
    );
    let send = &doc["components"]["schemas"]["SendMessage"];
    assert_eq!(
        send["required"],
        serde_json::json!(["channel", "to"]),
        "{send}"
    );
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, expected,
        "documented routes differ from the routes the producer serves"
    );

    // Served: each documented route answers something other than the
    // router's "no such endpoint" or "method not allowed".
    let id = uuid::Uuid::new_v4().to_string();
    for (method, path) in &documented {
        let url = format!(
            "{}{}",
            app.url,
            path.replace("{id}", &id)
                .replace("{key_id}", &id)
                .replace("{provider_id}", &id)
                .replace("{address}", "a@example.com")
        );
        let method: reqwest::Method = method.to_uppercase().parse().expect("method");
        let response = http
            .request(method.clone(), &url)
            .send()
            .await
            .expect("request");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is documented but not served"
        );
        assert!(
            !(status == StatusCode::NOT_FOUND && body["error"]["message"] == "no such endpoint"),
            "{method} {path} is documented but not served"
        );
    }
    app.stop().await;
}
