//! `herald-loadtest demo`: the whole run, from set-up to the summary.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use herald_api::Client;

use crate::cli::DemoArgs;
use crate::report::{LookFurther, RunFacts, SimDelta, Summary};
use crate::setup::{self, Ensured};
use crate::{enqueue, sim, wait};

/// A run id that sorts by time: `demo-20261123T110500Z-3f9a1c`.
pub fn new_run_id() -> String {
    let suffix: String = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .take(6)
        .collect();
    format!("demo-{}-{suffix}", Utc::now().format("%Y%m%dT%H%M%SZ"))
}

/// Progress on stderr: one rewritten line on a terminal, else a line every
/// few seconds (logs and CI stay readable).
struct Progress {
    tty: bool,
    last: Option<Instant>,
    every: Duration,
}

impl Progress {
    fn new() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last: None,
            every: Duration::from_secs(5),
        }
    }

    fn update(&mut self, line: &str, force: bool) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
            return;
        }
        if force || self.last.is_none_or(|t| t.elapsed() >= self.every) {
            let _ = writeln!(err, "{line}");
            self.last = Some(Instant::now());
        }
    }

    fn finish(&mut self, line: &str) {
        self.update(line, true);
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
        self.last = None;
    }
}

fn note(msg: &str) {
    eprintln!("{msg}");
}

fn resolve_ca_file(path: &Option<PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    match path {
        None => Ok(None),
        Some(p) => {
            if !p.is_file() {
                bail!(
                    "The simulator's CA file {} does not exist: start herald-sim with --cert-dir (it writes ca.pem there) \
                     or leave out --sim-ca-file",
                    p.display()
                );
            }
            // The workers read it, perhaps from another working directory.
            let abs = std::fs::canonicalize(p)
                .with_context(|| format!("Failed to resolve {}", p.display()))?;
            Ok(Some(abs))
        }
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.emails + args.wework + args.webhooks == 0 {
        bail!("Nothing to send: --emails, --wework and --webhooks are all 0");
    }
    if args.target.admin_token.trim().is_empty() {
        bail!("--admin-token (or HERALD_ADMIN_TOKEN) is empty");
    }
    let run_id = new_run_id();
    let ca_file = resolve_ca_file(&args.target.sim_ca_file)?;
    let admin = Client::new(&args.target.producer_url, &args.target.admin_token)?;

    // (a) tenant and key
    let tenant = setup::ensure_tenant(&admin).await?;
    note(&format!(
        "tenant {}: {} ({})",
        setup::DEMO_TENANT_CODE,
        if tenant.created { "created" } else { "exists" },
        tenant.id
    ));
    let api_key = setup::create_key(&admin, &tenant.id).await?;
    note("api key: created a fresh one (shown in the summary)");

    // (b) providers
    if ca_file.is_none() {
        note("note: no --sim-ca-file: the SMTP provider will accept any certificate (test servers only)");
    }
    let specs = [
        setup::email_provider(
            &args.target.sim_smtp_host,
            args.target.sim_smtp_port,
            ca_file.as_deref(),
        ),
        setup::wework_provider(args.target.wework_base_url()),
        setup::webhook_provider(&args.target.sim_webhook_secret),
    ];
    let mut ids = Vec::new();
    for spec in &specs {
        let (id, how) = setup::ensure_provider(&admin, spec).await?;
        let how = match how {
            Ensured::Created => "created",
            Ensured::Updated => "exists, config updated",
        };
        note(&format!("provider {}: {how} ({id})", spec.name));
        ids.push(id);
    }
    // The simulator reports back (delivered, read, clicked, replied) as
    // providers do, so the records move on past `sent`.
    let callbacks = setup::sim_callbacks(&args.target.producer_url, &ids[0], &ids[1], &ids[2]);
    match sim::configure_callbacks(&args.target.sim_url, &callbacks).await {
        Ok(_) => note("simulator: makes provider callbacks to the producer"),
        Err(e) => note(&format!("warning: the simulator makes no callbacks: {e:#}")),
    }

    // The database first: no point sending what cannot be followed.
    let pool = wait::connect(&args.target.database_url).await?;

    // (c) the simulator's counters before
    let sim_before = match sim::fetch(&args.target.sim_url).await {
        Ok(s) => Some(s),
        Err(e) => {
            note(&format!(
                "warning: could not read the simulator's stats: {e:#}"
            ));
            None
        }
    };

    // The bare broker's ceiling for as many messages, in the same run.
    let ceiling = if args.ceiling {
        let n = (args.emails + args.wework + args.webhooks) as u64;
        note(&format!(
            "ceiling: carrying {n} messages of {} B over two bare RabbitMQ hops",
            args.ceiling_size
        ));
        let c = crate::ceiling::measure(
            &args.broker.amqp_url,
            "herald-loadtest",
            n,
            args.ceiling_size,
        )
        .await?;
        note(&format!("ceiling: {:.0} msg/s", c.per_second));
        Some(c)
    } else {
        None
    };

    // (d) the burst
    let webhook_url = enqueue::webhook_url(&args.target.sim_url);
    let mut messages = enqueue::demo_messages(&run_id, args.emails, args.wework);
    messages.extend(enqueue::webhook_messages(
        &run_id,
        args.webhooks,
        &webhook_url,
    ));
    let total = messages.len();
    note(&format!(
        "run {run_id}: sending {} email + {} wework + {} webhook message(s) in chunks of {} ({} in flight)",
        args.emails, args.wework, args.webhooks, args.chunk_size, args.concurrency
    ));
    let tenant_client = admin.with_token(&api_key);
    let wall = Instant::now();
    let mut progress = Progress::new();
    let outcome = enqueue::enqueue_all(
        &tenant_client,
        messages,
        usize::from(args.chunk_size),
        usize::from(args.concurrency),
        |done, total| progress.update(&format!("enqueue: {done}/{total} accepted"), false),
    )
    .await?;
    progress.finish(&format!(
        "enqueue: {}/{total} accepted in {} ({:.0} msg/s)",
        outcome.ids.len(),
        crate::report::secs(outcome.elapsed.as_secs_f64()),
        outcome.rate()
    ));
    for e in &outcome.errors {
        note(&format!("error: {e}"));
    }

    // (e) wait for final statuses
    let accepted = outcome.ids.len() as u64;
    let timeout = Duration::from_secs(args.timeout_secs);
    let waited = wait::wait_final(&pool, &outcome.ids, timeout, |counts, waited| {
        let line = format!(
            "waiting: {}/{accepted} final, {} in flight [{}] {:.0}s",
            counts.final_total(),
            wait::in_flight(counts),
            counts.brief(),
            waited.as_secs_f64()
        );
        progress.update(&line, false);
    })
    .await?;
    progress.finish(&format!(
        "waiting: {}/{accepted} final after {}{}",
        waited.counts.final_total(),
        crate::report::secs(waited.waited.as_secs_f64()),
        if waited.timed_out { " (timed out)" } else { "" }
    ));
    let wall_secs = wall.elapsed().as_secs_f64();

    // (f) the summary
    let records = wait::records(&pool, &outcome.ids).await?;
    pool.close().await;
    let stats_url = sim::stats_url(&args.target.sim_url);
    let (sim, sim_error) = match (sim_before, sim::fetch(&args.target.sim_url).await) {
        (Some(before), Ok(after)) => (
            Some(SimDelta::new(stats_url.clone(), &after.since(&before))),
            None,
        ),
        (None, _) => (
            None,
            Some("the simulator's stats were not readable before the run".to_owned()),
        ),
        (_, Err(e)) => (None, Some(format!("{e:#}"))),
    };
    let mut summary = Summary::build(RunFacts {
        run_id,
        tenant_id: tenant.id,
        emails: args.emails as u64,
        wework: args.wework as u64,
        webhooks: args.webhooks as u64,
        accepted,
        not_accepted: outcome.not_accepted as u64,
        enqueue_errors: outcome.errors,
        enqueue_secs: outcome.elapsed.as_secs_f64(),
        wall_secs,
        timeout_secs: args.timeout_secs,
        timed_out: waited.timed_out,
        counts: waited.counts,
        records,
        sim,
        sim_error,
        look: LookFurther::new(&args.target.producer_url, &api_key, &stats_url, &args.logs),
    });
    if let Some(c) = ceiling {
        summary.ratio_to_ceiling = Some(summary.end_to_end_per_sec / c.per_second.max(1.0));
        summary.ceiling = Some(c);
    }
    if args.json {
        let text =
            serde_json::to_string_pretty(&summary).context("Failed to encode the summary")?;
        println!("{text}");
    } else {
        print!("{}", summary.to_text());
    }
    Ok(ExitCode::from(summary.exit_code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_distinct_and_readable() {
        let a = new_run_id();
        let b = new_run_id();
        assert_ne!(a, b);
        assert!(a.starts_with("demo-20"), "{a}");
        assert_eq!(a.len(), "demo-20261123T110500Z-3f9a1c".len());
    }

    #[test]
    fn a_missing_ca_file_is_a_clear_error() {
        let err =
            resolve_ca_file(&Some(PathBuf::from("/nonexistent/ca.pem"))).expect_err("missing");
        assert!(err.to_string().contains("--cert-dir"), "{err}");
        assert!(resolve_ca_file(&None).expect("none is fine").is_none());
    }
}
