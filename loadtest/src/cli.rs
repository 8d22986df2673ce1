//! Command-line flags (each with an environment fallback where one exists).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "herald-loadtest",
    version,
    about = "Herald's load generator and demo driver"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register the simulator's providers, send a burst of email, WeWork and
    /// webhook messages, wait until all are final and print a report.
    Demo(DemoArgs),
    /// Fairness under a backlog: one tenant queues a large backlog, then a
    /// second tenant sends a message at a steady pace while it drains; the
    /// report gives the small tenant's enqueue→sent percentiles.
    Fairness(FairnessArgs),
    /// Faults during a run, on private RabbitMQ, Redis and PostgreSQL
    /// instances it starts itself: kill -9 and restart every Herald process,
    /// restart the three services; report accepted, sent, lost, duplicates
    /// and recovery times. Exit 1 on any loss.
    Chaos(crate::chaos::ChaosArgs),
    /// The bare broker's ceiling: persistent messages published with
    /// confirms to one queue, relayed to a second with confirms, consumed
    /// with acks — the two hops of a Herald send with nothing else.
    Ceiling(CeilingArgs),
    /// Throughput and latency scenarios on private RabbitMQ, Redis and
    /// PostgreSQL instances: the bare broker's ceiling, a closed-loop
    /// maximum, an open-loop rate, provider latencies, 1 → 2 → 4 workers
    /// and failure mixes. Prints a table; writes bench.json and bench.svg.
    Bench(crate::bench::BenchArgs),
}

/// The running system a command drives.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The producer's base URL.
    #[arg(
        long,
        env = "HERALD_PRODUCER_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub producer_url: String,

    /// Bearer token of the admin API (the producer's HERALD_ADMIN_TOKEN).
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,

    /// The simulator's HTTP base URL (WeWork API, webhook receiver and
    /// /sim/stats).
    #[arg(long, env = "HERALD_SIM_URL", default_value = "http://127.0.0.1:8090")]
    pub sim_url: String,

    /// PostgreSQL, read directly to follow the records.
    #[arg(
        long,
        env = "HERALD_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/herald",
        hide_env_values = true
    )]
    pub database_url: String,

    /// The simulator's CA certificate (its `--cert-dir`/ca.pem), given to the
    /// SMTP provider so STARTTLS verifies. Without it the provider accepts
    /// any certificate (test servers only).
    #[arg(long, env = "HERALD_SIM_CA_FILE")]
    pub sim_ca_file: Option<PathBuf>,

    /// The simulator's SMTP host, as the workers reach it.
    #[arg(long, env = "HERALD_SIM_SMTP_HOST", default_value = "127.0.0.1")]
    pub sim_smtp_host: String,

    /// The simulator's SMTP port (STARTTLS), as the workers reach it.
    #[arg(long, env = "HERALD_SIM_SMTP_PORT", default_value_t = 2525)]
    pub sim_smtp_port: u16,

    /// The simulator's WeWork base URL as the workers reach it (defaults to
    /// `--sim-url`).
    #[arg(long, env = "HERALD_SIM_WEWORK_URL")]
    pub sim_wework_url: Option<String>,

    /// The secret the simulator checks webhook signatures with (its own
    /// HERALD_SIM_WEBHOOK_SECRET), given to the webhook provider.
    #[arg(
        long,
        env = "HERALD_SIM_WEBHOOK_SECRET",
        default_value = crate::sim::DEFAULT_WEBHOOK_SECRET,
        hide_env_values = true
    )]
    pub sim_webhook_secret: String,
}

impl Target {
    pub fn wework_base_url(&self) -> &str {
        self.sim_wework_url.as_deref().unwrap_or(&self.sim_url)
    }
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub target: Target,

    /// Email messages to send.
    #[arg(long, env = "HERALD_DEMO_EMAILS", default_value_t = 3000)]
    pub emails: usize,

    /// WeWork messages to send.
    #[arg(long, env = "HERALD_DEMO_WEWORK", default_value_t = 500)]
    pub wework: usize,

    /// Webhook messages to send (to the simulator's `/webhook/demo`).
    #[arg(long, env = "HERALD_DEMO_WEBHOOKS", default_value_t = 500)]
    pub webhooks: usize,

    /// Messages per `POST /v1/messages/batch` request (at most 1000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub chunk_size: u16,

    /// Batch requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Seconds to wait for every message to reach a final status.
    #[arg(long, env = "HERALD_DEMO_TIMEOUT_SECS", default_value_t = 300)]
    pub timeout_secs: u64,

    /// Where the services' logs are, as shown in the hints at the end.
    #[arg(
        long,
        env = "HERALD_LOGS_HINT",
        default_value = "tail -f .herald/logs/*.log"
    )]
    pub logs: String,

    /// Print the summary as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,

    /// Before the burst, measure the bare broker's two-hop ceiling with as
    /// many messages, and report Herald's throughput as a ratio of it.
    #[arg(long)]
    pub ceiling: bool,

    /// Message size for the ceiling, in bytes (about a job envelope's).
    #[arg(long, default_value_t = 512)]
    pub ceiling_size: usize,

    #[command(flatten)]
    pub broker: Broker,
}

/// RabbitMQ, for the ceiling.
#[derive(Debug, Clone, Args)]
pub struct Broker {
    /// RabbitMQ URL.
    #[arg(
        long,
        env = "HERALD_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct CeilingArgs {
    #[command(flatten)]
    pub broker: Broker,
    /// Prefix of the two temporary queues.
    #[arg(long, env = "HERALD_NAMESPACE", default_value = "herald")]
    pub namespace: String,
    /// Messages to carry.
    #[arg(long, default_value_t = 20_000)]
    pub messages: u64,
    /// Message size in bytes.
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct FairnessArgs {
    #[command(flatten)]
    pub target: Target,

    /// Messages the big tenant queues first.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog: usize,

    /// Messages the small tenant sends while the backlog drains.
    #[arg(long, default_value_t = 200)]
    pub small: usize,

    /// Milliseconds between the small tenant's messages.
    #[arg(long, default_value_t = 100)]
    pub small_every_ms: u64,

    /// Messages per backlog batch request (at most 1000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub chunk_size: u16,

    /// Backlog batch requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Seconds to wait for the small tenant's messages to be sent.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,

    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_demo_takes_a_webhook_count_and_the_simulators_secret() {
        let cli = Cli::try_parse_from([
            "herald-loadtest",
            "demo",
            "--admin-token",
            "t",
            "--webhooks",
            "7",
            "--sim-webhook-secret",
            "whsec_0123456789abcdef",
        ])
        .expect("parses");
        let Command::Demo(args) = cli.command else {
            panic!("not the demo: {:?}", cli.command);
        };
        assert_eq!(args.webhooks, 7);
        assert_eq!(args.target.sim_webhook_secret, "whsec_0123456789abcdef");
    }
}
