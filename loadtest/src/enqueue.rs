//! The send burst: messages built for a run, posted to
//! `POST /v1/messages/batch` in chunks with a few requests in flight.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use herald_api::{Client, SendMessage};
use herald_domain::Channel;
use herald_proto::grpc::EnqueueClient;
use herald_proto::v1;
use uuid::Uuid;

/// `message` with its idempotency key and tagged with the run id.
fn keyed(mut message: SendMessage, run_id: &str, key: String) -> SendMessage {
    message.idempotency_key = Some(key);
    message.metadata = Some(BTreeMap::from([("run".to_owned(), run_id.to_owned())]));
    message
}

/// The demo's messages: `emails` to `user{n}@example.com`, then `wework`
/// to `u{n}`, all tagged with the run id and each with its own idempotency
/// key (so a retried request never sends twice).
pub fn demo_messages(run_id: &str, emails: usize, wework: usize) -> Vec<SendMessage> {
    let mut out = Vec::with_capacity(emails + wework);
    for n in 1..=emails {
        out.push(keyed(
            SendMessage::email(
                format!("user{n}@example.com"),
                format!("Herald demo {run_id} #{n}"),
                format!("Hello user{n}, this is message {n} of Herald demo run {run_id}."),
            ),
            run_id,
            format!("{run_id}-email-{n}"),
        ));
    }
    for n in 1..=wework {
        out.push(keyed(
            SendMessage::new(
                Channel::Wework,
                format!("u{n}"),
                format!("Herald demo {run_id}: message {n} for u{n}."),
            ),
            run_id,
            format!("{run_id}-wework-{n}"),
        ));
    }
    out
}

/// The simulator's webhook receiver under `sim_url` (its HTTP base): where
/// the demo's webhooks go.
pub fn webhook_url(sim_url: &str) -> String {
    format!("{}/webhook/demo", sim_url.trim_end_matches('/'))
}

/// The demo's webhooks: `count` POSTs to `url`, tagged with the run id and
/// keyed like [`demo_messages`].
pub fn webhook_messages(run_id: &str, count: usize, url: &str) -> Vec<SendMessage> {
    (1..=count)
        .map(|n| {
            keyed(
                SendMessage::new(
                    Channel::Webhook,
                    url,
                    format!("Herald demo {run_id}: webhook {n}."),
                ),
                run_id,
                format!("{run_id}-webhook-{n}"),
            )
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct EnqueueOutcome {
    /// Accepted ids, in request order.
    pub ids: Vec<Uuid>,
    /// Messages whose request failed for good (after retries).
    pub not_accepted: usize,
    /// One line per failed request.
    pub errors: Vec<String>,
    /// When the first request started (wall clock).
    pub started_at: DateTime<Utc>,
    /// From the first request's start to the last answer.
    pub elapsed: Duration,
}

impl EnqueueOutcome {
    /// Accepted messages per second of the burst.
    pub fn rate(&self) -> f64 {
        crate::report::per_second(self.ids.len() as u64, self.elapsed.as_secs_f64())
    }
}

/// Posts one request (`POST /v1/messages` for one message, the batch
/// endpoint for more), retrying overload and lost answers (every message
/// has an idempotency key, so a repeat sends nothing twice); the ids in
/// order.
pub async fn send_chunk(client: &Client, chunk: &[SendMessage]) -> anyhow::Result<Vec<Uuid>> {
    let n = chunk.len();
    let client = client.with_retries();
    let ids: Vec<Uuid> = match chunk {
        [one] => vec![client.send(one).await?.id.as_uuid()],
        _ => client
            .send_batch(chunk)
            .await?
            .ids
            .iter()
            .map(|id| id.as_uuid())
            .collect(),
    };
    if ids.len() != n {
        return Err(anyhow!("sent {n} messages, got {} ids back", ids.len()));
    }
    Ok(ids)
}

/// The gRPC API's request for `m`.
pub fn send_request(m: &SendMessage) -> v1::SendRequest {
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    v1::SendRequest {
        channel: m.channel.to_proto() as i32,
        to: m.to.clone(),
        from: text(&m.from),
        subject: text(&m.subject),
        text: text(&m.text),
        html: text(&m.html),
        template_id: text(&m.template_id),
        variables: m
            .variables
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        priority: m
            .priority
            .map_or(0, |p| p.clamp(0, i64::from(u32::MAX)) as u32),
        scheduled_at: text(&m.scheduled_at),
        batch_id: text(&m.batch_id),
        idempotency_key: text(&m.idempotency_key),
        metadata: m.metadata.clone().unwrap_or_default().into_iter().collect(),
        template_version: m
            .template_version
            .map_or(0, |v| v.clamp(0, i64::from(u32::MAX)) as u32),
    }
}

/// Sends one message by the gRPC API's unary `Send`, retrying what the
/// producer calls passing (`UNAVAILABLE`, `RESOURCE_EXHAUSTED`) with the
/// same idempotency key.
pub async fn send_grpc(client: &EnqueueClient, message: &SendMessage) -> anyhow::Result<Uuid> {
    let request = send_request(message);
    let mut delay = Duration::from_millis(100);
    for attempt in 1.. {
        match client.clone().send(request.clone()).await {
            Ok(answer) => {
                return answer
                    .into_inner()
                    .id
                    .parse()
                    .context("the answer's id is not a UUID")
            }
            Err(status)
                if attempt < 8
                    && matches!(
                        status.code(),
                        tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                    ) =>
            {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(status) => return Err(anyhow!("gRPC Send: {status}")),
        }
    }
    unreachable!("the loop returns")
}

/// How a burst's requests travel.
#[derive(Clone)]
pub enum Route {
    /// The HTTP API: `POST /v1/messages` for one, the batch endpoint for more.
    Http(Client),
    /// The gRPC API's unary `Send`, one message per call.
    Grpc(EnqueueClient),
}

impl Route {
    async fn send(&self, chunk: &[SendMessage]) -> anyhow::Result<Vec<Uuid>> {
        match self {
            Route::Http(client) => send_chunk(client, chunk).await,
            Route::Grpc(client) => {
                let mut ids = Vec::with_capacity(chunk.len());
                for m in chunk {
                    ids.push(send_grpc(client, m).await?);
                }
                Ok(ids)
            }
        }
    }
}

/// Posts `messages` in chunks of `chunk_size` with `concurrency` requests in
/// flight. `progress` is called with (accepted so far, total).
pub async fn enqueue_all(
    client: &Client,
    messages: Vec<SendMessage>,
    chunk_size: usize,
    concurrency: usize,
    progress: impl FnMut(usize, usize),
) -> anyhow::Result<EnqueueOutcome> {
    enqueue_by(
        &Route::Http(client.clone()),
        messages,
        chunk_size,
        concurrency,
        progress,
    )
    .await
}

/// [`enqueue_all`] by `route`.
pub async fn enqueue_by(
    route: &Route,
    messages: Vec<SendMessage>,
    chunk_size: usize,
    concurrency: usize,
    mut progress: impl FnMut(usize, usize),
) -> anyhow::Result<EnqueueOutcome> {
    let total = messages.len();
    let chunk_size = chunk_size.max(1);
    let mut chunks: Vec<Vec<SendMessage>> = Vec::with_capacity(total.div_ceil(chunk_size));
    let mut rest = messages.into_iter().peekable();
    while rest.peek().is_some() {
        chunks.push(rest.by_ref().take(chunk_size).collect());
    }
    let started_at = Utc::now();
    let clock = Instant::now();
    let mut results = stream::iter(chunks.into_iter().map(|chunk| {
        let route = route.clone();
        async move {
            let n = chunk.len();
            (n, route.send(&chunk).await)
        }
    }))
    .buffered(concurrency.max(1));

    let mut outcome = EnqueueOutcome {
        ids: Vec::with_capacity(total),
        not_accepted: 0,
        errors: Vec::new(),
        started_at,
        elapsed: Duration::ZERO,
    };
    let mut shown = 0;
    while let Some((n, result)) = results.next().await {
        match result {
            Ok(ids) => outcome.ids.extend(ids),
            Err(e) => {
                outcome.not_accepted += n;
                outcome
                    .errors
                    .push(format!("{n} messages not accepted: {e:#}"));
            }
        }
        // Not per answer: a burst of single messages has tens of thousands.
        if outcome.ids.len() >= shown + 500 || outcome.ids.len() == total {
            shown = outcome.ids.len();
            progress(shown, total);
        }
    }
    outcome.elapsed = clock.elapsed();
    if outcome.ids.is_empty() && total > 0 {
        let first = outcome.errors.first().cloned().unwrap_or_default();
        return Err(anyhow!("no message was accepted: {first}")).context("Enqueue failed");
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_tag(m: &SendMessage) -> Option<&str> {
        m.metadata.as_ref()?.get("run").map(String::as_str)
    }

    #[test]
    fn demo_messages_have_distinct_recipients_and_keys() {
        let mut msgs = demo_messages("run-1", 3, 2);
        assert_eq!(msgs.len(), 5);
        msgs.extend(webhook_messages(
            "run-1",
            2,
            "http://127.0.0.1:8090/webhook/demo",
        ));
        assert_eq!(msgs[0].to, "user1@example.com");
        assert_eq!(msgs[2].to, "user3@example.com");
        assert_eq!(msgs[3].channel, Channel::Wework);
        assert_eq!(msgs[4].to, "u2");
        assert!(
            msgs[3].subject.is_none(),
            "WeWork messages carry no subject"
        );
        let keys: std::collections::HashSet<_> =
            msgs.iter().map(|m| m.idempotency_key.clone()).collect();
        assert_eq!(keys.len(), 7);
        assert!(keys.iter().all(Option::is_some));
        assert!(msgs.iter().all(|m| run_tag(m) == Some("run-1")));
    }

    #[test]
    fn webhook_messages_go_to_the_simulators_receiver() {
        let msgs = webhook_messages("run-1", 2, &webhook_url("http://127.0.0.1:8090/"));
        assert_eq!(msgs.len(), 2);
        for (m, n) in msgs.iter().zip(1..) {
            assert_eq!(m.channel, Channel::Webhook);
            assert_eq!(m.to, "http://127.0.0.1:8090/webhook/demo");
            assert_eq!(m.idempotency_key, Some(format!("run-1-webhook-{n}")));
            // The producer refuses a subject on any channel but email.
            assert!(m.subject.is_none(), "{m:?}");
        }
    }

    #[test]
    fn every_demo_message_is_one_the_producer_accepts() {
        let mut msgs = demo_messages("run-1", 2, 2);
        msgs.extend(webhook_messages(
            "run-1",
            1,
            &webhook_url("http://127.0.0.1:8090"),
        ));
        for m in msgs {
            let to = m.to.clone();
            herald_domain::NewMessage::try_from(m).unwrap_or_else(|e| panic!("{to}: {e}"));
        }
    }

    #[test]
    fn no_webhooks_asked_none_made() {
        assert!(webhook_messages("run-1", 0, "http://127.0.0.1:8090/webhook/demo").is_empty());
    }
}
