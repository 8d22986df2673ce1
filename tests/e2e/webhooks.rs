//! Tenant webhooks through the whole pipeline (decision 0028): status
//! changes become signed POSTs to the tenant's endpoint — a real HTTP
//! server in this test — retried until the endpoint recovers, logged, and
//! resent on request; deliveries wait for a signing secret, a rotated
//! secret signs beside the new one, and another tenant sees none of it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use herald_api::{SendMessage, TenantPatch, WebhookDelivery, WebhookPayload};
use herald_callbacks::{signed, tenant_hooks};
use herald_domain::{Channel, DeliveryState, MessageStatus, WebhookEvent};
use herald_e2e::Harness;
use herald_testing::{fixtures, unique, wait_for_value};
use serde_json::json;

const CALLBACK_SECRET: &str = "e2e-hooks-callback-secret";

/// What the tenant's endpoint received: each request's signature header
/// and body.
#[derive(Default)]
struct Endpoint {
    received: Mutex<Vec<(Option<String>, Bytes)>>,
    /// Requests still to be refused with a 500.
    refuse: AtomicUsize,
}

async fn receive(
    State(endpoint): State<Arc<Endpoint>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers
        .get(tenant_hooks::HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    endpoint
        .received
        .lock()
        .expect("lock")
        .push((signature, body));
    let refused = endpoint
        .refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if refused {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

/// Starts the endpoint: its URL and what it records.
async fn endpoint() -> (String, Arc<Endpoint>) {
    let endpoint = Arc::new(Endpoint::default());
    let app = axum::Router::new()
        .route("/hooks", axum::routing::post(receive))
        .with_state(endpoint.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, endpoint)
}

/// The payloads received whose signature checks out with `secret`, and
/// how many requests did not.
fn verified(endpoint: &Endpoint, secret: &str) -> (Vec<WebhookPayload>, usize) {
    let received = endpoint.received.lock().expect("lock");
    let now = Utc::now().timestamp();
    let mut good = Vec::new();
    let mut bad = 0;
    for (signature, body) in received.iter() {
        match tenant_hooks::verify(secret.as_bytes(), signature.as_deref(), body, now, 300) {
            Ok(_) => good.push(serde_json::from_slice(body).expect("a webhook payload")),
            Err(_) => bad += 1,
        }
    }
    (good, bad)
}

/// Waits until the tenant's log satisfies `done`; the last log read.
async fn log_until(
    h: &Harness,
    key: &str,
    done: impl Fn(&[WebhookDelivery]) -> bool,
) -> Vec<WebhookDelivery> {
    let last = wait_for_value(
        Duration::from_secs(30),
        || {
            let client = h.app.client(key);
            async move { client.webhook_deliveries("").await.ok() }
        },
        |log| log.as_deref().is_some_and(&done),
    )
    .await;
    match last {
        Some(log) if done(&log) => log,
        other => panic!("the delivery log never got there; last seen {other:#?}"),
    }
}

fn of(log: &[WebhookDelivery], event: WebhookEvent) -> Vec<&WebhookDelivery> {
    log.iter().filter(|d| d.event == event).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_events_are_signed_retried_until_the_endpoint_recovers_and_resent() {
    let h = Harness::start(1).await.expect("herald starts");
    let mut provider = fixtures::sim_smtp(&unique("hooks-email"), h.sim_smtp_port, &h.ca_file);
    provider.config["callback_secret"] = json!(CALLBACK_SECRET);
    let provider = h
        .app
        .admin
        .create_provider(&provider)
        .await
        .expect("provider");
    let (tenant, key) = h.tenant(&unique("hooks")).await.expect("tenant");
    let (_, other_key) = h.tenant(&unique("hooks-other")).await.expect("tenant");
    let (url, endpoint) = endpoint().await;
    // The endpoint is down for its first three requests.
    endpoint.refuse.store(3, Ordering::SeqCst);

    // Selected events only: `read` is not among them.
    let patch = TenantPatch {
        webhook_url: Some(Some(url.clone())),
        webhook_events: Some(Some(vec![
            "sent".into(),
            "delivered".into(),
            "suppressed".into(),
        ])),
        ..Default::default()
    };
    let updated = h
        .app
        .admin
        .update_tenant(&tenant, &patch)
        .await
        .expect("patched");
    assert_eq!(
        updated.webhook_events,
        Some(vec![
            WebhookEvent::Sent,
            WebhookEvent::Suppressed,
            WebhookEvent::Delivered
        ])
    );
    for (patch, field) in [
        (json!({"webhook_events": []}), "webhook_events"),
        (
            json!({"webhook_events": ["sent", "queued"]}),
            "webhook_events[1]",
        ),
    ] {
        let resp = h
            .app
            .http
            .patch(format!("{}/v1/admin/tenants/{tenant}", h.producer_url))
            .bearer_auth(herald_e2e::ADMIN_TOKEN)
            .json(&patch)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 422, "{patch}");
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["field"], field, "{body}");
    }

    // Sent before the tenant has a secret: the delivery waits, unsigned
    // POSTs are never made.
    let client = h.app.client(&key);
    let mut message = SendMessage::new(Channel::Email, "ada@example.com", "hello");
    message.subject = Some("Hi".into());
    message.metadata = Some([("campaign".to_owned(), "winter".to_owned())].into());
    let id = client.send(&message).await.expect("accepted").id;
    let log = log_until(&h, &key, |log| {
        of(log, WebhookEvent::Sent).first().is_some_and(|d| {
            d.last_error
                .as_deref()
                .is_some_and(|e| e.contains("secret"))
        })
    })
    .await;
    assert_eq!(log[0].state, DeliveryState::Pending);
    assert_eq!(log[0].attempts, 0, "nothing is posted without a secret");
    assert!(endpoint.received.lock().expect("lock").is_empty());
    assert!(client
        .webhook()
        .await
        .expect("settings")
        .secret_created_at
        .is_none());

    let secret = client.rotate_webhook_secret().await.expect("a secret");
    assert!(secret.secret.starts_with("whsec_") && secret.secret.len() == 70);
    assert_eq!(secret.previous_valid_until, None);
    let settings = client.webhook().await.expect("settings");
    assert_eq!(settings.url.as_deref(), Some(url.as_str()));
    assert_eq!(settings.secret_created_at, Some(secret.created_at));

    // The provider reports delivery and a read (not selected); an email to
    // a suppressed address is recorded `suppressed`.
    for (event, n) in [("delivered", 1), ("read", 2)] {
        let body = json!({"message_id": id, "event": event,
                          "at": (Utc::now() - chrono::TimeDelta::seconds(10 - n)).to_rfc3339(),
                          "detail": {"by": "e2e"}})
        .to_string();
        let resp = h
            .app
            .http
            .post(format!("{}/v1/callbacks/{}", h.producer_url, provider.id))
            .header("content-type", "application/json")
            .header(
                signed::HEADER,
                signed::sign(CALLBACK_SECRET.as_bytes(), body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .expect("callback");
        assert_eq!(resp.status().as_u16(), 202);
    }
    client
        .add_suppression(&herald_api::NewSuppression {
            address: "gone@example.com".into(),
            reason: None,
        })
        .await
        .expect("suppressed");
    let mut to_gone = SendMessage::new(Channel::Email, "gone@example.com", "hello");
    to_gone.subject = Some("Hi".into());
    let gone = client.send(&to_gone).await.expect("accepted").id;

    let log = log_until(&h, &key, |log| {
        log.len() == 3 && log.iter().all(|d| d.state == DeliveryState::Delivered)
    })
    .await;
    let events: HashSet<WebhookEvent> = log.iter().map(|d| d.event).collect();
    assert_eq!(
        events,
        HashSet::from([
            WebhookEvent::Sent,
            WebhookEvent::Delivered,
            WebhookEvent::Suppressed
        ]),
        "the read was not selected"
    );
    // Three refusals were retried: more attempts than deliveries.
    let attempts: u32 = log.iter().map(|d| d.attempts).sum();
    assert!(
        attempts >= 3 + 3,
        "{attempts} attempts for three deliveries, three refused"
    );
    assert!(log
        .iter()
        .all(|d| d.last_status == Some(204) && d.last_error.is_none()));
    let (payloads, unverified) = verified(&endpoint, &secret.secret);
    assert_eq!(unverified, 0, "every request is signed with the secret");
    let ids: HashSet<_> = payloads.iter().map(|p| p.id).collect();
    assert_eq!(
        ids,
        log.iter().map(|d| d.id).collect(),
        "retries keep the event id"
    );
    let sent = payloads
        .iter()
        .find(|p| p.kind == WebhookEvent::Sent)
        .expect("sent");
    assert_eq!(sent.message_id, id);
    assert_eq!(sent.recipient.as_deref(), Some("ada@example.com"));
    assert_eq!(sent.metadata["campaign"], "winter");
    assert_eq!(sent.detail["provider_id"], provider.id.to_string());
    let delivered = payloads
        .iter()
        .find(|p| p.kind == WebhookEvent::Delivered)
        .expect("delivered");
    assert_eq!(delivered.detail["by"], "e2e");
    let suppressed = payloads
        .iter()
        .find(|p| p.kind == WebhookEvent::Suppressed)
        .expect("suppressed");
    assert_eq!(suppressed.message_id, gone);
    let record = client.message(&gone.to_string()).await.expect("record");
    assert_eq!(record.status, MessageStatus::Suppressed);

    // Filters of the log.
    let only = client
        .webhook_deliveries("event=delivered&state=delivered")
        .await
        .expect("filtered");
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].event, WebhookEvent::Delivered);

    // A rotation: the old secret still signs beside the new one.
    let rotated = client.rotate_webhook_secret().await.expect("rotated");
    assert!(rotated.previous_valid_until.is_some());
    let before = endpoint.received.lock().expect("lock").len();
    let resent = client
        .resend_webhook_delivery(sent.id)
        .await
        .expect("resent");
    assert_eq!(resent.state, DeliveryState::Pending);
    wait_for_value(
        Duration::from_secs(15),
        || async { endpoint.received.lock().expect("lock").len() },
        |n| *n > before,
    )
    .await;
    let (last_signature, last_body) = endpoint.received.lock().expect("lock")[before].clone();
    let last: WebhookPayload = serde_json::from_slice(&last_body).expect("payload");
    assert_eq!(last.id, sent.id, "a resend is the same event");
    let now = Utc::now().timestamp();
    for s in [&secret.secret, &rotated.secret] {
        tenant_hooks::verify(
            s.as_bytes(),
            last_signature.as_deref(),
            &last_body,
            now,
            300,
        )
        .expect("both secrets sign during the overlap");
    }

    // Another tenant's key finds none of it.
    let other = h.app.client(&other_key);
    assert!(other
        .webhook_deliveries("")
        .await
        .expect("its log")
        .is_empty());
    for result in [
        other.webhook_delivery(sent.id).await.map(|_| ()),
        other.resend_webhook_delivery(sent.id).await.map(|_| ()),
    ] {
        let err = result.expect_err("another tenant's delivery");
        assert_eq!(err.status().map(|s| s.as_u16()), Some(404), "{err}");
    }
    // Without a webhook_url a resend has nowhere to go.
    let removed = TenantPatch {
        webhook_url: Some(None),
        ..Default::default()
    };
    h.app
        .admin
        .update_tenant(&tenant, &removed)
        .await
        .expect("removed");
    let err = client
        .resend_webhook_delivery(sent.id)
        .await
        .expect_err("no webhook_url");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(409), "{err}");
    h.stop().await.expect("stops");
}
