//! The webhook adapter against the simulator's real webhook receiver
//! (started in this process), plus the pure parts: signature, body,
//! `Retry-After`.

use std::collections::HashMap;

use herald_domain::MessageId;
use herald_proto::v1;
use herald_sim::{Sim, SimChannel, SimConfig, SimHandle};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::*;

const SECRET: &str = "whsec_0123456789abcdef";

/// The simulator, stopped when dropped.
struct TestSim {
    handle: SimHandle,
    port: u16,
    _stop: oneshot::Sender<()>,
}

async fn start_sim() -> TestSim {
    let config = SimConfig {
        webhook_secret: SECRET.to_owned(),
        ..SimConfig::ephemeral()
    };
    let sim = Sim::build(config).await.expect("the simulator builds");
    let (handle, port) = (sim.handle(), sim.http_port());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(sim.run(async move {
        let _ = stopped.await;
    }));
    TestSim {
        handle,
        port,
        _stop: stop,
    }
}

impl TestSim {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn behave(&self, change: impl FnOnce(&mut herald_sim::WebhookBehaviour)) {
        let mut behaviour = self.handle.behaviour();
        change(&mut behaviour.webhook);
        self.handle
            .set_behaviour(behaviour)
            .expect("valid behaviour");
    }
}

fn adapter(secret: &str, allow_private_addresses: bool, timeout_ms: u64) -> WebhookAdapter {
    adapter_classified(
        secret,
        allow_private_addresses,
        timeout_ms,
        Classifier::default(),
    )
}

fn adapter_classified(
    secret: &str,
    allow_private_addresses: bool,
    timeout_ms: u64,
    classifier: Classifier,
) -> WebhookAdapter {
    WebhookAdapter::with_classifier(
        WebhookConfig {
            signing_secret: secret.to_owned(),
            timeout_ms: Some(timeout_ms),
            allow_private_addresses,
            callback_secret: None,
        },
        Arc::new(classifier),
    )
    .expect("adapter")
}

struct Job {
    id: MessageId,
    recipients: Vec<String>,
    content: v1::Content,
    metadata: HashMap<String, String>,
    attempt: u32,
}

impl Job {
    fn to(url: String) -> Job {
        Job {
            id: MessageId::new(),
            recipients: vec![url],
            content: v1::Content {
                subject: "Shipped".to_owned(),
                text: "Your order shipped".to_owned(),
                variables: HashMap::from([("name".to_owned(), "Alice".to_owned())]),
                ..Default::default()
            },
            metadata: HashMap::from([("order".to_owned(), "A-1".to_owned())]),
            attempt: 1,
        }
    }

    fn out(&self) -> Outgoing<'_> {
        Outgoing {
            message_id: self.id,
            recipients: &self.recipients,
            content: &self.content,
            metadata: &self.metadata,
            attempt: self.attempt,
            unsubscribe: None,
            return_path: None,
        }
    }
}

fn retry_delay_of(outcome: &Disposition) -> Duration {
    match outcome {
        Disposition::RetryAfter { after, .. } => *after,
        other => panic!("expected RetryAfter, got {other:?}"),
    }
}

// Against the simulator.

#[tokio::test]
async fn a_2xx_answer_is_sent_and_counted_once_with_its_signature_verified() {
    let sim = start_sim().await;
    let job = Job::to(sim.url("/webhook/orders"));

    let outcome = adapter(SECRET, true, 5000).send(job.out()).await;

    assert_eq!(
        outcome,
        Disposition::Sent {
            provider_message_id: None
        }
    );
    let id = job.id.to_string();
    assert_eq!(sim.handle.count(SimChannel::Webhook, &id), 1);
    let stats = sim.handle.stats().webhook;
    assert_eq!((stats.received, stats.unique, stats.duplicates), (1, 1, 0));
    assert_eq!(stats.signature_failures, 0);
    let last = sim.handle.last(SimChannel::Webhook, &id).expect("a detail");
    assert_eq!(last["path"], "/webhook/orders");
    let body = &last["body"];
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["channel"], "webhook");
    assert_eq!(body["to"], sim.url("/webhook/orders").as_str());
    assert_eq!(body["text"], "Your order shipped");
    assert_eq!(body["html"], Value::Null);
    assert_eq!(body["variables"], json!({"name": "Alice"}));
    assert_eq!(body["metadata"], json!({"order": "A-1"}));
    assert_eq!(body["attempt"], 1);
}

#[tokio::test]
async fn many_sends_share_one_client_and_each_is_counted_once() {
    let sim = start_sim().await;
    let webhook = adapter(SECRET, true, 5000);
    let jobs: Vec<Job> = (0..20).map(|_| Job::to(sim.url("/webhook/bulk"))).collect();

    let outcomes = futures::future::join_all(jobs.iter().map(|j| webhook.send(j.out()))).await;

    assert!(outcomes.iter().all(Disposition::is_sent), "{outcomes:?}");
    let stats = sim.handle.stats().webhook;
    assert_eq!(
        (stats.received, stats.unique, stats.duplicates),
        (20, 20, 0)
    );
}

#[tokio::test]
async fn a_wrong_signing_secret_is_refused_by_the_receiver_and_dead_lettered() {
    let sim = start_sim().await;
    let job = Job::to(sim.url("/webhook/orders"));

    let outcome = adapter("not-the-receivers-secret", true, 5000)
        .send(job.out())
        .await;

    assert!(
        matches!(outcome, Disposition::DeadLetter { .. }),
        "{outcome:?}"
    );
    assert_eq!(outcome.code(), Some("webhook_http_401"));
    let reason = outcome.reason().unwrap_or_default();
    assert!(reason.contains("401 Unauthorized"), "{reason}");
    assert!(reason.contains("invalid_signature"), "{reason}");
    assert_eq!(sim.handle.stats().webhook.signature_failures, 1);
    assert_eq!(
        sim.handle.count(SimChannel::Webhook, &job.id.to_string()),
        0
    );
}

#[tokio::test]
async fn a_503_with_retry_after_retries_after_that_delay() {
    let sim = start_sim().await;
    sim.behave(|b| {
        b.fail_rate = 1.0;
        b.retry_after_s = 7;
    });
    let job = Job::to(sim.url("/webhook/x"));

    let outcome = adapter(SECRET, true, 5000).send(job.out()).await;

    assert_eq!(retry_delay_of(&outcome), Duration::from_secs(7));
    assert_eq!(outcome.code(), Some("webhook_http_503"));
    assert_eq!(sim.handle.stats().webhook.rejected, 1);
    assert_eq!(
        sim.handle.count(SimChannel::Webhook, &job.id.to_string()),
        0
    );
}

#[tokio::test]
async fn a_429_with_retry_after_throttles_the_target_for_that_long() {
    let sim = start_sim().await;
    sim.behave(|b| {
        b.rate_limit_rate = 1.0;
        b.retry_after_s = 3;
    });
    let mut job = Job::to(sim.url("/webhook/x"));
    job.attempt = 4;

    let outcome = adapter(SECRET, true, 5000).send(job.out()).await;

    assert_eq!(
        outcome,
        Disposition::Throttled {
            hold: Some(Duration::from_secs(3)),
            code: "webhook_http_429".into(),
            reason: match &outcome {
                Disposition::Throttled { reason, .. } => reason.clone(),
                _ => String::new(),
            },
        }
    );
}

#[tokio::test]
async fn a_429_without_retry_after_throttles_without_a_hold() {
    let sim = start_sim().await;
    sim.behave(|b| {
        b.rate_limit_rate = 1.0;
        b.retry_after_s = 0;
    });
    let job = Job::to(sim.url("/webhook/x"));

    let outcome = adapter(SECRET, true, 5000).send(job.out()).await;

    assert!(
        matches!(outcome, Disposition::Throttled { hold: None, .. }),
        "{outcome:?}"
    );
    assert_eq!(outcome.code(), Some("webhook_http_429"));
}

#[tokio::test]
async fn a_user_rule_from_the_classifier_file_decides_a_status() {
    let sim = start_sim().await;
    sim.behave(|b| b.fail_rate = 1.0);
    let classifier =
        Classifier::from_json(r#"{"http": [{"status": "503", "action": "failover"}]}"#)
            .expect("rules");
    let job = Job::to(sim.url("/webhook/x"));

    let outcome = adapter_classified(SECRET, true, 5000, classifier)
        .send(job.out())
        .await;

    assert!(
        matches!(outcome, Disposition::Failover { .. }),
        "{outcome:?}"
    );
    assert_eq!(outcome.code(), Some("webhook_http_503"));
}

#[tokio::test]
async fn a_404_is_dead_lettered_with_the_status_and_the_start_of_the_body() {
    let sim = start_sim().await;
    let job = Job::to(sim.url("/no/such/hook"));

    let outcome = adapter(SECRET, true, 5000).send(job.out()).await;

    assert!(
        matches!(outcome, Disposition::DeadLetter { .. }),
        "{outcome:?}"
    );
    assert_eq!(outcome.code(), Some("webhook_http_404"));
    let reason = outcome.reason().unwrap_or_default();
    assert!(
        reason.starts_with("the webhook target answered HTTP 404 Not Found: "),
        "{reason}"
    );
    assert!(
        reason.contains("There is nothing at this path."),
        "{reason}"
    );
}

#[tokio::test]
async fn no_answer_within_the_timeout_leaves_the_message_in_doubt() {
    let sim = start_sim().await;
    sim.behave(|b| b.latency_ms = 3000);
    let job = Job::to(sim.url("/webhook/slow"));

    let outcome = adapter(SECRET, true, 400).send(job.out()).await;

    assert!(
        matches!(outcome, Disposition::InDoubt { .. }),
        "{outcome:?}"
    );
    let reason = outcome.reason().unwrap_or_default();
    assert!(reason.contains("within 400 ms"), "{reason}");
}

#[tokio::test]
async fn a_refused_connection_retries_later_and_is_not_in_doubt() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    let job = Job::to(format!("http://{addr}/webhook/x?token=very-secret"));

    let outcome = adapter(SECRET, true, 2000).send(job.out()).await;

    assert_eq!(retry_delay_of(&outcome), Duration::from_secs(30));
    assert_eq!(outcome.code(), Some("webhook_unreachable"));
    let reason = outcome.reason().unwrap_or_default();
    assert!(!reason.contains("very-secret"), "{reason}");
}

#[tokio::test]
async fn a_name_that_does_not_resolve_retries_later() {
    let job = Job::to("http://herald-no-such-host.invalid/webhook".to_owned());

    let outcome = adapter(SECRET, false, 2000).send(job.out()).await;

    assert_eq!(outcome.code(), Some("webhook_unreachable"), "{outcome:?}");
}

#[tokio::test]
async fn a_loopback_target_is_refused_unless_private_addresses_are_allowed() {
    let sim = start_sim().await;
    let job = Job::to(sim.url("/webhook/x"));

    let refused = adapter(SECRET, false, 5000).send(job.out()).await;
    let allowed = adapter(SECRET, true, 5000).send(job.out()).await;

    assert_eq!(
        refused,
        Disposition::DeadLetter {
            code: "webhook_target_refused".to_owned(),
            reason: "webhook target 127.0.0.1 is a loopback address; \
                     set allow_private_addresses on the provider to allow it"
                .to_owned(),
        }
    );
    assert!(allowed.is_sent(), "{allowed:?}");
    assert_eq!(
        sim.handle.count(SimChannel::Webhook, &job.id.to_string()),
        1
    );
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_the_lookup_unless_allowed() {
    let sim = start_sim().await;
    let job = Job::to(format!("http://localhost:{}/webhook/x", sim.port));

    let refused = adapter(SECRET, false, 5000).send(job.out()).await;
    let allowed = adapter(SECRET, true, 5000).send(job.out()).await;

    assert_eq!(
        refused.code(),
        Some("webhook_target_refused"),
        "{refused:?}"
    );
    let reason = refused.reason().unwrap_or_default();
    assert!(
        reason.starts_with("webhook target localhost resolves to "),
        "{reason}"
    );
    assert!(reason.contains("a loopback address"), "{reason}");
    assert!(allowed.is_sent(), "{allowed:?}");
    assert_eq!(
        sim.handle.count(SimChannel::Webhook, &job.id.to_string()),
        1
    );
}

#[tokio::test]
async fn other_spellings_of_a_private_address_are_refused_too() {
    for (url, address) in [
        ("http://[::ffff:127.0.0.1]:9/webhook", "::ffff:127.0.0.1"),
        ("http://[::1]:9/webhook", "::1"),
        ("http://0x7f.1:9/webhook", "127.0.0.1"),
        ("http://2130706433:9/webhook", "127.0.0.1"),
        (
            "https://169.254.169.254/latest/meta-data",
            "169.254.169.254",
        ),
        ("http://10.1.2.3/webhook", "10.1.2.3"),
    ] {
        let job = Job::to(url.to_owned());
        let outcome = adapter(SECRET, false, 2000).send(job.out()).await;
        assert_eq!(outcome.code(), Some("webhook_target_refused"), "{url}");
        let reason = outcome.reason().unwrap_or_default();
        assert!(
            reason.starts_with(&format!("webhook target {address} is ")),
            "{url}: {reason}"
        );
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_dead_letters_naming_the_location() {
    use axum::http::{header, StatusCode};
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/hook",
        post(|| async { (StatusCode::FOUND, [(header::LOCATION, "http://10.0.0.1/x")]) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let job = Job::to(format!("http://{addr}/hook"));

    let outcome = adapter(SECRET, true, 5000).send(job.out()).await;

    assert_eq!(
        outcome,
        Disposition::DeadLetter {
            code: "webhook_http_302".to_owned(),
            reason: "the webhook target answered HTTP 302 Found (redirects are not followed; \
                     Location: http://10.0.0.1/x)"
                .to_owned(),
        }
    );
}

#[tokio::test]
async fn a_message_with_other_than_one_url_is_dead_lettered() {
    let mut job = Job::to("https://hooks.example.com/a".to_owned());
    job.recipients
        .push("https://hooks.example.com/b".to_owned());

    let outcome = adapter(SECRET, false, 2000).send(job.out()).await;

    assert_eq!(outcome.code(), Some("webhook_recipient"), "{outcome:?}");
}

// The pure parts.

#[test]
fn the_signature_matches_a_vector_computed_independently() {
    // python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec_0123456789abcdef",
    //   b"{\"id\":\"0190d9a8-0000-7000-8000-000000000001\",\"channel\":\"webhook\",\"text\":\"Your order shipped\"}",
    //   hashlib.sha256).hexdigest())'
    let body = br#"{"id":"0190d9a8-0000-7000-8000-000000000001","channel":"webhook","text":"Your order shipped"}"#;
    assert_eq!(
        sign(SECRET.as_bytes(), body),
        "f7c707d20978cb929be62eb20c7c3744a01f6cd19a649c6f1686e3c416f9b722"
    );
    // RFC 4231-style check with a short key.
    assert_eq!(
        sign(b"key", b"The quick brown fox jumps over the lazy dog"),
        "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    );
}

#[test]
fn the_body_has_every_key_in_a_stable_order_with_null_for_empty_fields() {
    let mut job = Job::to("https://hooks.example.com/x".to_owned());
    job.id = MessageId(
        "0190d9a8-0000-7000-8000-000000000001"
            .parse()
            .expect("uuid"),
    );
    job.metadata
        .insert("campaign".to_owned(), "spring".to_owned());
    let now = DateTime::parse_from_rfc3339("2026-03-01T09:30:00.250Z")
        .expect("time")
        .with_timezone(&Utc);

    let bytes = body(&job.out(), "https://hooks.example.com/x", now);

    assert_eq!(
        String::from_utf8(bytes).expect("utf-8"),
        concat!(
            r#"{"id":"0190d9a8-0000-7000-8000-000000000001","channel":"webhook","#,
            r#""to":"https://hooks.example.com/x","subject":"Shipped","text":"Your order shipped","#,
            r#""html":null,"template_id":null,"template_version":null,"#,
            r#""variables":{"name":"Alice"},"metadata":{"campaign":"spring","order":"A-1"},"#,
            r#""attempt":1,"sent_at":"2026-03-01T09:30:00.250Z"}"#
        )
    );
}

#[test]
fn retry_after_is_read_as_seconds_or_an_http_date_and_capped() {
    let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
        .expect("time")
        .with_timezone(&Utc);
    let parse = |value: &str| parse_retry_after(value, now);
    assert_eq!(parse("120"), Some(Duration::from_secs(120)));
    assert_eq!(parse(" 7 "), Some(Duration::from_secs(7)));
    assert_eq!(parse("0"), Some(Duration::from_secs(1)));
    assert_eq!(parse("86400"), Some(classify::MAX_RETRY_DELAY));
    assert_eq!(
        parse("99999999999999999999999"),
        Some(classify::MAX_RETRY_DELAY)
    );
    assert_eq!(
        parse("Wed, 21 Oct 2015 07:29:30 GMT"),
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        parse("Wed, 21 Oct 2015 07:00:00 GMT"),
        Some(Duration::from_secs(1))
    );
    assert_eq!(parse("soon"), None);
    assert_eq!(parse("-5"), None);
    assert_eq!(parse(""), None);
}

#[test]
fn an_excerpt_is_short_and_on_one_line() {
    assert_eq!(excerpt(b"  not\r\n found\t\x00 "), "not found");
    let long = "x".repeat(500);
    let short = excerpt(long.as_bytes());
    assert_eq!(short.chars().count(), EXCERPT_CHARS + 1);
    assert!(short.ends_with('…'));
}
