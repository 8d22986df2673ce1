//! The send burst: messages built for a run, posted to
//! `POST /v1/messages/batch` in chunks with a few requests in flight.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::api::ApiClient;

/// The demo's messages: `emails` to `user{n}@example.com`, then `wework`
/// to `u{n}`, all tagged with the run id and each with its own idempotency
/// key (so a retried request never sends twice).
pub fn demo_messages(run_id: &str, emails: usize, wework: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(emails + wework);
    for n in 1..=emails {
        out.push(json!({
            "channel": "email",
            "to": format!("user{n}@example.com"),
            "subject": format!("Herald demo {run_id} #{n}"),
            "text": format!("Hello user{n}, this is message {n} of Herald demo run {run_id}."),
            "idempotency_key": format!("{run_id}-email-{n}"),
            "metadata": {"run": run_id},
        }));
    }
    for n in 1..=wework {
        out.push(json!({
            "channel": "wework",
            "to": format!("u{n}"),
            "text": format!("Herald demo {run_id}: message {n} for u{n}."),
            "idempotency_key": format!("{run_id}-wework-{n}"),
            "metadata": {"run": run_id},
        }));
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
pub fn webhook_messages(run_id: &str, count: usize, url: &str) -> Vec<Value> {
    let mut out = Vec::with_capacity(count);
    for n in 1..=count {
        out.push(json!({
            "channel": "webhook",
            "to": url,
            "text": format!("Herald demo {run_id}: webhook {n}."),
            "idempotency_key": format!("{run_id}-webhook-{n}"),
            "metadata": {"run": run_id},
        }));
    }
    out
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

pub async fn send_chunk(client: &ApiClient, chunk: Vec<Value>) -> anyhow::Result<Vec<Uuid>> {
    let n = chunk.len();
    let body = json!({ "messages": chunk });
    let answer = client
        .call(Method::POST, "/v1/messages/batch", Some(&body))
        .await?;
    let ids = answer["ids"]
        .as_array()
        .ok_or_else(|| anyhow!("the batch answer has no `ids`: {answer}"))?;
    let ids = ids
        .iter()
        .map(|v| {
            v.as_str()
                .and_then(|s| s.parse::<Uuid>().ok())
                .ok_or_else(|| anyhow!("not a message id: {v}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if ids.len() != n {
        return Err(anyhow!("sent {n} messages, got {} ids back", ids.len()));
    }
    Ok(ids)
}

/// Posts `messages` in chunks of `chunk_size` with `concurrency` requests in
/// flight. `progress` is called with (accepted so far, total).
pub async fn enqueue_all(
    client: &ApiClient,
    messages: Vec<Value>,
    chunk_size: usize,
    concurrency: usize,
    mut progress: impl FnMut(usize, usize),
) -> anyhow::Result<EnqueueOutcome> {
    let total = messages.len();
    let chunk_size = chunk_size.max(1);
    let mut chunks: Vec<Vec<Value>> = Vec::with_capacity(total.div_ceil(chunk_size));
    let mut rest = messages.into_iter().peekable();
    while rest.peek().is_some() {
        chunks.push(rest.by_ref().take(chunk_size).collect());
    }
    let started_at = Utc::now();
    let clock = Instant::now();
    let mut results = stream::iter(chunks.into_iter().map(|chunk| {
        let client = client.clone();
        async move {
            let n = chunk.len();
            (n, send_chunk(&client, chunk).await)
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
        progress(outcome.ids.len(), total);
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

    #[test]
    fn demo_messages_have_distinct_recipients_and_keys() {
        let mut msgs = demo_messages("run-1", 3, 2);
        assert_eq!(msgs.len(), 5);
        msgs.extend(webhook_messages(
            "run-1",
            2,
            "http://127.0.0.1:8090/webhook/demo",
        ));
        assert_eq!(msgs[0]["to"], "user1@example.com");
        assert_eq!(msgs[2]["to"], "user3@example.com");
        assert_eq!(msgs[3]["channel"], "wework");
        assert_eq!(msgs[4]["to"], "u2");
        assert!(
            msgs[3].get("subject").is_none(),
            "WeWork messages carry no subject"
        );
        let keys: std::collections::HashSet<_> = msgs
            .iter()
            .map(|m| m["idempotency_key"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(keys.len(), 7);
        assert!(msgs.iter().all(|m| m["metadata"]["run"] == "run-1"));
    }

    #[test]
    fn webhook_messages_go_to_the_simulators_receiver() {
        let msgs = webhook_messages("run-1", 2, &webhook_url("http://127.0.0.1:8090/"));
        assert_eq!(msgs.len(), 2);
        for (m, n) in msgs.iter().zip(1..) {
            assert_eq!(m["channel"], "webhook");
            assert_eq!(m["to"], "http://127.0.0.1:8090/webhook/demo");
            assert_eq!(m["idempotency_key"], format!("run-1-webhook-{n}"));
            // The producer refuses a subject on any channel but email.
            assert!(m.get("subject").is_none(), "{m}");
        }
    }

    #[test]
    fn no_webhooks_asked_none_made() {
        assert!(webhook_messages("run-1", 0, "http://127.0.0.1:8090/webhook/demo").is_empty());
    }
}
