//! The `callbacks` scenario: provider callbacks posted at the producer as
//! providers post them (one signed event per request, many connections),
//! measured twice — alone, and while a burst of sends runs — for the
//! ingest rate (answered 202 per second, and stored and applied per second)
//! and for what the callbacks cost the send path's latency.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use herald_callbacks::signed;
use serde::Serialize;
use uuid::Uuid;

use crate::setup;
use crate::stack::Stack;

/// One flood of callbacks.
#[derive(Debug, Clone, Serialize)]
pub struct CallbackRun {
    pub name: String,
    /// Requests in flight.
    pub concurrency: usize,
    pub posted: u64,
    /// Answered 202.
    pub accepted: u64,
    /// Answered anything else, or not answered.
    pub refused: u64,
    /// Accepted per second, first post to last answer.
    pub accepted_per_s: f64,
    /// Stored and applied (`processed`) within the wait.
    pub persisted: u64,
    /// Processed per second, first post to the last event's processing.
    pub persisted_per_s: f64,
    /// Answer latency, ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The email provider's id and the newest `n` sent messages to report on.
pub async fn targets(stack: &Stack, n: usize) -> anyhow::Result<(String, Vec<Uuid>)> {
    let provider = stack
        .admin
        .providers()
        .await
        .context("cannot list providers")?
        .into_iter()
        .find(|p| p.name == setup::EMAIL_PROVIDER)
        .context("the bench stack has no email provider")?;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE status = 'sent' AND provider_id = $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(provider.id.as_uuid())
    .bind(n as i64)
    .fetch_all(&stack.db)
    .await?;
    anyhow::ensure!(!ids.is_empty(), "no sent email to report callbacks on");
    Ok((provider.id.to_string(), ids))
}

/// Posts `events` callbacks per message of `ids` (delivered, read,
/// clicked, …), `concurrency` at a time, then waits up to `wait` for
/// every accepted one to be processed.
pub async fn flood(
    stack: &Stack,
    name: &str,
    provider: &str,
    ids: &[Uuid],
    events: usize,
    concurrency: usize,
    wait: Duration,
) -> anyhow::Result<CallbackRun> {
    const KINDS: [&str; 4] = ["delivered", "read", "clicked", "replied"];
    let now = Utc::now();
    let bodies: Arc<Vec<String>> = Arc::new(
        ids.iter()
            .flat_map(|id| {
                (0..events).map(move |k| {
                    serde_json::json!({"message_id": id, "event": KINDS[k % KINDS.len()],
                                       "at": (now + chrono::TimeDelta::milliseconds(k as i64)).to_rfc3339(),
                                       "detail": {"bench": true}})
                    .to_string()
                })
            })
            .collect(),
    );
    let processed_before = processed(stack).await?;
    let url = Arc::new(format!("{}/v1/callbacks/{provider}", stack.producer_url));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let first_post: DateTime<Utc> = Utc::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (bodies, url, http, next, accepted, refused) = (
            bodies.clone(),
            url.clone(),
            http.clone(),
            next.clone(),
            accepted.clone(),
            refused.clone(),
        );
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let sig = signed::sign(setup::DEMO_CALLBACK_SECRET.as_bytes(), body.as_bytes());
                let t = Instant::now();
                let ok = http
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .header(signed::HEADER, sig)
                    .body(body.clone())
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == 202);
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                let counter = if ok { &accepted } else { &refused };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            latencies
        });
    }
    let mut latencies = Vec::with_capacity(bodies.len());
    while let Some(r) = tasks.join_next().await {
        latencies.extend(r.context("a callback poster")?);
    }
    let post_secs = started.elapsed().as_secs_f64().max(1e-6);
    let accepted = accepted.load(Ordering::Relaxed);
    let deadline = Instant::now() + wait;
    let persisted = loop {
        let n = processed(stack).await?.saturating_sub(processed_before);
        if n >= accepted || Instant::now() >= deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let last: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT max(processed_at) FROM callback_events WHERE state = 'processed'",
    )
    .fetch_one(&stack.db)
    .await?;
    let persist_secs = last
        .map(|l| (l - first_post).num_microseconds().unwrap_or(1) as f64 / 1e6)
        .unwrap_or(post_secs)
        .max(1e-6);
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Ok(CallbackRun {
        name: name.to_owned(),
        concurrency,
        posted: bodies.len() as u64,
        accepted,
        refused: refused.load(Ordering::Relaxed),
        accepted_per_s: accepted as f64 / post_secs,
        persisted,
        persisted_per_s: persisted as f64 / persist_secs,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    })
}

async fn processed(stack: &Stack) -> anyhow::Result<u64> {
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM callback_events WHERE state = 'processed'")
            .fetch_one(&stack.db)
            .await?;
    Ok(n.max(0) as u64)
}

/// The table's lines for the floods.
pub fn table(runs: &[CallbackRun]) -> String {
    if runs.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\nCallbacks\n{:<40} {:>5} {:>8} {:>8} {:>7} {:>9} {:>10} {:>6} {:>6}\n",
        "RUN", "CONC", "POSTED", "ACCEPT", "REFUSED", "ACCEPT/S", "STORED/S", "P50", "P99"
    );
    for r in runs {
        out.push_str(&format!(
            "{:<40} {:>5} {:>8} {:>8} {:>7} {:>9.0} {:>10.0} {:>6.1} {:>6.1}\n",
            r.name,
            r.concurrency,
            r.posted,
            r.accepted,
            r.refused,
            r.accepted_per_s,
            r.persisted_per_s,
            r.p50_ms,
            r.p99_ms
        ));
    }
    out.push_str("ACCEPT/S: answered 202 per second; STORED/S: stored and applied per second (first post to last event processed); P50/P99: answer latency in ms\n");
    out
}
