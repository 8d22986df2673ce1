//! Provider callbacks through the whole pipeline (decision 0027): the
//! producer checks and queues them, a worker stores and applies them, and a
//! message's status only moves forward by rank. Forged, replayed, stale and
//! malformed callbacks change nothing.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use herald_api::SendMessage;
use herald_callbacks::signed;
use herald_callbacks::wework::WeworkCrypto;
use herald_domain::{Channel, EventKind, MessageStatus};
use herald_e2e::Harness;
use herald_testing::{fixtures, unique, wait_for_value};
use serde_json::{json, Value};

const SECRET: &str = "e2e-callback-secret";
const WEWORK_TOKEN: &str = "e2eToken";
const WEWORK_AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const WEWORK_CORP: &str = "corp";

/// Registers the simulator's email (with a callback secret) and WeWork
/// (with callback settings) providers: `(email id, wework id)`.
async fn providers(h: &Harness) -> (String, String) {
    let mut email = fixtures::sim_smtp(&unique("cb-email"), h.sim_smtp_port, &h.ca_file);
    email.config["callback_secret"] = json!(SECRET);
    let email = h.app.admin.create_provider(&email).await.expect("email");
    let mut wework = fixtures::sim_wework(&unique("cb-wework"), h.sim_http_port);
    wework.config["token"] = json!(WEWORK_TOKEN);
    wework.config["encoding_aes_key"] = json!(WEWORK_AES_KEY);
    wework.config["corp_id"] = json!(WEWORK_CORP);
    let wework = h.app.admin.create_provider(&wework).await.expect("wework");
    (email.id.to_string(), wework.id.to_string())
}

/// POSTs `body` to the generic route, signed with `secret` (unsigned
/// without one): the status and the answer.
async fn post(h: &Harness, provider: &str, body: &str, secret: Option<&str>) -> (u16, Value) {
    let mut req = h
        .app
        .http
        .post(format!("{}/v1/callbacks/{provider}", h.producer_url))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(s) = secret {
        req = req.header(signed::HEADER, signed::sign(s.as_bytes(), body.as_bytes()));
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn event(message: &str, event: &str, at: chrono::DateTime<Utc>) -> String {
    json!({"message_id": message, "event": event, "at": at.to_rfc3339(),
           "detail": {"by": "e2e"}})
    .to_string()
}

async fn record(h: &Harness, key: &str, id: &str) -> herald_api::MessageRecord {
    h.app.client(key).message(id).await.expect("the record")
}

/// Waits until `id`'s record satisfies `done`; the last record read.
async fn record_until(
    h: &Harness,
    key: &str,
    id: &str,
    done: impl Fn(&herald_api::MessageRecord) -> bool,
) -> herald_api::MessageRecord {
    let last = wait_for_value(
        Duration::from_secs(30),
        || {
            let client = h.app.client(key);
            let id = id.to_owned();
            async move { client.message(&id).await.ok() }
        },
        |r| r.as_ref().is_some_and(&done),
    )
    .await;
    match last {
        Some(r) if done(&r) => r,
        other => panic!("{id} never got there; last seen {other:?}"),
    }
}

/// What the simulator saw of email `id`, once it arrived (30 s at most).
async fn arrived(sim: &herald_sim::SimHandle, id: &str) -> Value {
    wait_for_value(
        Duration::from_secs(30),
        || {
            let sim = sim.clone();
            let id = id.to_owned();
            async move { sim.last(herald_sim::SimChannel::Email, &id) }
        },
        Option::is_some,
    )
    .await
    .expect("the email arrived")
}

async fn stored_events(db: &sqlx::PgPool) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT state, count(*) FROM callback_events GROUP BY state ORDER BY state")
        .fetch_all(db)
        .await
        .expect("counts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn generic_callbacks_move_a_message_forward_and_refusals_change_nothing() {
    let h = Harness::start(1).await.expect("herald starts");
    let (email, _) = providers(&h).await;
    let (_t, key) = h.tenant(&unique("cb")).await.expect("tenant");
    let mut message = SendMessage::new(Channel::Email, "ada@example.com", "hello");
    message.subject = Some("Hi".into());
    let id = h
        .app
        .client(&key)
        .send(&message)
        .await
        .expect("accepted")
        .id
        .to_string();
    let sent = record_until(&h, &key, &id, |r| r.status == MessageStatus::Sent).await;
    assert!(sent.events.is_empty() && sent.delivered_at.is_none());

    let t0 = Utc::now() - TimeDelta::seconds(30);
    let delivered = event(&id, "delivered", t0);
    let (status, body) = post(&h, &email, &delivered, Some(SECRET)).await;
    assert_eq!(status, 202, "{body}");
    assert!(body["id"].as_str().is_some(), "{body}");
    let r = record_until(&h, &key, &id, |r| r.status == MessageStatus::Delivered).await;
    assert_eq!(
        r.delivered_at.map(|d| d.timestamp()),
        Some(t0.timestamp()),
        "delivered_at is the provider's time"
    );

    let read = event(&id, "read", t0 + TimeDelta::seconds(5));
    assert_eq!(post(&h, &email, &read, Some(SECRET)).await.0, 202);
    record_until(&h, &key, &id, |r| r.status == MessageStatus::Read).await;

    // A late delivery report (another body) is kept but does not move the
    // status back; the exact replay of one already taken is stored once.
    let late = event(&id, "delivered", t0 + TimeDelta::seconds(1));
    assert_eq!(post(&h, &email, &late, Some(SECRET)).await.0, 202);
    assert_eq!(post(&h, &email, &delivered, Some(SECRET)).await.0, 202);
    let r = record_until(&h, &key, &id, |r| r.events.len() >= 3).await;
    let kinds: Vec<EventKind> = r.events.iter().map(|e| e.event).collect();
    assert_eq!(
        kinds,
        [EventKind::Delivered, EventKind::Delivered, EventKind::Read],
        "oldest first, the replay stored once"
    );
    assert_eq!(r.events[0].detail["by"], "e2e");
    assert_eq!(r.status, MessageStatus::Read, "never backwards");

    // Refusals: each says why, and nothing changes.
    let bounced = event(&id, "bounced", Utc::now());
    let (status, body) = post(&h, &email, &bounced, None).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("missing"),
        "{body}"
    );
    let (status, body) = post(&h, &email, &bounced, Some("not-the-secret")).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("does not match"),
        "{body}"
    );
    let stale = event(&id, "bounced", Utc::now() - TimeDelta::hours(25));
    let (status, body) = post(&h, &email, &stale, Some(SECRET)).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("replay window"),
        "{body}"
    );
    let future = event(&id, "bounced", Utc::now() + TimeDelta::hours(1));
    assert_eq!(post(&h, &email, &future, Some(SECRET)).await.0, 401);
    let (status, body) = post(&h, &email, "{not json", Some(SECRET)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let opened = event(&id, "opened", Utc::now());
    let (status, body) = post(&h, &email, &opened, Some(SECRET)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "event");
    let unknown_provider = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        post(&h, &unknown_provider, &bounced, Some(SECRET)).await.0,
        404
    );
    assert_eq!(post(&h, "not-an-id", &bounced, Some(SECRET)).await.0, 404);

    // A provider without a callback secret cannot be believed.
    let plain = h
        .app
        .admin
        .create_provider(&fixtures::sim_smtp(
            &unique("no-secret"),
            h.sim_smtp_port,
            &h.ca_file,
        ))
        .await
        .expect("provider");
    let (status, body) = post(&h, &plain.id.to_string(), &bounced, Some(SECRET)).await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("callback_secret"));

    // Another provider's valid callback about this message is kept, ignored.
    let mut other = fixtures::sim_smtp(&unique("other"), h.sim_smtp_port, &h.ca_file);
    other.config["callback_secret"] = json!("other-secret");
    let other = h.app.admin.create_provider(&other).await.expect("provider");
    assert_eq!(
        post(&h, &other.id.to_string(), &bounced, Some("other-secret"))
            .await
            .0,
        202
    );
    // And a callback about a message Herald never had.
    let ghost = event(&uuid::Uuid::now_v7().to_string(), "delivered", Utc::now());
    assert_eq!(post(&h, &email, &ghost, Some(SECRET)).await.0, 202);
    let db = h.db().await.expect("db");
    let counts = wait_for_value(
        Duration::from_secs(20),
        || stored_events(&db),
        |c| c.iter().any(|(s, n)| s == "ignored" && *n == 2),
    )
    .await;
    assert_eq!(
        counts,
        vec![("ignored".into(), 2), ("processed".into(), 3)],
        "three applied, two ignored, the replay stored once"
    );
    let reasons: Vec<String> = sqlx::query_scalar(
        "SELECT reason FROM callback_events WHERE state = 'ignored' ORDER BY reason",
    )
    .fetch_all(&db)
    .await
    .expect("reasons");
    assert!(reasons[0].starts_with("no message"), "{reasons:?}");
    assert!(reasons[1].contains("not sent through"), "{reasons:?}");
    let r = record(&h, &key, &id).await;
    assert_eq!((r.status, r.events.len()), (MessageStatus::Read, 3));
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callback_that_overtakes_the_record_of_its_send_waits_for_it() {
    let h = Harness::start(1).await.expect("herald starts");
    let (email, _) = providers(&h).await;
    let (_t, key) = h.tenant(&unique("early")).await.expect("tenant");
    // Scheduled an hour out, so no worker touches it: the test plays the
    // worker that is mid-send.
    let mut message = SendMessage::new(Channel::Email, "bob@example.com", "hello");
    message.subject = Some("Hi".into());
    message.scheduled_at = Some((Utc::now() + TimeDelta::hours(1)).to_rfc3339());
    let id = h
        .app
        .client(&key)
        .send(&message)
        .await
        .expect("accepted")
        .id;
    let db = h.db().await.expect("db");
    sqlx::query("UPDATE messages SET status = 'sending', provider_id = $2 WHERE id = $1")
        .bind(id.as_uuid())
        .bind(email.parse::<uuid::Uuid>().expect("uuid"))
        .execute(&db)
        .await
        .expect("sending");

    let body = event(&id.to_string(), "delivered", Utc::now());
    assert_eq!(post(&h, &email, &body, Some(SECRET)).await.0, 202);
    let waiting = wait_for_value(
        Duration::from_secs(20),
        || stored_events(&db),
        |c| !c.is_empty(),
    )
    .await;
    assert_eq!(waiting, vec![("received".into(), 1)], "stored, waiting");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = record(&h, &key, &id.to_string()).await;
    assert_eq!(
        r.status,
        MessageStatus::Sending,
        "a send in flight is not overtaken"
    );

    // The worker records the send; the waiting event then applies.
    h.app
        .isolation
        .store(2)
        .await
        .record_outcomes(&[herald_store::Outcome {
            id: id.as_uuid(),
            status: MessageStatus::Sent,
            error_code: None,
            error_message: None,
        }])
        .await
        .expect("sent");
    let r = record_until(&h, &key, &id.to_string(), |r| {
        r.status == MessageStatus::Delivered
    })
    .await;
    assert!(r.sent_at.is_some() && r.delivered_at.is_some());
    assert_eq!(stored_events(&db).await, vec![("processed".into(), 1)]);
    h.stop().await.expect("clean stop");
}

/// A WeWork request as the platform sends it: the query and the body.
fn wework_post(crypto: &WeworkCrypto, xml: &str, nonce: &str) -> (String, String) {
    let body = crypto.envelope(xml, *b"0123456789abcdef", 1000002);
    let encrypted = herald_callbacks::wework::encrypted_part(&body).expect("envelope");
    let ts = Utc::now().timestamp().to_string();
    let sig = crypto.signature(&ts, nonce, &encrypted);
    (
        format!("msg_signature={sig}&timestamp={ts}&nonce={nonce}"),
        body,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wework_verifies_its_url_and_a_members_reply_is_linked_to_their_message() {
    let h = Harness::start(1).await.expect("herald starts");
    let (_, wework) = providers(&h).await;
    let (_t, key) = h.tenant(&unique("ww")).await.expect("tenant");
    let id = h
        .app
        .client(&key)
        .send(&SendMessage::new(Channel::Wework, "u1|u2", "hello"))
        .await
        .expect("accepted")
        .id
        .to_string();
    record_until(&h, &key, &id, |r| r.status == MessageStatus::Sent).await;
    let crypto = WeworkCrypto::new(WEWORK_TOKEN, WEWORK_AES_KEY, WEWORK_CORP).expect("crypto");
    let url = format!("{}/v1/callbacks/wework/{wework}", h.producer_url);

    // URL verification: the decrypted echostr, and nothing else.
    let echostr = crypto.encrypt("8431967519262517", *b"fedcba9876543210");
    let ts = Utc::now().timestamp().to_string();
    let sig = crypto.signature(&ts, "42", &echostr);
    let resp = h
        .app
        .http
        .get(&url)
        .query(&[
            ("msg_signature", sig.as_str()),
            ("timestamp", &ts),
            ("nonce", "42"),
            ("echostr", &echostr),
        ])
        .send()
        .await
        .expect("verify");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.expect("body"), "8431967519262517");
    let resp = h
        .app
        .http
        .get(&url)
        .query(&[
            ("msg_signature", "0000"),
            ("timestamp", ts.as_str()),
            ("nonce", "42"),
            ("echostr", &echostr),
        ])
        .send()
        .await
        .expect("verify");
    assert_eq!(resp.status().as_u16(), 401);

    // u2 replies: linked to the message sent to u1|u2; WeWork's retry of
    // the same MsgId is stored once.
    let reply = format!(
        "<xml><ToUserName><![CDATA[{WEWORK_CORP}]]></ToUserName><FromUserName><![CDATA[u2]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[yes please]]></Content><MsgId>7741</MsgId><AgentID>1000002</AgentID></xml>",
        Utc::now().timestamp()
    );
    for nonce in ["1", "2"] {
        let (query, body) = wework_post(&crypto, &reply, nonce);
        let resp = h
            .app
            .http
            .post(format!("{url}?{query}"))
            .header("content-type", "text/xml")
            .body(body)
            .send()
            .await
            .expect("event");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.text().await.expect("body"), "");
    }
    let r = record_until(&h, &key, &id, |r| r.status == MessageStatus::Replied).await;
    assert_eq!(r.events.len(), 1, "{:?}", r.events);
    assert_eq!(r.events[0].detail["content"], "yes please");
    assert_eq!(r.events[0].detail["member"], "u2");
    assert!(
        r.delivered_at.is_some(),
        "a reply shows the message arrived"
    );

    // An event about no message is answered and dropped; a tampered body
    // or a wrong signature is refused.
    let contact = format!(
        "<xml><ToUserName>{WEWORK_CORP}</ToUserName><FromUserName>sys</FromUserName><CreateTime>{}</CreateTime><MsgType>event</MsgType><Event>change_contact</Event></xml>",
        Utc::now().timestamp()
    );
    let (query, body) = wework_post(&crypto, &contact, "3");
    let resp = h
        .app
        .http
        .post(format!("{url}?{query}"))
        .body(body)
        .send()
        .await
        .expect("event");
    assert_eq!(resp.status().as_u16(), 200);
    let (query, body) = wework_post(&crypto, &reply, "4");
    let tampered = body.replacen("<Encrypt><![CDATA[", "<Encrypt><![CDATA[A", 1);
    let resp = h
        .app
        .http
        .post(format!("{url}?{query}"))
        .body(tampered)
        .send()
        .await
        .expect("event");
    assert_eq!(resp.status().as_u16(), 401);
    let resp = h
        .app
        .http
        .post(format!("{url}?timestamp=1&nonce=2"))
        .body("<xml/>")
        .send()
        .await
        .expect("event");
    assert_eq!(resp.status().as_u16(), 401);
    let (query, _) = wework_post(&crypto, &reply, "5");
    let resp = h
        .app
        .http
        .post(format!("{url}?{query}"))
        .body("<xml><Encrypt>")
        .send()
        .await
        .expect("event");
    assert_eq!(resp.status().as_u16(), 400);
    let db = h.db().await.expect("db");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored_events(&db).await, vec![("processed".into(), 1)]);
    h.stop().await.expect("clean stop");
}

/// The statuses of `ids` once every one satisfies `done` (or time runs out).
async fn statuses_until(
    h: &Harness,
    key: &str,
    ids: &[String],
    done: impl Fn(MessageStatus) -> bool,
) -> Vec<MessageStatus> {
    wait_for_value(
        Duration::from_secs(40),
        || async {
            let client = h.app.client(key);
            let mut out = Vec::new();
            for id in ids {
                out.push(
                    client
                        .message(id)
                        .await
                        .map(|r| r.status)
                        .unwrap_or(MessageStatus::Queued),
                );
            }
            out
        },
        |s: &Vec<MessageStatus>| s.iter().all(|s| done(*s)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_simulator_reports_back_on_every_channel_and_herald_follows() {
    use herald_api::sim::{CallbackRates, GenericTarget, SimCallbacks, WeworkTarget};
    let h = Harness::start(1).await.expect("herald starts");
    let (email, wework) = providers(&h).await;
    let webhook = h
        .app
        .admin
        .create_provider(&herald_api::NewProvider {
            name: unique("cb-webhook"),
            channel: None,
            kind: herald_domain::ProviderKind::Webhook,
            config: json!({"signing_secret": herald_sim::config::DEFAULT_WEBHOOK_SECRET,
                           "allow_private_addresses": true, "callback_secret": SECRET}),
            quota: None,
            send_window: None,
            weight: None,
            enabled: None,
            tenant_id: None,
        })
        .await
        .expect("webhook provider");
    let configure = |rates: CallbackRates| SimCallbacks {
        herald_url: Some(h.producer_url.clone()),
        email: Some(GenericTarget {
            provider_id: email.clone(),
            callback_secret: SECRET.into(),
        }),
        webhook: Some(GenericTarget {
            provider_id: webhook.id.to_string(),
            callback_secret: SECRET.into(),
        }),
        wework: Some(WeworkTarget {
            provider_id: wework.clone(),
            token: WEWORK_TOKEN.into(),
            encoding_aes_key: WEWORK_AES_KEY.into(),
            corp_id: WEWORK_CORP.into(),
            agent_id: 1000002,
        }),
        rates,
        delay_ms: 0,
        return_path_smtp: None,
    };
    let all = CallbackRates {
        delivered: 1.0,
        bounced: 0.0,
        soft_bounced: 0.0,
        read: 1.0,
        clicked: 1.0,
        replied: 1.0,
        complained: 0.0,
    };
    h.sim.set_callbacks(configure(all)).expect("callbacks on");
    let (_t, key) = h.tenant(&unique("simcb")).await.expect("tenant");
    let email_msg = |to: &str| {
        let mut m = SendMessage::new(Channel::Email, to, "hello");
        m.subject = Some("Hi".into());
        m
    };
    let sent = |msgs: Vec<SendMessage>| {
        let h = &h;
        let key = key.clone();
        async move {
            h.send_all(&key, &msgs)
                .await
                .into_iter()
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
        }
    };
    let emails = sent(
        (0..5)
            .map(|i| email_msg(&format!("r{i}@example.com")))
            .collect(),
    )
    .await;
    let weworks = sent(vec![
        SendMessage::new(Channel::Wework, "m1|m2", "hi"),
        SendMessage::new(Channel::Wework, "m3", "hi"),
    ])
    .await;
    let hooks = sent(vec![SendMessage::new(
        Channel::Webhook,
        format!("http://127.0.0.1:{}/webhook/cb", h.sim_http_port),
        "{}",
    )])
    .await;
    assert_eq!(
        statuses_until(&h, &key, &emails, |s| s == MessageStatus::Clicked).await,
        vec![MessageStatus::Clicked; 5]
    );
    assert_eq!(
        statuses_until(&h, &key, &weworks, |s| s == MessageStatus::Replied).await,
        vec![MessageStatus::Replied; 2]
    );
    assert_eq!(
        statuses_until(&h, &key, &hooks, |s| s == MessageStatus::Clicked).await,
        vec![MessageStatus::Clicked]
    );
    let r = record(&h, &key, &emails[0]).await;
    let kinds: Vec<EventKind> = r.events.iter().map(|e| e.event).collect();
    assert_eq!(
        kinds,
        [EventKind::Delivered, EventKind::Read, EventKind::Clicked]
    );
    let r = record(&h, &key, &weworks[0]).await;
    let kinds: Vec<EventKind> = r.events.iter().map(|e| e.event).collect();
    assert_eq!(
        kinds,
        [EventKind::Read, EventKind::Replied],
        "m1 opened the app, then replied"
    );

    // Bounces, then complaints.
    h.sim
        .set_callbacks(configure(CallbackRates {
            bounced: 1.0,
            ..all
        }))
        .expect("bounces");
    let bounced = sent(vec![email_msg("gone@example.com")]).await;
    assert_eq!(
        statuses_until(&h, &key, &bounced, |s| s == MessageStatus::Bounced).await,
        vec![MessageStatus::Bounced]
    );
    let r = record(&h, &key, &bounced[0]).await;
    assert_eq!(r.events[0].detail["status"], "5.1.1");
    h.sim
        .set_callbacks(configure(CallbackRates {
            read: 0.0,
            complained: 1.0,
            ..all
        }))
        .expect("complaints");
    let complained = sent(vec![email_msg("angry@example.com")]).await;
    assert_eq!(
        statuses_until(&h, &key, &complained, |s| s == MessageStatus::Complained).await,
        vec![MessageStatus::Complained]
    );
    let report = h.sim.callbacks();
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.sent, 5 * 3 + 2 * 2 + 3 + 1 + 2);
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hard_bounces_and_complaints_suppress_and_suppressed_sends_are_recorded_never_sent() {
    use herald_api::{NewSuppression, SuppressionReason};
    let h = Harness::start(1).await.expect("herald starts");
    let (email, _) = providers(&h).await;
    let (tenant_id, key) = h.tenant(&unique("sup")).await.expect("tenant");
    let client = h.app.client(&key);
    let mail = |to: &str| {
        let mut m = SendMessage::new(Channel::Email, to, "hello");
        m.subject = Some("Hi".into());
        m
    };
    let ids = h
        .send_all(
            &key,
            &[
                mail("hard@example.com"),
                mail("soft@example.com"),
                mail("angry@example.com"),
            ],
        )
        .await
        .into_iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>();
    for id in &ids {
        record_until(&h, &key, id, |r| r.status == MessageStatus::Sent).await;
    }
    let report = |id: &str, event: &str, detail: Value| {
        json!({"message_id": id, "event": event, "at": Utc::now().to_rfc3339(), "detail": detail})
            .to_string()
    };
    for body in [
        report(
            &ids[0],
            "bounced",
            json!({"type": "hard", "status": "5.1.1"}),
        ),
        report(
            &ids[1],
            "bounced",
            json!({"type": "soft", "status": "4.2.2"}),
        ),
        report(&ids[2], "complained", json!({})),
    ] {
        assert_eq!(post(&h, &email, &body, Some(SECRET)).await.0, 202);
    }
    let listed = wait_for_value(
        Duration::from_secs(20),
        || async { client.suppressions().await.unwrap_or_default() },
        |l| l.len() >= 2,
    )
    .await;
    let entries: Vec<(String, SuppressionReason)> = listed
        .iter()
        .map(|s| (s.address.clone(), s.reason))
        .collect();
    assert_eq!(
        entries,
        [
            ("angry@example.com".to_owned(), SuppressionReason::Complaint),
            ("hard@example.com".to_owned(), SuppressionReason::HardBounce),
        ],
        "a soft bounce does not suppress"
    );
    assert_eq!(
        listed[1].message_id.map(|m| m.to_string()),
        Some(ids[0].clone())
    );

    // A batch with a suppressed address (another case) is accepted whole;
    // that message is recorded suppressed and never reaches the provider.
    let before = h.sim.stats().smtp.unique;
    let mut keyed = mail("Hard@Example.com");
    keyed.idempotency_key = Some("sup-1".into());
    let batch = client
        .send_batch(&[keyed.clone(), mail("fresh@example.com")])
        .await
        .expect("accepted whole");
    let (blocked, fresh) = (batch.ids[0].to_string(), batch.ids[1].to_string());
    record_until(&h, &key, &fresh, |r| r.status == MessageStatus::Sent).await;
    let r = record(&h, &key, &blocked).await;
    assert_eq!(r.status, MessageStatus::Suppressed);
    assert_eq!(r.error_code.as_deref(), Some("suppressed"));
    assert!(r.error_message.unwrap_or_default().contains("hard_bounce"));
    assert_eq!(h.sim.count(herald_sim::SimChannel::Email, &blocked), 0);
    assert_eq!(
        h.sim.stats().smtp.unique,
        before + 1,
        "only the fresh one went out"
    );
    // Its idempotent repeat answers as the first did.
    let again = client.send(&keyed).await.expect("repeat");
    assert_eq!(
        (again.id.to_string(), again.status),
        (blocked.clone(), MessageStatus::Suppressed)
    );
    let single = client
        .send(&mail("angry@example.com"))
        .await
        .expect("accepted");
    assert_eq!(single.status, MessageStatus::Suppressed);

    // The tenant's own entries.
    let added = client
        .add_suppression(&NewSuppression {
            address: "Manual@Example.com".into(),
            reason: None,
        })
        .await
        .expect("added");
    assert_eq!(
        (added.address.as_str(), added.reason),
        ("manual@example.com", SuppressionReason::Manual)
    );
    let (status, body) = call(
        &h,
        &key,
        reqwest::Method::POST,
        "/v1/suppressions",
        Some(json!({"address": "manual@example.com"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &h,
        &key,
        reqwest::Method::POST,
        "/v1/suppressions",
        Some(json!({"address": "not an address"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("address"))
    );
    let (status, body) = call(
        &h,
        &key,
        reqwest::Method::POST,
        "/v1/suppressions",
        Some(json!({"address": "x@example.com", "reason": "hard_bounce"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("reason"))
    );

    // Another tenant sees none of it and cannot remove it.
    let (_t2, key2) = h.tenant(&unique("sup2")).await.expect("tenant 2");
    assert!(h
        .app
        .client(&key2)
        .suppressions()
        .await
        .expect("list")
        .is_empty());
    let (status, _) = call(
        &h,
        &key2,
        reqwest::Method::DELETE,
        "/v1/suppressions/manual@example.com",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let other = h
        .app
        .client(&key2)
        .send(&mail("hard@example.com"))
        .await
        .expect("accepted");
    assert_eq!(
        other.status,
        MessageStatus::Queued,
        "suppression is per tenant"
    );

    // The operator sees the tenant's list and manages it too.
    let admin_path = format!("/v1/admin/tenants/{tenant_id}/suppressions");
    let (status, body) = call(
        &h,
        &h.app.admin_token,
        reqwest::Method::GET,
        &admin_path,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(3), "{body}");
    let (status, _) = call(
        &h,
        &h.app.admin_token,
        reqwest::Method::POST,
        &admin_path,
        Some(json!({"address": "ops@example.com"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        &h,
        &h.app.admin_token,
        reqwest::Method::DELETE,
        &format!("{admin_path}/ops@example.com"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(&h, &key, reqwest::Method::GET, &admin_path, None).await;
    assert!(
        matches!(status, 401 | 403),
        "a tenant key is not the admin token: {status}"
    );

    // Removed, the address is sent to again.
    client
        .remove_suppression("HARD@example.com")
        .await
        .expect("removed");
    let (status, _) = call(
        &h,
        &key,
        reqwest::Method::DELETE,
        "/v1/suppressions/hard@example.com",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let id = client
        .send(&mail("hard@example.com"))
        .await
        .expect("accepted")
        .id
        .to_string();
    record_until(&h, &key, &id, |r| r.status == MessageStatus::Sent).await;
    h.stop().await.expect("clean stop");
}

async fn call(
    h: &Harness,
    key: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = h
        .app
        .http
        .request(method, format!("{}{path}", h.producer_url))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_email_carries_a_one_click_unsubscribe_link_that_suppresses_its_recipient() {
    let h = Harness::start(1).await.expect("herald starts");
    providers(&h).await;
    let (_t, key) = h.tenant(&unique("unsub")).await.expect("tenant");
    let client = h.app.client(&key);
    let mut m = SendMessage::new(Channel::Email, "Leaving@Example.com", "hello");
    m.subject = Some("Hi".into());
    let id = client.send(&m).await.expect("accepted").id.to_string();
    let seen = arrived(&h.sim, &id).await;
    assert_eq!(seen["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
    let link = seen["list_unsubscribe"].as_str().expect("List-Unsubscribe");
    let token = link
        .trim_matches(|c| c == '<' || c == '>')
        .rsplit_once("/u/")
        .map(|(_, t)| t.to_owned())
        .expect("a /u/ link");
    let url = format!("{}/u/{token}", h.producer_url);

    // The page asks; only a POST unsubscribes. A tampered token is 404.
    let page = h.app.http.get(&url).send().await.expect("page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(page
        .text()
        .await
        .expect("html")
        .contains("l***@example.com"));
    assert!(client.suppressions().await.expect("list").is_empty());
    let mut bad = token.clone();
    bad.replace_range(0..1, if token.starts_with('A') { "B" } else { "A" });
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let resp = h
            .app
            .http
            .request(method, format!("{}/u/{bad}", h.producer_url))
            .send()
            .await
            .expect("tampered");
        assert_eq!(resp.status().as_u16(), 404);
    }
    for _ in 0..2 {
        let resp = h
            .app
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .expect("one click");
        assert_eq!(resp.status().as_u16(), 200, "and again: idempotent");
    }
    let list = client.suppressions().await.expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].address, "leaving@example.com");
    assert_eq!(list[0].reason, herald_api::SuppressionReason::Unsubscribe);
    assert_eq!(list[0].message_id.map(|m| m.to_string()), Some(id));
    let again = client.send(&m).await.expect("accepted");
    assert_eq!(again.status, MessageStatus::Suppressed);
    h.stop().await.expect("clean stop");
}

/// The path (`/t/…`) of a tracking URL, on the test's producer.
fn on_producer(h: &Harness, url: &str) -> String {
    let path = &url[url.find("/t/").expect("a tracking path")..];
    format!("{}{path}", h.producer_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tracked_email_counts_opens_and_clicks_and_redirects_only_where_it_was_signed_to() {
    let h = Harness::start(1).await.expect("herald starts");
    providers(&h).await;
    let (tenant, key) = h.tenant(&unique("track")).await.expect("tenant");
    let (_, untracked_key) = h.tenant(&unique("notrack")).await.expect("tenant");
    let patch: herald_api::TenantPatch =
        serde_json::from_value(json!({"tracking": {"opens": true, "clicks": true}}))
            .expect("patch");
    let updated = h
        .app
        .admin
        .update_tenant(&tenant, &patch)
        .await
        .expect("tracking on");
    assert!(updated.tracking.opens && updated.tracking.clicks);
    let destination = "https://shop.example/sale?a=1&b=2";
    let mut m = SendMessage::new(Channel::Email, "ada@example.com", "Hi (text part)");
    m.subject = Some("Sale".into());
    m.html = Some(r#"<html><body><p>Hi <a href="https://shop.example/sale?a=1&amp;b=2">the sale</a></p></body></html>"#.into());
    let id = h
        .app
        .client(&key)
        .send(&m)
        .await
        .expect("accepted")
        .id
        .to_string();
    let seen = arrived(&h.sim, &id).await;
    let urls: Vec<String> = serde_json::from_value(seen["tracking_urls"].clone()).expect("urls");
    assert_eq!(urls.len(), 2, "one link and the pixel: {urls:?}");
    assert!(
        urls[0].contains("/t/c/") && urls[1].contains("/t/o/"),
        "{urls:?}"
    );
    let (click, pixel) = (on_producer(&h, &urls[0]), on_producer(&h, &urls[1]));

    // A tenant that does not track sends its links as they are.
    let plain = h
        .app
        .client(&untracked_key)
        .send(&m)
        .await
        .expect("accepted")
        .id;
    let plain = arrived(&h.sim, &plain.to_string()).await;
    assert_eq!(plain["tracking_urls"], json!([]));

    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")
        .build()
        .expect("client");
    // A link scanner's visit redirects too, but counts for nothing.
    let scanner = browser
        .get(&click)
        .header("user-agent", "Barracuda Sentinel (EE)")
        .send()
        .await
        .expect("scan");
    assert_eq!(scanner.status().as_u16(), 302);
    let clicked = browser.get(&click).send().await.expect("click");
    assert_eq!(clicked.status().as_u16(), 302);
    assert_eq!(
        clicked.headers()["location"].to_str().expect("ascii"),
        destination,
        "the signed destination, &amp; read as &"
    );
    let r = record_until(&h, &key, &id, |r| r.status == MessageStatus::Clicked).await;
    let click_event = r
        .events
        .iter()
        .find(|e| e.event == EventKind::Clicked)
        .expect("a clicked event");
    assert_eq!(click_event.detail["url"], destination);
    assert_eq!(click_event.detail["source"], "tracking");
    let opened = browser.get(&pixel).send().await.expect("pixel");
    assert_eq!(opened.status().as_u16(), 200);
    assert_eq!(opened.headers()["content-type"], "image/gif");
    assert_eq!(opened.bytes().await.expect("gif").len(), 43);
    let r = record_until(&h, &key, &id, |r| {
        r.events.iter().any(|e| e.event == EventKind::Read)
    })
    .await;
    assert_eq!(
        r.status,
        MessageStatus::Clicked,
        "an open never undoes a click"
    );
    assert!(
        r.delivered_at.is_some(),
        "an open or a click proves delivery"
    );
    let db = h.db().await.expect("db");
    let scanned: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM callback_events WHERE state = 'ignored' AND reason LIKE '%scanner%'",
    )
    .fetch_one(&db)
    .await
    .expect("count");
    assert_eq!(scanned, 1, "the scanner's visit is kept, ignored");

    // Tampered tokens: 404, never a redirect.
    for url in [&click, &pixel] {
        let (head, token) = url.rsplit_once('/').expect("a token");
        let mut bad = token.to_owned();
        bad.replace_range(5..6, if &token[5..6] == "A" { "B" } else { "A" });
        let resp = browser
            .get(format!("{head}/{bad}"))
            .send()
            .await
            .expect("tampered");
        assert_eq!(resp.status().as_u16(), 404, "{head}/{bad}");
        assert!(resp.headers().get("location").is_none());
    }
    h.stop().await.expect("clean stop");
}

/// Plays a reporting MTA: one transaction to the bounce listener on
/// `port`, `MAIL FROM:<>` to `rcpt`. The answer to the data, or to the
/// first command refused.
async fn report_to(port: u16, rcpt: &str, body: &str) -> String {
    herald_sim::callbacks::mail_report(&format!("127.0.0.1:{port}"), rcpt, body)
        .await
        .expect("the bounce listener answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bounces_and_complaints_come_back_to_each_emails_own_return_path() {
    use herald_callbacks::reports::{arf, dsn};
    let h = Harness::start_with(1, Some("bounces.e2e.test"))
        .await
        .expect("herald starts");
    assert_ne!(h.app.bounce_port, 0, "the bounce listener is up");
    providers(&h).await;
    let (_t, key) = h.tenant(&unique("bounce")).await.expect("tenant");
    let client = h.app.client(&key);
    // Sends an email to `to`: its id and the envelope sender it went out with.
    let send = |to: &'static str| {
        let client = client.clone();
        let sim = h.sim.clone();
        async move {
            let mut m = SendMessage::new(Channel::Email, to, "hello");
            m.subject = Some("Hi".into());
            let id = client.send(&m).await.expect("accepted").id.to_string();
            let seen = arrived(&sim, &id).await;
            let from = seen["from"]
                .as_str()
                .expect("an envelope sender")
                .to_owned();
            (id, from)
        }
    };
    let port = h.app.bounce_port;

    // A hard bounce: `bounced` (hard), and the address is suppressed.
    let (hard, hard_rp) = send("ada@example.com").await;
    assert!(
        hard_rp.starts_with("bounce+") && hard_rp.ends_with("@bounces.e2e.test"),
        "VERP: {hard_rp}"
    );
    let report = dsn(
        "mx.example.com",
        "ada@example.com",
        "5.1.1",
        "550 5.1.1 <ada@example.com>: user unknown",
        "Subject: Hi",
    );
    let answer = report_to(port, &hard_rp, &report).await;
    assert!(answer.starts_with("250"), "{answer}");
    let r = record_until(&h, &key, &hard, |r| r.status == MessageStatus::Bounced).await;
    let bounce = r
        .events
        .iter()
        .find(|e| e.event == EventKind::Bounced)
        .expect("bounced");
    assert_eq!(bounce.detail["type"], "hard");
    assert_eq!(bounce.detail["status"], "5.1.1");
    assert_eq!(
        bounce.detail["diagnostic"],
        "550 5.1.1 <ada@example.com>: user unknown"
    );
    // The MTA retries the same report: stored once.
    assert!(report_to(port, &hard_rp, &report).await.starts_with("250"));

    // A soft bounce does not suppress; a complaint does.
    let (soft, soft_rp) = send("bo@example.com").await;
    let answer = report_to(
        port,
        &soft_rp,
        &dsn(
            "mx.example.com",
            "bo@example.com",
            "4.2.2",
            "452 4.2.2 mailbox full",
            "",
        ),
    )
    .await;
    assert!(answer.starts_with("250"), "{answer}");
    let r = record_until(&h, &key, &soft, |r| r.status == MessageStatus::Bounced).await;
    assert_eq!(r.events[0].detail["type"], "soft");
    let (spam, spam_rp) = send("cy@example.com").await;
    let answer = report_to(
        port,
        &spam_rp,
        &arf("isp.example", "cy@example.com", "Subject: Hi"),
    )
    .await;
    assert!(answer.starts_with("250"), "{answer}");
    record_until(&h, &key, &spam, |r| r.status == MessageStatus::Complained).await;
    let suppressed = wait_for_value(
        Duration::from_secs(10),
        || {
            let client = client.clone();
            async move { client.suppressions().await.unwrap_or_default() }
        },
        |l| l.len() >= 2,
    )
    .await;
    let mut reasons: Vec<(String, herald_api::SuppressionReason)> = suppressed
        .into_iter()
        .map(|s| (s.address, s.reason))
        .collect();
    reasons.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        reasons,
        vec![
            (
                "ada@example.com".into(),
                herald_api::SuppressionReason::HardBounce
            ),
            (
                "cy@example.com".into(),
                herald_api::SuppressionReason::Complaint
            ),
        ]
    );
    let db = h.db().await.expect("db");
    let bounces: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM callback_events WHERE message_id = $1::uuid AND event = 'bounced'",
    )
    .bind(&hard)
    .fetch_one(&db)
    .await
    .expect("count");
    assert_eq!(bounces, 1, "the retried report is one event");

    // Refusals: not a report; a return path that is not Herald's.
    let answer = report_to(port, &soft_rp, "Subject: out of office\r\n\r\nI am away.").await;
    assert!(answer.starts_with("550 5.6.0"), "{answer}");
    let forged = format!("bounce+{}@bounces.e2e.test", "0".repeat(48));
    let answer = report_to(port, &forged, &report).await;
    assert!(answer.starts_with("550 5.1.1"), "{answer}");

    // The whole loop: the simulator bounces what it accepts by mailing a
    // DSN to the return path, as a mail system does.
    h.sim
        .set_callbacks(herald_api::sim::SimCallbacks {
            herald_url: Some(h.producer_url.clone()),
            return_path_smtp: Some(format!("127.0.0.1:{port}")),
            rates: herald_api::sim::CallbackRates {
                delivered: 0.0,
                soft_bounced: 1.0,
                ..Default::default()
            },
            ..Default::default()
        })
        .expect("callbacks on");
    let (looped, _) = send("dee@example.com").await;
    let r = record_until(&h, &key, &looped, |r| r.status == MessageStatus::Bounced).await;
    assert_eq!(r.events[0].detail["source"], "dsn");
    assert_eq!(r.events[0].detail["status"], "4.2.2");
    assert_eq!(r.events[0].detail["recipient"], "dee@example.com");
    h.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_mta_relays_herald_email_and_its_bounces_come_back_to_the_return_path() {
    let h = Harness::start_with(1, Some("bounces.e2e.test"))
        .await
        .expect("herald starts");
    let postfix = herald_e2e::postfix::PrivatePostfix::start(&[
        (
            "fail.e2e.test",
            "error:5.1.1 user unknown (herald test)".to_owned(),
        ),
        (
            "ok.e2e.test",
            format!("smtp:[127.0.0.1]:{}", h.sim_smtp_port),
        ),
        (
            "bounces.e2e.test",
            format!("smtp:[127.0.0.1]:{}", h.app.bounce_port),
        ),
    ])
    .expect("a private postfix");
    let provider = herald_api::NewProvider {
        name: unique("postfix"),
        channel: None,
        kind: herald_domain::ProviderKind::Smtp,
        config: json!({"host": "127.0.0.1", "port": postfix.port, "tls": "none",
                       "from": "e2e@herald.local", "pool_size": 2}),
        quota: Some(herald_domain::Quota {
            per_minute: Some(1_000_000),
            ..Default::default()
        }),
        send_window: None,
        weight: None,
        enabled: None,
        tenant_id: None,
    };
    h.app
        .admin
        .create_provider(&provider)
        .await
        .expect("provider");
    let (_t, key) = h.tenant(&unique("mta")).await.expect("tenant");
    let client = h.app.client(&key);
    let send = |to: &str| {
        let mut m = SendMessage::new(Channel::Email, to, "hello through a real MTA");
        m.subject = Some("Hi".into());
        m.html = Some("<p>hello <b>through</b> a real MTA</p>".into());
        let client = client.clone();
        async move { client.send(&m).await.expect("accepted").id.to_string() }
    };
    let delivered = send("bo@ok.e2e.test").await;
    let bounced = send("ada@fail.e2e.test").await;

    // Relayed: Postfix took it (sent) and handed it on to the simulator.
    record_until(&h, &key, &delivered, |r| r.status == MessageStatus::Sent).await;
    let seen = wait_for_value(
        Duration::from_secs(30),
        || {
            let sim = h.sim.clone();
            let id = delivered.clone();
            async move { sim.last(herald_sim::SimChannel::Email, &id) }
        },
        Option::is_some,
    )
    .await;
    assert!(
        seen.is_some(),
        "postfix relayed nothing to the simulator:\n{}",
        postfix.log()
    );

    // Bounced: Postfix took it, could not deliver it, and mailed a DSN to
    // the return path, which Herald's listener read.
    let last = wait_for_value(
        Duration::from_secs(30),
        || {
            let client = client.clone();
            let id = bounced.clone();
            async move { client.message(&id).await.ok() }
        },
        |r| {
            r.as_ref()
                .is_some_and(|r| r.status == MessageStatus::Bounced)
        },
    )
    .await;
    let r = match last {
        Some(r) if r.status == MessageStatus::Bounced => r,
        other => panic!(
            "no bounce came back ({other:?}); postfix's log:\n{}",
            postfix.log()
        ),
    };
    let bounce = r
        .events
        .iter()
        .find(|e| e.event == EventKind::Bounced)
        .expect("bounced");
    assert_eq!(bounce.detail["source"], "dsn");
    assert_eq!(bounce.detail["type"], "hard");
    assert_eq!(bounce.detail["status"], "5.1.1");
    assert_eq!(bounce.detail["recipient"], "ada@fail.e2e.test");
    assert_eq!(bounce.detail["reporting_mta"], "mx.herald-test.localhost");
    let list = client.suppressions().await.expect("list");
    assert!(list.iter().any(|s| s.address == "ada@fail.e2e.test"
        && s.reason == herald_api::SuppressionReason::HardBounce));
    drop(postfix);
    h.stop().await.expect("clean stop");
}
