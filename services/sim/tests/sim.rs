//! The simulator end to end: real SMTP clients (lettre) over plain,
//! STARTTLS and implicit TLS, WeWork calls and signed webhooks over HTTP,
//! and the control API.

use std::time::Duration;

use herald_sim::{Sim, SimChannel, SimConfig, SimHandle};
use herald_testing::wait_for;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

// ---- helpers ---------------------------------------------------------------

struct TestSim {
    handle: SimHandle,
    http: String,
    smtp_port: u16,
    smtps_port: u16,
    ca_pem: Vec<u8>,
    ca_file: std::path::PathBuf,
    client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn spawn_sim() -> TestSim {
    let sim = Sim::build(SimConfig::ephemeral())
        .await
        .expect("the simulator builds");
    let ca_file = sim.ca_file().to_path_buf();
    let ca_pem = std::fs::read(&ca_file).expect("ca.pem is written");
    let (stop, stopped) = oneshot::channel::<()>();
    let test_sim = TestSim {
        handle: sim.handle(),
        http: format!("http://127.0.0.1:{}", sim.http_port()),
        smtp_port: sim.smtp_port(),
        smtps_port: sim.smtps_port(),
        ca_pem,
        ca_file,
        client: reqwest::Client::new(),
        stop: Some(stop),
        task: tokio::spawn(sim.run(async move {
            let _ = stopped.await;
        })),
    };
    test_sim
}

impl TestSim {
    fn tls_parameters(&self) -> TlsParameters {
        let ca = Certificate::from_pem(&self.ca_pem).expect("the CA parses");
        TlsParameters::builder("localhost".to_owned())
            .add_root_certificate(ca)
            .build_rustls()
            .expect("TLS parameters")
    }

    fn transport(&self, tls: Tls, port: u16) -> AsyncSmtpTransport<Tokio1Executor> {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(10)))
            .build()
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.http))
            .send()
            .await
            .expect("the simulator answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn send_json(&self, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.http))
            .json(body)
            .send()
            .await
            .expect("the simulator answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn wework_token(&self) -> String {
        let (_, answer) = self
            .get("/cgi-bin/gettoken?corpid=corp&corpsecret=secret")
            .await;
        assert_eq!(answer["errcode"], 0, "{answer}");
        answer["access_token"].as_str().expect("a token").to_owned()
    }

    async fn wework_send(&self, token: &str, message_id: &str, body: &Value) -> Value {
        self.client
            .post(format!(
                "{}/cgi-bin/message/send?access_token={token}",
                self.http
            ))
            .header("X-Herald-Message-Id", message_id)
            .json(body)
            .send()
            .await
            .expect("the simulator answers")
            .json()
            .await
            .expect("a JSON body")
    }

    /// POSTs `body` to `path` with the message id and `signature` headers;
    /// the status, `Retry-After` and the JSON answer.
    async fn webhook(
        &self,
        path: &str,
        message_id: &str,
        signature: Option<&str>,
        body: &[u8],
    ) -> (u16, Option<String>, Value) {
        let mut request = self
            .client
            .post(format!("{}{path}", self.http))
            .header("Content-Type", "application/json")
            .header("X-Herald-Message-Id", message_id)
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("X-Herald-Signature", signature);
        }
        let response = request.send().await.expect("the simulator answers");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (
            status,
            retry_after,
            response.json().await.expect("a JSON body"),
        )
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the simulator stops in time")
            .expect("the simulator task does not panic")
    }
}

fn email(message_id: &str) -> Message {
    let header = HeaderName::new_from_ascii("X-Herald-Message-Id".to_owned()).expect("a name");
    Message::builder()
        .from("news@shop.example".parse().expect("an address"))
        .to("alice@example.com".parse().expect("an address"))
        .subject(format!("Hello {message_id}"))
        .message_id(Some(format!("<{message_id}@herald.local>")))
        .raw_header(HeaderValue::new(header, message_id.to_owned()))
        .body(".a line starting with a dot\r\nand another\r\n".to_owned())
        .expect("a message")
}

/// `sha256=<hex HMAC-SHA256>` of `body` keyed with `secret`.
fn signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

// ---- SMTP ------------------------------------------------------------------

#[tokio::test]
async fn a_message_sent_over_plain_smtp_is_counted_once() {
    let sim = spawn_sim().await;
    let id = new_id();
    sim.transport(Tls::None, sim.smtp_port)
        .send(email(&id))
        .await
        .expect("the simulator accepts the message");
    assert_eq!(sim.handle.count(SimChannel::Email, &id), 1);
    let stats = sim.handle.stats().smtp;
    assert_eq!((stats.received, stats.unique, stats.duplicates), (1, 1, 0));
    let (_, detail) = sim.get(&format!("/sim/messages/{id}")).await;
    assert_eq!(detail["email"], 1);
    assert_eq!(detail["wework"], 0);
    assert_eq!(detail["last"]["email"]["tls"], false);
    assert_eq!(
        detail["last"]["email"]["rcpt"],
        json!(["alice@example.com"])
    );
    assert_eq!(
        detail["last"]["email"]["message_id"],
        format!("<{id}@herald.local>")
    );
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_message_sent_over_starttls_is_counted_once() {
    let sim = spawn_sim().await;
    let id = new_id();
    sim.transport(Tls::Required(sim.tls_parameters()), sim.smtp_port)
        .send(email(&id))
        .await
        .expect("the simulator accepts the message over STARTTLS");
    assert_eq!(sim.handle.count(SimChannel::Email, &id), 1);
    let (_, detail) = sim.get(&format!("/sim/messages/{id}")).await;
    assert_eq!(detail["last"]["email"]["tls"], true);
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_message_sent_over_implicit_tls_is_counted_once() {
    let sim = spawn_sim().await;
    let id = new_id();
    sim.transport(Tls::Wrapper(sim.tls_parameters()), sim.smtps_port)
        .send(email(&id))
        .await
        .expect("the simulator accepts the message over TLS");
    assert_eq!(sim.handle.count(SimChannel::Email, &id), 1);
    let (_, detail) = sim.get(&format!("/sim/messages/{id}")).await;
    assert_eq!(detail["last"]["email"]["tls"], true);
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn the_ca_file_is_readable_while_the_simulator_runs_and_removed_after() {
    let sim = spawn_sim().await;
    let ca_file = sim.ca_file.clone();
    assert!(std::fs::read_to_string(&ca_file)
        .expect("readable")
        .starts_with("-----BEGIN CERTIFICATE-----"));
    sim.stop().await.expect("a clean stop");
    assert!(
        !ca_file.exists(),
        "a temporary certificate directory is cleaned up"
    );
}

#[tokio::test]
async fn many_messages_over_one_authenticated_tls_connection_are_each_counted() {
    let sim = spawn_sim().await;
    let mut connection = AsyncSmtpConnection::connect_tokio1(
        ("127.0.0.1", sim.smtps_port),
        Some(Duration::from_secs(10)),
        &ClientId::Domain("worker.test".to_owned()),
        Some(sim.tls_parameters()),
        None,
    )
    .await
    .expect("connected");
    let credentials = lettre::transport::smtp::authentication::Credentials::new(
        "user".to_owned(),
        "password".to_owned(),
    );
    connection
        .auth(
            &[lettre::transport::smtp::authentication::Mechanism::Login],
            &credentials,
        )
        .await
        .expect("any credentials are accepted");
    let ids: Vec<String> = (0..300).map(|_| new_id()).collect();
    for id in &ids {
        let message = email(id);
        connection
            .send(message.envelope(), &message.formatted())
            .await
            .expect("accepted");
    }
    connection.quit().await.expect("a clean QUIT");
    let stats = sim.handle.stats().smtp;
    assert_eq!(
        (stats.received, stats.unique, stats.connections),
        (300, 300, 1)
    );
    assert!(ids
        .iter()
        .all(|id| sim.handle.count(SimChannel::Email, id) == 1));
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_message_sent_twice_is_counted_as_a_duplicate() {
    let sim = spawn_sim().await;
    let id = new_id();
    let transport = sim.transport(Tls::None, sim.smtp_port);
    transport.send(email(&id)).await.expect("accepted");
    transport.send(email(&id)).await.expect("accepted again");
    assert_eq!(sim.handle.count(SimChannel::Email, &id), 2);
    let stats = sim.handle.stats().smtp;
    assert_eq!((stats.received, stats.unique, stats.duplicates), (2, 1, 1));
    let (_, ids) = sim.get("/sim/messages?channel=email").await;
    assert_eq!(ids["ids"][&id], 2);
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn an_injected_transient_failure_is_answered_451_and_not_counted() {
    let sim = spawn_sim().await;
    let (status, _) = sim
        .send_json(
            reqwest::Method::PUT,
            "/sim/config",
            &json!({"smtp": {"fail_rate": 1.0}}),
        )
        .await;
    assert_eq!(status, 200);
    let id = new_id();
    let error = sim
        .transport(Tls::None, sim.smtp_port)
        .send(email(&id))
        .await
        .expect_err("the simulator refuses the message");
    assert!(error.is_transient(), "{error}");
    assert_eq!(
        error.status().map(|code| code.to_string()),
        Some("451".to_owned())
    );
    assert_eq!(sim.handle.count(SimChannel::Email, &id), 0);
    let stats = sim.handle.stats().smtp;
    assert_eq!((stats.received, stats.rejected), (0, 1));
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn an_injected_permanent_failure_is_answered_550_and_not_counted() {
    let sim = spawn_sim().await;
    let mut behaviour = sim.handle.behaviour();
    behaviour.smtp.reject_rate = 1.0;
    sim.handle
        .set_behaviour(behaviour)
        .expect("a valid behaviour");
    let id = new_id();
    let error = sim
        .transport(Tls::None, sim.smtp_port)
        .send(email(&id))
        .await
        .expect_err("the simulator rejects the message");
    assert!(error.is_permanent(), "{error}");
    assert_eq!(
        error.status().map(|code| code.to_string()),
        Some("550".to_owned())
    );
    assert_eq!(sim.handle.count(SimChannel::Email, &id), 0);
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_pipelined_dialogue_with_dot_stuffing_is_understood() {
    let sim = spawn_sim().await;
    let mut stream = TcpStream::connect(("127.0.0.1", sim.smtp_port))
        .await
        .expect("connected");
    let dialogue = "EHLO client.test\r\nMAIL FROM:<a@b.test> BODY=8BITMIME\r\nRCPT TO:<c@d.test>\r\n\
                    RCPT TO:<e@f.test>\r\nDATA\r\nX-HERALD-MESSAGE-ID: piped-1\r\nSubject: s\r\n\r\n\
                    ..\r\n...x\r\n.\r\nVRFY bob\r\nFROB\r\nQUIT\r\n";
    stream
        .write_all(dialogue.as_bytes())
        .await
        .expect("written");
    let mut replies = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut replies))
        .await
        .expect("the server closes after QUIT")
        .expect("readable");
    let codes: Vec<&str> = replies.lines().map(|line| &line[..4]).collect();
    assert_eq!(codes.first(), Some(&"220 "));
    assert!(
        replies.contains("250-PIPELINING") && replies.contains("250-STARTTLS"),
        "{replies}"
    );
    assert!(replies.contains("250 AUTH PLAIN LOGIN"), "{replies}");
    let tail: Vec<&str> = codes.iter().rev().take(8).rev().copied().collect();
    assert_eq!(
        tail,
        ["250 ", "250 ", "250 ", "354 ", "250 ", "252 ", "500 ", "221 "],
        "{replies}"
    );
    assert_eq!(sim.handle.count(SimChannel::Email, "piped-1"), 1);
    let (_, detail) = sim.get("/sim/messages/piped-1").await;
    // 44 bytes of headers, then ".\r\n" and "..x\r\n" once unstuffed.
    assert_eq!(detail["last"]["email"]["size"], 44 + 3 + 5);
    assert_eq!(
        detail["last"]["email"]["rcpt"],
        json!(["c@d.test", "e@f.test"])
    );
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn an_idle_session_is_told_the_server_is_shutting_down() {
    let sim = spawn_sim().await;
    let stream = TcpStream::connect(("127.0.0.1", sim.smtp_port))
        .await
        .expect("connected");
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).await.expect("a greeting");
    assert!(greeting.starts_with("220 "));
    let handle = sim.handle.clone();
    assert!(
        wait_for(Duration::from_secs(5), || async {
            handle.stats().smtp.connections == 1
        })
        .await
    );
    let stopping = tokio::spawn(sim.stop());
    let mut goodbye = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut goodbye))
        .await
        .expect("the server says goodbye")
        .expect("readable");
    assert!(goodbye.starts_with("421 "), "{goodbye}");
    stopping.await.expect("no panic").expect("a clean stop");
}

// ---- WeWork ----------------------------------------------------------------

#[tokio::test]
async fn a_wework_send_is_counted_with_its_cost_in_users() {
    let sim = spawn_sim().await;
    let token = sim.wework_token().await;
    let id = new_id();
    let body = json!({
        "touser": "u1|u2|u3", "msgtype": "textcard", "agentid": 1000002,
        "textcard": {"title": "t", "description": "d", "url": "https://example.com"},
        "enable_duplicate_check": 1, "duplicate_check_interval": 1800,
    });
    let answer = sim.wework_send(&token, &id, &body).await;
    assert_eq!(answer["errcode"], 0, "{answer}");
    assert_eq!(answer["errmsg"], "ok");
    assert_eq!(answer["invaliduser"], "");
    assert!(answer["msgid"]
        .as_str()
        .is_some_and(|msgid| !msgid.is_empty()));
    assert_eq!(sim.handle.count(SimChannel::Wework, &id), 1);
    let (_, stats) = sim.get("/sim/stats").await;
    assert_eq!(stats["wework"]["received"], 1);
    assert_eq!(stats["wework"]["unique"], 1);
    assert_eq!(stats["wework"]["token_requests"], 1);
    assert_eq!(stats["wework"]["cost"], 3);
    let (_, detail) = sim.get(&format!("/sim/messages/{id}")).await;
    assert_eq!(detail["wework"], 1);
    assert_eq!(detail["last"]["wework"]["body"]["touser"], "u1|u2|u3");
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn an_expired_token_is_answered_40014_until_a_new_one_is_fetched() {
    let sim = spawn_sim().await;
    let token = sim.wework_token().await;
    let (status, expired) = sim
        .send_json(
            reqwest::Method::POST,
            "/sim/wework/expire-tokens",
            &json!({}),
        )
        .await;
    assert_eq!((status, expired["expired"].as_u64()), (200, Some(1)));
    let body = json!({"touser": "u1", "msgtype": "text", "agentid": 1, "text": {"content": "hi"}});
    let id = new_id();
    let answer = sim.wework_send(&token, &id, &body).await;
    assert_eq!(
        answer,
        json!({"errcode": 40014, "errmsg": "invalid access_token"})
    );
    assert_eq!(sim.handle.count(SimChannel::Wework, &id), 0);
    let fresh = sim.wework_token().await;
    let answer = sim.wework_send(&fresh, &id, &body).await;
    assert_eq!(answer["errcode"], 0, "{answer}");
    let stats = sim.handle.stats().wework;
    assert_eq!(
        (stats.received, stats.rejected, stats.token_requests),
        (1, 1, 2)
    );
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_token_request_without_a_secret_is_an_invalid_credential() {
    let sim = spawn_sim().await;
    let (_, answer) = sim.get("/cgi-bin/gettoken?corpid=corp&corpsecret=").await;
    assert_eq!(
        answer,
        json!({"errcode": 40001, "errmsg": "invalid credential"})
    );
    assert_eq!(sim.handle.stats().wework.token_requests, 1);
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn an_injected_wework_rate_limit_is_errcode_45009() {
    let sim = spawn_sim().await;
    let (status, config) = sim
        .send_json(
            reqwest::Method::PUT,
            "/sim/config",
            &json!({"wework": {"rate_limit_rate": 1}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(config["wework"]["rate_limit_rate"], 1.0);
    let token = sim.wework_token().await;
    let body = json!({"touser": "u1", "msgtype": "markdown", "agentid": 1, "markdown": {"content": "**hi**"}});
    let answer = sim.wework_send(&token, &new_id(), &body).await;
    assert_eq!(answer["errcode"], 45009, "{answer}");
    assert_eq!(sim.handle.stats().wework.received, 0);
    sim.stop().await.expect("a clean stop");
}

// ---- webhook ---------------------------------------------------------------

#[tokio::test]
async fn a_signed_webhook_is_counted_once_and_a_resend_as_a_duplicate() {
    let sim = spawn_sim().await;
    let id = new_id();
    let body =
        serde_json::to_vec(&json!({"id": id, "channel": "webhook", "text": "hi"})).expect("json");
    let signed = signature(herald_sim::config::DEFAULT_WEBHOOK_SECRET, &body);

    let (status, _, answer) = sim
        .webhook("/webhook/orders/42", &id, Some(&signed), &body)
        .await;
    assert_eq!((status, &answer), (200, &json!({"received": true})));
    assert_eq!(sim.handle.count(SimChannel::Webhook, &id), 1);
    let (status, _, _) = sim.webhook("/webhook", &id, Some(&signed), &body).await;
    assert_eq!(status, 200);

    assert_eq!(sim.handle.count(SimChannel::Webhook, &id), 2);
    let (_, stats) = sim.get("/sim/stats").await;
    assert_eq!(
        stats["webhook"],
        json!({"received": 2, "unique": 1, "duplicates": 1, "rejected": 0,
               "signature_failures": 0})
    );
    let (_, detail) = sim.get(&format!("/sim/messages/{id}")).await;
    assert_eq!(detail["webhook"], 2);
    assert_eq!(detail["last"]["webhook"]["body"]["text"], "hi");
    let (_, ids) = sim.get("/sim/messages?channel=webhook").await;
    assert_eq!(ids["ids"][&id], 2);
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_webhook_with_a_bad_or_missing_signature_is_answered_401_and_not_counted() {
    let sim = spawn_sim().await;
    let id = new_id();
    let body = br#"{"text":"hi"}"#;
    let wrong_key = signature("not-the-simulators-secret", body);
    let other_body = signature(herald_sim::config::DEFAULT_WEBHOOK_SECRET, b"{}");

    for signed in [Some(wrong_key.as_str()), Some(other_body.as_str()), None] {
        let (status, _, answer) = sim.webhook("/webhook/x", &id, signed, body).await;
        assert_eq!(status, 401, "{signed:?}");
        assert_eq!(answer["error"]["code"], "invalid_signature");
    }

    assert_eq!(sim.handle.count(SimChannel::Webhook, &id), 0);
    let stats = sim.handle.stats().webhook;
    assert_eq!((stats.received, stats.signature_failures), (0, 3));
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn injected_webhook_failures_are_503_and_429_with_retry_after() {
    let sim = spawn_sim().await;
    let body = br#"{"text":"hi"}"#;
    let signed = signature(herald_sim::config::DEFAULT_WEBHOOK_SECRET, body);
    let (status, _) = sim
        .send_json(
            reqwest::Method::PUT,
            "/sim/config",
            &json!({"webhook": {"fail_rate": 1, "retry_after_s": 5}}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, retry_after, _) = sim
        .webhook("/webhook/x", &new_id(), Some(&signed), body)
        .await;
    assert_eq!((status, retry_after.as_deref()), (503, Some("5")));

    let (status, _) = sim
        .send_json(
            reqwest::Method::PUT,
            "/sim/config",
            &json!({"webhook": {"fail_rate": 0, "rate_limit_rate": 1, "retry_after_s": 0}}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, retry_after, _) = sim
        .webhook("/webhook/x", &new_id(), Some(&signed), body)
        .await;
    assert_eq!((status, retry_after), (429, None));

    let stats = sim.handle.stats().webhook;
    assert_eq!((stats.received, stats.rejected), (0, 2));
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn a_webhook_with_a_custom_secret_verifies_with_that_secret() {
    let sim = Sim::build(SimConfig {
        webhook_secret: "a-secret-for-this-test".to_owned(),
        ..SimConfig::ephemeral()
    })
    .await
    .expect("the simulator builds");
    let (handle, port) = (sim.handle(), sim.http_port());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(sim.run(async move {
        let _ = stopped.await;
    }));
    let body = br#"{"text":"hi"}"#;
    let id = new_id();
    let status = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhook/x"))
        .header("X-Herald-Message-Id", &id)
        .header(
            "X-Herald-Signature",
            signature("a-secret-for-this-test", body),
        )
        .body(body.to_vec())
        .send()
        .await
        .expect("answered")
        .status();
    assert_eq!(status.as_u16(), 200);
    assert_eq!(handle.count(SimChannel::Webhook, &id), 1);
    let _ = stop.send(());
    task.await.expect("no panic").expect("a clean stop");
}

// ---- control API -----------------------------------------------------------

#[tokio::test]
async fn a_rate_above_one_is_refused_with_the_field_named() {
    let sim = spawn_sim().await;
    let (status, answer) = sim
        .send_json(
            reqwest::Method::PUT,
            "/sim/config",
            &json!({"smtp": {"reject_rate": 1.5}}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(answer["error"]["code"], "invalid_field");
    assert_eq!(answer["error"]["field"], "smtp.reject_rate");
    assert!(answer["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    let (_, config) = sim.get("/sim/config").await;
    assert_eq!(
        config,
        json!({"smtp": {"latency_ms": 0, "fail_rate": 0.0, "reject_rate": 0.0, "refuse_every": 0},
               "wework": {"latency_ms": 0, "fail_rate": 0.0, "rate_limit_rate": 0.0,
                          "rate_limit_per_sec": 0},
               "webhook": {"latency_ms": 0, "fail_rate": 0.0, "rate_limit_rate": 0.0,
                           "retry_after_s": 1}})
    );
    let (status, answer) = sim
        .send_json(
            reqwest::Method::PUT,
            "/sim/config",
            &json!({"smtp": {"latency": 5}}),
        )
        .await;
    assert_eq!(
        (status, &answer["error"]["field"]),
        (422, &json!("smtp.latency"))
    );
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn reset_zeroes_every_counter() {
    let sim = spawn_sim().await;
    let id = new_id();
    sim.transport(Tls::None, sim.smtp_port)
        .send(email(&id))
        .await
        .expect("accepted");
    let (status, stats) = sim
        .send_json(reqwest::Method::POST, "/sim/reset", &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(stats["smtp"]["received"], 0);
    assert_eq!(sim.handle.count(SimChannel::Email, &id), 0);
    let (_, ids) = sim.get("/sim/messages?channel=email").await;
    assert_eq!(ids, json!({"ids": {}}));
    let (status, error) = sim.get("/sim/messages?channel=sms").await;
    assert_eq!((status, &error["error"]["field"]), (422, &json!("channel")));
    sim.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn the_ops_endpoints_are_served_beside_the_control_api() {
    let sim = spawn_sim().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = sim
            .client
            .get(format!("{}{path}", sim.http))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status().as_u16(), 200, "{path}");
    }
    let (status, error) = sim.get("/nowhere").await;
    assert_eq!(
        (status, &error["error"]["code"]),
        (404, &json!("not_found"))
    );
    sim.stop().await.expect("a clean stop");
}
