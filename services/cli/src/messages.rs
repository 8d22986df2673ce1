//! `herald messages status <id>`: any tenant's message record.

use std::io::Write;

use clap::Subcommand;
use uuid::Uuid;

use crate::client::Explain;
use crate::table::{json, opt, pairs};
use crate::Context;

#[derive(Debug, Subcommand)]
pub enum Messages {
    /// A message's status and record, whichever tenant sent it.
    Status {
        /// The message's id (as `POST /v1/messages` answered it).
        id: Uuid,
    },
}

pub async fn run(cx: &Context, cmd: Messages, out: &mut impl Write) -> anyhow::Result<()> {
    let Messages::Status { id } = cmd;
    let m = cx.admin.api.admin_message(id).await.explained(&cx.admin)?;
    if cx.json(out, &m)? {
        return Ok(());
    }
    let r = &m.record;
    let provider = match (&r.provider_name, r.provider) {
        (Some(name), Some(id)) => format!("{name} ({id})"),
        (None, Some(id)) => id.to_string(),
        _ => String::new(),
    };
    let error = match (&r.error_code, &r.error_message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.clone(),
        (None, Some(message)) => message.clone(),
        (None, None) => String::new(),
    };
    let metadata = if r.metadata.is_empty() {
        String::new()
    } else {
        json(&r.metadata)
    };
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| opt(t.map(crate::table::time));
    pairs(
        out,
        &[
            ("ID", r.id.to_string()),
            ("TENANT", m.tenant_id.to_string()),
            ("STATUS", r.status.to_string()),
            ("CHANNEL", r.channel.to_string()),
            ("TO", r.to.clone()),
            ("PROVIDER", provider),
            ("ATTEMPTS", r.attempts.to_string()),
            ("PRIORITY", r.priority.to_string()),
            ("BATCH", opt(r.batch_id)),
            ("ERROR", error),
            ("METADATA", metadata),
            ("SCHEDULED", time(r.scheduled_at)),
            ("CREATED", time(Some(r.created_at))),
            ("SENT", time(r.sent_at)),
            ("DELIVERED", time(r.delivered_at)),
        ],
    )?;
    Ok(())
}
