//! The worker's pipeline for one central queue:
//!
//! 1. take a window of deliveries and claim them in one statement
//!    (`queued`/`pending` → `sending`; a message found `sending` — its last
//!    worker died mid-send — becomes `in_doubt` and is not sent again);
//! 2. send the claimed ones concurrently, bounded by a semaphore;
//! 3. record the outcomes in one statement, publish retries and dead
//!    letters with confirms, and only then ack the deliveries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use herald_broker::lapin::message::Delivery;
use herald_broker::lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use herald_broker::lapin::types::FieldTable;
use herald_broker::lapin::Acker;
use herald_broker::{Broker, Outbound, Publisher, Topology};
use herald_capacity::{Capacity, HealthPolicy, Lease, Observation};
use herald_domain::{Channel, Disposition, MessageId, MessageStatus};
use herald_proto::v1;
use herald_proto::Message as _;
use herald_runtime::Shutdown;
use herald_store::{Outcome, Store};
use rand::Rng;
use tokio::sync::{mpsc, Semaphore};
use uuid::Uuid;

use crate::config::InDoubtPolicy;
use crate::decision::{after_send, outcome_label, provider_ok, AfterSend};
use crate::metrics::{PACING_RETURNED, PACING_WAIT};
use crate::pace::{Paced, Pacer};
use crate::provider::Outgoing;
use crate::registry::Registry;

/// Jobs claimed together (whole deliveries: a delivery may hold a batch).
const CLAIM_BATCH: usize = 256;
/// Outcomes recorded together.
const RECORD_BATCH: usize = 512;
/// How long the recorder waits to fill a batch once it has one outcome.
const RECORD_LINGER: Duration = Duration::from_millis(5);
/// A concurrency lease's time to live: longer than any send may take, so
/// only a dead worker's lease expires.
const LEASE_TTL: Duration = Duration::from_secs(120);
/// How long a send waits for a concurrency slot before its job goes back
/// to the scheduler (through the shortest delay tier).
const LEASE_WAIT: Duration = Duration::from_secs(20);
/// How long a send waits for its provider's pace (decision 0013) before
/// its job goes back to the scheduler, as for a concurrency slot.
const PACE_WAIT: Duration = LEASE_WAIT;
/// A copy of a message another worker claimed less than [`LEASE_TTL`] ago
/// (so may still be sending) is looked at again after this long.
const LIVE_SEND_RECHECK: Duration = Duration::from_secs(30);

/// What the pipeline shares.
pub struct Worker {
    pub store: Store,
    pub broker: Broker,
    pub publisher: Publisher,
    pub topology: Topology,
    pub capacity: Capacity,
    pub registry: Registry,
    pub max_attempts: u32,
    /// Which channels resend a message left in doubt.
    pub in_doubt: InDoubtPolicy,
    /// How outcomes move the providers' statistics and circuits.
    pub health: HealthPolicy,
    /// The worker's shutdown: a send waiting for its provider's pace gives
    /// up and goes back to the scheduler.
    pub stop: Shutdown,
    /// Providers that answered "too fast" here lately, with the Redis time
    /// of the cut: a job reserved before it was placed at the old rate and
    /// goes back to be placed at the new one, unsent (decision 0018).
    pub throttled: Arc<Mutex<HashMap<Uuid, Cut>>>,
    /// Compiled template versions, for jobs that name a template.
    pub templates: Arc<crate::templates::Renderer>,
    /// The domain of the return paths (VERP), if Herald receives bounces.
    pub bounce_domain: Option<String>,
    /// Signs the unsubscribe link of every email.
    pub links: herald_callbacks::links::Links,
}

/// A throttle this worker set, and when it learned of it.
#[derive(Debug, Clone, Copy)]
pub struct Cut {
    /// Redis server time of the cut, ms.
    pub at_ms: i64,
    pub learned: Instant,
}

/// How long a worker sends back jobs reserved before a cut: longer than
/// any job waits between its placement and its send.
const CUT_MEMORY: Duration = Duration::from_secs(10);

/// One send's outcome as the provider's statistics see it.
#[derive(Debug, Clone, Copy)]
struct Observed {
    provider: Uuid,
    /// `None`: says nothing of the provider's health (a rejected recipient).
    ok: Option<bool>,
    latency_ms: u64,
}

/// A delivery's ack, shared by the jobs it holds: sent when the last of
/// them is finished (recorded, its retry or dead letter confirmed).
pub struct Part {
    acker: Acker,
    left: AtomicUsize,
}

impl Part {
    fn new(acker: Acker, jobs: usize) -> Arc<Part> {
        Arc::new(Part {
            acker,
            left: AtomicUsize::new(jobs),
        })
    }

    async fn done(&self) -> Result<(), herald_broker::lapin::Error> {
        if self.left.fetch_sub(1, AtomicOrdering::AcqRel) == 1 {
            // `false`: already acknowledged, as lapin 2 returned `Ok(())`.
            self.acker.ack(BasicAckOptions::default()).await.map(|_| ())
        } else {
            Ok(())
        }
    }
}

/// One finished job, waiting to be recorded and its delivery acked.
pub struct Finished {
    acker: Arc<Part>,
    /// `None` when there is nothing to record (already final, or the claim
    /// recorded it).
    outcome: Option<Outcome>,
    /// Published (with confirm) before the ack.
    publish: Option<Outbound>,
    /// Fed to the provider's statistics once recorded.
    observed: Option<Observed>,
}

impl Finished {
    /// A delivery with nothing to record: acked after `publish` (if any)
    /// is confirmed.
    fn unrecorded(acker: Arc<Part>, publish: Option<Outbound>) -> Finished {
        Finished {
            acker,
            outcome: None,
            publish,
            observed: None,
        }
    }
}

impl Worker {
    /// Runs the pipeline on `queue` (a channel's central or express queue)
    /// until `stop` fires, then finishes and acks what it holds. Each queue
    /// has its own prefetch and send slots, so that the express queue's
    /// jobs do not wait behind what the central queue's consumer holds.
    pub async fn run_queue(
        self: Arc<Self>,
        queue: String,
        prefetch: u16,
        concurrency: usize,
        stop: Shutdown,
    ) -> anyhow::Result<()> {
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
        let (done_tx, done_rx) = mpsc::channel::<Finished>(RECORD_BATCH * 2);
        // Aborted if this run is (a shutdown past its grace period): it must
        // not outlive the run and its connection.
        let mut recorder = AbortOnDrop(tokio::spawn(
            self.clone().record_loop(done_rx, amqp.clone()),
        ));
        let permits = Arc::new(Semaphore::new(concurrency));
        loop {
            let first = tokio::select! {
                _ = stop.wait() => break,
                next = consumer.next() => match next {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => { tracing::warn!(error = %e, queue = %queue, "A central queue's consumer failed."); break }
                    None => break,
                },
            };
            let mut jobs = herald_proto::jobs::count(&first.data);
            let mut batch = vec![first];
            while jobs < CLAIM_BATCH {
                match consumer.next().now_or_never() {
                    Some(Some(Ok(d))) => {
                        jobs += herald_proto::jobs::count(&d.data);
                        batch.push(d);
                    }
                    _ => break,
                }
            }
            self.clone().process_batch(batch, &permits, &done_tx).await;
        }
        // Wait for every send in flight, then let the recorder flush.
        let _all = permits.acquire_many(concurrency as u32).await;
        drop(done_tx);
        let _ = (&mut recorder.0).await;
        let _ = amqp.close(200, "worker stopped".into()).await;
        Ok(())
    }

    /// Claims `batch` and starts its sends; each finished delivery goes to
    /// `done` for recording. A test can drive this one batch at a time.
    pub async fn process_batch(
        self: Arc<Self>,
        batch: Vec<Delivery>,
        permits: &Arc<Semaphore>,
        done: &mpsc::Sender<Finished>,
    ) {
        let mut jobs: Vec<(Arc<Part>, v1::Job)> = Vec::with_capacity(batch.len());
        let mut seen = std::collections::HashSet::with_capacity(batch.len());
        for delivery in batch {
            let decoded = herald_proto::jobs::decode(&delivery.data);
            let part = Part::new(delivery.acker, decoded.as_ref().map_or(1, Vec::len));
            match decoded {
                Ok(decoded) => {
                    for job in decoded {
                        // Two copies of one message in a batch (a publish
                        // retried after an unanswered confirm): the first is
                        // claimed, the others are acked without a send.
                        if seen.insert(job.message_id.clone()) {
                            jobs.push((part.clone(), job));
                        } else {
                            metrics::counter!("herald_worker_duplicate_deliveries_total")
                                .increment(1);
                            self.refund(&job).await;
                            let _ = done.send(Finished::unrecorded(part.clone(), None)).await;
                        }
                    }
                }
                Err(e) => {
                    let publish = self.topology.dead_letter(
                        delivery.data.clone(),
                        "undecodable",
                        &e.to_string(),
                    );
                    let _ = done.send(Finished::unrecorded(part, Some(publish))).await;
                }
            }
        }
        metrics::histogram!("herald_worker_claim_jobs").record(jobs.len() as f64);
        let ids: Vec<Uuid> = jobs
            .iter()
            .map(|(_, j)| j.message_id.parse().unwrap_or_default())
            .collect();
        let providers: Vec<Uuid> = jobs
            .iter()
            .map(|(_, j)| {
                j.assignment
                    .as_ref()
                    .and_then(|a| a.provider_id.parse().ok())
                    .unwrap_or_default()
            })
            .collect();
        let resend: Vec<bool> = jobs
            .iter()
            .map(|(_, j)| self.in_doubt.resends(Channel::from_proto(j.channel)))
            .collect();
        let copies: Vec<bool> = jobs.iter().map(|(_, j)| j.republished).collect();
        let claimed = loop {
            match self
                .store
                .claim_for_sending(&ids, &providers, &resend, &copies, LEASE_TTL)
                .await
            {
                Ok(rows) => break rows,
                Err(e) => {
                    tracing::warn!(error = %e, "Failed to claim deliveries; retrying.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        let previous: HashMap<Uuid, String> = claimed
            .into_iter()
            .map(|c| (c.id, c.previous_status))
            .collect();
        for ((part, job), id) in jobs.into_iter().zip(ids) {
            match previous.get(&id).map(String::as_str) {
                None => {
                    // Sent, cancelled or finished already: a duplicate
                    // delivery, never sent twice. Give back its reservation.
                    self.refund(&job).await;
                    let _ = done.send(Finished::unrecorded(part, None)).await;
                }
                Some("sending_live") => {
                    // Another worker claimed it moments ago and may still be
                    // sending: decide again later, when that send is over.
                    metrics::counter!("herald_worker_duplicate_deliveries_total").increment(1);
                    self.refund(&job).await;
                    let mut job = job;
                    job.assignment = None;
                    // Looked at again as any copy: if the send it waited
                    // for never finishes, the record is set aside in doubt.
                    job.republished = false;
                    let publish = self
                        .topology
                        .to_delay(LIVE_SEND_RECHECK.as_secs(), job.encode_to_vec());
                    let _ = done.send(Finished::unrecorded(part, Some(publish))).await;
                }
                Some("sending") => {
                    metrics::counter!("herald_worker_in_doubt_total", "policy" => "hold")
                        .increment(1);
                    tracing::warn!(message_id = %id, "A message was found mid-send after a worker stopped; recorded in_doubt.");
                    let publish = self.dead_letter(
                        job,
                        "in_doubt",
                        "the worker sending it stopped before recording the outcome",
                    );
                    let _ = done.send(Finished::unrecorded(part, Some(publish))).await;
                }
                Some(previous) => {
                    if previous == "in_doubt_resent" {
                        metrics::counter!("herald_worker_in_doubt_total", "policy" => "resend")
                            .increment(1);
                        tracing::warn!(message_id = %id, "A message was found mid-send after a worker stopped; its channel resends it.");
                    }
                    let worker = self.clone();
                    let done = done.clone();
                    if let Some(pacer) = self.pacer(&job) {
                        // A paced send waits for its pace holding neither a
                        // send slot of this worker nor a concurrency lease
                        // (decision 0013); prefetch bounds how many wait.
                        let permits = permits.clone();
                        tokio::spawn(async move {
                            let finished = match worker.pace(&pacer, &job).await {
                                Err(back) => worker.send_back(part, job, id, back).await,
                                Ok(()) => {
                                    let permit = tokio::select! {
                                        p = permits.acquire_owned() => p.ok(),
                                        _ = worker.stop.wait() => None,
                                    };
                                    match permit {
                                        Some(permit) => {
                                            let finished = worker.send_one(part, job, id).await;
                                            drop(permit);
                                            finished
                                        }
                                        None => {
                                            worker
                                                .send_back(part, job, id, SendBack::Stopping)
                                                .await
                                        }
                                    }
                                }
                            };
                            let _ = done.send(finished).await;
                        });
                        continue;
                    }
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        return;
                    };
                    tokio::spawn(async move {
                        let finished = worker.send_one(part, job, id).await;
                        let _ = done.send(finished).await;
                        drop(permit);
                    });
                }
            }
        }
    }

    /// Sends one claimed job and decides what to record and publish.
    async fn send_one(&self, acker: Arc<Part>, job: v1::Job, id: Uuid) -> Finished {
        let attempt = job.attempt + 1;
        let provider_id: Uuid = job
            .assignment
            .as_ref()
            .and_then(|a| a.provider_id.parse().ok())
            .unwrap_or_default();
        let entry = self.registry.get(provider_id);
        if self.placed_before_cut(provider_id, &job) {
            metrics::counter!("herald_worker_throttle_returned_total").increment(1);
            return self.send_back(acker, job, id, SendBack::Throttled).await;
        }
        // A concurrency slot first (after the pace, for a paced provider):
        // the lease outlives only a dead worker.
        let holder = format!("{id}:{attempt}");
        let concurrency = entry.as_ref().and_then(|e| e.limits.concurrency);
        if let Some(limit) = concurrency {
            if !self.take_lease(provider_id, limit, &holder).await {
                return self.lease_timeout(acker, job, id).await;
            }
        }
        let started = Instant::now();
        // A job whose template cannot be rendered says nothing of its
        // provider's health.
        let mut unrendered = false;
        let disposition = match &entry {
            None => Disposition::Failover {
                code: "provider_unknown".into(),
                reason: "the assigned provider no longer exists".into(),
            },
            Some(entry) => match &entry.adapter {
                Err(e) => Disposition::Failover {
                    code: "provider_config".into(),
                    reason: e.clone(),
                },
                Ok(adapter) => match self.templates.content(&self.store, &job).await {
                    Ok(mut content) => {
                        let email = job.channel() == v1::Channel::Email;
                        if email
                            && (job.track_opens || job.track_clicks)
                            && !content.html.is_empty()
                        {
                            content.html = crate::tracking::instrument(
                                &content.html,
                                &self.links,
                                id,
                                job.track_opens,
                                job.track_clicks,
                            );
                        }
                        let unsubscribe = email.then(|| self.links.unsubscribe_url(id));
                        let return_path = self
                            .bounce_domain
                            .as_deref()
                            .filter(|_| email)
                            .map(|domain| self.links.return_path(id, domain));
                        let out = Outgoing {
                            message_id: MessageId(id),
                            recipients: &job.recipients,
                            content: &content,
                            metadata: &job.metadata,
                            attempt,
                            unsubscribe: unsubscribe.as_deref(),
                            return_path: return_path.as_deref(),
                        };
                        adapter.send(out).await
                    }
                    Err(refused) => {
                        unrendered = true;
                        refused
                    }
                },
            },
        };
        let elapsed = started.elapsed();
        if concurrency.is_some() {
            if let Err(e) = self.capacity.release_lease(provider_id, &holder).await {
                tracing::warn!(error = %e, "Failed to release a concurrency lease; it expires by itself.");
            }
        }
        let channel = Channel::from_proto(job.channel).map_or("unknown", Channel::as_str);
        metrics::counter!("herald_worker_sends_total", "channel" => channel, "outcome" => outcome_label(&disposition))
            .increment(1);
        metrics::histogram!("herald_worker_send_seconds", "channel" => channel)
            .record(elapsed.as_secs_f64());
        if disposition.is_sent() && job.enqueued_at_ms > 0 {
            let waited = chrono::Utc::now().timestamp_millis() - job.enqueued_at_ms;
            metrics::histogram!("herald_worker_enqueue_to_send_seconds", "channel" => channel)
                .record(waited.max(0) as f64 / 1000.0);
        }
        let observed = (entry.is_some() && !unrendered).then_some(Observed {
            provider: provider_id,
            ok: provider_ok(&disposition),
            latency_ms: elapsed.as_millis() as u64,
        });

        let next = after_send(
            &disposition,
            attempt,
            self.max_attempts,
            backoff(attempt),
            self.in_doubt.resends(Channel::from_proto(job.channel)),
        );
        let outcome = Outcome {
            id,
            status: next.status(),
            error_code: match next {
                AfterSend::ResendInDoubt { .. } => Some("in_doubt_resent".into()),
                _ => disposition.code().map(str::to_owned),
            },
            error_message: disposition.reason().map(str::to_owned),
        };
        let reason = disposition.reason().unwrap_or_default();
        let publish = match next {
            AfterSend::Sent => None,
            AfterSend::Retry { wait, refund } => {
                if refund {
                    self.refund(&job).await;
                }
                Some(self.for_next_attempt(job, attempt, wait, reason, true))
            }
            AfterSend::Throttled { wait } => {
                let hold = match &disposition {
                    Disposition::Throttled { hold, .. } => *hold,
                    _ => None,
                };
                self.throttle(&job, hold).await;
                self.refund(&job).await;
                // The attempt is not spent: the job goes back as it came.
                Some(self.for_next_attempt(job, attempt - 1, wait, reason, false))
            }
            AfterSend::ResendInDoubt { wait } => {
                metrics::counter!("herald_worker_in_doubt_total", "policy" => "resend")
                    .increment(1);
                // Not remembered as refused: it may have sent, and only the
                // same provider dedupes a second copy.
                Some(self.for_next_attempt(job, attempt, wait, reason, false))
            }
            AfterSend::HoldInDoubt => {
                metrics::counter!("herald_worker_in_doubt_total", "policy" => "hold").increment(1);
                Some(self.dead_letter(job, "in_doubt", reason))
            }
            AfterSend::DeadLetter { code } => Some(self.dead_letter(job, &code, reason)),
        };
        Finished {
            acker,
            outcome: Some(outcome),
            publish,
            observed,
        }
    }

    /// The job for its next attempt, to the delay tier for `wait`: the
    /// scheduler scores it afresh, so its assignment is dropped — and the
    /// provider that refused it is remembered, for the scheduler to prefer
    /// the others while any is eligible (when `refused`).
    fn for_next_attempt(
        &self,
        mut job: v1::Job,
        attempt: u32,
        wait: Duration,
        reason: &str,
        refused: bool,
    ) -> Outbound {
        job.attempt = attempt;
        if let Some(a) = job.assignment.take() {
            if refused {
                remember_tried(&mut job.tried_providers, a.provider_id);
            }
        }
        job.last_error = reason.to_owned();
        self.topology
            .to_delay(wait.as_secs().max(1), job.encode_to_vec())
    }

    /// Waits up to [`LEASE_WAIT`] for one of `limit` concurrency slots on
    /// `provider`. Redis being away fails closed (no slot).
    async fn take_lease(&self, provider: Uuid, limit: u32, holder: &str) -> bool {
        let deadline = Instant::now() + LEASE_WAIT;
        let mut pause = Duration::from_millis(5);
        loop {
            match self
                .capacity
                .acquire_lease(provider, limit, holder, LEASE_TTL)
                .await
            {
                Ok(Lease::Granted) => return true,
                Ok(Lease::Busy { expires_in }) => pause = pause.min(expires_in),
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot take a concurrency lease; Redis is unreachable.")
                }
            }
            if Instant::now() + pause > deadline {
                return false;
            }
            metrics::counter!("herald_worker_lease_waits_total").increment(1);
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// Every slot stayed busy: the job goes back to the scheduler.
    async fn lease_timeout(&self, acker: Arc<Part>, job: v1::Job, id: Uuid) -> Finished {
        metrics::counter!("herald_worker_lease_timeouts_total").increment(1);
        self.send_back(acker, job, id, SendBack::ConcurrencyBusy)
            .await
    }

    /// The pacer of the provider `job` is assigned to, if it is paced.
    fn pacer(&self, job: &v1::Job) -> Option<Arc<Pacer>> {
        let provider: Uuid = job.assignment.as_ref()?.provider_id.parse().ok()?;
        self.registry.get(provider)?.pacer.clone()
    }

    /// Waits for the provider's pace (decision 0013): at most
    /// [`PACE_WAIT`], and not past the worker's shutdown.
    async fn pace(&self, pacer: &Pacer, job: &v1::Job) -> Result<(), SendBack> {
        let channel = Channel::from_proto(job.channel).map_or("unknown", Channel::as_str);
        let back = match pacer.wait(pace_cost(job), PACE_WAIT, &self.stop).await {
            Paced::Ready(waited) => {
                metrics::histogram!(PACING_WAIT, "channel" => channel).record(waited.as_secs_f64());
                return Ok(());
            }
            Paced::TooLong => SendBack::PacingBusy,
            Paced::Stopped => SendBack::Stopping,
        };
        Err(back)
    }

    /// The job goes back to the scheduler as it was (no attempt spent),
    /// through the shortest delay tier, and its reservation is refunded.
    async fn send_back(
        &self,
        acker: Arc<Part>,
        mut job: v1::Job,
        id: Uuid,
        why: SendBack,
    ) -> Finished {
        if let Some(reason) = why.pacing_reason() {
            metrics::counter!(PACING_RETURNED, "reason" => reason).increment(1);
        }
        let (code, message) = why.describe();
        self.refund(&job).await;
        job.assignment = None;
        let publish = self.topology.to_delay(1, job.encode_to_vec());
        Finished {
            acker,
            outcome: Some(Outcome {
                id,
                status: MessageStatus::Pending,
                error_code: Some(code.into()),
                error_message: Some(message.into()),
            }),
            publish: Some(publish),
            observed: None,
        }
    }

    fn dead_letter(&self, mut job: v1::Job, code: &str, reason: &str) -> Outbound {
        job.last_error = reason.to_owned();
        self.topology.dead_letter(job.encode_to_vec(), code, reason)
    }

    /// Lowers the admitted rate of the job's provider after a rate-limit
    /// answer (decision 0018).
    async fn throttle(&self, job: &v1::Job, hold: Option<Duration>) {
        let Some(a) = &job.assignment else { return };
        let Ok(provider) = a.provider_id.parse::<Uuid>() else {
            return;
        };
        let Some(entry) = self.registry.get(provider) else {
            return;
        };
        match self.capacity.throttle(provider, &entry.limits, hold).await {
            Ok((rate, at_ms)) => {
                self.throttled
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(
                        provider,
                        Cut {
                            at_ms,
                            learned: Instant::now(),
                        },
                    );
                metrics::counter!("herald_worker_throttled_total").increment(1);
                tracing::info!(provider = %provider, admitted_rate = rate, "The provider answered too fast; lowered its admitted rate.");
            }
            Err(e) => tracing::warn!(error = %e, "Failed to throttle a provider."),
        }
    }

    /// Whether `job` was reserved before its provider's last cut here.
    fn placed_before_cut(&self, provider: Uuid, job: &v1::Job) -> bool {
        let reserved = job.assignment.as_ref().map_or(0, |a| a.reserved_at_ms);
        let mut cuts = self
            .throttled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match cuts.get(&provider) {
            Some(cut) if cut.learned.elapsed() > CUT_MEMORY => {
                cuts.remove(&provider);
                false
            }
            Some(cut) => reserved <= cut.at_ms,
            None => false,
        }
    }

    async fn refund(&self, job: &v1::Job) {
        let Some(a) = &job.assignment else { return };
        let Ok(provider) = a.provider_id.parse::<Uuid>() else {
            return;
        };
        if let Some(entry) = self.registry.get(provider) {
            if let Err(e) = self
                .capacity
                .refund(
                    provider,
                    &entry.limits,
                    a.cost,
                    a.reserved_at_ms,
                    &job.recipients,
                )
                .await
            {
                tracing::warn!(error = %e, "Failed to refund a reservation; it expires with its window.");
            }
        }
    }

    /// Records outcomes in batches: publish what must be published (with
    /// confirms), write the records in one statement, then ack.
    /// `deliveries` is the channel the deliveries came on: once it is
    /// closed, they are back in their queue.
    async fn record_loop(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Finished>,
        deliveries: herald_broker::lapin::Channel,
    ) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + RECORD_LINGER;
            while batch.len() < RECORD_BATCH {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(f)) => batch.push(f),
                    _ => break,
                }
            }
            metrics::histogram!("herald_worker_record_jobs").record(batch.len() as f64);
            self.record(batch, &deliveries).await;
        }
    }

    async fn record(&self, batch: Vec<Finished>, deliveries: &herald_broker::lapin::Channel) {
        let publishes: Vec<Outbound> = batch.iter().filter_map(|f| f.publish.clone()).collect();
        let mut delay = Duration::from_millis(200);
        // Retries and dead letters first: once the record says `pending` or
        // `failed`, the job must already be safe in its queue.
        let published = loop {
            match self.publisher.publish_all(&publishes).await {
                Ok(()) => break true,
                Err(_) if !deliveries.status().connected() => break false,
                Err(e) => {
                    tracing::warn!(error = %e, "Failed to publish retries or dead letters; retrying.");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        if !published {
            // The connection dropped: the deliveries are back in their queue
            // and cannot be acked. Record what happened so the redelivery
            // does the right thing.
            self.record_returned(&batch).await;
            return;
        }
        let outcomes: Vec<Outcome> = batch.iter().filter_map(|f| f.outcome.clone()).collect();
        self.record_outcomes(&outcomes).await;
        let mut observations: HashMap<Uuid, Observation> = HashMap::new();
        for f in batch {
            if let Some(o) = f.observed {
                let obs = observations.entry(o.provider).or_default();
                match o.ok {
                    Some(true) => obs.successes += 1,
                    Some(false) => obs.failures += 1,
                    None => {}
                }
                obs.latency_ms_sum += o.latency_ms;
                obs.latency_count += 1;
            }
            if let Err(e) = f.acker.done().await {
                tracing::warn!(error = %e, "Failed to ack a delivery; it will be redelivered and skipped.");
            }
        }
        // Scoring and circuits learn from every batch (one script call per
        // provider in it).
        let feeds = observations
            .iter()
            .map(|(provider, obs)| self.capacity.observe(*provider, obs, &self.health));
        for r in futures::future::join_all(feeds).await {
            if let Err(e) = r {
                tracing::warn!(error = %e, "Failed to feed provider statistics.");
            }
        }
    }
}

impl Worker {
    async fn record_outcomes(&self, outcomes: &[Outcome]) {
        let mut delay = Duration::from_millis(200);
        while let Err(e) = self.store.record_outcomes(outcomes).await {
            tracing::warn!(error = %e, "Failed to record outcomes; retrying.");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Records a batch whose deliveries went back to their queue unacked.
    /// A sent message is recorded `sent` (its redelivery is skipped); one
    /// left in doubt stays `in_doubt`; one whose retry or dead letter may
    /// not have been published is recorded `pending`, so that its
    /// redelivery is tried again rather than taken for a send in doubt.
    async fn record_returned(&self, batch: &[Finished]) {
        metrics::counter!("herald_worker_returned_unacked_total").increment(batch.len() as u64);
        let outcomes: Vec<Outcome> = batch
            .iter()
            .filter_map(|f| {
                let mut outcome = f.outcome.clone()?;
                if f.publish.is_some() && outcome.status != MessageStatus::InDoubt {
                    outcome.status = MessageStatus::Pending;
                }
                Some(outcome)
            })
            .collect();
        self.record_outcomes(&outcomes).await;
    }
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a claimed job goes back to the scheduler unsent.
#[derive(Debug, Clone, Copy)]
enum SendBack {
    /// Every concurrency slot of the provider stayed busy.
    ConcurrencyBusy,
    /// The provider's pace would have kept it waiting too long.
    PacingBusy,
    /// Placed before its provider was throttled: placed again at the
    /// lowered rate.
    Throttled,
    /// The worker shut down while it waited for the pace.
    Stopping,
}

impl SendBack {
    /// The recorded error code and message.
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            SendBack::ConcurrencyBusy => (
                "concurrency_busy",
                "every concurrency slot of the provider stayed busy",
            ),
            SendBack::PacingBusy => (
                "pacing_busy",
                "the provider's pace inside the worker would have kept the send waiting too long",
            ),
            SendBack::Stopping => (
                "worker_stopping",
                "the worker stopped while the send waited for the provider's pace",
            ),
            SendBack::Throttled => (
                "provider_throttled",
                "placed before its provider answered too fast; placed again at the lowered rate",
            ),
        }
    }

    /// The `reason` label of the pacing metric, `None` if not pacing's.
    fn pacing_reason(self) -> Option<&'static str> {
        match self {
            SendBack::ConcurrencyBusy | SendBack::Throttled => None,
            SendBack::PacingBusy => Some("too_long"),
            SendBack::Stopping => Some("stopping"),
        }
    }
}

/// Units of the provider's pace a job's send takes: what the scheduler
/// reserved for it (one per WeWork recipient, as `Recipients::cost`), or
/// that rule again for a job without a reservation.
fn pace_cost(job: &v1::Job) -> u32 {
    match &job.assignment {
        Some(a) if a.cost > 0 => a.cost,
        _ if job.channel == v1::Channel::Wework as i32 => job.recipients.len().max(1) as u32,
        _ => 1,
    }
}

/// Exponential backoff with jitter: about 2 s, 4 s, 8 s … capped at 15 min.
pub fn backoff(attempt: u32) -> Duration {
    let base = 2u64.saturating_pow(attempt.min(10)).min(900);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    Duration::from_secs_f64(base as f64 * jitter)
}

/// How many refusing providers a job remembers (the most recent).
pub const MAX_TRIED: usize = 8;

/// Adds `provider` to the job's tried providers, most recent last, each
/// once, at most [`MAX_TRIED`].
pub fn remember_tried(tried: &mut Vec<String>, provider: String) {
    if provider.is_empty() {
        return;
    }
    tried.retain(|p| *p != provider);
    tried.push(provider);
    if tried.len() > MAX_TRIED {
        let excess = tried.len() - MAX_TRIED;
        tried.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) < Duration::from_secs(3));
        assert!(backoff(3) > Duration::from_secs(6));
        assert!(backoff(30) <= Duration::from_secs(1080));
    }

    #[test]
    fn a_wework_send_to_five_takes_five_of_the_pace() {
        let mut job = v1::Job {
            channel: v1::Channel::Wework as i32,
            recipients: (1..=5).map(|i| format!("user{i}")).collect(),
            ..v1::Job::default()
        };
        assert_eq!(pace_cost(&job), 5);
        job.assignment = Some(v1::Assignment {
            cost: 5,
            ..v1::Assignment::default()
        });
        assert_eq!(pace_cost(&job), 5);
        let email = v1::Job {
            channel: v1::Channel::Email as i32,
            recipients: vec!["a@example.com".into()],
            ..v1::Job::default()
        };
        assert_eq!(pace_cost(&email), 1);
    }
}
