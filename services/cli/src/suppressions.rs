//! `herald suppressions list|add|remove`: one tenant's suppression list,
//! with that tenant's API key (`--api-key` or `HERALD_API_KEY`). An email to
//! a suppressed address is accepted and recorded `suppressed`, never sent.

use std::io::Write;

use clap::Subcommand;
use herald_api::{ChosenReason, NewSuppression, Suppression, SuppressionReason};

use crate::client::Explain;
use crate::table::{opt, time, Table};

#[derive(Debug, Subcommand)]
pub enum Suppressions {
    /// Every suppressed address, in address order.
    List,
    /// Suppress an address (reason `manual`, or `--unsubscribe`).
    Add {
        address: String,
        /// Record it as the recipient's unsubscribe, not the tenant's choice.
        #[arg(long)]
        unsubscribe: bool,
    },
    /// Send to an address again.
    Remove { address: String },
}

fn reason(r: SuppressionReason) -> &'static str {
    r.as_str()
}

fn show(
    cx: &crate::Context,
    s: &Suppression,
    added: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if cx.json(out, s)? {
        return Ok(());
    }
    writeln!(out, "{added} {} ({})", s.address, reason(s.reason))?;
    Ok(())
}

/// Runs one command with the tenant's key (`cx` was made with it).
pub async fn run(
    cx: &crate::Context,
    cmd: Suppressions,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let admin = &cx.admin;
    match cmd {
        Suppressions::List => {
            let all = admin.api.suppressions().await.explained(admin)?;
            if cx.json(out, &all)? {
                return Ok(());
            }
            let mut table = Table::new(&["ADDRESS", "REASON", "MESSAGE", "SINCE"]);
            for s in all {
                table.row(vec![
                    s.address,
                    reason(s.reason).to_owned(),
                    opt(s.message_id),
                    time(s.created_at),
                ]);
            }
            table.write(out)?;
            Ok(())
        }
        Suppressions::Add {
            address,
            unsubscribe,
        } => {
            let s = admin
                .api
                .add_suppression(&NewSuppression {
                    address,
                    reason: Some(if unsubscribe {
                        ChosenReason::Unsubscribe
                    } else {
                        ChosenReason::Manual
                    }),
                })
                .await
                .explained(admin)?;
            show(cx, &s, "suppressed", out)
        }
        Suppressions::Remove { address } => {
            admin
                .api
                .remove_suppression(&address)
                .await
                .explained(admin)?;
            if !cx.json {
                writeln!(out, "removed {address}: it is sent to again")?;
            }
            Ok(())
        }
    }
}
