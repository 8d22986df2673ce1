//! Draining queues into the central queues. One consumer per (tenant,
//! channel) user queue, each holding a bounded prefetch; the broker
//! round-robins deliveries across consumers, so a tenant with a million
//! queued jobs holds no more of the scheduler than one with ten.
//!
//! Contract: a user-queue delivery is acked only after its job was
//! published to the central queue (or the dead-letter queue) and confirmed.
//! When no provider has capacity, the consumer stops taking deliveries —
//! it holds its prefetch unacked — instead of cycling jobs through queues.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use herald_broker::lapin::message::Delivery;
use herald_broker::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use herald_broker::lapin::types::FieldTable;
use herald_broker::{Broker, Outbound, Publisher, Topology};
use herald_domain::{Channel, Priority, TenantId};
use herald_proto::v1;
use herald_proto::Message as _;
use herald_store::Store;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::placement::{Placement, Placer};

/// Deliveries handled together: their placements run concurrently and
/// their central publishes are confirmed together.
const BATCH: usize = 64;
/// A job waiting for capacity longer than this is handed back to its queue
/// (nack + requeue), well before RabbitMQ's 30-minute consumer timeout.
const MAX_HOLD: Duration = Duration::from_secs(20 * 60);

/// What every drain task shares.
pub struct Drain {
    pub broker: Broker,
    pub publisher: Publisher,
    pub topology: Topology,
    pub placer: Placer,
    pub prefetch: u16,
}

enum Fate {
    Central(Outbound),
    Dead(Outbound),
    Wait(Duration),
}

impl Drain {
    /// Consumes `queue` until `stop` fires; unacked deliveries return to the
    /// queue when the channel closes.
    pub async fn drain_queue(
        self: Arc<Self>,
        queue: String,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let channel = self.broker.channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let mut consumer = channel
            .basic_consume(
                &queue,
                "",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::debug!(queue = %queue, "Draining a queue.");
        loop {
            let first = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                next = consumer.next() => match next {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => return Err(e.into()),
                    None => break,
                },
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match consumer.next().now_or_never() {
                    Some(Some(Ok(d))) => batch.push(d),
                    _ => break,
                }
            }
            self.process_batch(batch, &stop).await?;
        }
        let _ = channel.close(200, "drain stopped").await;
        Ok(())
    }

    /// Places every delivery of `batch`, publishes, and acks. Placed jobs go
    /// out at once; jobs that must wait for capacity are retried (only they)
    /// until placed, until [`MAX_HOLD`], or until shutdown — then they are
    /// handed back to their queue.
    pub async fn process_batch(
        &self,
        batch: Vec<Delivery>,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut waiting: Vec<Delivery> = batch;
        let mut stop = stop.clone();
        loop {
            let fates = futures::future::join_all(waiting.iter().map(|d| self.decide(d))).await;
            let outbound: Vec<Outbound> = fates
                .iter()
                .filter_map(|f| match f {
                    Fate::Central(o) | Fate::Dead(o) => Some(o.clone()),
                    Fate::Wait(_) => None,
                })
                .collect();
            self.publisher.publish_all(&outbound).await?;
            let placed = fates
                .iter()
                .filter(|f| matches!(f, Fate::Central(_)))
                .count();
            metrics::counter!("herald_scheduler_placed_total").increment(placed as u64);
            let mut still = Vec::new();
            let mut pause = Duration::from_secs(2);
            for (delivery, fate) in waiting.into_iter().zip(fates) {
                match fate {
                    Fate::Central(_) | Fate::Dead(_) => {
                        delivery.acker.ack(BasicAckOptions::default()).await?
                    }
                    Fate::Wait(d) => {
                        pause = pause.min(d);
                        still.push(delivery);
                    }
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            waiting = still;
            let give_back = started.elapsed() > MAX_HOLD
                || tokio::select! {
                    _ = stop.wait_for(|s| *s) => true,
                    _ = tokio::time::sleep(pause.max(Duration::from_millis(20))) => false,
                };
            if give_back {
                for d in waiting {
                    d.acker
                        .nack(BasicNackOptions {
                            multiple: false,
                            requeue: true,
                        })
                        .await?;
                }
                return Ok(());
            }
        }
    }

    /// One placement attempt for one delivery.
    async fn decide(&self, delivery: &Delivery) -> Fate {
        let mut job = match v1::Job::decode(delivery.data.as_slice()) {
            Ok(job) => job,
            Err(e) => {
                tracing::warn!(error = %e, "A delivery is not a job envelope; dead-lettering it.");
                return Fate::Dead(self.topology.dead_letter(
                    delivery.data.clone(),
                    "undecodable",
                    &e.to_string(),
                ));
            }
        };
        match self.placer.place(&job).await {
            Ok(Placement::Placed(assignment)) => {
                job.assignment = Some(assignment);
                let channel = Channel::from_proto(job.channel).unwrap_or(Channel::Email);
                let priority = Priority::parse(i64::from(job.priority)).unwrap_or_default();
                Fate::Central(
                    self.topology
                        .to_central(channel, job.encode_to_vec(), priority),
                )
            }
            Ok(Placement::Impossible { reason }) => {
                tracing::warn!(message_id = %job.message_id, reason = %reason, "A job can never be placed; dead-lettering it.");
                job.last_error = reason.clone();
                Fate::Dead(
                    self.topology
                        .dead_letter(job.encode_to_vec(), "unplaceable", &reason),
                )
            }
            Ok(Placement::Wait {
                retry_after,
                reason,
            }) => {
                tracing::debug!(message_id = %job.message_id, reason = %reason, wait_ms = retry_after.as_millis() as u64, "Waiting for provider capacity.");
                metrics::counter!("herald_scheduler_waits_total").increment(1);
                Fate::Wait(retry_after)
            }
            Err(e) => {
                // Reservations fail closed: nothing is placed while Redis is away.
                tracing::warn!(error = %e, "Redis is unreachable; holding placements.");
                Fate::Wait(Duration::from_secs(1))
            }
        }
    }
}

/// Runs `drain_queue` again after an error, until stopped.
pub fn spawn_drain(
    tasks: &mut JoinSet<()>,
    drain: Arc<Drain>,
    queue: String,
    stop: watch::Receiver<bool>,
) {
    tasks.spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match drain.clone().drain_queue(queue.clone(), stop.clone()).await {
                Ok(()) => return,
                Err(e) => {
                    if *stop.borrow() {
                        return;
                    }
                    tracing::warn!(queue = %queue, error = %e, "A queue drain failed; restarting it.");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    });
}

/// Keeps one drain per active tenant and channel: learns of new and
/// disabled tenants by `LISTEN`/`NOTIFY`, with a slow poll as a backstop.
pub async fn discover_tenants(
    drain: Arc<Drain>,
    store: Store,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut running: HashMap<TenantId, watch::Sender<bool>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut listener = listen(&store).await;
    loop {
        match store.active_tenants().await {
            Ok(tenants) => {
                let active: Vec<TenantId> = tenants.iter().map(|t| TenantId(t.id)).collect();
                for tenant in &active {
                    if running.contains_key(tenant) {
                        continue;
                    }
                    let channel = drain.broker.channel().await?;
                    drain.topology.declare_tenant(&channel, *tenant).await?;
                    let _ = channel.close(200, "declared").await;
                    let (tx, rx) = watch::channel(false);
                    for ch in Channel::ALL {
                        spawn_drain(
                            &mut tasks,
                            drain.clone(),
                            drain.topology.user_queue(*tenant, ch),
                            rx.clone(),
                        );
                    }
                    running.insert(*tenant, tx);
                    tracing::info!(tenant_id = %tenant, "Draining a tenant's user queues.");
                }
                running.retain(|tenant, stop| {
                    let keep = active.contains(tenant);
                    if !keep {
                        let _ = stop.send(true);
                        tracing::info!(tenant_id = %tenant, "Stopped draining a disabled tenant.");
                    }
                    keep
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "Failed to list tenants; keeping the current drains.")
            }
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => l.recv().await.map(|_| ()).is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
            ok = notified => if !ok { listener = None; },
            _ = tokio::time::sleep(poll) => if listener.is_none() { listener = listen(&store).await; },
        }
    }
    for stop in running.values() {
        let _ = stop.send(true);
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn listen(store: &Store) -> Option<PgListener> {
    let mut l = PgListener::connect_with(store.pool()).await.ok()?;
    l.listen(herald_store::TENANTS_CHANNEL).await.ok()?;
    Some(l)
}
