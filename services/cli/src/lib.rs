//! `herald`, the operator's command line. It talks to a running producer's
//! admin API: the address and the admin token come from flags or from
//! `HERALD_PRODUCER_URL` and `HERALD_ADMIN_TOKEN`. Output is an aligned
//! table or summary, or the API's JSON with `--json`. Secrets never appear,
//! except a new API key once, on `keys create`.
//!
//! - [`client`]: the admin API, with errors that say what to do.
//! - [`table`]: the human output (tables and `KEY  value` listings).
//! - the commands, one file each: [`tenants`] (create, list, disable,
//!   enable), [`keys`] (create, revoke), [`providers`] (add, list, show with
//!   its score, enable, disable), [`messages`] (status of any tenant's
//!   message), [`queues`] (depths) and [`dead_letters`] (replay); and
//!   [`templates`], [`suppressions`] and [`webhooks`], a tenant's
//!   templates, suppression list and webhook, with that tenant's API key.
//!
//! [`run`] executes one parsed command and writes to any `Write`, so tests
//! capture what an operator would see.

pub mod client;
pub mod dead_letters;
pub mod keys;
pub mod messages;
pub mod providers;
pub mod queues;
pub mod suppressions;
pub mod table;
pub mod templates;
pub mod tenants;
pub mod webhooks;

use std::io::Write;

use clap::{Parser, Subcommand};

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
    /// A tenant's API key, for `herald templates` (templates belong to a
    /// tenant).
    #[arg(long, global = true, env = "HERALD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print the API's JSON (pretty) instead of a table or summary.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tenants: the senders, each with its own queues and API keys.
    #[command(subcommand)]
    Tenants(tenants::Tenants),
    /// A tenant's API keys.
    #[command(subcommand)]
    Keys(keys::Keys),
    /// Providers: SMTP accounts, WeWork apps and webhook senders.
    #[command(subcommand)]
    Providers(providers::Providers),
    /// Message records, of any tenant.
    #[command(subcommand)]
    Messages(messages::Messages),
    /// Every queue of the deployment with its depth and consumers.
    Queues,
    /// The dead-letter queue.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(dead_letters::DeadLetters),
    /// A tenant's message templates (with the tenant's API key).
    #[command(subcommand)]
    Templates(templates::Templates),
    /// A tenant's suppressed addresses (with the tenant's API key).
    #[command(subcommand)]
    Suppressions(suppressions::Suppressions),
    /// A tenant's webhook: secret, delivery log, resend (with the
    /// tenant's API key).
    #[command(subcommand)]
    Webhooks(webhooks::Webhooks),
}

/// What every command needs: the API and how to print.
pub struct Context {
    pub admin: Admin,
    pub json: bool,
}

impl Context {
    /// Prints `value` as pretty JSON when `--json` was given; `false`
    /// otherwise, for the caller to print its human form.
    pub fn json(
        &self,
        out: &mut impl Write,
        value: &impl serde::Serialize,
    ) -> anyhow::Result<bool> {
        if self.json {
            writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
        }
        Ok(self.json)
    }
}

/// Runs one command, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut impl Write) -> anyhow::Result<()> {
    // Templates, suppressions and webhooks belong to a tenant: its API key, not
    // the admin token.
    let admin = match cli.command {
        Command::Templates(_) | Command::Suppressions(_) | Command::Webhooks(_) => {
            Admin::for_tenant(&cli.producer_url, cli.api_key.as_deref())?
        }
        _ => Admin::new(&cli.producer_url, cli.admin_token.as_deref())?,
    };
    let cx = Context {
        admin,
        json: cli.json,
    };
    match cli.command {
        Command::Tenants(cmd) => tenants::run(&cx, cmd, out).await,
        Command::Keys(cmd) => keys::run(&cx, cmd, out).await,
        Command::Providers(cmd) => providers::run(&cx, cmd, out).await,
        Command::Messages(cmd) => messages::run(&cx, cmd, out).await,
        Command::Queues => queues::run(&cx, out).await,
        Command::DeadLetters(cmd) => dead_letters::run(&cx, cmd, out).await,
        Command::Templates(cmd) => templates::run(&cx, cmd, out).await,
        Command::Suppressions(cmd) => suppressions::run(&cx, cmd, out).await,
        Command::Webhooks(cmd) => webhooks::run(&cx, cmd, out).await,
    }
}
