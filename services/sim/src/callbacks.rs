//! The callbacks a real provider would make, made up for what the
//! simulator accepted, so that the demo and the tests run Herald's whole
//! loop: generic signed callbacks for email and webhooks, WeWork's
//! encrypted member events for WeWork messages (`herald_callbacks` speaks
//! both). Configured live through `PUT /sim/callbacks`; off until then.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use herald_api::sim::{GenericTarget, SimCallbackReport, SimCallbacks, WeworkTarget};
use herald_callbacks::signed;
use herald_callbacks::wework::WeworkCrypto;
use rand::Rng;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::counters::SimChannel;

/// Chains of events under way at once; beyond it a message gets none.
const IN_FLIGHT: usize = 4096;
/// Tries per callback.
const TRIES: u32 = 3;

/// The reporter every server shares.
pub struct Reporter {
    settings: Mutex<Arc<SimCallbacks>>,
    http: reqwest::Client,
    slots: Arc<Semaphore>,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter {
            settings: Mutex::new(Arc::new(SimCallbacks::default())),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

/// One event to post.
enum Post {
    Generic {
        target: GenericTarget,
        body: String,
    },
    Wework {
        target: WeworkTarget,
        xml: String,
    },
    /// A DSN or ARF report mailed to the message's return path.
    Report {
        smtp: String,
        rcpt: String,
        body: String,
    },
}

impl Reporter {
    fn settings(&self) -> Arc<SimCallbacks> {
        self.settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the settings; refused (naming the field) when a rate is
    /// out of range or a WeWork key is not one.
    pub fn configure(&self, settings: SimCallbacks) -> Result<(), herald_api::FieldError> {
        settings.rates.validate()?;
        if let Some(w) = &settings.wework {
            WeworkCrypto::new(&w.token, &w.encoding_aes_key, &w.corp_id).map_err(|e| {
                herald_api::FieldError::new("wework.encoding_aes_key", e.to_string())
            })?;
        }
        if let Some(url) = &settings.herald_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(herald_api::FieldError::new(
                    "herald_url",
                    "must be an http(s) URL",
                ));
            }
        }
        *self.settings.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(settings);
        Ok(())
    }

    pub fn report(&self) -> SimCallbackReport {
        SimCallbackReport {
            settings: (*self.settings()).clone(),
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// A message was accepted for the first time: draws its events and
    /// posts them after the configured delay. `to` is the recipient (a
    /// WeWork message's `touser`, an email's first RCPT); `return_path` an
    /// email's envelope sender.
    pub fn accepted(
        self: &Arc<Self>,
        channel: SimChannel,
        id: Option<&str>,
        to: Option<&str>,
        return_path: Option<&str>,
    ) {
        let settings = self.settings();
        let Some(url) = settings.herald_url.clone() else {
            return;
        };
        let posts = {
            let mut rng = rand::thread_rng();
            plan(&settings, channel, id, to, return_path, &mut rng)
        };
        if posts.is_empty() {
            return;
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let me = self.clone();
        let delay = Duration::from_millis(settings.delay_ms);
        tokio::spawn(async move {
            let _slot = slot;
            tokio::time::sleep(delay).await;
            for post in posts {
                let ok = me.post(&url, &post).await;
                let counter = if ok { &me.sent } else { &me.failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    async fn post(&self, herald: &str, post: &Post) -> bool {
        for attempt in 0..TRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let request = match post {
                Post::Report { smtp, rcpt, body } => match mail_report(smtp, rcpt, body).await {
                    Ok(answer) if answer.starts_with('2') => return true,
                    // A refusal will not change on a retry.
                    Ok(answer) if answer.starts_with('5') => {
                        tracing::warn!(answer = %answer.trim(), "Herald refused a simulated report.");
                        return false;
                    }
                    Ok(_) | Err(_) => continue,
                },
                Post::Generic { target, body } => self
                    .http
                    .post(format!("{herald}/v1/callbacks/{}", target.provider_id))
                    .header("content-type", "application/json")
                    .header(
                        signed::HEADER,
                        signed::sign(target.callback_secret.as_bytes(), body.as_bytes()),
                    )
                    .body(body.clone()),
                Post::Wework { target, xml } => {
                    let Ok(crypto) =
                        WeworkCrypto::new(&target.token, &target.encoding_aes_key, &target.corp_id)
                    else {
                        return false;
                    };
                    let random: [u8; 16] = rand::thread_rng().gen();
                    let body = crypto.envelope(xml, random, target.agent_id);
                    let Ok(encrypted) = herald_callbacks::wework::encrypted_part(&body) else {
                        return false;
                    };
                    let ts = Utc::now().timestamp().to_string();
                    let nonce = rand::thread_rng().gen::<u32>().to_string();
                    let sig = crypto.signature(&ts, &nonce, &encrypted);
                    self.http
                        .post(format!(
                            "{herald}/v1/callbacks/wework/{}?msg_signature={sig}&timestamp={ts}&nonce={nonce}",
                            target.provider_id
                        ))
                        .header("content-type", "text/xml")
                        .body(body)
                }
            };
            match request.send().await {
                Ok(r) if r.status().is_success() => return true,
                // A refusal will not change on a retry.
                Ok(r) if r.status().is_client_error() => {
                    tracing::warn!(status = %r.status(), "Herald refused a simulated callback.");
                    return false;
                }
                Ok(_) | Err(_) => continue,
            }
        }
        false
    }
}

/// Mails `body` to `rcpt` through the SMTP server at `smtp` as a reporting
/// MTA does (`MAIL FROM:<>`): the reply that ended the transaction — the
/// answer to the data, or the first command refused. `Err` when the
/// server could not be reached or hung up.
pub async fn mail_report(smtp: &str, rcpt: &str, body: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    async fn reply(
        read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    ) -> std::io::Result<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if read.read_line(&mut line).await? == 0 {
                return Err(std::io::Error::other("the server hung up"));
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Ok(all);
            }
        }
    }
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(smtp),
    )
    .await
    .map_err(|_| std::io::Error::other("connect timed out"))??;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut data = String::with_capacity(body.len() + 8);
    for line in body.split("\r\n") {
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
        data.push_str("\r\n");
    }
    data.push_str(".\r\n");
    reply(&mut read).await?;
    let mut last = String::new();
    for (command, expect) in [
        ("EHLO herald-sim\r\n".to_owned(), '2'),
        ("MAIL FROM:<>\r\n".to_owned(), '2'),
        (format!("RCPT TO:<{rcpt}>\r\n"), '2'),
        ("DATA\r\n".to_owned(), '3'),
        (data, '2'),
    ] {
        write.write_all(command.as_bytes()).await?;
        last = reply(&mut read).await?;
        if !last.starts_with(expect) {
            break;
        }
    }
    let _ = write.write_all(b"QUIT\r\n").await;
    Ok(last)
}

/// The events one accepted message gets, in the order they happen.
fn plan(
    s: &SimCallbacks,
    channel: SimChannel,
    id: Option<&str>,
    to: Option<&str>,
    return_path: Option<&str>,
    rng: &mut impl Rng,
) -> Vec<Post> {
    let r = s.rates;
    let now = Utc::now();
    let mut hit = |p: f64| p > 0.0 && rng.gen::<f64>() < p;
    let generic =
        |target: &GenericTarget, id: &str, event: &str, step: i64, detail: serde_json::Value| {
            Post::Generic {
                target: target.clone(),
                body: json!({"message_id": id, "event": event,
                     "at": (now + TimeDelta::milliseconds(step)).to_rfc3339(),
                     "detail": detail})
                .to_string(),
            }
        };
    let mut posts = Vec::new();
    match channel {
        SimChannel::Email | SimChannel::Webhook => {
            let target = match channel {
                SimChannel::Email => s.email.as_ref(),
                _ => s.webhook.as_ref(),
            };
            // Email with a VERP return path reports the way mail does:
            // DSNs and ARF reports to the return path.
            let mailed = match (channel, &s.return_path_smtp, return_path) {
                (SimChannel::Email, Some(smtp), Some(rp)) if rp.starts_with("bounce+") => {
                    Some((smtp.clone(), rp.to_owned()))
                }
                _ => None,
            };
            if let Some((smtp, rcpt)) = &mailed {
                let recipient = to.unwrap_or("recipient@unknown.invalid");
                let headers = format!(
                    "Subject: (herald-sim)\r\nX-Herald-Message-Id: {}",
                    id.unwrap_or("")
                );
                let report = |body: String| Post::Report {
                    smtp: smtp.clone(),
                    rcpt: rcpt.clone(),
                    body,
                };
                // A hard bounce, else a soft one; either ends the message.
                for (rate, status, diagnostic) in [
                    (r.bounced, "5.1.1", "550 5.1.1 user unknown (herald-sim)"),
                    (
                        r.soft_bounced,
                        "4.2.2",
                        "452 4.2.2 mailbox full (herald-sim)",
                    ),
                ] {
                    if hit(rate) {
                        posts.push(report(herald_callbacks::reports::dsn(
                            "mx.herald-sim.test",
                            recipient,
                            status,
                            diagnostic,
                            &headers,
                        )));
                        return posts;
                    }
                }
                if hit(r.complained) {
                    posts.push(report(herald_callbacks::reports::arf(
                        "isp.herald-sim.test",
                        recipient,
                        &headers,
                    )));
                }
            }
            let (Some(target), Some(id)) = (target, id) else {
                return posts;
            };
            if mailed.is_none() && channel == SimChannel::Email && hit(r.bounced) {
                posts.push(generic(
                    target,
                    id,
                    "bounced",
                    0,
                    json!({"type": "hard", "status": "5.1.1",
                    "diagnostic": "smtp; 550 5.1.1 user unknown (herald-sim)"}),
                ));
                return posts;
            }
            if !hit(r.delivered) {
                return posts;
            }
            posts.push(generic(
                target,
                id,
                "delivered",
                0,
                json!({"by": "herald-sim"}),
            ));
            if hit(r.read) {
                posts.push(generic(target, id, "read", 1, json!({})));
                if hit(r.clicked) {
                    posts.push(generic(
                        target,
                        id,
                        "clicked",
                        2,
                        json!({"url": "https://example.com/"}),
                    ));
                }
            }
            if mailed.is_none() && hit(r.complained) {
                posts.push(generic(
                    target,
                    id,
                    "complained",
                    3,
                    json!({"feedback_type": "abuse"}),
                ));
            }
        }
        SimChannel::Wework => {
            let (Some(target), Some(member)) =
                (s.wework.as_ref(), to.and_then(|t| t.split('|').next()))
            else {
                return posts;
            };
            let xml = |body: String| {
                Post::Wework {
                target: target.clone(),
                xml: format!(
                    "<xml><ToUserName><![CDATA[{}]]></ToUserName><FromUserName><![CDATA[{member}]]></FromUserName><CreateTime>{}</CreateTime>{body}<AgentID>{}</AgentID></xml>",
                    target.corp_id,
                    now.timestamp(),
                    target.agent_id
                ),
            }
            };
            if hit(r.read) {
                posts.push(xml("<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[enter_agent]]></Event><EventKey><![CDATA[]]></EventKey>".into()));
            }
            if hit(r.replied) {
                let msg_id: u64 = rng.gen_range(1..u64::MAX / 2);
                posts.push(xml(format!(
                    "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[got it]]></Content><MsgId>{msg_id}</MsgId>"
                )));
            }
        }
    }
    posts
}
