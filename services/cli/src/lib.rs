//! `herald`, the operator's command line. It talks to a running producer's
//! admin API: the address and the admin token come from flags or from
//! `HERALD_PRODUCER_URL` and `HERALD_ADMIN_TOKEN`. Output is a short human
//! summary, or the API's JSON with `--json`.
//!
//! - [`client`]: the admin API, with errors that say what to do.
//! - the commands: `dead-letters replay` so far.

pub mod client;

use std::io::Write;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};

use crate::client::Admin;

#[derive(Debug, Parser)]
#[command(name = "herald", version, about = "Operate a running Herald")]
pub struct Cli {
    /// The producer's base URL.
    #[arg(
        long,
        global = true,
        env = "HERALD_PRODUCER_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub producer_url: String,
    /// The admin API's bearer token (the producer's HERALD_ADMIN_TOKEN).
    #[arg(
        long,
        global = true,
        env = "HERALD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Print the API's JSON instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The dead-letter queue.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLetters),
}

#[derive(Debug, Subcommand)]
pub enum DeadLetters {
    /// Send dead letters back to the scheduler (attempts reset), filtered by
    /// tenant, provider and reason; the others stay in the queue.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Only this tenant's messages (its id).
    #[arg(long)]
    pub tenant: Option<uuid::Uuid>,
    /// Only messages last assigned to this provider (its id).
    #[arg(long)]
    pub provider: Option<uuid::Uuid>,
    /// Only this reason code (e.g. `smtp_550`, `in_doubt`, `wework_81013`).
    #[arg(long)]
    pub reason: Option<String>,
    /// Dead letters to read at most (1 to 100,000).
    #[arg(long, default_value_t = 1_000)]
    pub limit: u64,
}

/// Runs one command, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut impl Write) -> anyhow::Result<()> {
    let admin = Admin::new(&cli.producer_url, cli.admin_token.as_deref())?;
    match cli.command {
        Command::DeadLetters(DeadLetters::Replay(args)) => {
            let mut body = Map::new();
            if let Some(t) = args.tenant {
                body.insert("tenant_id".into(), json!(t));
            }
            if let Some(p) = args.provider {
                body.insert("provider_id".into(), json!(p));
            }
            if let Some(r) = &args.reason {
                body.insert("reason".into(), json!(r));
            }
            body.insert("limit".into(), json!(args.limit));
            let report = admin
                .post("/v1/admin/dead-letters/replay", &Value::Object(body))
                .await?;
            if cli.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                let n = |k: &str| report[k].as_u64().unwrap_or(0);
                writeln!(
                    out,
                    "Read {} dead letter(s): replayed {}, kept {}.",
                    n("scanned"),
                    n("replayed"),
                    n("kept")
                )?;
            }
        }
    }
    Ok(())
}
