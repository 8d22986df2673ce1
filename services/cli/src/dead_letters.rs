//! `herald dead-letters replay`.

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

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
    let report = cx
        .admin
        .post("/v1/admin/dead-letters/replay", &Value::Object(body))
        .await?;
    if !cx.json(out, &report)? {
        let n = |k: &str| report[k].as_u64().unwrap_or(0);
        writeln!(
            out,
            "Read {} dead letter(s): replayed {}, kept {}.",
            n("scanned"),
            n("replayed"),
            n("kept")
        )?;
    }
    Ok(())
}
