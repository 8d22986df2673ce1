//! The callbacks queue's consumer (decision 0027): provider events the
//! producer checked and queued are stored in `callback_events` and applied
//! to their messages in batches — one transaction per batch — and only
//! then acked. Events that arrived before their message was recorded
//! `sent` wait in the table; every worker sweeps them once a second.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use herald_broker::lapin::message::Delivery;
use herald_broker::lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use herald_broker::lapin::types::FieldTable;
use herald_domain::EventKind;
use herald_proto::v1;
use herald_proto::Message as _;
use herald_runtime::Shutdown;
use herald_store::{Applied, NewCallback, Store};
use uuid::Uuid;

use crate::process::Worker;

/// How long a batch waits to fill once it has one event.
const LINGER: Duration = Duration::from_millis(10);
/// Events stored in one transaction at most (a delivery is never split).
const MAX_EVENTS: usize = 1024;
/// How often events waiting for their message are looked at again.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Events applied per sweep.
const SWEEP_BATCH: i64 = 1000;

/// Reads one delivery: a batch of events. Each event decodes on its own;
/// `Err` names what is wrong with the delivery or with an event.
pub fn decode_batch(data: &[u8]) -> Result<Vec<Result<NewCallback, String>>, String> {
    let batch = v1::CallbackBatch::decode(data).map_err(|e| format!("not a CallbackBatch: {e}"))?;
    Ok(batch.events.into_iter().map(decode).collect())
}

/// Reads one event.
pub fn decode(e: v1::CallbackEvent) -> Result<NewCallback, String> {
    let uuid = |raw: &str, what: &str| {
        raw.parse::<Uuid>()
            .map_err(|_| format!("{what} {raw:?} is not a UUID"))
    };
    let event = match v1::EventKind::try_from(e.kind) {
        Ok(v1::EventKind::Delivered) => EventKind::Delivered,
        Ok(v1::EventKind::Read) => EventKind::Read,
        Ok(v1::EventKind::Clicked) => EventKind::Clicked,
        Ok(v1::EventKind::Replied) => EventKind::Replied,
        Ok(v1::EventKind::Bounced) => EventKind::Bounced,
        Ok(v1::EventKind::Complained) => EventKind::Complained,
        _ => return Err(format!("event kind {} is not an event", e.kind)),
    };
    let time = |ms: i64, what: &str| {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .ok_or_else(|| format!("{what} {ms} is out of range"))
    };
    let detail = if e.detail.is_empty() {
        serde_json::Value::Object(Default::default())
    } else {
        serde_json::from_str(&e.detail).map_err(|err| format!("detail is not JSON: {err}"))?
    };
    if e.dedupe_key.is_empty() {
        return Err("the event has no dedupe key".into());
    }
    Ok(NewCallback {
        id: uuid(&e.event_id, "event_id")?,
        provider_id: uuid(&e.provider_id, "provider_id")?,
        message_id: if e.message_id.is_empty() {
            None
        } else {
            Some(uuid(&e.message_id, "message_id")?)
        },
        recipient: (!e.recipient.is_empty()).then_some(e.recipient),
        event,
        occurred_at: time(e.at_ms, "at_ms")?,
        received_at: time(e.received_at_ms, "received_at_ms")?,
        detail,
        // PostgreSQL text takes no NUL; a raw body is kept readable.
        raw: String::from_utf8_lossy(&e.raw).replace('\0', "\u{fffd}"),
        dedupe_key: e.dedupe_key,
    })
}

/// Only a producer of another version could queue it: kept out of the
/// table, said once, acked.
fn undecodable(why: &str) {
    metrics::counter!("herald_worker_callbacks_total", "outcome" => "undecodable").increment(1);
    tracing::error!(reason = %why, "Dropped a callback event that does not decode.");
}

fn count(applied: &Applied) {
    for (outcome, n) in [
        ("processed", applied.processed),
        ("waiting", applied.waiting),
        ("ignored", applied.ignored),
        ("duplicate", applied.duplicates),
    ] {
        if n > 0 {
            metrics::counter!("herald_worker_callbacks_total", "outcome" => outcome).increment(n);
        }
    }
    if applied.suppressed > 0 {
        metrics::counter!("herald_worker_suppressions_added_total").increment(applied.suppressed);
    }
    if applied.moved > 0 {
        metrics::counter!("herald_worker_callback_status_moves_total").increment(applied.moved);
    }
}

/// Stores the batch, retrying while PostgreSQL is away (the deliveries
/// stay unacked meanwhile; if this worker dies they are redelivered, and
/// the dedupe key makes the second store a no-op).
async fn store_batch(store: &Store, events: &[NewCallback], stop: &Shutdown) -> bool {
    let mut delay = Duration::from_millis(200);
    loop {
        match store.record_callbacks(events).await {
            Ok(applied) => {
                count(&applied);
                return true;
            }
            Err(e) => {
                tracing::warn!(error = %e, events = events.len(), "Failed to store callback events; retrying.");
                tokio::select! {
                    _ = stop.wait() => return false,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

impl Worker {
    /// Consumes the callbacks queue until `stop` fires.
    pub async fn run_callbacks(
        self: Arc<Self>,
        prefetch: u16,
        stop: Shutdown,
    ) -> anyhow::Result<()> {
        let queue = self.topology.callbacks_queue();
        let amqp = self.broker.channel().await?;
        amqp.basic_qos(prefetch, BasicQosOptions::default()).await?;
        let mut consumer = amqp
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                _ = stop.wait() => break,
                _ = sweep.tick() => {
                    match self.store.apply_waiting_callbacks(SWEEP_BATCH).await {
                        Ok(applied) => count(&applied),
                        Err(e) => tracing::warn!(error = %e, "Failed to apply waiting callback events."),
                    }
                    continue;
                }
                next = consumer.next() => match next {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => { tracing::warn!(error = %e, "The callbacks queue's consumer failed."); break }
                    None => break,
                },
            };
            // Deliveries until MAX_EVENTS events, or the linger is over.
            let mut events = Vec::new();
            let mut batch: Vec<Delivery> = Vec::new();
            let mut take = |d: Delivery, events: &mut Vec<NewCallback>| {
                match decode_batch(&d.data) {
                    Ok(decoded) => {
                        for e in decoded {
                            match e {
                                Ok(e) => events.push(e),
                                Err(why) => undecodable(&why),
                            }
                        }
                    }
                    Err(why) => undecodable(&why),
                }
                batch.push(d);
            };
            take(first, &mut events);
            let deadline = tokio::time::Instant::now() + LINGER;
            while events.len() < MAX_EVENTS {
                match consumer.next().now_or_never() {
                    Some(Some(Ok(d))) => take(d, &mut events),
                    Some(_) => break,
                    None => match tokio::time::timeout_at(deadline, consumer.next()).await {
                        Ok(Some(Ok(d))) => take(d, &mut events),
                        _ => break,
                    },
                }
            }
            metrics::histogram!("herald_worker_callback_batch").record(events.len() as f64);
            if !store_batch(&self.store, &events, &stop).await {
                break;
            }
            for d in batch {
                if let Err(e) = d.acker.ack(BasicAckOptions::default()).await {
                    tracing::warn!(error = %e, "Failed to ack a callback event; it will be redelivered and stored once.");
                }
            }
        }
        let _ = amqp.close(200, "worker stopped".into()).await;
        Ok(())
    }
}
