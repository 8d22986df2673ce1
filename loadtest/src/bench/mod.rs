//! `herald-loadtest bench`: Herald's throughput and latency scenarios on a
//! private stack ([`crate::stack`]), each reported beside the bare broker's
//! two-hop ceiling measured in the same run.
//!
//! Scenarios, in the order given:
//! - `ceiling`: the bare broker (raw lapin, confirms and acks, two hops);
//! - `max`: a closed-loop burst (the demo's mix of email and WeWork);
//! - `steady`: an open-loop rate (default half of `max`'s throughput),
//!   for enqueue→send latency at a sustainable load;
//! - `latency`: WeWork sends with the simulator answering after 0, 20 and
//!   200 ms;
//! - `scaling`: 1 → 2 → 4 workers at 200 ms provider latency and a fixed
//!   concurrency per worker;
//! - `failures`: a share of transient failures (retried) and of permanent
//!   rejections (dead-lettered);
//! - `shapes`: the request shapes clients use, each a closed-loop burst of
//!   emails: one message per `POST /v1/messages` and per gRPC `Send`, 10
//!   and 500 per batch request, and one per request again with group
//!   commit switched off (`HERALD_PRODUCER_GROUP_MAX=1`), for the ratio;
//! - `templates`: the same emails with their subject and bodies inline and
//!   from a template (pinned and rendered at enqueue, rendered again by the
//!   worker), one per request and 500 per request, side by side;
//! - `callbacks`: provider callbacks, one signed event per request on
//!   `--callback-concurrency` connections: posted alone after a burst of
//!   emails (ingest rate: answered, and stored and applied), then while a
//!   second burst runs (its enqueue→send p99 beside the first's);
//! - `webhooks`: a burst of emails without a tenant webhook, then the same
//!   with one taking every event (a receiver in this process checks each
//!   signature): the send path's cost, and events delivered per second and
//!   their lag.
//!
//! Each step reports throughput, enqueue→send p50/p90/p99/p99.9 (HDR), lost
//! and duplicates (from the simulator's counts) and the producer's and
//! workers' peak RSS. Output: a table, `bench.json` and `bench.svg`
//! (throughput and p99 over time).

mod callbacks;
mod cpu;
mod svg;
mod webhooks;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use herald_api::SendMessage;
use serde::Serialize;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::enqueue::{demo_messages, enqueue_by, Route};
use crate::report::LatencyStats;
use crate::sim;
use crate::stack::{Stack, StackOptions};
use crate::wait::{self, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    Ceiling,
    Max,
    Steady,
    Latency,
    Scaling,
    Failures,
    Shapes,
    Templates,
    Callbacks,
    Webhooks,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Scenarios to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ceiling,max,steady,latency,scaling,failures"
    )]
    pub scenarios: Vec<Scenario>,
    /// Messages per step.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Workers for every step but `scaling`.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// `steady`'s rate in messages per second (default: half of what `max`
    /// measured, else 1,000).
    #[arg(long)]
    pub rate: Option<u32>,
    /// How long `steady` enqueues, in seconds.
    #[arg(long, default_value_t = 20)]
    pub steady_secs: u64,
    /// Messages per request in `steady` (requests go out at rate ÷ this;
    /// `max` sends 500 per request).
    #[arg(long, default_value_t = 100)]
    pub steady_batch: usize,
    /// `latency`'s provider latencies, in milliseconds.
    #[arg(long, value_delimiter = ',', default_value = "0,20,200")]
    pub latencies_ms: Vec<u64>,
    /// `scaling`'s worker counts.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub scaling_workers: Vec<usize>,
    /// `scaling`'s provider latency, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub scaling_latency_ms: u64,
    /// `scaling`'s sends in flight per worker (HERALD_WORKER_CONCURRENCY).
    #[arg(long, default_value_t = 64)]
    pub scaling_concurrency: usize,
    /// `failures`: the share of sends that fail transiently (retried).
    #[arg(long, default_value_t = 0.05)]
    pub fail_rate: f64,
    /// `failures`: the share of emails rejected permanently.
    #[arg(long, default_value_t = 0.01)]
    pub reject_rate: f64,
    /// `shapes`: requests in flight for the single-message and 10-message
    /// shapes (the 500-message shape keeps 8, like `max`).
    #[arg(long, default_value_t = 32)]
    pub shape_concurrency: usize,
    /// `callbacks`: requests in flight.
    #[arg(long, default_value_t = 64)]
    pub callback_concurrency: usize,
    /// `callbacks`: events posted per sent message.
    #[arg(long, default_value_t = 2)]
    pub callbacks_per_message: usize,
    /// Extra environment for the producer, `KEY=VALUE` (repeatable), e.g.
    /// `HERALD_PRODUCER_COMMITS_IN_FLIGHT=2` to compare settings.
    #[arg(long = "producer-env", value_name = "KEY=VALUE")]
    pub producer_env: Vec<String>,
    /// The ceiling's message size, in bytes (about a job's envelope).
    #[arg(long, default_value_t = 600)]
    pub size: usize,
    /// Where to write bench.json and bench.svg.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// Where the Herald binaries are (default: next to this program).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Keep the private instances' directory after the run.
    #[arg(long)]
    pub keep: bool,
    /// Seconds to wait for a step's messages to be final (retried ones
    /// wait out their backoff: minutes, in `failures`).
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

/// One point of a step's time series (per second of sends).
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// Seconds since the run began.
    pub t_s: f64,
    pub sent_per_s: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub scenario: Scenario,
    pub workers: usize,
    pub provider_latency_ms: u64,
    pub accepted: u64,
    pub sent: u64,
    pub failed: u64,
    pub in_doubt: u64,
    /// Accepted, not recorded final, or recorded sent without reaching the
    /// simulator.
    pub lost: u64,
    /// Still waiting (for a retry's delay) when the step's time ran out:
    /// not lost, not counted as sent.
    pub unfinished: u64,
    /// Receipts at the simulator beyond the first, during this step.
    pub duplicates: u64,
    /// Sent per second, first enqueue to last send (the records' clock).
    pub throughput: f64,
    pub enqueue_rate: f64,
    pub latency: Option<LatencyStats>,
    /// Throughput over this run's bare-broker ceiling.
    pub ratio_to_ceiling: Option<f64>,
    /// Peak resident memory since start (VmHWM), in MiB.
    pub producer_rss_mib: Option<f64>,
    pub worker_rss_mib: Option<f64>,
    pub timed_out: bool,
    /// CPU seconds per component during the step (RabbitMQ, PostgreSQL,
    /// Redis, each Herald binary, the load generator).
    pub cpu_s: std::collections::BTreeMap<String, f64>,
    pub series: Vec<Point>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub date: DateTime<Utc>,
    pub command: String,
    pub ceiling_per_s: Option<f64>,
    pub steps: Vec<Step>,
    /// The `callbacks` scenario's floods.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub callbacks: Vec<callbacks::CallbackRun>,
    /// The `webhooks` scenario's deliveries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<webhooks::WebhookRun>,
    pub elapsed_s: f64,
}

/// The command: runs the scenarios, prints the table, writes JSON and SVG.
pub async fn command(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let report = run(args.clone()).await?;
    print!("{}", table(&report));
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let json_path = args.out.join("bench.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let svg_path = args.out.join("bench.svg");
    std::fs::write(&svg_path, svg::render(&report))
        .with_context(|| format!("cannot write {}", svg_path.display()))?;
    println!("wrote {} and {}", json_path.display(), svg_path.display());
    let clean = report
        .steps
        .iter()
        .all(|s| s.lost == 0 && s.duplicates == 0 && !s.timed_out);
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn run(args: BenchArgs) -> anyhow::Result<BenchReport> {
    let began = Instant::now();
    let date = Utc::now();
    let mut stack = Stack::start(StackOptions {
        bin_dir: args.bin_dir.clone(),
        ..StackOptions::new("bench", args.workers.max(1))
    })
    .await?;
    let clock = Clock {
        began,
        timeout_secs: args.timeout_secs,
    };
    let result = async {
        if !args.producer_env.is_empty() {
            let env = args
                .producer_env
                .iter()
                .map(|kv| {
                    kv.split_once('=')
                        .with_context(|| format!("--producer-env {kv:?} is not KEY=VALUE"))
                })
                .collect::<anyhow::Result<Vec<(&str, &str)>>>()?;
            stack.restart_producer_with(&env).await?;
        }
        run_steps(&args, &mut stack, clock).await
    }
    .await;
    stack.stop(args.keep).await;
    let (ceiling_per_s, steps, (callbacks, webhooks)) = result?;
    Ok(BenchReport {
        date,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        ceiling_per_s,
        steps,
        callbacks,
        webhooks,
        elapsed_s: began.elapsed().as_secs_f64(),
    })
}

#[allow(clippy::type_complexity)]
async fn run_steps(
    args: &BenchArgs,
    stack: &mut Stack,
    clock: Clock,
) -> anyhow::Result<(
    Option<f64>,
    Vec<Step>,
    (Vec<callbacks::CallbackRun>, Vec<webhooks::WebhookRun>),
)> {
    let mut ceiling = None;
    let mut hooks = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut floods = Vec::new();
    let n = args.messages.max(1);
    let total = args.scenarios.len();
    for (i, scenario) in args.scenarios.iter().enumerate() {
        let label = format!("[{}/{total}]", i + 1);
        match scenario {
            Scenario::Ceiling => {
                eprintln!(
                    "{label} ceiling: {n} messages of {} B over two bare hops",
                    args.size
                );
                let c = crate::ceiling::measure(
                    &stack.rabbit.url(),
                    "bench-ceiling",
                    n as u64,
                    args.size,
                )
                .await?;
                eprintln!("{label} ceiling: {:.0} msg/s", c.per_second);
                ceiling = Some(c.per_second);
            }
            Scenario::Max => {
                behave(stack, 0, 0.0, 0.0).await?;
                let emails = n - n / 6;
                let run_id = run_id("max");
                let messages = demo_messages(&run_id, emails, n - emails);
                let step = closed_loop(stack, &label, "max", *scenario, messages, 0, clock).await?;
                steps.push(step);
            }
            Scenario::Steady => {
                behave(stack, 0, 0.0, 0.0).await?;
                let rate = args.rate.unwrap_or_else(|| {
                    steps
                        .iter()
                        .find(|s| s.scenario == Scenario::Max)
                        .map_or(1_000, |s| (s.throughput / 2.0).max(1.0) as u32)
                });
                let count = (u64::from(rate) * args.steady_secs) as usize;
                let emails = count - count / 6;
                let messages = demo_messages(&run_id("steady"), emails, count - emails);
                let name = format!("steady {rate}/s");
                let step = open_loop(
                    stack,
                    &label,
                    &name,
                    messages,
                    rate,
                    args.steady_batch.max(1),
                    clock,
                )
                .await?;
                steps.push(step);
            }
            Scenario::Latency => {
                for &ms in &args.latencies_ms {
                    behave(stack, ms, 0.0, 0.0).await?;
                    let messages = demo_messages(&run_id("latency"), 0, n);
                    let name = format!("wework {ms} ms");
                    steps.push(
                        closed_loop(stack, &label, &name, *scenario, messages, ms, clock).await?,
                    );
                }
            }
            Scenario::Scaling => {
                let ms = args.scaling_latency_ms;
                behave(stack, ms, 0.0, 0.0).await?;
                stack.set_workers(0).await?;
                stack.set_worker_env(
                    "HERALD_WORKER_CONCURRENCY",
                    &args.scaling_concurrency.to_string(),
                );
                for &workers in &args.scaling_workers {
                    stack.set_workers(workers.max(1)).await?;
                    // Each worker's share is the same, so a linear system
                    // takes as long for every count.
                    let count = n / 4 * workers.max(1);
                    let messages = demo_messages(&run_id("scaling"), 0, count);
                    let name = format!(
                        "{workers} worker(s) × {} at {ms} ms",
                        args.scaling_concurrency
                    );
                    steps.push(
                        closed_loop(stack, &label, &name, *scenario, messages, ms, clock).await?,
                    );
                }
                stack.set_workers(0).await?;
                stack.clear_worker_env("HERALD_WORKER_CONCURRENCY");
                stack.set_workers(args.workers.max(1)).await?;
            }
            Scenario::Failures => {
                behave(stack, 0, args.fail_rate, args.reject_rate).await?;
                // The step lasts as long as its unluckiest message's
                // backoff (minutes), whatever its size: a quarter will do.
                let n = (n / 4).max(1);
                let emails = n - n / 6;
                let messages = demo_messages(&run_id("failures"), emails, n - emails);
                let name = format!(
                    "{:.0} % retried, {:.0} % rejected",
                    args.fail_rate * 100.0,
                    args.reject_rate * 100.0
                );
                steps.push(closed_loop(stack, &label, &name, *scenario, messages, 0, clock).await?);
                behave(stack, 0, 0.0, 0.0).await?;
            }
            Scenario::Shapes => {
                behave(stack, 0, 0.0, 0.0).await?;
                steps.extend(shapes(args, stack, &label, clock).await?);
            }
            Scenario::Templates => {
                behave(stack, 0, 0.0, 0.0).await?;
                steps.extend(templates(args, stack, &label, clock).await?);
            }
            Scenario::Callbacks => {
                behave(stack, 0, 0.0, 0.0).await?;
                let (s, f) = callback_steps(args, stack, &label, clock).await?;
                steps.extend(s);
                floods.extend(f);
            }
            Scenario::Webhooks => {
                behave(stack, 0, 0.0, 0.0).await?;
                let (s, h) = webhook_steps(args, stack, &label, clock).await?;
                steps.extend(s);
                hooks.extend(h);
            }
        }
    }
    if let Some(c) = ceiling {
        for s in &mut steps {
            s.ratio_to_ceiling = Some(s.throughput / c.max(1.0));
        }
    }
    Ok((ceiling, steps, (floods, hooks)))
}

/// The `webhooks` steps (see the module's documentation).
async fn webhook_steps(
    args: &BenchArgs,
    stack: &mut Stack,
    label: &str,
    clock: Clock,
) -> anyhow::Result<(Vec<Step>, Vec<webhooks::WebhookRun>)> {
    let n = args.messages.max(1);
    let without = closed_loop(
        stack,
        label,
        "webhooks: sends, no webhook",
        Scenario::Webhooks,
        demo_messages(&run_id("hook0"), n, 0),
        0,
        clock,
    )
    .await?;
    let receiver = webhooks::attach(stack).await?;
    let with = closed_loop(
        stack,
        label,
        "webhooks: sends, every event",
        Scenario::Webhooks,
        demo_messages(&run_id("hook1"), n, 0),
        0,
        clock,
    )
    .await?;
    let run = webhooks::settle(
        stack,
        &receiver,
        "webhook per send",
        Duration::from_secs(clock.timeout_secs),
    )
    .await?;
    println!(
        "{label} webhooks: {} of {} delivered, {:.0}/s, lag p99 {:.0} ms",
        run.delivered, run.deliveries, run.delivered_per_s, run.lag_p99_ms
    );
    Ok((vec![without, with], vec![run]))
}

/// The `callbacks` steps (see the module's documentation).
async fn callback_steps(
    args: &BenchArgs,
    stack: &mut Stack,
    label: &str,
    clock: Clock,
) -> anyhow::Result<(Vec<Step>, Vec<callbacks::CallbackRun>)> {
    let n = args.messages.max(1);
    let (c, per) = (
        args.callback_concurrency.max(1),
        args.callbacks_per_message.max(1),
    );
    let wait = Duration::from_secs(clock.timeout_secs);
    let alone = closed_loop(
        stack,
        label,
        "callbacks: sends alone",
        Scenario::Callbacks,
        demo_messages(&run_id("cb"), n, 0),
        0,
        clock,
    )
    .await?;
    let (provider, ids) = callbacks::targets(stack, n).await?;
    println!(
        "{label} callbacks: {} posted alone, {c} at a time",
        ids.len() * per
    );
    let first = callbacks::flood(stack, "callbacks alone", &provider, &ids, per, c, wait).await?;
    // The same number again while a second burst of sends runs.
    let during = {
        let stack_ref: &Stack = stack;
        let flood = callbacks::flood(
            stack_ref,
            "callbacks during sends",
            &provider,
            &ids,
            per,
            c,
            wait,
        );
        let messages = demo_messages(&run_id("cb"), n, 0);
        let route = Route::Http(stack_ref.client.clone());
        let sends = async { enqueue_by(&route, messages, 500, 8, |_, _| {}).await };
        let before = Before::take(stack_ref).await?;
        let (flood, sends) = tokio::join!(flood, sends);
        (flood?, sends?, before)
    };
    let (second, outcome, before) = during;
    let mut bar = Bar::new(format!("{label} callbacks: sends during callbacks"));
    let rate = outcome.rate();
    let with = finish(
        stack,
        &mut bar,
        "callbacks: sends during callbacks",
        Scenario::Callbacks,
        outcome.ids,
        rate,
        0,
        before,
        clock,
    )
    .await?;
    Ok((vec![alone, with], vec![first, second]))
}

/// One `shapes` step: a burst of `n` fresh emails in `shape`.
async fn shape_step(
    stack: &mut Stack,
    label: &str,
    clock: Clock,
    n: usize,
    name: &str,
    shape: Shape<'_>,
) -> anyhow::Result<Step> {
    let messages = demo_messages(&run_id("shape"), n, 0);
    let scenario = Scenario::Shapes;
    closed_loop_as(stack, label, name, scenario, messages, 0, clock, shape).await
}

/// The `shapes` steps (see the module's documentation).
async fn shapes(
    args: &BenchArgs,
    stack: &mut Stack,
    label: &str,
    clock: Clock,
) -> anyhow::Result<Vec<Step>> {
    let n = args.messages.max(1);
    let c = args.shape_concurrency.max(1);
    let http = Route::Http(stack.client.clone());
    let grpc = Route::Grpc(
        herald_proto::grpc::connect(&stack.grpc_url, &stack.api_key)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let mut steps = Vec::new();
    let plan: [(&str, &Route, usize, usize); 4] = [
        ("http", &http, 1, c),
        ("grpc", &grpc, 1, c),
        ("http", &http, 10, c),
        ("http", &http, 500, 8),
    ];
    for (api, route, per_request, concurrency) in plan {
        let name = format!("{api} {per_request}/req ×{concurrency}");
        let shape = Shape {
            route,
            per_request,
            concurrency,
        };
        steps.push(shape_step(stack, label, clock, n, &name, shape).await?);
    }
    // The same single-message shape with every request committed alone.
    let ungrouped = [
        ("HERALD_PRODUCER_GROUP_MAX", "1"),
        ("HERALD_PRODUCER_COMMITS_IN_FLIGHT", "256"),
    ];
    stack.restart_producer_with(&ungrouped).await?;
    let shape = Shape {
        route: &http,
        per_request: 1,
        concurrency: c,
    };
    let name = format!("http 1/req ×{c}, ungrouped");
    let alone = shape_step(stack, label, clock, n, &name, shape).await;
    stack
        .restart_producer_with(&ungrouped.map(|(k, _)| (k, "")))
        .await?;
    steps.push(alone?);
    Ok(steps)
}

/// The `templates` steps: inline bodies, then the same content (subject and
/// text, as the demo's emails have) from a template, for each of two
/// request shapes.
async fn templates(
    args: &BenchArgs,
    stack: &mut Stack,
    label: &str,
    clock: Clock,
) -> anyhow::Result<Vec<Step>> {
    let n = args.messages.max(1);
    let http = Route::Http(stack.client.clone());
    let template = stack
        .client
        .create_template(&herald_api::NewTemplate {
            name: run_id("template"),
            channel: herald_domain::Channel::Email,
            parts: herald_api::TemplateBody {
                subject: Some("Herald demo {{ run }} #{{ n }}".into()),
                text: Some(
                    "Hello {{ user }}, this is message {{ n }} of Herald demo run {{ run }}."
                        .into(),
                ),
                ..Default::default()
            },
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating the bench's template: {e}"))?;
    let mut steps = Vec::new();
    for (per_request, concurrency) in [(1, args.shape_concurrency.max(1)), (500, 8)] {
        let shape = || Shape {
            route: &http,
            per_request,
            concurrency,
        };
        let name = format!("http {per_request}/req ×{concurrency}, inline");
        steps.push(shape_step(stack, label, clock, n, &name, shape()).await?);
        let run = run_id("template");
        let messages = demo_messages(&run, n, 0)
            .into_iter()
            .enumerate()
            .map(|(i, m)| SendMessage {
                subject: None,
                text: None,
                html: None,
                template_id: Some(template.id.to_string()),
                variables: Some(
                    [
                        ("run".to_owned(), run.clone()),
                        ("n".to_owned(), (i + 1).to_string()),
                        ("user".to_owned(), format!("user{}", i + 1)),
                    ]
                    .into(),
                ),
                ..m
            })
            .collect();
        let name = format!("http {per_request}/req ×{concurrency}, template");
        steps.push(
            closed_loop_as(
                stack,
                label,
                &name,
                Scenario::Templates,
                messages,
                0,
                clock,
                shape(),
            )
            .await?,
        );
    }
    Ok(steps)
}

fn run_id(what: &str) -> String {
    format!("bench-{what}-{}", &Uuid::new_v4().simple().to_string()[..8])
}

/// Sets the simulator's latency and failure shares on both channels.
async fn behave(
    stack: &Stack,
    latency_ms: u64,
    fail_rate: f64,
    reject_rate: f64,
) -> anyhow::Result<()> {
    let patch = sim::BehaviourPatch {
        smtp: Some(sim::SmtpPatch {
            latency_ms: Some(latency_ms),
            fail_rate: Some(fail_rate),
            reject_rate: Some(reject_rate),
            refuse_every: None,
        }),
        wework: Some(sim::WeworkPatch {
            latency_ms: Some(latency_ms),
            fail_rate: Some(fail_rate),
            rate_limit_rate: Some(0.0),
            rate_limit_per_sec: None,
        }),
        webhook: None,
    };
    sim::configure(&stack.sim_url, &patch).await?;
    Ok(())
}

/// A burst: every message posted as fast as the producer takes them.
async fn closed_loop(
    stack: &mut Stack,
    label: &str,
    name: &str,
    scenario: Scenario,
    messages: Vec<SendMessage>,
    latency_ms: u64,
    clock: Clock,
) -> anyhow::Result<Step> {
    let route = Route::Http(stack.client.clone());
    let shape = Shape {
        route: &route,
        per_request: 500,
        concurrency: 8,
    };
    closed_loop_as(
        stack, label, name, scenario, messages, latency_ms, clock, shape,
    )
    .await
}

/// How a closed loop's requests go out.
#[derive(Clone, Copy)]
struct Shape<'a> {
    route: &'a Route,
    per_request: usize,
    concurrency: usize,
}

/// A burst in `shape`.
#[allow(clippy::too_many_arguments)]
async fn closed_loop_as(
    stack: &mut Stack,
    label: &str,
    name: &str,
    scenario: Scenario,
    messages: Vec<SendMessage>,
    latency_ms: u64,
    clock: Clock,
    shape: Shape<'_>,
) -> anyhow::Result<Step> {
    let before = Before::take(stack).await?;
    let total = messages.len();
    let mut bar = Bar::new(format!("{label} {name}"));
    let outcome = enqueue_by(
        shape.route,
        messages,
        shape.per_request,
        shape.concurrency,
        |done, total| bar.show("enqueued", done as u64, total as u64),
    )
    .await?;
    anyhow::ensure!(
        outcome.ids.len() == total,
        "{name}: only {} of {total} messages were accepted: {:?}",
        outcome.ids.len(),
        outcome.errors.first()
    );
    let rate = outcome.rate();
    finish(
        stack,
        &mut bar,
        name,
        scenario,
        outcome.ids,
        rate,
        latency_ms,
        before,
        clock,
    )
    .await
}

/// An open loop: requests of `per_request` messages posted on schedule at
/// `rate` messages per second, whether or not earlier ones were answered.
#[allow(clippy::too_many_arguments)]
async fn open_loop(
    stack: &mut Stack,
    label: &str,
    name: &str,
    messages: Vec<SendMessage>,
    rate: u32,
    per_request: usize,
    clock: Clock,
) -> anyhow::Result<Step> {
    let before = Before::take(stack).await?;
    let mut bar = Bar::new(format!("{label} {name}"));
    let total = messages.len() as u64;
    let accepted: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(
        per_request as f64 / f64::from(rate.max(1)),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, chunk) in messages.chunks(per_request).enumerate() {
        tick.tick().await;
        let (client, accepted, chunk) = (stack.client.clone(), accepted.clone(), chunk.to_vec());
        tasks.spawn(async move {
            let ids = crate::enqueue::send_chunk(&client, &chunk).await?;
            accepted.lock().await.extend(ids);
            anyhow::Ok(())
        });
        if i % 20 == 0 {
            bar.show("enqueued", (i * per_request) as u64, total);
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.context("an enqueue task")??;
    }
    let enqueue_rate = total as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let ids = accepted.lock().await.clone();
    finish(
        stack,
        &mut bar,
        name,
        Scenario::Steady,
        ids,
        enqueue_rate,
        0,
        before,
        clock,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    stack: &mut Stack,
    bar: &mut Bar,
    name: &str,
    scenario: Scenario,
    ids: Vec<Uuid>,
    enqueue_rate: f64,
    latency_ms: u64,
    before: Before,
    clock: Clock,
) -> anyhow::Result<Step> {
    let total = ids.len() as u64;
    let waited = wait::wait_final(
        &stack.db,
        &ids,
        Duration::from_secs(clock.timeout_secs),
        |c, _| bar.show("final", c.final_total(), total),
    )
    .await?;
    bar.done();
    let records = wait::records(&stack.db, &ids).await?;
    let cpu_s = cpu::since(&cpu::snapshot(), &before.cpu);
    let after = sim::fetch(&stack.sim_url).await?;
    let delta = after.since(&before.sim);
    let counts = &waited.counts;
    let (sent, failed, in_doubt) = (counts.sent(), counts.failed(), counts.in_doubt());
    let reached = delta.smtp.unique + delta.wework.unique;
    let unfinished = total.saturating_sub(counts.final_total());
    let lost = total.saturating_sub(failed + in_doubt + reached.min(sent) + unfinished);
    let throughput = crate::report::sent_span(&records).map_or(0.0, |(first, last)| {
        sent as f64 / ((last - first).num_microseconds().unwrap_or(1) as f64 / 1e6).max(1e-3)
    });
    let rss = |p: &crate::chaos::cluster::Process| p.pid().and_then(peak_rss_mib);
    let worker_rss = stack
        .workers
        .iter()
        .filter_map(rss)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    Ok(Step {
        name: name.to_owned(),
        scenario,
        workers: stack.workers.len(),
        provider_latency_ms: latency_ms,
        accepted: total,
        sent,
        failed,
        in_doubt,
        lost,
        unfinished,
        duplicates: delta.smtp.duplicates + delta.wework.duplicates,
        throughput,
        enqueue_rate,
        latency: LatencyStats::from_records(&records),
        ratio_to_ceiling: None,
        producer_rss_mib: rss(&stack.producer),
        worker_rss_mib: worker_rss,
        timed_out: waited.timed_out,
        cpu_s,
        series: series(&records, clock.began),
    })
}

/// When the run began, and how long a step may wait for its messages.
#[derive(Debug, Clone, Copy)]
struct Clock {
    began: Instant,
    timeout_secs: u64,
}

/// What a step compares its end with.
struct Before {
    sim: sim::SimStats,
    cpu: std::collections::BTreeMap<&'static str, f64>,
}

impl Before {
    async fn take(stack: &Stack) -> anyhow::Result<Before> {
        Ok(Before {
            sim: sim::fetch(&stack.sim_url).await?,
            cpu: cpu::snapshot(),
        })
    }
}

/// Sends per second and their p99 latency, per second of the run.
fn series(records: &[Record], began: Instant) -> Vec<Point> {
    let now = Utc::now();
    let run_start = now - chrono::Duration::from_std(began.elapsed()).unwrap_or_default();
    let mut buckets: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for r in records {
        if let (Some(sent), true) = (r.sent_at, crate::report::is_sent(&r.status)) {
            let second = (sent - run_start).num_seconds();
            let micros = (sent - r.created_at).num_microseconds().unwrap_or(0);
            buckets.entry(second).or_default().push(micros);
        }
    }
    buckets
        .into_iter()
        .map(|(second, latencies)| Point {
            t_s: second as f64,
            sent_per_s: latencies.len() as f64,
            p99_ms: LatencyStats::from_micros(latencies).map_or(0.0, |l| l.p99_ms),
        })
        .collect()
}

/// The peak resident set of a process (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A progress bar on stderr (a line every 5 s when it is not a terminal).
struct Bar {
    label: String,
    tty: bool,
    last: Option<Instant>,
}

impl Bar {
    fn new(label: String) -> Bar {
        use std::io::IsTerminal;
        Bar {
            label,
            tty: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    fn show(&mut self, what: &str, done: u64, total: u64) {
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
        if !self.tty && !due {
            return;
        }
        self.last = Some(Instant::now());
        let width = 30usize;
        let filled = if total == 0 {
            width
        } else {
            ((done as f64 / total as f64) * width as f64) as usize
        }
        .min(width);
        let line = format!(
            "{} [{}{}] {done}/{total} {what}",
            self.label,
            "#".repeat(filled),
            "-".repeat(width - filled)
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn done(&mut self) {
        if self.tty {
            eprintln!();
        }
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"))
}

/// CPU seconds of Herald's own three services during `step`.
fn herald_cpu_s(step: &Step) -> f64 {
    ["producer", "scheduler", "workers"]
        .iter()
        .filter_map(|c| step.cpu_s.get(*c))
        .sum()
}

/// `cpu_s` per message sent in `step`, in µs.
fn per_send_us(step: &Step, cpu_s: f64) -> f64 {
    cpu_s * 1e6 / step.sent.max(1) as f64
}

/// The report as an aligned table.
pub fn table(report: &BenchReport) -> String {
    let mut out = String::new();
    if let Some(c) = report.ceiling_per_s {
        out.push_str(&format!("bare broker ceiling (2 hops): {c:.0} msg/s\n"));
    }
    out.push_str(&format!(
        "{:<32} {:>3} {:>7} {:>7} {:>5} {:>4} {:>7} {:>6} {:>6} {:>6} {:>6} {:>7} {:>6} {:>6}\n",
        "STEP",
        "WRK",
        "ACCEPT",
        "SENT",
        "LOST",
        "DUP",
        "MSG/S",
        "×CEIL",
        "P50",
        "P90",
        "P99",
        "P99.9",
        "RSS-P",
        "RSS-W"
    ));
    for s in &report.steps {
        let l = s.latency;
        out.push_str(&format!(
            "{:<32} {:>3} {:>7} {:>7} {:>5} {:>4} {:>7.0} {:>6} {:>6} {:>6} {:>6} {:>7} {:>6} {:>6}{}\n",
            s.name,
            s.workers,
            s.accepted,
            s.sent,
            s.lost,
            s.duplicates,
            s.throughput,
            s.ratio_to_ceiling
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
            ms(l.map(|l| l.p50_ms)),
            ms(l.map(|l| l.p90_ms)),
            ms(l.map(|l| l.p99_ms)),
            ms(l.map(|l| l.p999_ms)),
            ms(s.producer_rss_mib),
            ms(s.worker_rss_mib),
            if s.timed_out {
                format!("  ({} unfinished when the step's time ran out)", s.unfinished)
            } else {
                String::new()
            }
        ));
    }
    out.push_str("latencies: enqueue→send in ms; RSS: peak MiB of the producer (P) and of the largest worker (W)\n");
    out.push_str(&callbacks::table(&report.callbacks));
    out.push_str(&webhooks::table(&report.webhooks));
    let components: std::collections::BTreeSet<&String> =
        report.steps.iter().flat_map(|s| s.cpu_s.keys()).collect();
    if !components.is_empty() {
        out.push_str(&format!("\nCPU seconds per step\n{:<32}", "STEP"));
        for c in &components {
            out.push_str(&format!(" {:>9}", c));
        }
        out.push('\n');
        for s in &report.steps {
            out.push_str(&format!("{:<32}", s.name));
            for c in &components {
                out.push_str(&format!(
                    " {:>9.1}",
                    s.cpu_s.get(*c).copied().unwrap_or(0.0)
                ));
            }
            out.push('\n');
        }
        out.push_str(&format!("\nCPU µs per send\n{:<32}", "STEP"));
        for c in &components {
            out.push_str(&format!(" {:>9}", c));
        }
        out.push_str(&format!(" {:>9}\n", "herald"));
        for s in &report.steps {
            out.push_str(&format!("{:<32}", s.name));
            for c in &components {
                out.push_str(&format!(
                    " {:>9.0}",
                    per_send_us(s, s.cpu_s.get(*c).copied().unwrap_or(0.0))
                ));
            }
            out.push_str(&format!(" {:>9.0}\n", per_send_us(s, herald_cpu_s(s))));
        }
        out.push_str("herald: producer + scheduler + workers\n");
    }
    out
}
