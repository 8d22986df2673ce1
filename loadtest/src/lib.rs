//! Herald's load generator and demo driver.
//!
//! `herald-loadtest demo` sets up a tenant and the simulator's providers
//! through the admin API, enqueues a burst of email and WeWork messages,
//! waits until every record is final (reading PostgreSQL directly), and
//! reports throughput, latency percentiles, losses and duplicates.
//!
//! `herald-loadtest fairness` queues a large backlog for one tenant and
//! measures another tenant's enqueue→sent latency while it drains.
//!
//! `herald-loadtest chaos` runs Herald on private RabbitMQ, Redis and
//! PostgreSQL instances, kills and restarts every part while it sends, and
//! reports losses and duplicates.
//!
//! Modules by role: [`cli`] (flags); the producer's HTTP API is
//! [`herald_api::Client`] with the contract's types;
//! [`setup`] (tenant, key, providers), [`enqueue`] (the send burst),
//! [`wait`] (polling the records), [`sim`] (the simulator's counters),
//! [`report`] (the summary and its math) and [`demo`] (the whole run).

pub mod bench;
pub mod ceiling;
pub mod chaos;
pub mod cli;
pub mod demo;
pub mod enqueue;
pub mod fairness;
pub mod report;
pub mod setup;
pub mod sim;
pub mod stack;
pub mod wait;

use std::process::ExitCode;

/// Runs one command; the exit code tells whether the run was clean.
pub async fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        cli::Command::Demo(args) => demo::run(args).await,
        cli::Command::Fairness(args) => fairness::run(args).await,
        cli::Command::Chaos(args) => chaos::command(args).await,
        cli::Command::Bench(args) => bench::command(args).await,
        cli::Command::Ceiling(args) => {
            let c = ceiling::measure(
                &args.broker.amqp_url,
                &args.namespace,
                args.messages,
                args.size,
            )
            .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                println!(
                    "bare RabbitMQ, {} hops: {} messages of {} B in {:.2} s = {:.0} msg/s",
                    c.hops, c.messages, c.size, c.seconds, c.per_second
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
