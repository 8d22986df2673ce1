//! `herald-loadtest chaos`: Herald under faults, on private instances.
//!
//! Starts its own RabbitMQ node, Redis and PostgreSQL cluster (see
//! [`cluster`]), the simulator, a producer, a scheduler and workers from
//! their binaries. While messages are enqueued and sent it kills -9 workers,
//! the scheduler and the producer and restarts them, restarts RabbitMQ, Redis
//! and PostgreSQL, and stops a worker with SIGTERM (timed). It also
//! partitions the producer from RabbitMQ (through a [`relay`]) and kills it
//! while its publishes wait for confirms, and restarts Redis with nothing
//! kept (every reservation window and statistic lost). It then waits for
//! every accepted message to be final and reports accepted, sent, lost,
//! duplicates at the simulator and recovery times. A clean run has no loss,
//! and a duplicate only for a message recorded in doubt.

pub mod cluster;
pub mod relay;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use herald_api::{Client, SendMessage};
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::enqueue::demo_messages;
use crate::sim;
use crate::stack::{Stack, StackOptions};

/// What a chaos run is told.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Messages to enqueue (half email, half WeWork).
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Enqueue pace, messages per second (open loop: a chunk of 100 is
    /// posted on time whether or not the last one was answered).
    #[arg(long, default_value_t = 400)]
    pub rate: u32,
    /// Rounds of faults; each round kills or restarts every part once.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// A rolling restart instead of faults: SIGTERM and start again each
    /// worker, the scheduler and the producer in turn. Nothing may be lost,
    /// left in doubt or sent twice.
    #[arg(long)]
    pub graceful: bool,
    /// Only the faults whose name contains this (e.g. `PostgreSQL`).
    #[arg(long)]
    pub only: Option<String>,
    /// Pause between faults, in milliseconds.
    #[arg(long, default_value_t = 1_500)]
    pub pause_ms: u64,
    /// Where herald-producer, herald-scheduler, herald-worker and herald-sim
    /// are (default: next to this program, e.g. target/release).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Keep the private instances' directory (logs, data) after the run.
    #[arg(long)]
    pub keep: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl ChaosArgs {
    pub fn new(messages: usize) -> ChaosArgs {
        ChaosArgs {
            messages,
            workers: 2,
            rate: 400,
            rounds: 2,
            only: None,
            graceful: false,
            pause_ms: 1_500,
            bin_dir: None,
            keep: false,
            json: None,
        }
    }
}

/// One fault and how long Herald took to send again after it.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub what: String,
    /// Seconds since the run began.
    pub at_s: f64,
    /// How long the fault itself took (a service's stop and start).
    pub outage_ms: u64,
    /// From the end of the fault until the simulator received a new
    /// message (`None`: nothing was left to send, or no progress in 120 s).
    pub recovery_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ChaosReport {
    pub accepted: u64,
    /// Records by status, for the accepted messages.
    pub statuses: BTreeMap<String, u64>,
    pub sent: u64,
    pub in_doubt: u64,
    /// Messages sent again under the in-doubt policy (WeWork).
    pub in_doubt_resends: u64,
    /// Accepted and neither received by the simulator nor recorded failed
    /// or in doubt.
    pub lost: u64,
    /// Receipts at the simulator beyond the first, per message.
    pub duplicates: u64,
    /// Duplicated messages that were not recorded in doubt.
    pub unexplained_duplicates: u64,
    /// Enqueue requests answered with an error (then retried).
    pub enqueue_errors: u64,
    pub faults: Vec<Fault>,
    /// SIGTERM → exit of a worker under load (the longest seen).
    pub graceful_stop_ms: Option<u64>,
    /// From the last fault until every accepted message was final.
    pub drain_after_last_fault_ms: u64,
    pub elapsed_s: f64,
    pub directory: String,
}

impl ChaosReport {
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.unexplained_duplicates == 0 && self.accepted > 0
    }

    pub fn print(&self) {
        println!(
            "chaos run: {:.1} s, private instances in {}",
            self.elapsed_s, self.directory
        );
        println!("  accepted            {}", self.accepted);
        println!("  sent                {}", self.sent);
        println!(
            "  in doubt            {} (resent: {})",
            self.in_doubt, self.in_doubt_resends
        );
        println!("  lost                {}", self.lost);
        println!(
            "  duplicates at sim   {} ({} not recorded in doubt)",
            self.duplicates, self.unexplained_duplicates
        );
        println!("  enqueue errors      {} (retried)", self.enqueue_errors);
        println!("  statuses            {:?}", self.statuses);
        if let Some(ms) = self.graceful_stop_ms {
            println!("  SIGTERM → exit      {ms} ms (longest, a worker under load)");
        }
        println!(
            "  drained after the last fault in {} ms",
            self.drain_after_last_fault_ms
        );
        for f in &self.faults {
            let recovery = f
                .recovery_ms
                .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"));
            println!(
                "  {:>7.1} s  {:<34} outage {:>6} ms, then sending again in {recovery}",
                f.at_s, f.what, f.outage_ms
            );
        }
    }
}

/// The command: runs, prints, writes JSON; exit 1 unless clean.
pub async fn command(args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let json_path = args.json.clone();
    let report = run(args).await?;
    report.print();
    if let Some(path) = json_path {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs the scenario and returns its report.
pub async fn run(args: ChaosArgs) -> anyhow::Result<ChaosReport> {
    let began = Instant::now();
    let mut stack = Stack::start(StackOptions {
        bin_dir: args.bin_dir.clone(),
        // Jobs whose confirm was lost with a killed producer go out again
        // within seconds, not the default 30 s.
        scheduler_env: vec![("HERALD_RECONCILE_AFTER_SECS".into(), "5".into())],
        relay: true,
        ..StackOptions::new("chaos", args.workers.max(1))
    })
    .await?;
    let (client, sim_url, db) = (
        stack.client.clone(),
        stack.sim_url.clone(),
        stack.db.clone(),
    );

    let run_id = format!("chaos-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let emails = args.messages / 2;
    let messages = demo_messages(&run_id, emails, args.messages - emails);
    let accepted: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let enqueue = tokio::spawn(enqueue_with_retries(
        client.clone(),
        messages,
        accepted.clone(),
        errors.clone(),
        args.rate.max(1),
    ));

    // The faults, one after another, each followed by a wait for progress.
    let mut faults = Vec::new();
    let mut graceful_stop_ms = None;
    let pause = Duration::from_millis(args.pause_ms);
    let kinds: &[&str] = if args.graceful {
        &[
            "SIGTERM worker0",
            "SIGTERM worker1",
            "SIGTERM scheduler",
            "SIGTERM producer",
        ]
    } else {
        &[
            "kill -9 worker0",
            "kill -9 scheduler",
            "kill -9 producer",
            "restart RabbitMQ",
            "kill -9 worker1",
            "restart Redis",
            "restart PostgreSQL",
            "SIGTERM worker0",
            "kill -9 producer, publishes in flight",
            "restart Redis, every key lost",
        ]
    };
    'rounds: for _ in 0..args.rounds.max(1) {
        for &what in kinds {
            if args
                .only
                .as_ref()
                .is_some_and(|o| !what.contains(o.as_str()))
            {
                continue;
            }
            tokio::time::sleep(pause).await;
            if enqueue.is_finished() && unfinished(&db, &accepted).await.unwrap_or(1) == 0 {
                break 'rounds;
            }
            let before = sim_received(&sim_url).await.unwrap_or(0);
            let at_s = began.elapsed().as_secs_f64();
            let fault_began = Instant::now();
            let last = stack.workers.len() - 1;
            match what {
                "kill -9 worker0" => {
                    stack.workers[0].kill().await;
                    stack.workers[0].start()?;
                }
                "kill -9 worker1" => {
                    stack.workers[last].kill().await;
                    stack.workers[last].start()?;
                }
                "kill -9 scheduler" => {
                    stack.scheduler.kill().await;
                    stack.scheduler.start()?;
                }
                "kill -9 producer" => {
                    stack.producer.kill().await;
                    stack.producer.start()?;
                }
                "kill -9 producer, publishes in flight" => {
                    // The network between the producer and RabbitMQ stops
                    // carrying bytes; the requests that arrive meanwhile
                    // write their records and wait for confirms that never
                    // come; the producer dies with them and the bytes the
                    // partition held back are dropped.
                    let relay = stack.relay.as_ref().context("the stack has a relay")?;
                    relay.partition();
                    tokio::time::sleep(Duration::from_millis(800)).await;
                    stack.producer.kill().await;
                    relay.drop_connections();
                    relay.heal();
                    stack.producer.start()?;
                }
                "restart RabbitMQ" => stack.rabbit.restart().await?,
                "restart Redis" => stack.redis.restart().await?,
                "restart Redis, every key lost" => stack.redis.restart_empty().await?,
                "restart PostgreSQL" => stack.pg.restart().await?,
                _ => {
                    let process = match what {
                        "SIGTERM worker1" => &mut stack.workers[last],
                        "SIGTERM scheduler" => &mut stack.scheduler,
                        "SIGTERM producer" => &mut stack.producer,
                        _ => &mut stack.workers[0],
                    };
                    let took = process.terminate().await.map(|d| d.as_millis() as u64);
                    if what.contains("worker") {
                        graceful_stop_ms = graceful_stop_ms.max(took);
                    }
                    process.start()?;
                }
            }
            let outage_ms = fault_began.elapsed().as_millis() as u64;
            // Nothing left to send (every message final, the enqueue done):
            // no progress to wait for.
            let idle = enqueue.is_finished() && unfinished(&db, &accepted).await.unwrap_or(1) == 0;
            let recovery_ms = match idle {
                true => None,
                false => wait_progress(&sim_url, before, Instant::now()).await,
            };
            faults.push(Fault {
                what: what.to_owned(),
                at_s,
                outage_ms,
                recovery_ms,
            });
            // A process that died by itself (not one we killed) is restarted
            // too, and counted: it should not happen.
            for p in stack.processes() {
                if p.exited() {
                    faults.push(Fault {
                        what: format!("{} exited by itself; restarted", p.name),
                        at_s: began.elapsed().as_secs_f64(),
                        outage_ms: 0,
                        recovery_ms: None,
                    });
                    p.start()?;
                }
            }
        }
    }
    let last_fault = Instant::now();

    let enqueue_result = enqueue
        .await
        .map_err(|e| anyhow!("the enqueue task: {e}"))?;
    enqueue_result?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while unfinished(&db, &accepted).await.unwrap_or(u64::MAX) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let drain_ms = last_fault.elapsed().as_millis() as u64;

    let ids = accepted.lock().await.clone();
    let report = tally(&db, &sim_url, &ids).await?;
    let report = ChaosReport {
        enqueue_errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        faults,
        graceful_stop_ms,
        drain_after_last_fault_ms: drain_ms,
        elapsed_s: began.elapsed().as_secs_f64(),
        directory: stack.root.display().to_string(),
        ..report
    };

    let keep = args.keep || !report.clean();
    stack.stop(keep).await;
    Ok(report)
}

/// Posts the messages in chunks of 100 at `rate` messages per second, and
/// retries a chunk (same idempotency keys) until it is accepted: through
/// 503s, a dead producer and a restarting broker.
async fn enqueue_with_retries(
    client: Client,
    messages: Vec<SendMessage>,
    accepted: Arc<Mutex<Vec<Uuid>>>,
    errors: Arc<std::sync::atomic::AtomicU64>,
    rate: u32,
) -> anyhow::Result<()> {
    const CHUNK: usize = 100;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(CHUNK as f64 / f64::from(rate)));
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in messages.chunks(CHUNK) {
        tick.tick().await;
        let (client, accepted, errors) = (client.clone(), accepted.clone(), errors.clone());
        let chunk = chunk.to_vec();
        tasks.spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(600);
            let mut wait = Duration::from_millis(200);
            loop {
                // One try per round (the client does not retry): this loop
                // counts every failed try and keeps trying past the
                // client's limits, through a dead producer.
                match client.send_batch(&chunk).await {
                    Ok(answer) => {
                        let ids = answer.ids.iter().map(|id| id.as_uuid());
                        accepted.lock().await.extend(ids);
                        return Ok(());
                    }
                    Err(e) => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        // A refusal that will not change is final; no answer,
                        // overload or an unreadable answer is tried again.
                        if e.status().is_some() && !e.is_retryable() {
                            return Err(
                                anyhow::Error::new(e).context("the producer refused a chunk")
                            );
                        }
                        if Instant::now() > deadline {
                            return Err(anyhow::Error::new(e)
                                .context("a chunk was not accepted within 10 minutes"));
                        }
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.map_err(|e| anyhow!("an enqueue task: {e}"))??;
    }
    Ok(())
}

/// Accepted messages not final yet.
async fn unfinished(db: &PgPool, accepted: &Mutex<Vec<Uuid>>) -> anyhow::Result<u64> {
    let ids = accepted.lock().await.clone();
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE id = ANY($1)
           AND status IN ('queued', 'scheduled', 'pending', 'sending')",
    )
    .bind(&ids)
    .fetch_one(db)
    .await?;
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM messages WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_one(db)
        .await?;
    Ok(n as u64 + (ids.len() as u64).saturating_sub(found as u64))
}

async fn sim_received(sim_url: &str) -> anyhow::Result<u64> {
    let s = sim::fetch(sim_url).await?;
    Ok(s.smtp.received + s.wework.received)
}

/// Milliseconds from `since` until the simulator received more than
/// `before`; `None` if nothing came within 120 s.
async fn wait_progress(sim_url: &str, before: u64, since: Instant) -> Option<u64> {
    let deadline = since + Duration::from_secs(120);
    while Instant::now() < deadline {
        if sim_received(sim_url).await.unwrap_or(0) > before {
            return Some(since.elapsed().as_millis() as u64);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Counts what became of the accepted messages.
async fn tally(db: &PgPool, sim_url: &str, ids: &[Uuid]) -> anyhow::Result<ChaosReport> {
    let rows: Vec<(Uuid, String, i32)> =
        sqlx::query_as("SELECT id, status, in_doubt_resends FROM messages WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(db)
            .await?;
    // Receipts per message id at the simulator, both channels.
    let mut at_sim: HashMap<String, u64> = HashMap::new();
    for channel in ["email", "wework"] {
        for (id, n) in sim::ids(sim_url, channel).await?.ids {
            *at_sim.entry(id).or_default() += u64::from(n);
        }
    }
    let stats = sim::fetch(sim_url).await?;
    let mut report = ChaosReport {
        accepted: ids.len() as u64,
        duplicates: stats.smtp.duplicates + stats.wework.duplicates,
        ..ChaosReport::default()
    };
    let mut doubted: HashSet<Uuid> = HashSet::new();
    let mut recorded = HashSet::new();
    for (id, status, resends) in &rows {
        recorded.insert(*id);
        *report.statuses.entry(status.clone()).or_default() += 1;
        report.in_doubt_resends += *resends as u64;
        let reached = at_sim.contains_key(&id.to_string());
        match status.as_str() {
            "in_doubt" => {
                report.in_doubt += 1;
                doubted.insert(*id);
            }
            "failed" => {}
            _ if reached => report.sent += 1,
            _ => report.lost += 1,
        }
        if *resends > 0 {
            doubted.insert(*id);
        }
    }
    report.lost += ids.iter().filter(|id| !recorded.contains(id)).count() as u64;
    // Duplicates are allowed for messages recorded in doubt, and only them.
    report.unexplained_duplicates = at_sim
        .iter()
        .filter(|(id, n)| **n > 1 && !id.parse().is_ok_and(|id: Uuid| doubted.contains(&id)))
        .map(|(_, n)| n - 1)
        .sum();
    Ok(report)
}
