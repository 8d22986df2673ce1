//! `herald providers add|list|show|enable|disable`. Configs are shown as
//! the API gives them: every secret as `***`.

use std::io::Write;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::table::{cell, pairs, Table};
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
    #[arg(long)]
    pub channel: Option<String>,
    /// `smtp`, `wework` or `webhook`.
    #[arg(long)]
    pub kind: String,
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

/// `raw` as JSON, or the JSON of the file `@path`.
fn json_arg(flag: &str, raw: &str) -> anyhow::Result<Value> {
    let (text, from) = match raw.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("Failed to read {flag} from the file {path:?}"))?,
            format!(" (file {path:?})"),
        ),
        None => (raw.to_owned(), String::new()),
    };
    serde_json::from_str(&text)
        .with_context(|| format!("{flag}{from} is not valid JSON (or @path of a JSON file)"))
}

/// `600/min 20000/day 8 at once`, or `unlimited`.
fn quota(q: &Value) -> String {
    let parts: Vec<String> = [
        ("per_minute", "/min"),
        ("per_hour", "/h"),
        ("per_day", "/day"),
        ("concurrency", " at once"),
    ]
    .iter()
    .filter_map(|(key, unit)| q[*key].as_u64().map(|n| format!("{n}{unit}")))
    .collect();
    if parts.is_empty() {
        "unlimited".to_owned()
    } else {
        parts.join(" ")
    }
}

/// `08:00-22:00 Asia/Shanghai days 1,2,3,4,5`, or `always`.
fn window(w: &Value) -> String {
    if w.is_null() {
        return "always".to_owned();
    }
    let mut s = format!(
        "{}-{} {}",
        cell(&w["start"]),
        cell(&w["end"]),
        cell(&w["tz"])
    );
    let days: Vec<String> = w["days"]
        .as_array()
        .map(|d| d.iter().map(cell).collect())
        .unwrap_or_default();
    if !days.is_empty() && days.len() < 7 {
        s.push_str(" days ");
        s.push_str(&days.join(","));
    }
    s
}

fn tenant(p: &Value) -> String {
    match p["tenant_id"].as_str() {
        Some(t) => t.to_owned(),
        None => "shared".to_owned(),
    }
}

/// The providers as a table, in the API's order.
pub fn table(providers: &[Value]) -> Table {
    let mut t = Table::new(&[
        "ID", "NAME", "CHANNEL", "KIND", "TENANT", "WEIGHT", "ENABLED", "QUOTA", "WINDOW",
    ])
    .right("WEIGHT");
    for p in providers {
        t.row(vec![
            cell(&p["id"]),
            cell(&p["name"]),
            cell(&p["channel"]),
            cell(&p["kind"]),
            tenant(p),
            cell(&p["weight"]),
            cell(&p["enabled"]),
            quota(&p["quota"]),
            window(&p["send_window"]),
        ]);
    }
    t
}

fn score_lines(s: &Value) -> Vec<(&'static str, String)> {
    let num = |v: &Value| v.as_f64().map(|f| format!("{f:.3}")).unwrap_or_default();
    let mut state = cell(&s["state"]);
    if let Some(until) = s["until_ms"].as_i64() {
        state.push_str(&format!(" (until {until} ms since the epoch)"));
    }
    if let Some(at) = s["opens_at"].as_str() {
        state.push_str(&format!(" (opens at {at})"));
    }
    let parts = ["quota", "headroom", "success", "latency", "recent"]
        .iter()
        .filter(|k| !s["parts"][**k].is_null())
        .map(|k| format!("{k} {}", num(&s["parts"][*k])))
        .collect::<Vec<_>>()
        .join(", ");
    let load = &s["load"];
    let usage = load["windows"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| {
                    let limit = w["limit"]
                        .as_u64()
                        .map_or("unlimited".into(), |l| l.to_string());
                    format!(
                        "{}/{limit} in {} s",
                        cell(&w["used"]),
                        cell(&w["window_secs"])
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let leases = match (&load["leases"], load["concurrency"].as_u64()) {
        (Value::Null, _) => String::new(),
        (l, Some(c)) => format!("{}/{c}", cell(l)),
        (l, None) => cell(l),
    };
    vec![
        ("SCORE", num(&s["total"])),
        ("STATE", state),
        ("ELIGIBLE", cell(&s["eligible"])),
        ("PARTS", parts),
        ("USAGE", usage),
        ("IN_FLIGHT", leases),
        ("SUCCESS_RATE", num(&load["success_rate"])),
        ("LATENCY_MS", num(&load["latency_ms"])),
        ("FAILURES_IN_A_ROW", cell(&load["consecutive_failures"])),
    ]
}

pub async fn run(cx: &Context, cmd: Providers, out: &mut impl Write) -> anyhow::Result<()> {
    match cmd {
        Providers::Add(args) => {
            let mut body = Map::new();
            body.insert("name".into(), json!(args.name));
            if let Some(c) = args.channel {
                body.insert("channel".into(), json!(c));
            }
            body.insert("kind".into(), json!(args.kind));
            body.insert("config".into(), json_arg("--config", &args.config)?);
            if let Some(q) = &args.quota {
                body.insert("quota".into(), json_arg("--quota", q)?);
            }
            if let Some(w) = &args.send_window {
                body.insert("send_window".into(), json_arg("--send-window", w)?);
            }
            if let Some(w) = args.weight {
                body.insert("weight".into(), json!(w));
            }
            if let Some(t) = args.tenant {
                body.insert("tenant_id".into(), json!(t));
            }
            if args.disabled {
                body.insert("enabled".into(), json!(false));
            }
            let provider = cx
                .admin
                .post("/v1/admin/providers", &Value::Object(body))
                .await?;
            if !cx.json(out, &provider)? {
                table(std::slice::from_ref(&provider)).write(out)?;
            }
        }
        Providers::List => {
            let list = cx.admin.list_all("/v1/admin/providers").await?;
            if !cx.json(out, &list)? {
                table(list["items"].as_array().map_or(&[], Vec::as_slice)).write(out)?;
            }
        }
        Providers::Show { id } => {
            let path = format!("/v1/admin/providers/{id}");
            let score_path = format!("{path}/score");
            let (mut provider, score) =
                tokio::try_join!(cx.admin.get(&path), cx.admin.get(&score_path))?;
            if cx.json {
                // The provider as GET shows it, with GET …/score beside.
                provider["score"] = score;
                cx.json(out, &provider)?;
                return Ok(());
            }
            let p = &provider;
            let mut lines = vec![
                ("ID", cell(&p["id"])),
                ("NAME", cell(&p["name"])),
                ("CHANNEL", cell(&p["channel"])),
                ("KIND", cell(&p["kind"])),
                ("TENANT", tenant(p)),
                ("ENABLED", cell(&p["enabled"])),
                ("WEIGHT", cell(&p["weight"])),
                ("QUOTA", quota(&p["quota"])),
                ("WINDOW", window(&p["send_window"])),
                ("CONFIG", cell(&p["config"])),
                ("CREATED", cell(&p["created_at"])),
                ("UPDATED", cell(&p["updated_at"])),
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
    let provider = cx
        .admin
        .patch(
            &format!("/v1/admin/providers/{id}"),
            &json!({ "enabled": enabled }),
        )
        .await?;
    if !cx.json(out, &provider)? {
        writeln!(
            out,
            "Provider {} ({id}) is {}.",
            cell(&provider["name"]),
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
        assert_eq!(quota(&json!({})), "unlimited");
        assert_eq!(
            quota(&json!({"per_minute": 600, "per_day": 20000, "concurrency": 8})),
            "600/min 20000/day 8 at once"
        );
        assert_eq!(window(&Value::Null), "always");
        assert_eq!(
            window(&json!({"tz": "UTC", "start": "08:00", "end": "22:00", "days": [1, 2]})),
            "08:00-22:00 UTC days 1,2"
        );
    }

    #[test]
    fn a_config_flag_that_is_not_json_says_so() {
        let e = json_arg("--config", "{host").expect_err("not JSON");
        assert!(
            format!("{e:#}").contains("--config is not valid JSON"),
            "{e:#}"
        );
    }
}
