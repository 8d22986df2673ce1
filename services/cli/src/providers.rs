//! `herald providers add|list|show|enable|disable`. Configs are shown as
//! the API gives them: every secret as `***`.

use std::io::Write;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use herald_api::{NewProvider, Page, Provider, ProviderPatch, ProviderScore};
use herald_domain::{Quota, SendWindow};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::client::Explain;
use crate::table::{json, opt, pairs, yes, Table};
use crate::Context;

#[derive(Debug, Subcommand)]
pub enum Providers {
    /// Register a provider (an SMTP account, a WeWork app, a webhook sender).
    Add(AddArgs),
    /// Every provider.
    List,
    /// One provider, with its current score and usage.
    Show {
        /// The provider's id.
        id: Uuid,
    },
    /// Let the scheduler place messages on the provider again.
    Enable {
        /// The provider's id.
        id: Uuid,
    },
    /// Stop placing new messages on the provider.
    Disable {
        /// The provider's id.
        id: Uuid,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Unique name, 1 to 128 characters.
    #[arg(long)]
    pub name: String,
    /// `email`, `wework` or `webhook` (default: the kind's channel).
    #[arg(long, value_parser = parse_arg::<herald_domain::Channel>)]
    pub channel: Option<herald_domain::Channel>,
    /// `smtp`, `wework` or `webhook`.
    #[arg(long, value_parser = parse_arg::<herald_domain::ProviderKind>)]
    pub kind: herald_domain::ProviderKind,
    /// The kind's config as JSON, or `@path` of a JSON file (docs/API.md, Providers).
    #[arg(long)]
    pub config: String,
    /// `{per_minute?, per_hour?, per_day?, concurrency?}` as JSON or `@path` (default: unlimited).
    #[arg(long)]
    pub quota: Option<String>,
    /// `{tz, start, end, days}` as JSON or `@path` (default: any time).
    #[arg(long)]
    pub send_window: Option<String>,
    /// Bias among near-equal providers (1 to 10,000, default 100).
    #[arg(long)]
    pub weight: Option<u32>,
    /// The only tenant this provider serves (default: shared by all).
    #[arg(long)]
    pub tenant: Option<Uuid>,
    /// Register it disabled.
    #[arg(long)]
    pub disabled: bool,
}

/// A flag's value through its type's parser (`email`, `smtp`, …).
fn parse_arg<T: std::str::FromStr>(raw: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    raw.parse().map_err(|e: T::Err| e.to_string())
}

/// `raw` as JSON of a `T`, or the JSON of the file `@path`.
fn json_arg<T: DeserializeOwned>(flag: &str, raw: &str) -> anyhow::Result<T> {
    let (text, from) = match raw.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("Failed to read {flag} from the file {path:?}"))?,
            format!(" (file {path:?})"),
        ),
        None => (raw.to_owned(), String::new()),
    };
    match herald_api::parse_body::<T>(text.as_bytes()) {
        Ok(value) => Ok(value),
        Err(herald_api::ParseError::Syntax(e)) => Err(anyhow::anyhow!(
            "{flag}{from} is not valid JSON (or @path of a JSON file): {e}"
        )),
        Err(herald_api::ParseError::Field(e)) => Err(anyhow::anyhow!("{flag}{from}: {e}")),
    }
}

/// `600/min 20000/day 8 at once`, or `unlimited`.
fn quota(q: &Quota) -> String {
    let parts: Vec<String> = [
        (q.per_minute, "/min"),
        (q.per_hour, "/h"),
        (q.per_day, "/day"),
        (q.concurrency, " at once"),
    ]
    .iter()
    .filter_map(|(n, unit)| n.map(|n| format!("{n}{unit}")))
    .collect();
    if parts.is_empty() {
        "unlimited".to_owned()
    } else {
        parts.join(" ")
    }
}

/// `08:00-22:00 Asia/Shanghai days 1,2,3,4,5`, or `always`.
fn window(w: Option<&SendWindow>) -> String {
    let Some(w) = w else {
        return "always".to_owned();
    };
    let mut s = format!("{}-{} {}", w.start, w.end, w.tz);
    if !w.days.is_empty() && w.days.len() < 7 {
        let days: Vec<String> = w.days.iter().map(u8::to_string).collect();
        s.push_str(" days ");
        s.push_str(&days.join(","));
    }
    s
}

fn tenant(p: &Provider) -> String {
    match p.tenant_id {
        Some(t) => t.to_string(),
        None => "shared".to_owned(),
    }
}

/// The providers as a table, in the API's order.
pub fn table(providers: &[Provider]) -> Table {
    let mut t = Table::new(&[
        "ID", "NAME", "CHANNEL", "KIND", "TENANT", "WEIGHT", "ENABLED", "QUOTA", "WINDOW",
    ])
    .right("WEIGHT");
    for p in providers {
        t.row(vec![
            p.id.to_string(),
            p.name.clone(),
            p.channel.to_string(),
            p.kind.to_string(),
            tenant(p),
            p.weight.to_string(),
            yes(p.enabled),
            quota(&p.quota),
            window(p.send_window.as_ref()),
        ]);
    }
    t
}

fn score_lines(s: &ProviderScore) -> Vec<(&'static str, String)> {
    let num = |v: Option<f64>| v.map(|f| format!("{f:.3}")).unwrap_or_default();
    let mut state = s.state.clone();
    if let Some(until) = s.until_ms {
        state.push_str(&format!(" (until {until} ms since the epoch)"));
    }
    if let Some(at) = s.opens_at {
        state.push_str(&format!(
            " (opens at {})",
            at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        ));
    }
    let parts = s
        .parts
        .map(|p| {
            [
                ("quota", p.quota),
                ("headroom", p.headroom),
                ("success", p.success),
                ("latency", p.latency),
                ("recent", p.recent),
            ]
            .iter()
            .map(|(k, v)| format!("{k} {}", num(Some(*v))))
            .collect::<Vec<_>>()
            .join(", ")
        })
        .unwrap_or_default();
    let load = s.load.as_ref();
    let usage = load
        .map(|l| {
            l.windows
                .iter()
                .map(|w| {
                    let limit = w.limit.map_or("unlimited".into(), |l| l.to_string());
                    format!("{}/{limit} in {} s", w.used, w.window_secs)
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let leases = match load {
        None => String::new(),
        Some(l) => match l.concurrency {
            Some(c) => format!("{}/{c}", l.leases),
            None => l.leases.to_string(),
        },
    };
    vec![
        ("SCORE", num(Some(s.total))),
        ("STATE", state),
        ("ELIGIBLE", yes(s.eligible)),
        ("PARTS", parts),
        ("USAGE", usage),
        ("IN_FLIGHT", leases),
        ("SUCCESS_RATE", num(load.and_then(|l| l.success_rate))),
        ("LATENCY_MS", num(load.and_then(|l| l.latency_ms))),
        (
            "FAILURES_IN_A_ROW",
            opt(load.map(|l| l.consecutive_failures)),
        ),
    ]
}

/// `providers show --json`: the provider as GET shows it, with GET …/score
/// beside.
#[derive(serde::Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    provider: &'a Provider,
    score: &'a ProviderScore,
}

pub async fn run(cx: &Context, cmd: Providers, out: &mut impl Write) -> anyhow::Result<()> {
    let api = &cx.admin.api;
    match cmd {
        Providers::Add(args) => {
            let request = NewProvider {
                name: args.name,
                channel: args.channel,
                kind: args.kind,
                config: json_arg("--config", &args.config)?,
                quota: args
                    .quota
                    .as_deref()
                    .map(|q| json_arg("--quota", q))
                    .transpose()?,
                send_window: args
                    .send_window
                    .as_deref()
                    .map(|w| json_arg("--send-window", w))
                    .transpose()?,
                weight: args.weight.map(i64::from),
                enabled: args.disabled.then_some(false),
                tenant_id: args.tenant.map(|t| t.to_string()),
            };
            let provider = api.create_provider(&request).await.explained(&cx.admin)?;
            if !cx.json(out, &provider)? {
                table(std::slice::from_ref(&provider)).write(out)?;
            }
        }
        Providers::List => {
            let items = api.providers().await.explained(&cx.admin)?;
            let list = Page {
                items,
                next_cursor: None,
            };
            if !cx.json(out, &list)? {
                table(&list.items).write(out)?;
            }
        }
        Providers::Show { id } => {
            let (p, score) =
                tokio::try_join!(api.provider(id), api.provider_score(id)).explained(&cx.admin)?;
            if cx.json(
                out,
                &Shown {
                    provider: &p,
                    score: &score,
                },
            )? {
                return Ok(());
            }
            let time = |t: chrono::DateTime<chrono::Utc>| {
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            };
            let mut lines = vec![
                ("ID", p.id.to_string()),
                ("NAME", p.name.clone()),
                ("CHANNEL", p.channel.to_string()),
                ("KIND", p.kind.to_string()),
                ("TENANT", tenant(&p)),
                ("ENABLED", yes(p.enabled)),
                ("WEIGHT", p.weight.to_string()),
                ("QUOTA", quota(&p.quota)),
                ("WINDOW", window(p.send_window.as_ref())),
                ("CONFIG", json(&p.config)),
                ("CREATED", time(p.created_at)),
                ("UPDATED", time(p.updated_at)),
            ];
            lines.extend(score_lines(&score));
            pairs(out, &lines)?;
        }
        Providers::Enable { id } => set_enabled(cx, id, true, out).await?,
        Providers::Disable { id } => set_enabled(cx, id, false, out).await?,
    }
    Ok(())
}

async fn set_enabled(
    cx: &Context,
    id: Uuid,
    enabled: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let patch = ProviderPatch {
        enabled: Some(enabled),
        ..Default::default()
    };
    let provider = cx
        .admin
        .api
        .update_provider(id, &patch)
        .await
        .explained(&cx.admin)?;
    if !cx.json(out, &provider)? {
        writeln!(
            out,
            "Provider {} ({id}) is {}.",
            provider.name,
            if enabled { "enabled" } else { "disabled" }
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_and_windows_read_as_short_phrases() {
        assert_eq!(quota(&Quota::default()), "unlimited");
        let q = Quota {
            per_minute: Some(600),
            per_day: Some(20000),
            concurrency: Some(8),
            ..Default::default()
        };
        assert_eq!(quota(&q), "600/min 20000/day 8 at once");
        assert_eq!(window(None), "always");
        let w = SendWindow {
            tz: "UTC".into(),
            start: "08:00".into(),
            end: "22:00".into(),
            days: vec![1, 2],
        };
        assert_eq!(window(Some(&w)), "08:00-22:00 UTC days 1,2");
    }

    #[test]
    fn a_config_flag_that_is_not_json_says_so() {
        let e = json_arg::<serde_json::Value>("--config", "{host").expect_err("not JSON");
        assert!(
            format!("{e:#}").contains("--config is not valid JSON"),
            "{e:#}"
        );
    }

    #[test]
    fn a_quota_flag_of_the_wrong_shape_names_the_field() {
        let e = json_arg::<Quota>("--quota", r#"{"per_week": 5}"#).expect_err("no such window");
        assert!(format!("{e:#}").contains("per_week"), "{e:#}");
    }
}
