//! Draining queues into the central queues.
//!
//! One consumer per (tenant, channel) user queue, each holding a bounded
//! prefetch. Before placing a batch a user drain asks the fair [`Gate`]:
//! lanes are served by deficit round robin weighted by tenant weight, and
//! only as fast as workers empty the central queue, so a tenant with a
//! million queued jobs keeps a tenant that sends ten waiting at most one
//! round. The return queue (retries, delayed jobs) has its own drain and
//! skips the gate: its jobs were admitted once already.
//!
//! Contract: a delivery is acked only after its job was published and
//! confirmed (central, delay tier or dead letters) or parked in PostgreSQL.
//!
//! Waiting (a job is never failed for lack of capacity):
//! - nothing the lane may use has room for a short while: the drain holds
//!   its batch and retries only the waiting jobs;
//! - for longer than [`PAUSE_AFTER`] (a closed send window, a used-up
//!   hour or day): the drain hands its deliveries back and stops consuming
//!   until the soonest window reopens or a provider changes;
//! - a recipient's cap (WeWork): that job alone goes to a delay tier;
//! - on the return queue, a job that must wait goes to a delay tier, or is
//!   parked in PostgreSQL with jitter when the wait is long.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::{FutureExt, StreamExt};
use herald_broker::lapin::message::Delivery;
use herald_broker::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
};
use herald_broker::lapin::types::FieldTable;
use herald_broker::{Broker, Outbound, Publisher, Topology, DELAY_TIERS};
use herald_domain::{Channel, Priority, TenantId};
use herald_proto::v1;
use herald_proto::Message as _;
use herald_runtime::{Shutdown, Trigger};
use herald_store::ParkedJob;
use herald_store::Store;
use rand::Rng;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::fair::Gate;
use crate::placement::{Placement, Placer};

/// Jobs handled together (whole deliveries, so a batch of batches may
/// exceed it by one delivery): their placements run concurrently and their
/// publishes are confirmed together.
const BATCH: usize = 256;
/// A user drain whose jobs must wait longer than this stops consuming
/// (its deliveries return to the queue) until capacity can return.
pub const PAUSE_AFTER: Duration = Duration::from_secs(30);
/// The shortest pause between two rounds of one batch, so that a wait of
/// zero does not spin.
const MIN_ROUND_PAUSE: Duration = Duration::from_millis(20);
/// A job from the return queue waiting longer than this is parked in
/// PostgreSQL rather than cycled through delay tiers.
pub const PARK_AFTER: Duration = Duration::from_secs(120);
/// How often the central queues' depth is read.
const DEPTH_POLL: Duration = Duration::from_millis(100);

/// What every drain task shares.
pub struct Drain {
    pub broker: Broker,
    pub publisher: Publisher,
    pub topology: Topology,
    pub placer: Placer,
    pub gate: Gate,
    pub store: Store,
    pub prefetch: u16,
    /// Bumped when any provider changes (a drain paused for a window wakes).
    pub providers_changed: watch::Receiver<u64>,
    /// Counts of redelivered jobs, to dead-letter a poison job.
    pub tries: crate::poison::Tries,
}

/// Which queue a drain consumes.
#[derive(Clone)]
pub enum Source {
    /// A tenant's user queue for one channel; the weight follows the
    /// tenant's row.
    User {
        tenant: TenantId,
        channel: Channel,
        weight: Arc<AtomicU32>,
    },
    /// The return queue: retries and delayed jobs.
    Return,
}

impl Source {
    fn queue(&self, topology: &Topology) -> String {
        match self {
            Source::User {
                tenant, channel, ..
            } => topology.user_queue(*tenant, *channel),
            Source::Return => topology.return_queue(),
        }
    }
}

/// A delivery and the jobs its body holds (one, or a batch).
struct Unpacked {
    delivery: Delivery,
    /// `Err`: not a job envelope; it is dead-lettered whole.
    jobs: Result<Vec<v1::Job>, String>,
}

impl Unpacked {
    fn new(delivery: Delivery) -> Unpacked {
        let jobs = herald_proto::jobs::decode(&delivery.data).map_err(|e| e.to_string());
        Unpacked { delivery, jobs }
    }

    fn len(&self) -> usize {
        self.jobs.as_ref().map_or(1, Vec::len)
    }

    /// The broker message's identity for counting failed rounds: its first
    /// job's id (a message redelivered has the same body).
    fn identity(&self) -> String {
        match &self.jobs {
            Ok(jobs) => jobs
                .first()
                .map(|j| j.message_id.clone())
                .unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

fn jobs_in(deliveries: &[Unpacked]) -> usize {
    deliveries.iter().map(Unpacked::len).sum()
}

/// A job placed on a provider, encoded for its channel's central queue.
struct Placed {
    channel: Channel,
    priority: Priority,
    body: Vec<u8>,
}

/// What becomes of one job.
enum Fate {
    /// Published to its channel's central queue, packed with the round's
    /// other jobs of that channel and band.
    Central(Placed),
    /// Published alone (a delay tier or the dead letters).
    Publish(Outbound),
    /// Published to a delay tier to wait there: its record reads `pending`.
    Delayed(Outbound, String),
    /// Parked in PostgreSQL.
    Park(ParkedJob),
    /// Held: nothing has room for about this long.
    Wait(Duration, Box<v1::Job>),
}

/// A delivery being placed: acked once every job of it is published or
/// parked.
struct Held {
    delivery: Delivery,
    progress: Progress,
}

/// How far a held delivery is: of its `jobs`, `left` are not out yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    jobs: usize,
    left: usize,
}

/// What a round does to the gate of its lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateEntry {
    /// Granted but not entered: the budget returns.
    Unused(Channel, usize),
    /// Entered beyond the first grant: the budget is charged.
    Charge(Channel, usize),
}

/// How a placement round of a batch ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterRound {
    /// Every job is out.
    Done,
    /// The wait is long: put the rest back and pause the lane this long.
    Pause(Duration),
    /// The wait is short: place the rest again after this long.
    RetryIn(Duration),
}

/// How a drain round ended.
enum Round {
    Stopped,
    /// Deliveries handed back; consume again after this long.
    Pause(Duration),
}

impl Drain {
    /// Consumes `source` until `stop` fires or the drain pauses; unacked
    /// deliveries return to the queue when the channel closes.
    async fn consume(&self, source: &Source, stop: &Shutdown) -> anyhow::Result<Round> {
        let queue = source.queue(&self.topology);
        let channel = self.broker.channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::debug!(queue = %queue, "Draining a queue.");
        let mut carry: Vec<Unpacked> = Vec::new();
        let round = loop {
            if carry.is_empty() {
                let first = tokio::select! {
                    _ = stop.wait() => break Round::Stopped,
                    next = consumer.next() => match next {
                        Some(Ok(d)) => d,
                        Some(Err(e)) => return Err(e.into()),
                        None => break Round::Stopped,
                    },
                };
                carry.push(Unpacked::new(first));
            }
            while jobs_in(&carry) < BATCH {
                match consumer.next().now_or_never() {
                    Some(Some(Ok(d))) => carry.push(Unpacked::new(d)),
                    _ => break,
                }
            }
            // Highest priority first: those are the ones the gate lets in.
            carry.sort_by_key(|u| std::cmp::Reverse(u.delivery.properties.priority().unwrap_or(0)));
            let (batch, express): (Vec<Unpacked>, bool) = match source {
                Source::User {
                    tenant,
                    channel,
                    weight,
                } => {
                    let want = jobs_in(&carry);
                    let admission = tokio::select! {
                        _ = stop.wait() => break Round::Stopped,
                        a = self.gate.admit(*tenant, *channel, weight.load(Ordering::Relaxed), want) => a,
                    };
                    // Whole deliveries, in order, until the grant is used;
                    // the last one may overdraw it (charged to the lane).
                    let (granted, mut take, mut taken) = (admission.jobs, 0, 0);
                    while take < carry.len() && taken < granted {
                        taken += carry[take].len();
                        take += 1;
                    }
                    if taken > granted {
                        self.gate
                            .charge(*channel, taken - granted, admission.express);
                    }
                    let rest = carry.split_off(take);
                    (std::mem::replace(&mut carry, rest), admission.express)
                }
                Source::Return => (std::mem::take(&mut carry), false),
            };
            if let Some(pause) = self.process_batch(source, batch, express, stop).await? {
                break Round::Pause(pause);
            }
        };
        // Closing the channel hands every unacked delivery back.
        let _ = channel.close(200, "drain paused or stopped".into()).await;
        Ok(round)
    }

    /// Places `batch` ([`Drain::place_batch`]), keeping count of the
    /// deliveries taken in rounds that failed (see [`crate::poison`]): a
    /// delivery counted before is a suspect. The others are placed together
    /// first; then each suspect alone — one of several jobs is split into a
    /// message per job, a single job past the limit is dead-lettered as
    /// `poison`. A round that ends without an error clears its counts.
    /// `express`: the gate admitted the batch into the express queues.
    async fn process_batch(
        &self,
        source: &Source,
        batch: Vec<Unpacked>,
        express: bool,
        stop: &Shutdown,
    ) -> anyhow::Result<Option<Duration>> {
        let keys: Vec<String> = batch.iter().map(Unpacked::identity).collect();
        let before = self.tries.counts(&keys).await;
        let (mut fresh, mut fresh_keys, mut suspects) = (Vec::new(), Vec::new(), Vec::new());
        for ((unpacked, key), n) in batch.into_iter().zip(keys).zip(before) {
            if n == 0 || key.is_empty() {
                // (An undecodable delivery is dead-lettered in the round.)
                if !key.is_empty() {
                    fresh_keys.push(key);
                }
                fresh.push(unpacked);
            } else {
                suspects.push((unpacked, key));
            }
        }
        let mut pause: Option<Duration> = None;
        if !fresh.is_empty() {
            self.tries.count(&fresh_keys).await;
            pause = self.place_batch(source, fresh, express, stop).await?;
            self.tries.clear(&fresh_keys).await;
        }
        for (unpacked, key) in suspects {
            let jobs = unpacked.jobs.as_ref().map(Vec::len).unwrap_or(1);
            if jobs > 1 {
                // Split, so that each job is counted on its own.
                let outbound: Vec<Outbound> = unpacked
                    .jobs
                    .as_ref()
                    .map(|jobs| jobs.iter().map(|j| self.back_to(source, j)).collect())
                    .unwrap_or_default();
                self.replace_delivery(unpacked, &outbound, &key).await?;
                metrics::counter!("herald_scheduler_redeliveries_split_total").increment(1);
                continue;
            }
            let n = self.tries.count(std::slice::from_ref(&key)).await[0];
            if n > self.tries.max {
                let reason = format!(
                    "the scheduler failed {} times while placing this job",
                    n - 1
                );
                tracing::error!(job = %key, times = n - 1, "A job fails every placement; dead-lettering it as poison.");
                metrics::counter!("herald_scheduler_poison_total").increment(1);
                let dead =
                    self.topology
                        .dead_letter(unpacked.delivery.data.clone(), "poison", &reason);
                self.replace_delivery(unpacked, &[dead], &key).await?;
                continue;
            }
            let alone = self
                .place_batch(source, vec![unpacked], express, stop)
                .await?;
            self.tries.clear(std::slice::from_ref(&key)).await;
            pause = match (pause, alone) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(pause)
    }

    /// Publishes what takes a delivery's place (its jobs split, or its dead
    /// letter) with confirms, then acks it and forgets its count.
    async fn replace_delivery(
        &self,
        unpacked: Unpacked,
        outbound: &[Outbound],
        key: &str,
    ) -> anyhow::Result<()> {
        self.publisher.publish_all(outbound).await?;
        unpacked
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await?;
        self.tries.clear(&[key.to_owned()]).await;
        Ok(())
    }

    /// A job published back to the queue it came from.
    fn back_to(&self, source: &Source, job: &v1::Job) -> Outbound {
        let priority = Priority::parse(i64::from(job.priority)).unwrap_or_default();
        match source {
            Source::User {
                tenant, channel, ..
            } => self
                .topology
                .to_user(*tenant, *channel, job.encode_to_vec(), priority),
            Source::Return => self.topology.to_return(job.encode_to_vec()),
        }
    }

    /// Places every job of `batch`, publishes, and acks each delivery once
    /// all its jobs are out. Jobs that must wait are retried (only they)
    /// while the wait is short; a long wait returns `Some(pause)` with the
    /// untouched deliveries unacked, and the waiting rest of a delivery
    /// partly placed put back on its queue (so nothing is placed twice).
    /// `express`: placed jobs go to the express queues, and the gate's
    /// express budget is charged.
    async fn place_batch(
        &self,
        source: &Source,
        batch: Vec<Unpacked>,
        express: bool,
        stop: &Shutdown,
    ) -> anyhow::Result<Option<Duration>> {
        let lane_channel = match source {
            Source::User { channel, .. } => Some(*channel),
            Source::Return => None,
        };
        let mut held: Vec<Held> = Vec::with_capacity(batch.len());
        let mut waiting: Vec<(usize, v1::Job)> = Vec::new();
        let mut undecodable: Vec<Delivery> = Vec::new();
        let mut dead: Vec<Outbound> = Vec::new();
        for unpacked in batch {
            let slot = held.len();
            match unpacked.jobs {
                Ok(jobs) => {
                    held.push(Held {
                        delivery: unpacked.delivery,
                        progress: Progress {
                            jobs: jobs.len(),
                            left: jobs.len(),
                        },
                    });
                    waiting.extend(jobs.into_iter().map(|j| (slot, j)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "A delivery is not a job envelope; dead-lettering it.");
                    dead.push(self.topology.dead_letter(
                        unpacked.delivery.data.clone(),
                        "undecodable",
                        &e,
                    ));
                    undecodable.push(unpacked.delivery);
                }
            }
        }
        if !undecodable.is_empty() {
            self.publisher.publish_all(&dead).await?;
            for delivery in undecodable {
                delivery.acker.ack(BasicAckOptions::default()).await?;
            }
        }
        let mut first_round = true;
        let mut changed = self.providers_changed.clone();
        changed.borrow_and_update();
        loop {
            let (slots, jobs): (Vec<usize>, Vec<v1::Job>) = waiting.into_iter().unzip();
            let fates = self
                .decide_all(jobs, matches!(source, Source::Return))
                .await;
            let mut central: Vec<Placed> = Vec::new();
            let mut placed_by_channel: HashMap<Channel, usize> = HashMap::new();
            let mut outbound: Vec<Outbound> = Vec::new();
            let mut parked: Vec<ParkedJob> = Vec::new();
            let mut out_of: Vec<usize> = Vec::new();
            let mut still = Vec::new();
            // Records that begin to wait for capacity read `pending`.
            let mut now_pending: Vec<uuid::Uuid> = Vec::new();
            let mut wait = Duration::MAX;
            for (slot, fate) in slots.into_iter().zip(fates) {
                match fate {
                    Fate::Central(placed) => {
                        *placed_by_channel.entry(placed.channel).or_default() += 1;
                        central.push(placed);
                        out_of.push(slot);
                    }
                    Fate::Publish(out) => {
                        outbound.push(out);
                        out_of.push(slot);
                    }
                    Fate::Delayed(out, id) => {
                        now_pending.extend(id.parse::<uuid::Uuid>().ok());
                        outbound.push(out);
                        out_of.push(slot);
                    }
                    Fate::Park(job) => {
                        now_pending.push(job.message_id);
                        parked.push(job);
                        out_of.push(slot);
                    }
                    Fate::Wait(d, job) => {
                        if first_round {
                            now_pending.extend(job.message_id.parse::<uuid::Uuid>().ok());
                        }
                        wait = wait.min(d);
                        still.push((slot, *job));
                    }
                }
            }
            outbound.extend(self.pack_central(central, express));
            // Before the publish, so that a fast worker's claim of a delayed
            // job comes after it (a claim takes `pending` as `queued`).
            if let Err(e) = self.store.mark_pending(&now_pending).await {
                tracing::warn!(error = %e, "Failed to mark waiting records pending.");
            }
            self.publisher.publish_all(&outbound).await?;
            self.store.park(&parked).await?;
            for slot in out_of {
                held[slot].progress.left -= 1;
                if held[slot].progress.left == 0 {
                    held[slot]
                        .delivery
                        .acker
                        .ack(BasicAckOptions::default())
                        .await?;
                }
            }
            let placed: usize = placed_by_channel.values().sum();
            metrics::counter!("herald_scheduler_placed_total").increment(placed as u64);
            for entry in gate_entries(lane_channel, first_round, still.len(), &placed_by_channel) {
                match entry {
                    GateEntry::Unused(ch, n) => self.gate.unused(ch, n, express),
                    GateEntry::Charge(ch, n) => self.gate.charge(ch, n, express),
                }
            }
            first_round = false;
            let retry_in = match after_round(still.len(), wait) {
                AfterRound::Done => return Ok(None),
                AfterRound::Pause(wait) => {
                    metrics::counter!("herald_scheduler_pauses_total").increment(1);
                    tracing::info!(
                        queue = %source.queue(&self.topology),
                        wait_secs = wait.as_secs(),
                        "Nothing this lane may use has capacity; pausing its drain."
                    );
                    self.put_back(source, &mut held, still).await?;
                    return Ok(Some(wait));
                }
                AfterRound::RetryIn(retry_in) => retry_in,
            };
            waiting = still;
            let stopped = tokio::select! {
                _ = stop.wait() => true,
                _ = changed.changed() => false,
                _ = tokio::time::sleep(retry_in) => false,
            };
            if stopped {
                self.put_back(source, &mut held, waiting).await?;
                return Ok(Some(Duration::ZERO));
            }
        }
    }

    /// Before a drain lets go of its deliveries: a delivery none of whose
    /// jobs went out stays unacked (it returns to its queue whole); one
    /// partly placed has its waiting jobs published back to its queue, then
    /// is acked, so that its placed jobs are not placed again.
    async fn put_back(
        &self,
        source: &Source,
        held: &mut [Held],
        waiting: Vec<(usize, v1::Job)>,
    ) -> anyhow::Result<()> {
        let progress: Vec<Progress> = held.iter().map(|h| h.progress).collect();
        let rest = rest_to_put_back(&progress, waiting);
        if rest.is_empty() {
            return Ok(());
        }
        let mut outbound = Vec::new();
        for jobs in rest.values() {
            let priority = Priority::parse(i64::from(jobs[0].priority)).unwrap_or_default();
            let bodies: Vec<Vec<u8>> = jobs.iter().map(|j| j.encode_to_vec()).collect();
            let body = herald_proto::jobs::pack(&bodies);
            outbound.push(match source {
                Source::User {
                    tenant, channel, ..
                } => self.topology.to_user(*tenant, *channel, body, priority),
                Source::Return => self.topology.to_return(body),
            });
        }
        self.publisher.publish_all(&outbound).await?;
        for slot in rest.into_keys() {
            held[slot]
                .delivery
                .acker
                .ack(BasicAckOptions::default())
                .await?;
        }
        Ok(())
    }

    /// One message per (central queue, priority band) for the placed jobs,
    /// in batches of at most [`herald_proto::jobs::MAX_CENTRAL_JOBS`]; to
    /// the express queues when `express`.
    fn pack_central(&self, placed: Vec<Placed>, express: bool) -> Vec<Outbound> {
        let mut by_queue: HashMap<(Channel, u8), Vec<Placed>> = HashMap::new();
        for p in placed {
            by_queue
                .entry((p.channel, p.priority.band()))
                .or_default()
                .push(p);
        }
        let mut out = Vec::new();
        for ((channel, _), jobs) in by_queue {
            let priority = jobs[0].priority;
            let bodies: Vec<Vec<u8>> = jobs.into_iter().map(|p| p.body).collect();
            let (jobs, before) = (bodies.len(), out.len());
            let max = herald_proto::jobs::MAX_CENTRAL_JOBS;
            for run in herald_proto::jobs::split(bodies, max, Vec::len) {
                metrics::histogram!("herald_scheduler_central_message_jobs")
                    .record(run.len() as f64);
                let body = herald_proto::jobs::pack(&run);
                out.push(if express {
                    self.topology.to_express(channel, body, priority)
                } else {
                    self.topology.to_central(channel, body, priority)
                });
            }
            self.gate.packed(channel, jobs, out.len() - before, express);
        }
        out
    }

    /// One placement attempt for each job, the batch placed together.
    /// `returned`: from the return queue, where nothing is held (waits go
    /// to delay tiers or parking).
    async fn decide_all(&self, jobs: Vec<v1::Job>, returned: bool) -> Vec<Fate> {
        match self.placer.place_all(&jobs).await {
            Ok(placements) => jobs
                .into_iter()
                .zip(placements)
                .map(|(job, placement)| self.fate(job, placement, returned))
                .collect(),
            Err(e) => {
                // Reservations fail closed: nothing is placed while Redis is away.
                tracing::warn!(error = %e, "Redis is unreachable; holding placements.");
                jobs.into_iter()
                    .map(|job| Fate::Wait(Duration::from_secs(1), Box::new(job)))
                    .collect()
            }
        }
    }

    fn fate(&self, mut job: v1::Job, placement: Placement, returned: bool) -> Fate {
        match placement {
            Placement::Placed(assignment) => {
                job.assignment = Some(assignment);
                let channel = Channel::from_proto(job.channel).unwrap_or(Channel::Email);
                let priority = Priority::parse(i64::from(job.priority)).unwrap_or_default();
                Fate::Central(Placed {
                    channel,
                    priority,
                    body: job.encode_to_vec(),
                })
            }
            Placement::Impossible { reason } => {
                tracing::warn!(message_id = %job.message_id, reason = %reason, "A job can never be placed; dead-lettering it.");
                job.last_error = reason.clone();
                Fate::Publish(self.topology.dead_letter(
                    job.encode_to_vec(),
                    "unplaceable",
                    &reason,
                ))
            }
            Placement::Delay { after, reason } => {
                tracing::debug!(message_id = %job.message_id, reason = %reason, wait_ms = after.as_millis() as u64, "Delaying one job.");
                metrics::counter!("herald_scheduler_delays_total").increment(1);
                self.wait_elsewhere(job, after)
            }
            Placement::Wait {
                retry_after,
                reason,
            } => {
                tracing::debug!(message_id = %job.message_id, reason = %reason, wait_ms = retry_after.as_millis() as u64, "Waiting for provider capacity.");
                metrics::counter!("herald_scheduler_waits_total").increment(1);
                if returned {
                    self.wait_elsewhere(job, retry_after)
                } else {
                    Fate::Wait(retry_after, Box::new(job))
                }
            }
        }
    }

    /// A job that waits outside its drain: in the delay tier that ends
    /// soonest without overshooting, or parked in PostgreSQL (with jitter,
    /// so a reopening window is not hit by every parked job at once).
    fn wait_elsewhere(&self, job: v1::Job, wait: Duration) -> Fate {
        if wait <= PARK_AFTER {
            return Fate::Delayed(
                self.topology
                    .to_delay(delay_tier_within(wait), job.encode_to_vec()),
                job.message_id,
            );
        }
        let jitter_cap = (wait.as_millis() as u64 / 10).clamp(1, 30_000);
        let jitter = rand::thread_rng().gen_range(0..jitter_cap);
        let due_at = Utc::now()
            + chrono::Duration::from_std(wait + Duration::from_millis(jitter))
                .unwrap_or_else(|_| chrono::Duration::hours(1));
        let channel = Channel::from_proto(job.channel).unwrap_or(Channel::Email);
        Fate::Park(ParkedJob {
            message_id: job.message_id.parse().unwrap_or_default(),
            tenant_id: job.tenant_id.parse().unwrap_or_default(),
            channel,
            due_at,
            envelope: job.encode_to_vec(),
        })
    }

    /// Reads each central queue's ready depth for the gate until stopped.
    pub async fn poll_depth(self: Arc<Self>, stop: Shutdown) {
        'reconnect: loop {
            let channel = match self.broker.channel().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot open a channel to read queue depths.");
                    tokio::select! {
                        _ = stop.wait() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                for ch in Channel::ALL {
                    let passive = QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    };
                    for express in [false, true] {
                        let queue = if express {
                            self.topology.express_queue(ch)
                        } else {
                            self.topology.central_queue(ch)
                        };
                        match channel
                            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                            .await
                        {
                            Ok(q) if express => self
                                .gate
                                .observe_express_depth(ch, u64::from(q.message_count())),
                            Ok(q) => self.gate.observe_depth(ch, u64::from(q.message_count())),
                            Err(e) => {
                                tracing::warn!(error = %e, queue = %queue, "Failed to read a central queue's depth.");
                                continue 'reconnect;
                            }
                        }
                    }
                }
                let stopped = tokio::select! {
                    _ = stop.wait() => true,
                    _ = tokio::time::sleep(DEPTH_POLL) => false,
                };
                if stopped {
                    let _ = channel.close(200, "stopped".into()).await;
                    return;
                }
            }
        }
    }
}

/// The longest delay tier that does not exceed `wait` (at least the
/// shortest): the job comes back no later than capacity does, and asks again.
pub fn delay_tier_within(wait: Duration) -> u64 {
    let secs = wait.as_secs();
    u64::from(
        DELAY_TIERS
            .into_iter()
            .rev()
            .find(|t| u64::from(*t) <= secs)
            .unwrap_or(DELAY_TIERS[0]),
    )
}

/// Runs a drain of `source` until stopped: restarts it after an error,
/// and after a pause waits for the pause to end, a provider change, or
/// the stop signal.
pub fn spawn_drain(tasks: &mut JoinSet<()>, drain: Arc<Drain>, source: Source, stop: Shutdown) {
    tasks.spawn(async move {
        let mut backoff = Duration::from_millis(200);
        let mut changed = drain.providers_changed.clone();
        loop {
            let pause = match drain.consume(&source, &stop).await {
                Ok(Round::Stopped) => return,
                Ok(Round::Pause(p)) => {
                    backoff = Duration::from_millis(200);
                    p
                }
                Err(e) => {
                    if stop.is_triggered() {
                        return;
                    }
                    let queue = source.queue(&drain.topology);
                    tracing::warn!(queue = %queue, error = %e, "A queue drain failed; restarting it.");
                    let b = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    b
                }
            };
            if stop.is_triggered() {
                return;
            }
            changed.borrow_and_update();
            tokio::select! {
                _ = stop.wait() => return,
                _ = changed.changed() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    });
}

/// Keeps one drain per active tenant and channel: learns of new,
/// re-weighted and disabled tenants by `LISTEN`/`NOTIFY`, with a slow poll
/// as a backstop.
pub async fn discover_tenants(
    drain: Arc<Drain>,
    store: Store,
    poll: Duration,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    struct Running {
        stop: Trigger,
        weight: Arc<AtomicU32>,
    }
    let mut running: HashMap<TenantId, Running> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut listener = listen(&store).await;
    loop {
        match store.active_tenants().await {
            Ok(tenants) => {
                for t in &tenants {
                    let tenant = t.id;
                    let weight = t.weight.max(1);
                    if let Some(r) = running.get(&tenant) {
                        r.weight.store(weight, Ordering::Relaxed);
                        continue;
                    }
                    drain.topology.declare_tenant(&drain.broker, tenant).await?;
                    let (tx, rx) = Shutdown::new();
                    let weight = Arc::new(AtomicU32::new(weight));
                    for ch in Channel::ALL {
                        spawn_drain(
                            &mut tasks,
                            drain.clone(),
                            Source::User {
                                tenant,
                                channel: ch,
                                weight: weight.clone(),
                            },
                            rx.clone(),
                        );
                    }
                    running.insert(tenant, Running { stop: tx, weight });
                    tracing::info!(tenant_id = %tenant, "Draining a tenant's user queues.");
                }
                running.retain(|tenant, r| {
                    let keep = tenants.iter().any(|t| t.id == *tenant);
                    if !keep {
                        r.stop.trigger();
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
            _ = shutdown.wait() => break,
            ok = notified => if !ok { listener = None; },
            _ = tokio::time::sleep(poll) => if listener.is_none() { listener = listen(&store).await; },
        }
    }
    for r in running.values() {
        r.stop.trigger();
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn listen(store: &Store) -> Option<PgListener> {
    let mut l = PgListener::connect_with(store.pool()).await.ok()?;
    l.listen(herald_store::TENANTS_CHANNEL).await.ok()?;
    Some(l)
}

/// Which gate entries a round makes. A lane's first round was granted the
/// whole batch, so it returns what did not enter; later rounds charge what
/// they placed. The return lane is charged per channel it placed on.
fn gate_entries(
    lane: Option<Channel>,
    first_round: bool,
    still_waiting: usize,
    placed_by_channel: &HashMap<Channel, usize>,
) -> Vec<GateEntry> {
    match lane {
        Some(ch) if first_round => vec![GateEntry::Unused(ch, still_waiting)],
        Some(ch) => vec![GateEntry::Charge(ch, placed_by_channel.values().sum())],
        None => placed_by_channel
            .iter()
            .map(|(ch, n)| GateEntry::Charge(*ch, *n))
            .collect(),
    }
}

/// What follows a round that left `still_waiting` jobs, the shortest of
/// which may be placed in `wait`.
fn after_round(still_waiting: usize, wait: Duration) -> AfterRound {
    if still_waiting == 0 {
        AfterRound::Done
    } else if wait > PAUSE_AFTER {
        AfterRound::Pause(wait)
    } else {
        AfterRound::RetryIn(wait.max(MIN_ROUND_PAUSE))
    }
}

/// The waiting jobs to publish back, by delivery: only those of a delivery
/// partly placed. A delivery none of whose jobs went out stays unacked and
/// returns whole, so its jobs are left out here.
fn rest_to_put_back<T>(progress: &[Progress], waiting: Vec<(usize, T)>) -> HashMap<usize, Vec<T>> {
    let mut rest: HashMap<usize, Vec<T>> = HashMap::new();
    for (slot, job) in waiting {
        if progress[slot].left < progress[slot].jobs {
            rest.entry(slot).or_default().push(job);
        }
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(jobs: usize, left: usize) -> Progress {
        Progress { jobs, left }
    }

    #[test]
    fn a_batch_partly_placed_puts_only_its_rest_back() {
        let held = [progress(3, 1), progress(2, 2), progress(1, 1)];
        let waiting = vec![(0, "a3"), (1, "b1"), (1, "b2"), (2, "c1")];

        let rest = rest_to_put_back(&held, waiting);

        assert_eq!(rest.len(), 1, "{rest:?}");
        assert_eq!(rest[&0], vec!["a3"]);
    }

    #[test]
    fn a_batch_nothing_of_which_was_placed_puts_nothing_back() {
        let held = [progress(2, 2)];
        assert!(rest_to_put_back(&held, vec![(0, 1), (0, 2)]).is_empty());
    }

    #[test]
    fn a_lanes_first_round_returns_what_did_not_enter_to_the_gate() {
        let placed = HashMap::from([(Channel::Email, 7)]);
        assert_eq!(
            gate_entries(Some(Channel::Email), true, 3, &placed),
            vec![GateEntry::Unused(Channel::Email, 3)]
        );
    }

    #[test]
    fn a_lanes_later_round_charges_what_it_placed() {
        let placed = HashMap::from([(Channel::Email, 4)]);
        assert_eq!(
            gate_entries(Some(Channel::Email), false, 9, &placed),
            vec![GateEntry::Charge(Channel::Email, 4)]
        );
    }

    #[test]
    fn the_return_lane_charges_each_channel_it_placed_on() {
        let placed = HashMap::from([(Channel::Email, 2), (Channel::Wework, 5)]);
        let mut entries = gate_entries(None, true, 1, &placed);
        entries.sort_by_key(|e| match e {
            GateEntry::Unused(_, n) | GateEntry::Charge(_, n) => *n,
        });
        assert_eq!(
            entries,
            vec![
                GateEntry::Charge(Channel::Email, 2),
                GateEntry::Charge(Channel::Wework, 5)
            ]
        );
    }

    #[test]
    fn a_round_with_nothing_left_is_done_whatever_the_wait() {
        assert_eq!(after_round(0, Duration::MAX), AfterRound::Done);
    }

    #[test]
    fn a_long_wait_pauses_the_lane_and_a_short_one_retries_soon() {
        let long = PAUSE_AFTER + Duration::from_secs(1);
        assert_eq!(after_round(2, long), AfterRound::Pause(long));
        assert_eq!(
            after_round(2, PAUSE_AFTER),
            AfterRound::RetryIn(PAUSE_AFTER)
        );
        assert_eq!(
            after_round(2, Duration::ZERO),
            AfterRound::RetryIn(MIN_ROUND_PAUSE)
        );
    }

    #[test]
    fn a_wait_uses_the_longest_tier_that_does_not_overshoot() {
        assert_eq!(delay_tier_within(Duration::from_millis(300)), 1);
        assert_eq!(delay_tier_within(Duration::from_secs(4)), 1);
        assert_eq!(delay_tier_within(Duration::from_secs(29)), 5);
        assert_eq!(delay_tier_within(Duration::from_secs(30)), 30);
        assert_eq!(delay_tier_within(Duration::from_secs(119)), 30);
    }
}
