//! `/v1/templates` and templates at enqueue, against the real PostgreSQL
//! and RabbitMQ: every refusal names its field (a syntax error its line, a
//! missing variable its name), versions are kept and readable, and another
//! tenant's template is absent on every route.

use herald_testing::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ADMIN: &str = "templates-test-admin";

struct Caller<'a> {
    app: &'a TestApp,
    key: String,
}

impl Caller<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .app
            .http
            .request(method, format!("{}{path}", self.app.url))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
}

async fn caller(app: &TestApp) -> Caller<'_> {
    let (_, key) = app
        .tenant_with_key(&herald_testing::unique("tpl"))
        .await
        .expect("a tenant and its key");
    Caller { app, key }
}

/// The refusal's field, index and message.
fn refusal(body: &Value) -> (Option<&str>, Option<u64>, &str) {
    let e = &body["error"];
    (
        e["field"].as_str(),
        e["index"].as_u64(),
        e["message"].as_str().unwrap_or_default(),
    )
}

fn welcome() -> Value {
    json!({
        "name": "welcome",
        "channel": "email",
        "subject": "Hello {{ first_name }}",
        "text": "Hi {{ first_name }},{% if coupon %} use {{ coupon }}.{% endif %}",
        "html": "<p>Hi {{ first_name }}</p>",
    })
}

#[tokio::test]
async fn templates_are_checked_versioned_and_read_back() {
    let app = TestApp::spawn("tpl-crud", ADMIN).await;
    let t = caller(&app).await;

    let (status, created) = t.post("/v1/templates", welcome()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["version"], 1);
    assert_eq!(created["variables"], json!(["coupon", "first_name"]));
    let id = created["id"].as_str().expect("an id").to_owned();

    // Each bad template names its part; a syntax error its line.
    for (body, field, says) in [
        (
            json!({"name": "bad", "channel": "email", "subject": "s", "html": "<p>\n{% for x in y %}\n</p>"}),
            "html",
            "line",
        ),
        (
            json!({"name": "bad", "channel": "email", "text": "no subject"}),
            "subject",
            "required",
        ),
        (
            json!({"name": "bad", "channel": "wework", "text": "a", "markdown": "b"}),
            "text",
            "exactly one",
        ),
        (
            json!({"name": "bad", "channel": "webhook", "textcard": {"title": "t", "description": "d", "url": "u"}}),
            "textcard",
            "webhook",
        ),
        (
            json!({"name": "", "channel": "email", "subject": "s", "text": "t"}),
            "name",
            "characters",
        ),
    ] {
        let (status, answer) = t.post("/v1/templates", body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} → {answer}"
        );
        let (f, _, message) = refusal(&answer);
        assert_eq!(f, Some(field), "{body} → {answer}");
        assert!(message.contains(says), "{body} → {answer}");
    }
    let (status, answer) = t.post("/v1/templates", welcome()).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a second template named welcome: {answer}"
    );

    // A PUT writes version 2; version 1 stays readable.
    let (status, v2) = t
        .call(
            Method::PUT,
            &format!("/v1/templates/{id}"),
            Some(json!({"channel": "email", "subject": "Welcome back {{ first_name }}", "text": "Hi again"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v2}");
    assert_eq!(
        (v2["version"].as_u64(), v2["current_version"].as_u64()),
        (Some(2), Some(2))
    );
    let (_, v1) = t
        .call(Method::GET, &format!("/v1/templates/{id}?version=1"), None)
        .await;
    assert_eq!(v1["subject"], "Hello {{ first_name }}");
    assert_eq!(
        (v1["version"].as_u64(), v1["current_version"].as_u64()),
        (Some(1), Some(2))
    );
    let (status, _) = t
        .call(Method::GET, &format!("/v1/templates/{id}?version=9"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = t
        .call(Method::GET, &format!("/v1/templates/{id}?version=x"), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refusal(&answer).0, Some("version"));
    let (status, answer) = t
        .call(
            Method::PUT,
            &format!("/v1/templates/{id}"),
            Some(json!({"channel": "email", "subject": "s", "markdown": "WeWork only"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(refusal(&answer).0, Some("markdown"));

    let (_, list) = t.call(Method::GET, "/v1/templates", None).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["items"][0]["version"], 2);

    // Another tenant sees none of it.
    let other = caller(&app).await;
    for (method, body) in [
        (Method::GET, None),
        (
            Method::PUT,
            Some(json!({"channel": "email", "subject": "x", "text": "y"})),
        ),
        (Method::DELETE, None),
    ] {
        let (status, answer) = other
            .call(method.clone(), &format!("/v1/templates/{id}"), body)
            .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{method} by another tenant: {answer}"
        );
    }
    let (_, list) = other.call(Method::GET, "/v1/templates", None).await;
    assert_eq!(list["items"], json!([]));
    let (status, answer) = other
        .post(
            "/v1/messages",
            json!({"channel": "email", "to": "a@example.com", "template_id": id,
                   "variables": {"first_name": "A"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(refusal(&answer).0, Some("template_id"));

    // Deleted: gone for reads and new messages.
    let (status, _) = t
        .call(Method::DELETE, &format!("/v1/templates/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = t
        .call(Method::GET, &format!("/v1/templates/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = t
        .call(Method::DELETE, &format!("/v1/templates/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn a_message_that_cannot_render_is_refused_at_enqueue() {
    let app = TestApp::spawn("tpl-send", ADMIN).await;
    let t = caller(&app).await;
    let (_, created) = t.post("/v1/templates", welcome()).await;
    let id = created["id"].as_str().expect("an id").to_owned();
    let (_, card) = t
        .post(
            "/v1/templates",
            json!({"name": "card", "channel": "wework",
                   "textcard": {"title": "Order {{ n }}", "description": "shipped", "url": "{{ link }}"}}),
        )
        .await;
    let card = card["id"].as_str().expect("an id").to_owned();
    let send = |body: Value| t.post("/v1/messages", body);

    // Accepted: the printed variable given, the tested one absent.
    let (status, answer) = send(json!({"channel": "email", "to": "a@example.com",
        "template_id": id, "variables": {"first_name": "Ada"}}))
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    for (body, field, says) in [
        (
            json!({"channel": "email", "to": "a@example.com", "template_id": id, "variables": {"coupon": "X"}}),
            "variables",
            "\"first_name\"",
        ),
        (
            json!({"channel": "email", "to": "a@example.com", "template_id": id, "template_version": 2,
                   "variables": {"first_name": "A"}}),
            "template_version",
            "1 to 1",
        ),
        (
            json!({"channel": "wework", "to": "u1", "template_id": id, "variables": {"first_name": "A"}}),
            "template_id",
            "email template",
        ),
        (
            json!({"channel": "email", "to": "a@example.com", "template_id": id, "subject": "s",
                   "variables": {"first_name": "A"}}),
            "subject",
            "template",
        ),
        (
            json!({"channel": "email", "to": "a@example.com", "subject": "s", "text": "t", "template_version": 1}),
            "template_version",
            "template_id",
        ),
        (
            json!({"channel": "email", "to": "a@example.com", "template_id": "welcome"}),
            "template_id",
            "not a template id",
        ),
        (
            json!({"channel": "email", "to": "a@example.com", "template_id": uuid::Uuid::now_v7(),
                   "variables": {"first_name": "A"}}),
            "template_id",
            "no template",
        ),
        (
            json!({"channel": "wework", "to": "u1", "template_id": card,
                   "variables": {"n": "7", "link": "javascript:alert(1)"}}),
            "variables",
            "textcard.url",
        ),
        (
            json!({"channel": "email", "to": "a@example.com", "template_id": id,
                   "variables": {"first_name": "A\r\nBcc: x@example.com"}}),
            "variables",
            "line break",
        ),
    ] {
        let (status, answer) = send(body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} → {answer}"
        );
        let (f, index, message) = refusal(&answer);
        assert_eq!(f, Some(field), "{body} → {answer}");
        assert_eq!(
            index, None,
            "a single message's refusal has no index: {answer}"
        );
        assert!(message.contains(says), "{body} → {answer}");
    }

    // In a batch, the item that cannot render is named and nothing is sent.
    let (status, answer) = t
        .post(
            "/v1/messages/batch",
            json!({"messages": [
                {"channel": "email", "to": "a@example.com", "template_id": id, "variables": {"first_name": "A"}},
                {"channel": "email", "to": "b@example.com", "template_id": id, "variables": {}},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(refusal(&answer).0, Some("variables"));
    assert_eq!(refusal(&answer).1, Some(1));
    let (_, listed) = t.call(Method::GET, "/v1/messages", None).await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "only the first single send was recorded: {listed}"
    );
    app.stop().await;
}

#[tokio::test]
async fn grpc_sends_pin_templates_and_name_a_missing_variable() {
    let app = TestApp::spawn("tpl-grpc", ADMIN).await;
    let t = caller(&app).await;
    let (_, created) = t.post("/v1/templates", welcome()).await;
    let id = created["id"].as_str().expect("an id").to_owned();
    let mut client = herald_proto::grpc::connect(&app.grpc_url, &t.key)
        .await
        .expect("grpc");
    let request = |variables: &[(&str, &str)], version: u32| herald_proto::v1::SendRequest {
        channel: herald_proto::v1::Channel::Email as i32,
        to: "a@example.com".into(),
        template_id: id.clone(),
        template_version: version,
        variables: variables
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    };
    client
        .send(request(&[("first_name", "Ada")], 0))
        .await
        .expect("the current version");
    client
        .send(request(&[("first_name", "Ada")], 1))
        .await
        .expect("version 1, pinned by the caller");
    let status = client
        .send(request(&[], 0))
        .await
        .expect_err("a missing variable");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let detail = herald_proto::grpc::error_detail(&status).expect("a detail");
    assert_eq!(detail.field, "variables");
    assert!(detail.message.contains("first_name"), "{detail:?}");
    let status = client
        .send(request(&[("first_name", "Ada")], 2))
        .await
        .expect_err("no version 2");
    assert_eq!(
        herald_proto::grpc::error_detail(&status).map(|d| d.field),
        Some("template_version".to_owned())
    );
    app.stop().await;
}

#[tokio::test]
async fn a_new_version_is_pinned_at_once_here_and_soon_on_another_producer() {
    let isolation = herald_testing::Isolation::new("tpl-two");
    let one = TestApp::start(isolation.clone(), ADMIN)
        .await
        .expect("producer 1");
    let two = TestApp::start(isolation.clone(), ADMIN)
        .await
        .expect("producer 2");
    let a = caller(&one).await;
    let b = Caller {
        app: &two,
        key: a.key.clone(),
    };
    let (_, created) = a.post("/v1/templates", welcome()).await;
    let id = created["id"].as_str().expect("an id").to_owned();
    let message = json!({"channel": "email", "to": "a@example.com", "template_id": id,
                         "variables": {"first_name": "Ada"}});
    // Both producers have version 1 as current now (remembered).
    for caller in [&a, &b] {
        let (status, answer) = caller.post("/v1/messages", message.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    // Version 2 prints a variable the message does not give: a producer
    // that pins it refuses the message.
    let (status, _) = a
        .call(
            Method::PUT,
            &format!("/v1/templates/{id}"),
            Some(json!({"channel": "email", "subject": "Hi {{ first_name }} {{ last_name }}", "text": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = a.post("/v1/messages", message.clone()).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the producer that wrote version 2 pinned version 1: {answer}"
    );
    assert!(refusal(&answer).2.contains("last_name"), "{answer}");
    let heard = herald_testing::wait_for(std::time::Duration::from_secs(5), || async {
        b.post("/v1/messages", message.clone()).await.0 == StatusCode::UNPROCESSABLE_ENTITY
    })
    .await;
    assert!(heard, "the other producer still pins version 1 after 5 s");
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn current_versions_are_remembered_between_writes() {
    let app = TestApp::spawn("tpl-cache", ADMIN).await;
    let t = caller(&app).await;
    let (_, created) = t.post("/v1/templates", welcome()).await;
    let id = created["id"].as_str().expect("an id").to_owned();
    let db = app.isolation.pool().await.expect("db");
    let reads = || async {
        // PostgreSQL's own count of index scans of `templates` (flushed
        // to the statistics at each transaction's end, read after a
        // snapshot clear).
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&db)
            .await
            .expect("clear");
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT idx_scan FROM pg_stat_user_tables WHERE relname = 'templates'",
        )
        .fetch_one(&db)
        .await
        .expect("stats")
        .unwrap_or(0)
    };
    let message = json!({"channel": "email", "to": "a@example.com", "template_id": id,
                         "variables": {"first_name": "Ada"}});
    // The listener is up once a write is heard: wait for the first send to
    // be remembered, then count.
    t.post("/v1/messages", message.clone()).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let before = reads().await;
    for _ in 0..50 {
        let (status, answer) = t.post("/v1/messages", message.clone()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let after = reads().await;
    // Read every time, it would be 50 or more.
    assert!(
        after - before < 10,
        "50 sends read the templates table {} times",
        after - before
    );
    db.close().await;
    app.stop().await;
}
