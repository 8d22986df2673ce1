//! The `webhooks` scenario: the same burst of emails twice — without a
//! tenant webhook, then with one taking every event (each send posts a
//! signed `sent` event to a receiver in this process, which checks every
//! signature as a tenant would) — for what the outbox and the dispatcher
//! cost the send path, and how fast and how late events reach the tenant.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use herald_api::TenantPatch;
use herald_callbacks::tenant_hooks;
use serde::Serialize;

use crate::stack::Stack;

/// What the tenant's endpoint saw and what the delivery log says.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookRun {
    pub name: String,
    /// Deliveries written (one per status event).
    pub deliveries: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Requests whose signature checked out at the receiver.
    pub verified: u64,
    /// Requests whose signature did not.
    pub unverified: u64,
    /// Delivered per second, first event to last delivery.
    pub delivered_per_s: f64,
    /// Event → delivered, ms.
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
}

struct Receiver {
    secret: String,
    verified: AtomicU64,
    unverified: AtomicU64,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers
        .get(tenant_hooks::HEADER)
        .and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    match tenant_hooks::verify(r.secret.as_bytes(), signature, &body, now, 300) {
        Ok(_) => {
            r.verified.fetch_add(1, Ordering::Relaxed);
            StatusCode::NO_CONTENT
        }
        Err(_) => {
            r.unverified.fetch_add(1, Ordering::Relaxed);
            StatusCode::UNAUTHORIZED
        }
    }
}

/// Points the bench tenant's webhook (every event) at a receiver in this
/// process that checks each signature; the receiver's counters.
pub async fn attach(stack: &Stack) -> anyhow::Result<Arc<ReceiverHandle>> {
    let secret = stack.client.rotate_webhook_secret().await?.secret;
    let receiver = Arc::new(Receiver {
        secret,
        verified: AtomicU64::new(0),
        unverified: AtomicU64::new(0),
    });
    let app = axum::Router::new()
        .route("/hooks", axum::routing::post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    stack
        .admin
        .update_tenant(
            &stack.tenant_id,
            &TenantPatch {
                webhook_url: Some(Some(url)),
                webhook_events: Some(None),
                ..Default::default()
            },
        )
        .await?;
    Ok(Arc::new(ReceiverHandle { receiver, server }))
}

pub struct ReceiverHandle {
    receiver: Arc<Receiver>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for ReceiverHandle {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Waits (up to `wait`) until no delivery is pending, then reads the log.
pub async fn settle(
    stack: &Stack,
    handle: &ReceiverHandle,
    name: &str,
    wait: Duration,
) -> anyhow::Result<WebhookRun> {
    let started = Instant::now();
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'")
                .fetch_one(&stack.db)
                .await?;
        if pending == 0 || started.elapsed() > wait {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    #[derive(sqlx::FromRow)]
    struct Summary {
        deliveries: i64,
        delivered: i64,
        failed: i64,
        span_s: Option<f64>,
        lag_p50_ms: Option<f64>,
        lag_p99_ms: Option<f64>,
    }
    let s: Summary = sqlx::query_as(
        "SELECT count(*) AS deliveries,
                count(*) FILTER (WHERE state = 'delivered') AS delivered,
                count(*) FILTER (WHERE state = 'failed') AS failed,
                EXTRACT(EPOCH FROM max(delivered_at) - min(occurred_at))::float8 AS span_s,
                (percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM delivered_at - occurred_at)) * 1000)::float8 AS lag_p50_ms,
                (percentile_cont(0.99) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM delivered_at - occurred_at)) * 1000)::float8 AS lag_p99_ms
         FROM webhook_deliveries",
    )
    .fetch_one(&stack.db)
    .await?;
    let delivered = s.delivered.max(0) as u64;
    Ok(WebhookRun {
        name: name.to_owned(),
        deliveries: s.deliveries.max(0) as u64,
        delivered,
        failed: s.failed.max(0) as u64,
        verified: handle.receiver.verified.load(Ordering::Relaxed),
        unverified: handle.receiver.unverified.load(Ordering::Relaxed),
        delivered_per_s: delivered as f64 / s.span_s.unwrap_or(1.0).max(1e-6),
        lag_p50_ms: s.lag_p50_ms.unwrap_or(0.0),
        lag_p99_ms: s.lag_p99_ms.unwrap_or(0.0),
    })
}

/// The table's lines for the runs.
pub fn table(runs: &[WebhookRun]) -> String {
    if runs.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\nTenant webhooks\n{:<32} {:>8} {:>9} {:>6} {:>8} {:>6} {:>11} {:>9} {:>9}\n",
        "RUN",
        "EVENTS",
        "DELIVERED",
        "FAILED",
        "VERIFIED",
        "BAD",
        "DELIVERED/S",
        "LAG P50",
        "LAG P99"
    );
    for r in runs {
        out.push_str(&format!(
            "{:<32} {:>8} {:>9} {:>6} {:>8} {:>6} {:>11.0} {:>9.0} {:>9.0}\n",
            r.name,
            r.deliveries,
            r.delivered,
            r.failed,
            r.verified,
            r.unverified,
            r.delivered_per_s,
            r.lag_p50_ms,
            r.lag_p99_ms
        ));
    }
    out.push_str("VERIFIED/BAD: requests whose signature the receiver accepted/refused; DELIVERED/S: first event to last delivery; LAG: event → delivered, ms\n");
    out
}
