//! `herald-loadtest fairness`: a big tenant queues a large backlog; while
//! it drains, a small tenant sends one message every few milliseconds. The
//! report gives the small tenant's enqueue→sent percentiles and how much of
//! the big tenant's backlog was still unsent around them — the scheduler's
//! fairness (issue 3: p99 under a second with a million queued).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{stream, StreamExt};
use herald_api::{Client, NewTenant, SendMessage};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::cli::FairnessArgs;
use crate::report::{LatencyStats, StatusCounts};
use crate::{enqueue, setup, wait};

#[derive(Debug, Serialize)]
pub struct FairnessSummary {
    pub backlog_requested: usize,
    pub backlog_accepted: usize,
    pub backlog_enqueue_secs: f64,
    pub backlog_enqueue_rate: f64,
    /// The big tenant's unsent messages when the small tenant started and
    /// when its last message was sent.
    pub backlog_unsent_at_start: u64,
    pub backlog_unsent_at_end: u64,
    /// The big tenant's messages sent per second between those two
    /// readings: the drain rate while the small tenant was served.
    pub backlog_drain_rate: f64,
    pub small_sent: u64,
    pub small_total: usize,
    pub small_latency: Option<LatencyStats>,
    pub big_tenant_id: String,
    pub small_tenant_id: String,
}

async fn create_tenant(admin: &Client, code: &str) -> anyhow::Result<String> {
    let new = NewTenant {
        code: code.to_owned(),
        name: code.to_owned(),
        weight: None,
        daily_quota: None,
        rate_limit_per_sec: None,
        webhook_url: None,
        webhook_events: None,
        tracking: None,
    };
    // Not retried: the code is fresh, and a repeat would be refused as taken.
    let t = admin
        .create_tenant(&new)
        .await
        .with_context(|| format!("Failed to create tenant {code}"))?;
    Ok(t.id.to_string())
}

/// One fairness message: an email with its own idempotency key.
fn email(to: String, subject: String, text: &str, key: String) -> SendMessage {
    let mut m = SendMessage::email(to, subject, text);
    m.idempotency_key = Some(key);
    m
}

/// The tenant's messages not yet final.
async fn unsent(pool: &PgPool, tenant: &str) -> anyhow::Result<u64> {
    let tenant: Uuid = tenant.parse()?;
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM messages WHERE tenant_id = $1 GROUP BY status",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .context("Failed to count the backlog")?;
    let counts = StatusCounts(rows.into_iter().map(|(s, n)| (s, n as u64)).collect());
    Ok(counts.total() - counts.final_total())
}

fn backlog_chunk(run: &str, from: usize, to: usize) -> Vec<SendMessage> {
    (from..to)
        .map(|n| {
            email(
                format!("big{n}@example.com"),
                format!("Backlog {run} #{n}"),
                "Part of a fairness run's backlog.",
                format!("{run}-big-{n}"),
            )
        })
        .collect()
}

pub async fn run(args: FairnessArgs) -> anyhow::Result<ExitCode> {
    if args.small == 0 {
        bail!("--small must be at least 1");
    }
    let t = &args.target;
    let admin = Client::new(&t.producer_url, &t.admin_token)?;
    let run = crate::demo::new_run_id()
        .replace("demo-", "fair-")
        .to_lowercase();
    let big = create_tenant(&admin, &format!("{run}-big")).await?;
    let small = create_tenant(&admin, &format!("{run}-small")).await?;
    let big_client = admin.with_token(&setup::create_key(&admin, &big).await?);
    let small_client = admin.with_token(&setup::create_key(&admin, &small).await?);
    let spec = setup::email_provider(&t.sim_smtp_host, t.sim_smtp_port, t.sim_ca_file.as_deref());
    setup::ensure_provider(&admin, &spec).await?;
    let pool = wait::connect(&t.database_url).await?;

    // (a) the backlog, generated chunk by chunk
    eprintln!("run {run}: the big tenant queues {} messages", args.backlog);
    let chunk = usize::from(args.chunk_size);
    let clock = Instant::now();
    let mut accepted = 0usize;
    let mut results = stream::iter((0..args.backlog).step_by(chunk).map(|from| {
        let client = big_client.clone();
        let run = run.clone();
        let to = (from + chunk).min(args.backlog);
        async move { enqueue::send_chunk(&client, &backlog_chunk(&run, from, to)).await }
    }))
    .buffered(usize::from(args.concurrency));
    let mut last_note = Instant::now();
    while let Some(r) = results.next().await {
        match r {
            Ok(ids) => accepted += ids.len(),
            Err(e) => eprintln!("warning: a backlog batch was not accepted: {e:#}"),
        }
        if last_note.elapsed() > Duration::from_secs(5) {
            eprintln!("backlog: {accepted}/{} accepted", args.backlog);
            last_note = Instant::now();
        }
    }
    let enqueue_secs = clock.elapsed().as_secs_f64();
    eprintln!(
        "backlog: {accepted} accepted in {enqueue_secs:.1} s ({:.0} msg/s)",
        crate::report::per_second(accepted as u64, enqueue_secs)
    );

    // (b) the small tenant, at a steady pace
    let at_start = unsent(&pool, &big).await?;
    let small_clock = Instant::now();
    eprintln!(
        "the small tenant sends {} messages, one every {} ms, with {at_start} of the backlog unsent",
        args.small, args.small_every_ms
    );
    let mut ids = Vec::with_capacity(args.small);
    let mut tick = tokio::time::interval(Duration::from_millis(args.small_every_ms.max(1)));
    for n in 0..args.small {
        tick.tick().await;
        let message = email(
            format!("small{n}@example.com"),
            format!("Small {run} #{n}"),
            "A small tenant's message.",
            format!("{run}-small-{n}"),
        );
        // Keyed, so retrying overload or a lost answer sends it once.
        let answer = small_client
            .with_retries()
            .send(&message)
            .await
            .context("The small tenant's message was not accepted")?;
        ids.push(answer.id.as_uuid());
    }
    let waited = wait::wait_final(
        &pool,
        &ids,
        Duration::from_secs(args.timeout_secs),
        |_, _| {},
    )
    .await?;
    let at_end = unsent(&pool, &big).await?;
    let drain_secs = small_clock.elapsed().as_secs_f64();
    let records = wait::records(&pool, &ids).await?;
    pool.close().await;
    let summary = FairnessSummary {
        backlog_requested: args.backlog,
        backlog_accepted: accepted,
        backlog_enqueue_secs: enqueue_secs,
        backlog_enqueue_rate: crate::report::per_second(accepted as u64, enqueue_secs),
        backlog_unsent_at_start: at_start,
        backlog_unsent_at_end: at_end,
        backlog_drain_rate: crate::report::per_second(at_start.saturating_sub(at_end), drain_secs),
        small_sent: waited.counts.sent(),
        small_total: args.small,
        small_latency: LatencyStats::from_records(&records),
        big_tenant_id: big,
        small_tenant_id: small,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("fairness run {run}");
        println!(
            "  backlog: {} accepted in {:.1} s ({:.0} msg/s); unsent: {} when the small tenant started, {} when it finished (drained at {:.0} msg/s meanwhile)",
            summary.backlog_accepted,
            summary.backlog_enqueue_secs,
            summary.backlog_enqueue_rate,
            summary.backlog_unsent_at_start,
            summary.backlog_unsent_at_end,
            summary.backlog_drain_rate
        );
        match &summary.small_latency {
            Some(l) => println!(
                "  small tenant: {}/{} sent; enqueue→sent p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                summary.small_sent, summary.small_total, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
            ),
            None => println!("  small tenant: nothing sent"),
        }
    }
    Ok(if summary.small_sent == args.small as u64 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
