//! Tenant webhooks (decision 0028): the deliveries that status changes
//! wrote to `webhook_deliveries` are claimed when due, POSTed to the
//! tenant's `webhook_url` signed with its secret, and recorded — delivered
//! on a 2xx, otherwise retried with exponential backoff until 24 hours
//! after the event, then `failed`. Every worker dispatches; a claim skips
//! what another worker holds, and a worker that dies mid-post leaves its
//! claims due again when their lease ends (at least once: receivers
//! dedupe by the event id).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use herald_api::WebhookPayload;
use herald_domain::{DeliveryState, MessageId, WebhookEvent};
use herald_runtime::Shutdown;
use herald_store::{Attempt, DueDelivery, Store};
use rand::Rng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// How long a claim is held: a worker that dies mid-round leaves its
/// deliveries due again after this (well over a round's longest run).
const LEASE: Duration = Duration::from_secs(120);
/// Deliveries claimed at once at most.
const MAX_CLAIM: usize = 256;
/// Requests in flight to one tenant's endpoint within a round.
const PER_TENANT: usize = 8;
/// How often an idle dispatcher looks for due deliveries.
const POLL: Duration = Duration::from_millis(250);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Bytes of an endpoint's refusal kept in `last_error`.
const ERROR_BODY: usize = 200;

/// The dispatcher's settings (`HERALD_WEBHOOK_*`).
#[derive(Debug, Clone, Copy)]
pub struct HookSettings {
    /// Requests in flight at once across every tenant.
    pub concurrency: usize,
    /// How long one request may take.
    pub timeout: Duration,
    /// The wait before the first retry; each later one doubles, up to an hour.
    pub retry_base: Duration,
}

/// The wait after failed attempt number `attempt` (1 for the first), with
/// ±20 % jitter so that a tenant's many events do not retry in step.
pub fn backoff(base: Duration, attempt: i32) -> Duration {
    let doublings = attempt.clamp(1, 31) as u32 - 1;
    let plain = base
        .checked_mul(1u32 << doublings.min(20))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF);
    plain.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
}

/// What one delivery's attempt came to, before it is written.
fn attempt(
    d: &DueDelivery,
    tried: bool,
    result: Result<i32, (Option<i32>, String)>,
    base: Duration,
) -> Attempt {
    let now = Utc::now();
    match result {
        Ok(status) => Attempt {
            id: d.id,
            tried,
            state: DeliveryState::Delivered,
            status: Some(status),
            error: None,
            next_attempt_at: None,
        },
        Err((status, error)) => {
            let number = d.attempts + i32::from(tried);
            let next = now
                + chrono::Duration::from_std(backoff(base, number.max(1)))
                    .unwrap_or(chrono::Duration::hours(1));
            let gave_up = next > d.give_up_at;
            Attempt {
                id: d.id,
                tried,
                state: if gave_up {
                    DeliveryState::Failed
                } else {
                    DeliveryState::Pending
                },
                status,
                error: Some(if gave_up {
                    format!("{error}; no attempt succeeded before {}", d.give_up_at)
                } else {
                    error
                }),
                next_attempt_at: (!gave_up).then_some(next),
            }
        }
    }
}

/// The body POSTed for `d`.
pub fn payload(d: &DueDelivery) -> Result<Vec<u8>, String> {
    let kind: WebhookEvent = d
        .event
        .parse()
        .map_err(|()| format!("{:?} is not a webhook event", d.event))?;
    serde_json::to_vec(&WebhookPayload {
        id: d.id,
        kind,
        message_id: MessageId(d.message_id),
        at: d.occurred_at,
        channel: d.channel.clone(),
        recipient: d.recipient.clone(),
        metadata: d
            .metadata
            .clone()
            .unwrap_or(serde_json::Value::Object(Default::default())),
        detail: d.detail.clone(),
    })
    .map_err(|e| format!("the payload does not serialize: {e}"))
}

/// Why a delivery cannot be tried now, if it cannot: `Err(Failed)` for
/// good, `Err(Pending)` for later.
fn untriable(d: &DueDelivery) -> Option<(DeliveryState, String)> {
    if d.webhook_url.is_none() {
        return Some((
            DeliveryState::Failed,
            "the tenant's webhook_url was removed".into(),
        ));
    }
    if d.secret.is_none() {
        return Some((
            DeliveryState::Pending,
            "the tenant has no signing secret yet (POST /v1/webhooks/secret makes one)".into(),
        ));
    }
    None
}

/// POSTs one delivery: `Ok` with the status of a 2xx, else the status
/// (if any) and why.
async fn post(client: &reqwest::Client, d: &DueDelivery) -> Result<i32, (Option<i32>, String)> {
    let body = payload(d).map_err(|e| (None, e))?;
    let (Some(url), Some(secret)) = (&d.webhook_url, &d.secret) else {
        return Err((None, "no webhook_url or secret".into()));
    };
    let mut secrets: Vec<&[u8]> = vec![secret.as_bytes()];
    if let Some(previous) = &d.previous_secret {
        secrets.push(previous.as_bytes());
    }
    let signature = herald_callbacks::tenant_hooks::sign(&secrets, Utc::now().timestamp(), &body);
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(herald_callbacks::tenant_hooks::HEADER, signature)
        .header("x-herald-event-id", d.id.to_string())
        .header("x-herald-attempt", (d.attempts + 1).to_string())
        .body(body)
        .send()
        .await
        // The URL may carry credentials: never in an error kept or logged.
        .map_err(|e| (None, e.without_url().to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(i32::from(status.as_u16()));
    }
    let text = response.text().await.unwrap_or_default();
    let text: String = text.chars().take(ERROR_BODY).collect();
    Err((
        Some(i32::from(status.as_u16())),
        if text.trim().is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {}", text.trim())
        },
    ))
}

fn count(a: &Attempt) {
    let outcome = match (a.state, a.tried) {
        (DeliveryState::Delivered, _) => "delivered",
        (DeliveryState::Failed, _) => "failed",
        (DeliveryState::Pending, true) => "retry",
        (DeliveryState::Pending, false) => "postponed",
    };
    metrics::counter!("herald_worker_webhook_deliveries_total", "outcome" => outcome).increment(1);
}

/// One round: the claimed deliveries, each tenant's in order with up to
/// [`PER_TENANT`] in flight. Once a tenant's endpoint fails in a round,
/// its remaining deliveries are postponed untried (a dead endpoint costs
/// one timeout per round, not one per event).
async fn round(
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    claimed: Vec<DueDelivery>,
    base: Duration,
) -> Vec<Attempt> {
    let mut by_tenant: HashMap<uuid::Uuid, Vec<DueDelivery>> = HashMap::new();
    for d in claimed {
        by_tenant.entry(d.tenant_id).or_default().push(d);
    }
    let tenants = by_tenant.into_values().map(|deliveries| {
        let client = client.clone();
        let permits = permits.clone();
        async move {
            let failing = AtomicBool::new(false);
            let failing = &failing;
            futures::stream::iter(deliveries)
                .map(|d| {
                    let client = &client;
                    let permits = &permits;
                    async move {
                        if let Some((state, why)) = untriable(&d) {
                            let mut a = attempt(&d, false, Err((None, why)), base);
                            if state == DeliveryState::Failed {
                                a.state = DeliveryState::Failed;
                                a.next_attempt_at = None;
                            }
                            return a;
                        }
                        if failing.load(Ordering::Relaxed) {
                            return attempt(
                                &d,
                                false,
                                Err((
                                    None,
                                    "postponed: the endpoint failed earlier in this round".into(),
                                )),
                                base,
                            );
                        }
                        let _permit = permits.acquire().await;
                        let started = Instant::now();
                        let result = post(client, &d).await;
                        metrics::histogram!("herald_worker_webhook_seconds")
                            .record(started.elapsed().as_secs_f64());
                        if result.is_err() {
                            failing.store(true, Ordering::Relaxed);
                        }
                        attempt(&d, true, result, base)
                    }
                })
                .buffer_unordered(PER_TENANT)
                .collect::<Vec<Attempt>>()
                .await
        }
    });
    futures::future::join_all(tenants)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Writes a round's attempts, retrying while PostgreSQL is away (if it
/// never comes back, the leases end and the deliveries are tried again).
async fn record(store: &Store, attempts: &[Attempt], stop: &Shutdown) {
    let mut delay = Duration::from_millis(200);
    for _ in 0..8 {
        match store.record_webhook_attempts(attempts).await {
            Ok(_) => {
                attempts.iter().for_each(count);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, deliveries = attempts.len(), "Failed to record webhook attempts; retrying.");
                tokio::select! {
                    _ = stop.wait() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Dispatches due deliveries until `stop` fires, then lets the rounds
/// under way finish and record.
pub async fn run(store: Store, settings: HookSettings, stop: Shutdown) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Herald-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut rounds: JoinSet<()> = JoinSet::new();
    loop {
        while rounds.try_join_next().is_some() {}
        // Claim only what can be posted soon: what the claim holds is out
        // of other workers' reach until posted.
        let room = permits
            .available_permits()
            .saturating_sub(rounds.len() * PER_TENANT)
            .clamp(1, MAX_CLAIM);
        let claimed = match store.claim_webhook_deliveries(room as i64, LEASE).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "Failed to claim webhook deliveries.");
                Vec::new()
            }
        };
        let full = claimed.len() == room;
        if !claimed.is_empty() {
            let (client, permits, store, stop) =
                (client.clone(), permits.clone(), store.clone(), stop.clone());
            rounds.spawn(async move {
                let attempts = round(client, permits, claimed, settings.retry_base).await;
                record(&store, &attempts, &stop).await;
            });
        }
        if full && rounds.len() < 4 {
            continue;
        }
        tokio::select! {
            _ = stop.wait() => break,
            _ = tokio::time::sleep(POLL) => {}
            Some(_) = rounds.join_next(), if !rounds.is_empty() => {}
        }
    }
    while rounds.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_an_hour_with_jitter() {
        let base = Duration::from_secs(30);
        for (n, plain) in [(1, 30.0), (2, 60.0), (3, 120.0), (8, 3600.0), (30, 3600.0)] {
            let d = backoff(base, n).as_secs_f64();
            assert!(
                (plain * 0.8..=plain * 1.2).contains(&d),
                "attempt {n}: {d} s is not {plain} s ± 20 %"
            );
        }
    }

    #[test]
    fn a_day_of_retries_is_about_thirty_attempts() {
        // The plain schedule (no jitter): 30 s doubling to an hour.
        let mut total = 0.0;
        let mut n = 0;
        while total < 86_400.0 {
            n += 1;
            total += (30.0 * 2f64.powi(n - 1)).min(3600.0);
        }
        assert!((25..=35).contains(&n), "{n} attempts in 24 h");
    }
}
