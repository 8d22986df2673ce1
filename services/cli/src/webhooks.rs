//! `herald webhooks show|secret|deliveries|resend`: one tenant's webhook,
//! with that tenant's API key (`--api-key` or `HERALD_API_KEY`). The admin
//! sets its URL and events (`herald tenants update --webhook-url …
//! --webhook-events …`); the tenant makes its signing secret and reads the
//! delivery log.

use std::io::Write;

use clap::{Args, Subcommand};
use herald_api::WebhookDelivery;

use crate::client::Explain;
use crate::table::{opt, time, Table};

#[derive(Debug, Subcommand)]
pub enum Webhooks {
    /// Where events go, which events, and when the secret was made.
    Show,
    /// Make a new signing secret and print it (shown only now); the
    /// previous one keeps signing beside it for 24 hours.
    Secret,
    /// The delivery log, newest first.
    Deliveries(DeliveryArgs),
    /// Post a delivery again now (same event id).
    Resend { id: uuid::Uuid },
}

#[derive(Debug, Args)]
pub struct DeliveryArgs {
    /// pending, delivered or failed.
    #[arg(long)]
    pub state: Option<String>,
    /// One event (sent, delivered, bounced, …).
    #[arg(long)]
    pub event: Option<String>,
    #[arg(long)]
    pub message_id: Option<uuid::Uuid>,
}

impl DeliveryArgs {
    fn query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.state {
            parts.push(format!("state={}", herald_api::client::percent_encode(s)));
        }
        if let Some(e) = &self.event {
            parts.push(format!("event={}", herald_api::client::percent_encode(e)));
        }
        if let Some(m) = &self.message_id {
            parts.push(format!("message_id={m}"));
        }
        parts.join("&")
    }
}

fn table(deliveries: &[WebhookDelivery]) -> Table {
    let mut t = Table::new(&[
        "ID", "EVENT", "MESSAGE", "STATE", "ATTEMPTS", "LAST", "NEXT", "ERROR",
    ])
    .right("ATTEMPTS");
    for d in deliveries {
        t.row(vec![
            d.id.to_string(),
            d.event.to_string(),
            d.message_id.to_string(),
            d.state.as_str().to_owned(),
            d.attempts.to_string(),
            opt(d.last_status),
            opt(d.next_attempt_at.map(time)),
            opt(d.last_error.as_deref()),
        ]);
    }
    t
}

/// Runs one command with the tenant's key (`cx` was made with it).
pub async fn run(cx: &crate::Context, cmd: Webhooks, out: &mut impl Write) -> anyhow::Result<()> {
    let admin = &cx.admin;
    match cmd {
        Webhooks::Show => {
            let s = admin.api.webhook().await.explained(admin)?;
            if cx.json(out, &s)? {
                return Ok(());
            }
            let events = s
                .events
                .map(|e| e.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(","));
            writeln!(out, "URL      {}", opt(s.url.as_deref()))?;
            writeln!(
                out,
                "EVENTS   {}",
                events.as_deref().unwrap_or("every event")
            )?;
            writeln!(
                out,
                "SECRET   {}",
                s.secret_created_at
                    .map(|t| format!("made {}", time(t)))
                    .unwrap_or_else(|| "none yet: `herald webhooks secret` makes one".into())
            )?;
        }
        Webhooks::Secret => {
            let s = admin.api.rotate_webhook_secret().await.explained(admin)?;
            if cx.json(out, &s)? {
                return Ok(());
            }
            writeln!(out, "{}", s.secret)?;
            if let Some(until) = s.previous_valid_until {
                writeln!(
                    out,
                    "the previous secret signs beside it until {}",
                    time(until)
                )?;
            }
        }
        Webhooks::Deliveries(args) => {
            let all = admin
                .api
                .webhook_deliveries(&args.query())
                .await
                .explained(admin)?;
            if !cx.json(out, &all)? {
                table(&all).write(out)?;
            }
        }
        Webhooks::Resend { id } => {
            let d = admin
                .api
                .resend_webhook_delivery(id)
                .await
                .explained(admin)?;
            if !cx.json(out, &d)? {
                writeln!(out, "{} ({}) is due again now", d.id, d.event)?;
            }
        }
    }
    Ok(())
}
