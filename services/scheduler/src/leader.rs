//! Periodic work that one scheduler does for all: it runs while this
//! process holds the leader lock (a PostgreSQL advisory lock, see
//! `herald_store::Leadership`), and another scheduler takes over within
//! [`ACQUIRE_EVERY`] when the leader stops or dies.
//!
//! - The reconciler: jobs whose confirm the producer never recorded (it
//!   died, or lost the broker, between the insert and the confirm) are
//!   published again, with confirms, once older than
//!   `HERALD_RECONCILE_AFTER_SECS`. The copy is marked, and the worker's
//!   claim sends a message once however many copies arrive.
//! - Idempotency keys older than 24 hours are deleted in batches.
//! - Every provider's hour and day windows are checkpointed to PostgreSQL
//!   (`HERALD_CAPACITY_CHECKPOINT_SECS`), to be counted again from there
//!   when Redis loses its keys (docs/decisions/0017).
//! - Every queue's depth is read and exported as `herald_queue_depth`
//!   (summed by kind and channel: one series per kind, never per tenant),
//!   and every enabled provider's score, its parts and its windows' use as
//!   `herald_provider_score{provider, part}` and
//!   `herald_provider_window_used_ratio{provider, window}` (one series set
//!   per provider: bounded by the providers an operator configured).

use std::time::{Duration, Instant};

use herald_broker::lapin::options::QueueDeclareOptions;
use herald_broker::lapin::types::FieldTable;
use herald_broker::{Broker, Publisher, Topology};
use herald_capacity::{Capacity, Limits};
use herald_domain::Channel;
use herald_runtime::Shutdown;
use herald_store::catalog::ProviderCatalog;
use herald_store::{Leadership, SavedBucket, Store};

/// How often a scheduler that is not the leader tries to become it.
pub const ACQUIRE_EVERY: Duration = Duration::from_secs(2);
/// How often the leader checks its lock and runs the reconciler.
const TICK: Duration = Duration::from_secs(1);
/// How often expired idempotency keys are deleted.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);
/// Jobs republished per round (a full round runs again at once).
const RECONCILE_BATCH: i64 = 500;
/// Keys deleted per statement.
const EXPIRE_BATCH: i64 = 5_000;
/// How often queue depths are read.
const DEPTHS_EVERY: Duration = Duration::from_secs(15);

/// What the leader needs.
#[derive(Clone)]
pub struct Periodic {
    /// For reading queue depths.
    pub broker: Broker,
    pub store: Store,
    pub publisher: Publisher,
    pub topology: Topology,
    /// How long a job may wait for its confirm to be recorded before it is
    /// published again.
    pub reconcile_after: Duration,
    pub capacity: Capacity,
    pub catalog: ProviderCatalog,
    /// How often provider windows are checkpointed.
    pub checkpoint_every: Duration,
    /// The placer's weights and health policy, for the score gauges.
    pub weights: herald_scoring::ScoreWeights,
    pub health: herald_capacity::HealthPolicy,
}

impl Periodic {
    fn lock_name(&self) -> String {
        format!("herald-leader:{}", self.topology.namespace())
    }

    /// Competes for the lock and, while holding it, does the periodic work,
    /// until `stop` fires.
    pub async fn run(self, stop: Shutdown) {
        let name = self.lock_name();
        loop {
            match self.store.try_lead(&name).await {
                Ok(Some(lease)) => {
                    tracing::info!(
                        "This scheduler is the leader: it runs the reconciler and key expiry."
                    );
                    metrics::gauge!("herald_scheduler_leader").set(1.0);
                    self.lead(lease, &stop).await;
                    metrics::gauge!("herald_scheduler_leader").set(0.0);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "Failed to compete for the leader lock."),
            }
            tokio::select! {
                _ = stop.wait() => return,
                _ = tokio::time::sleep(ACQUIRE_EVERY) => {}
            }
        }
    }

    async fn lead(&self, mut lease: Leadership, stop: &Shutdown) {
        let mut last_expiry: Option<Instant> = None;
        let mut last_checkpoint: Option<Instant> = None;
        let mut last_depths: Option<Instant> = None;
        loop {
            if stop.is_triggered() {
                lease.resign().await;
                return;
            }
            if !lease.check().await {
                tracing::warn!(
                    "Lost the leader lock (the database connection that held it ended)."
                );
                return;
            }
            loop {
                match reconcile_once(self).await {
                    Ok(n) if n as i64 == RECONCILE_BATCH => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "The reconciler failed; retrying.");
                        break;
                    }
                }
            }
            match self.store.unconfirmed_backlog().await {
                Ok((count, oldest)) => {
                    metrics::gauge!("herald_scheduler_unconfirmed_jobs").set(count as f64);
                    metrics::gauge!("herald_scheduler_unconfirmed_oldest_seconds").set(oldest);
                }
                Err(e) => tracing::debug!(error = %e, "Failed to measure the outbox."),
            }
            if last_checkpoint.is_none_or(|t| t.elapsed() >= self.checkpoint_every) {
                last_checkpoint = Some(Instant::now());
                if let Err(e) = checkpoint_windows(self).await {
                    tracing::warn!(error = %e, "Failed to checkpoint provider windows.");
                }
            }
            if last_depths.is_none_or(|t| t.elapsed() >= DEPTHS_EVERY) {
                last_depths = Some(Instant::now());
                if let Err(e) = export_depths(self).await {
                    tracing::warn!(error = %e, "Failed to read queue depths.");
                }
                if let Err(e) = export_scores(self).await {
                    tracing::warn!(error = %e, "Failed to read provider loads for the score gauges.");
                }
            }
            if last_expiry.is_none_or(|t| t.elapsed() >= EXPIRE_EVERY) {
                last_expiry = Some(Instant::now());
                expire_keys(&self.store).await;
            }
            tokio::select! {
                _ = stop.wait() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }
}

/// Every queue of the deployment as (kind, channel, name): the active
/// tenants' user queues, the central and express queues, the return queue,
/// the delay tiers, the dead letters and the callbacks.
async fn deployment_queues(
    p: &Periodic,
) -> anyhow::Result<Vec<(&'static str, &'static str, String)>> {
    let t = &p.topology;
    let mut queues = Vec::new();
    for tenant in p.store.active_tenants().await? {
        for c in Channel::ALL {
            queues.push(("user", c.as_str(), t.user_queue(tenant.id, c)));
        }
    }
    for c in Channel::ALL {
        queues.push(("central", c.as_str(), t.central_queue(c)));
        queues.push(("express", c.as_str(), t.express_queue(c)));
    }
    queues.push(("return", "", t.return_queue()));
    for s in herald_broker::DELAY_TIERS {
        queues.push(("delay", "", t.delay_queue(s)));
    }
    queues.push(("dead_letter", "", t.dead_letter_queue()));
    queues.push(("callbacks", "", t.callbacks_queue()));
    Ok(queues)
}

/// Reads every queue's ready depth (a passive declare each) and sets
/// `herald_queue_depth{kind, channel}` to the sums. A queue that does not
/// exist counts 0.
pub async fn export_depths(p: &Periodic) -> anyhow::Result<()> {
    let queues = deployment_queues(p).await?;
    let mut sums: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
    let mut channel = p.broker.channel().await?;
    for (kind, ch, name) in queues {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let depth = match channel
            .queue_declare(name.as_str().into(), passive, FieldTable::default())
            .await
        {
            Ok(q) => u64::from(q.message_count()),
            // A missing queue closes the channel: open another.
            Err(_) => {
                channel = p.broker.channel().await?;
                0
            }
        };
        *sums.entry((kind, ch)).or_default() += depth;
    }
    let _ = channel.close(200, "depths read".into()).await;
    for ((kind, ch), depth) in sums {
        metrics::gauge!("herald_queue_depth", "kind" => kind, "channel" => ch).set(depth as f64);
    }
    Ok(())
}

/// Sets every enabled provider's score gauges from the same state and
/// weights the placer scores by (what `GET /v1/admin/providers/{id}/score`
/// explains for one).
pub async fn export_scores(p: &Periodic) -> anyhow::Result<()> {
    let providers = p.catalog.snapshot();
    let views: Vec<herald_scoring::ProviderView> = providers
        .iter()
        .filter_map(herald_scoring::ProviderView::of)
        .collect();
    let pairs: Vec<(uuid::Uuid, &Limits)> = views.iter().map(|v| (v.id, &v.limits)).collect();
    let loads = p.capacity.load(&pairs).await?;
    let now = chrono::Utc::now();
    for ch in Channel::ALL {
        let of_channel = || {
            views
                .iter()
                .zip(loads.iter())
                .filter(move |(v, _)| v.channel == ch)
        };
        let mean = herald_scoring::recent_mean(of_channel().map(|(v, l)| (v, Some(l))));
        for (view, load) in of_channel() {
            let s = herald_scoring::score(view, Some(load), mean, &p.weights, &p.health, now);
            let provider = view.name.clone();
            for (part, value) in [
                ("total", s.total),
                ("quota", s.parts.quota),
                ("headroom", s.parts.headroom),
                ("success", s.parts.success),
                ("latency", s.parts.latency),
                ("recent", s.parts.recent),
            ] {
                metrics::gauge!("herald_provider_score", "provider" => provider.clone(), "part" => part)
                    .set(value);
            }
            metrics::gauge!("herald_provider_eligible", "provider" => provider.clone())
                .set(if s.state.is_eligible() { 1.0 } else { 0.0 });
            for (i, (ms, limit)) in view.limits.windows.iter().enumerate() {
                if *limit >= herald_scoring::UNLIMITED {
                    continue;
                }
                let used = load.used.get(i).copied().unwrap_or(0);
                metrics::gauge!(
                    "herald_provider_window_used_ratio",
                    "provider" => provider.clone(),
                    "window" => format!("{}s", ms / 1000)
                )
                .set(used as f64 / (*limit).max(1) as f64);
            }
        }
    }
    Ok(())
}

/// One round of the reconciler: lock what waited too long for its confirm,
/// publish it again (marked as a copy) with confirms, delete it. Returns
/// how many rows the round took.
pub async fn reconcile_once(p: &Periodic) -> anyhow::Result<usize> {
    let stale = p
        .store
        .stale_unconfirmed(p.reconcile_after, RECONCILE_BATCH)
        .await?;
    if stale.locked == 0 {
        return Ok(0);
    }
    let mut by_tenant: std::collections::BTreeMap<_, Vec<_>> = Default::default();
    for job in &stale.jobs {
        let body = herald_proto::jobs::as_copy(&job.envelope);
        by_tenant.entry(job.tenant_id).or_default().push((
            job.message_id,
            job.channel,
            job.priority,
            body,
        ));
    }
    let outbound: Vec<_> = by_tenant
        .into_iter()
        .flat_map(|(tenant, jobs)| p.topology.to_user_batched(tenant, jobs))
        .map(|(_, o)| o)
        .collect();
    p.publisher.publish_all(&outbound).await?;
    let (taken, republished) = (stale.locked, stale.jobs.len());
    stale.republished().await?;
    if republished > 0 {
        metrics::counter!("herald_scheduler_reconciled_total").increment(republished as u64);
        tracing::warn!(
            count = republished,
            "Published again jobs whose confirm was never recorded (a producer stopped between its insert and the confirm)."
        );
    }
    Ok(taken)
}

/// Copies every provider's hour and day windows from Redis to PostgreSQL.
/// A provider whose windows wait to be restored (Redis lost them) is
/// skipped, so its last checkpoint survives until it is read.
pub async fn checkpoint_windows(p: &Periodic) -> anyhow::Result<usize> {
    let mut providers = Vec::new();
    let mut buckets = Vec::new();
    for provider in p.catalog.snapshot().iter() {
        let limits = Limits::new(&provider.quota, provider.channel);
        if limits.checkpointed().next().is_none() {
            continue;
        }
        let id = provider.id.as_uuid();
        let Some(used) = p.capacity.snapshot(id, &limits).await? else {
            continue;
        };
        providers.push(id);
        buckets.extend(used.into_iter().map(|b| {
            (
                id,
                SavedBucket {
                    window_ms: b.window_ms as i64,
                    bucket: b.bucket,
                    used: b.used,
                },
            )
        }));
    }
    p.store.save_checkpoints(&providers, &buckets).await?;
    metrics::counter!("herald_scheduler_checkpoints_total").increment(1);
    Ok(providers.len())
}

async fn expire_keys(store: &Store) {
    loop {
        match store.expire_idempotency_keys(EXPIRE_BATCH).await {
            Ok(n) => {
                if n > 0 {
                    metrics::counter!("herald_scheduler_idempotency_keys_expired_total")
                        .increment(n);
                }
                if (n as i64) < EXPIRE_BATCH {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Failed to delete expired idempotency keys.");
                return;
            }
        }
    }
}
