//! `herald messages status <id>`: any tenant's message record.

use std::io::Write;

use clap::Subcommand;
use uuid::Uuid;

use crate::table::{cell, pairs};
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
    let m = cx.admin.get(&format!("/v1/admin/messages/{id}")).await?;
    if cx.json(out, &m)? {
        return Ok(());
    }
    let provider = match (m["provider_name"].as_str(), m["provider"].as_str()) {
        (Some(name), Some(id)) => format!("{name} ({id})"),
        (None, Some(id)) => id.to_owned(),
        _ => String::new(),
    };
    let error = match (m["error_code"].as_str(), m["error_message"].as_str()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        (None, Some(message)) => message.to_owned(),
        (None, None) => String::new(),
    };
    let metadata = match m["metadata"].as_object() {
        Some(o) if !o.is_empty() => cell(&m["metadata"]),
        _ => String::new(),
    };
    pairs(
        out,
        &[
            ("ID", cell(&m["id"])),
            ("TENANT", cell(&m["tenant_id"])),
            ("STATUS", cell(&m["status"])),
            ("CHANNEL", cell(&m["channel"])),
            ("TO", cell(&m["to"])),
            ("PROVIDER", provider),
            ("ATTEMPTS", cell(&m["attempts"])),
            ("PRIORITY", cell(&m["priority"])),
            ("BATCH", cell(&m["batch_id"])),
            ("ERROR", error),
            ("METADATA", metadata),
            ("SCHEDULED", cell(&m["scheduled_at"])),
            ("CREATED", cell(&m["created_at"])),
            ("SENT", cell(&m["sent_at"])),
            ("DELIVERED", cell(&m["delivered_at"])),
        ],
    )?;
    Ok(())
}
