//! `herald tenants create|list|update|disable|enable`.

use std::io::Write;

use clap::{Args, Subcommand};
use herald_api::{NewTenant, Page, Tenant, TenantPatch};
use herald_domain::Tracking;
use uuid::Uuid;

use crate::client::Explain;
use crate::table::{opt, Table};
use crate::Context;

#[derive(Debug, Subcommand)]
pub enum Tenants {
    /// Create a tenant; its user queues are declared at once.
    Create(CreateArgs),
    /// Every tenant.
    List,
    /// Change a tenant's name, weight, limits or webhook; producers apply
    /// new limits from the next request on.
    Update(UpdateArgs),
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
    /// The events posted, comma-separated (sent,delivered,bounced,…);
    /// absent: every event.
    #[arg(long, value_delimiter = ',')]
    pub webhook_events: Option<Vec<String>>,
    /// Track HTML email: `opens`, `clicks`, `opens,clicks` or `none`.
    #[arg(long, value_parser = parse_tracking)]
    pub tracking: Option<Tracking>,
}

/// `opens`, `clicks`, `opens,clicks` or `none`.
fn parse_tracking(raw: &str) -> Result<Tracking, String> {
    let mut t = Tracking::default();
    for part in raw.split(',').map(str::trim) {
        match part {
            "opens" => t.opens = true,
            "clicks" => t.clicks = true,
            "none" | "" => {}
            other => return Err(format!("{other:?} is not opens, clicks or none")),
        }
    }
    Ok(t)
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The tenant's id.
    pub id: Uuid,
    #[arg(long)]
    pub name: Option<String>,
    /// Share of the scheduler's attention (1 to 1000).
    #[arg(long)]
    pub weight: Option<u32>,
    /// Messages per UTC day at most.
    #[arg(long, conflicts_with = "no_daily_quota")]
    pub daily_quota: Option<u64>,
    /// Remove the daily quota (unlimited).
    #[arg(long)]
    pub no_daily_quota: bool,
    /// Messages per second at most (bursts of as many).
    #[arg(long, conflicts_with = "no_rate_limit")]
    pub rate_limit_per_sec: Option<u32>,
    /// Remove the rate limit (unlimited).
    #[arg(long)]
    pub no_rate_limit: bool,
    /// Where the tenant's status webhooks go (https).
    #[arg(long, conflicts_with = "no_webhook_url")]
    pub webhook_url: Option<String>,
    /// Remove the webhook.
    #[arg(long)]
    pub no_webhook_url: bool,
    /// The events posted, comma-separated (sent,delivered,bounced,…).
    #[arg(long, value_delimiter = ',', conflicts_with = "all_webhook_events")]
    pub webhook_events: Option<Vec<String>>,
    /// Post every event.
    #[arg(long)]
    pub all_webhook_events: bool,
    /// Track HTML email: `opens`, `clicks`, `opens,clicks` or `none`.
    #[arg(long, value_parser = parse_tracking)]
    pub tracking: Option<Tracking>,
}

/// `Some(None)` when `clear`, `Some(v)` when set, `None` to leave it.
fn change<T>(value: Option<T>, clear: bool) -> Option<Option<T>> {
    if clear {
        Some(None)
    } else {
        value.map(Some)
    }
}

/// The tenants as a table, in the API's order.
pub fn table(tenants: &[Tenant]) -> Table {
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
        t.row(vec![
            x.id.to_string(),
            x.code.clone(),
            x.name.clone(),
            x.status.to_string(),
            x.weight.to_string(),
            opt(x.daily_quota),
            opt(x.rate_limit_per_sec.map(|r| format!("{r}/s"))),
            opt(x.webhook_url.as_deref()),
        ]);
    }
    t
}

pub async fn run(cx: &Context, cmd: Tenants, out: &mut impl Write) -> anyhow::Result<()> {
    match cmd {
        Tenants::Create(args) => {
            let request = NewTenant {
                code: args.code,
                name: args.name,
                weight: args.weight.map(i64::from),
                daily_quota: args
                    .daily_quota
                    .map(|q| i64::try_from(q).unwrap_or(i64::MAX)),
                rate_limit_per_sec: args.rate_limit_per_sec.map(i64::from),
                webhook_url: args.webhook_url,
                webhook_events: args.webhook_events,
                tracking: args.tracking,
            };
            let tenant = cx
                .admin
                .api
                .create_tenant(&request)
                .await
                .explained(&cx.admin)?;
            if !cx.json(out, &tenant)? {
                table(std::slice::from_ref(&tenant)).write(out)?;
            }
        }
        Tenants::List => {
            let items = cx.admin.api.tenants().await.explained(&cx.admin)?;
            let list = Page {
                items,
                next_cursor: None,
            };
            if !cx.json(out, &list)? {
                table(&list.items).write(out)?;
            }
        }
        Tenants::Update(args) => {
            let patch = TenantPatch {
                name: args.name,
                weight: args.weight.map(i64::from),
                daily_quota: change(
                    args.daily_quota
                        .map(|q| i64::try_from(q).unwrap_or(i64::MAX)),
                    args.no_daily_quota,
                ),
                rate_limit_per_sec: change(
                    args.rate_limit_per_sec.map(i64::from),
                    args.no_rate_limit,
                ),
                webhook_url: change(args.webhook_url, args.no_webhook_url),
                webhook_events: change(args.webhook_events, args.all_webhook_events),
                tracking: args.tracking,
            };
            let tenant = cx
                .admin
                .api
                .update_tenant(args.id, &patch)
                .await
                .explained(&cx.admin)?;
            if !cx.json(out, &tenant)? {
                table(std::slice::from_ref(&tenant)).write(out)?;
            }
        }
        Tenants::Disable { id } => set_status(cx, id, false, out).await?,
        Tenants::Enable { id } => set_status(cx, id, true, out).await?,
    }
    Ok(())
}

async fn set_status(
    cx: &Context,
    id: Uuid,
    enable: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let tenant = if enable {
        cx.admin.api.enable_tenant(id).await
    } else {
        cx.admin.api.disable_tenant(id).await
    }
    .explained(&cx.admin)?;
    if !cx.json(out, &tenant)? {
        writeln!(out, "Tenant {} ({id}) is {}.", tenant.code, tenant.status)?;
        if !enable {
            writeln!(
                out,
                "Its API keys are refused at once by every producer that hears the change (within 10 s by one that lost its database connection meanwhile)."
            )?;
        }
    }
    Ok(())
}
