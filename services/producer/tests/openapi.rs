//! `/openapi.json` is a valid OpenAPI 3.1 document that covers every route
//! the producer serves, and every route it documents is served.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;

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
    ("post", "/v1/admin/tenants"),
    ("get", "/v1/admin/tenants"),
    ("get", "/v1/admin/tenants/{id}"),
    ("post", "/v1/admin/tenants/{id}/disable"),
    ("post", "/v1/admin/tenants/{id}/enable"),
    ("post", "/v1/admin/tenants/{id}/keys"),
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

struct TestApp {
    url: String,
    database: String,
    namespace: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn spawn_app() -> TestApp {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let namespace = format!("oas_{}", &suffix[..12]);
    let database = format!("herald_{namespace}");
    let settings = herald_producer::Settings::for_tests(&namespace, &database, "oas-admin");
    let app = herald_producer::App::build(settings)
        .await
        .expect("producer builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    TestApp {
        url,
        database,
        namespace,
        stop,
        task,
    }
}

impl TestApp {
    async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let amqp = "amqp://guest:guest@127.0.0.1:5672/%2f";
        if let Ok(broker) =
            herald_broker::connect(amqp, "oas-test-teardown", std::time::Duration::from_secs(5))
                .await
        {
            if let Ok(ch) = broker.channel().await {
                let _ = herald_broker::Topology::new(&self.namespace)
                    .delete_all(&ch, &[])
                    .await;
            }
            broker.close().await;
        }
        let _ = herald_store::Store::drop_database(&format!(
            "postgres://postgres@127.0.0.1:5432/{}",
            self.database
        ))
        .await;
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_and_covers_every_route() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
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
            let scheme = if path.starts_with("/v1/admin/") {
                Some("admin_token")
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
            path.replace("{id}", &id).replace("{key_id}", &id)
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
    app.finish().await;
}
