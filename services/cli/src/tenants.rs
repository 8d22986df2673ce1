//! `herald tenants create|list|disable|enable`.

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::table::{cell, Table};
use crate::Context;

#[derive(Debug, Subcommand)]
pub enum Tenants {
    /// Create a tenant; its user queues are declared at once.
    Create(CreateArgs),
    /// Every tenant.
    List,
    /// Refuse the tenant's API keys (403) until it is enabled again.
    Disable {
        /// The tenant's id.
        id: Uuid,
    },
    /// Accept the tenant's API keys again.
    Enable {
        /// The tenant's id.
        id: Uuid,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Short unique code: 1 to 64 of a-z 0-9 - _.
    #[arg(long)]
    pub code: String,
    /// Display name.
    #[arg(long)]
    pub name: String,
    /// Share of the scheduler's attention against other tenants (1 to 1000, default 1).
    #[arg(long)]
    pub weight: Option<u32>,
    /// Messages a day at most (absent: unlimited).
    #[arg(long)]
    pub daily_quota: Option<u64>,
    /// Messages a second at most (absent: unlimited).
    #[arg(long)]
    pub rate_limit_per_sec: Option<u32>,
    /// Where the tenant's status webhooks go (https).
    #[arg(long)]
    pub webhook_url: Option<String>,
}

/// The tenants as a table, in the API's order.
pub fn table(tenants: &[Value]) -> Table {
    let mut t = Table::new(&[
        "ID",
        "CODE",
        "NAME",
        "STATUS",
        "WEIGHT",
        "DAILY_QUOTA",
        "RATE_LIMIT",
        "WEBHOOK_URL",
    ])
    .right("WEIGHT")
    .right("DAILY_QUOTA")
    .right("RATE_LIMIT");
    for x in tenants {
        let rate = match &x["rate_limit_per_sec"] {
            Value::Null => String::new(),
            n => format!("{n}/s"),
        };
        t.row(vec![
            cell(&x["id"]),
            cell(&x["code"]),
            cell(&x["name"]),
            cell(&x["status"]),
            cell(&x["weight"]),
            cell(&x["daily_quota"]),
            rate,
            cell(&x["webhook_url"]),
        ]);
    }
    t
}

pub async fn run(cx: &Context, cmd: Tenants, out: &mut impl Write) -> anyhow::Result<()> {
    match cmd {
        Tenants::Create(args) => {
            let mut body = Map::new();
            body.insert("code".into(), json!(args.code));
            body.insert("name".into(), json!(args.name));
            let optional = [
                ("weight", args.weight.map(|n| json!(n))),
                ("daily_quota", args.daily_quota.map(|n| json!(n))),
                (
                    "rate_limit_per_sec",
                    args.rate_limit_per_sec.map(|n| json!(n)),
                ),
                ("webhook_url", args.webhook_url.map(|u| json!(u))),
            ];
            for (key, value) in optional {
                if let Some(v) = value {
                    body.insert(key.into(), v);
                }
            }
            let tenant = cx
                .admin
                .post("/v1/admin/tenants", &Value::Object(body))
                .await?;
            if !cx.json(out, &tenant)? {
                table(std::slice::from_ref(&tenant)).write(out)?;
            }
        }
        Tenants::List => {
            let list = cx.admin.list_all("/v1/admin/tenants").await?;
            if !cx.json(out, &list)? {
                table(list["items"].as_array().map_or(&[], Vec::as_slice)).write(out)?;
            }
        }
        Tenants::Disable { id } => set_status(cx, id, "disable", out).await?,
        Tenants::Enable { id } => set_status(cx, id, "enable", out).await?,
    }
    Ok(())
}

async fn set_status(
    cx: &Context,
    id: Uuid,
    verb: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let tenant = cx
        .admin
        .post(&format!("/v1/admin/tenants/{id}/{verb}"), &json!({}))
        .await?;
    if !cx.json(out, &tenant)? {
        writeln!(
            out,
            "Tenant {} ({id}) is {}.",
            cell(&tenant["code"]),
            cell(&tenant["status"])
        )?;
        if verb == "disable" {
            writeln!(
                out,
                "Its API keys are refused within 10 s (producers cache key lookups that long)."
            )?;
        }
    }
    Ok(())
}
