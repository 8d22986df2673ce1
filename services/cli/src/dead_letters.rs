//! `herald dead-letters replay`.

use std::io::Write;

use clap::{Args, Subcommand};
use herald_api::ReplayRequest;

use crate::client::Explain;
use crate::Context;

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

pub async fn run(cx: &Context, cmd: DeadLetters, out: &mut impl Write) -> anyhow::Result<()> {
    let DeadLetters::Replay(args) = cmd;
    let request = ReplayRequest {
        tenant_id: args.tenant.map(|t| t.to_string()),
        provider_id: args.provider.map(|p| p.to_string()),
        reason: args.reason,
        limit: Some(i64::try_from(args.limit).unwrap_or(i64::MAX)),
    };
    let report = cx
        .admin
        .api
        .replay_dead_letters(&request)
        .await
        .explained(&cx.admin)?;
    if !cx.json(out, &report)? {
        writeln!(
            out,
            "Read {} dead letter(s): replayed {}, kept {}.",
            report.scanned, report.replayed, report.kept
        )?;
    }
    Ok(())
}
