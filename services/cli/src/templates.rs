//! `herald templates create|list|show|update|delete`: one tenant's
//! templates, with that tenant's API key (`--api-key` or `HERALD_API_KEY`),
//! not the admin token. A part's value that starts with `@` is read from
//! that file (`--html @welcome.html`).

use std::io::Write;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use herald_api::{NewTemplate, Template, TemplateBody, TemplateVersion};
use herald_domain::{Channel, Textcard};
use uuid::Uuid;

use crate::client::Explain;
use crate::table::{opt, pairs, time, Table};

#[derive(Debug, Subcommand)]
pub enum Templates {
    /// Create a template (version 1).
    Create {
        /// Unique among the tenant's templates.
        #[arg(long)]
        name: String,
        /// email, wework or webhook.
        #[arg(long)]
        channel: Channel,
        #[command(flatten)]
        parts: PartArgs,
    },
    /// The tenant's templates at their current versions.
    List,
    /// A template at its current version, or `--version`.
    Show {
        id: Uuid,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Write the next version (whole: parts not given are absent from it).
    Update {
        id: Uuid,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// The new version's channel; the current one's when absent.
        #[arg(long)]
        channel: Option<Channel>,
        #[command(flatten)]
        parts: PartArgs,
    },
    /// Delete it for new messages (queued ones still render).
    Delete { id: Uuid },
}

/// A template's parts; `@path` reads a file.
#[derive(Debug, Args)]
pub struct PartArgs {
    /// Email: the subject line.
    #[arg(long)]
    subject: Option<String>,
    #[arg(long)]
    text: Option<String>,
    /// HTML, escaped when rendered.
    #[arg(long)]
    html: Option<String>,
    /// WeWork: a markdown message.
    #[arg(long)]
    markdown: Option<String>,
    /// WeWork: a text card's title (with --card-description and --card-url).
    #[arg(long)]
    card_title: Option<String>,
    #[arg(long)]
    card_description: Option<String>,
    #[arg(long)]
    card_url: Option<String>,
    /// A text card's button (at most 4 characters).
    #[arg(long)]
    card_button: Option<String>,
}

/// `value`, or the file it names after `@`.
fn read(value: Option<String>, flag: &str) -> anyhow::Result<Option<String>> {
    match value {
        Some(v) => match v.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("--{flag} {v}: cannot read {path}"))
                .map(Some),
            None => Ok(Some(v)),
        },
        None => Ok(None),
    }
}

impl PartArgs {
    fn body(self) -> anyhow::Result<TemplateBody> {
        let card = [
            &self.card_title,
            &self.card_description,
            &self.card_url,
            &self.card_button,
        ];
        let textcard = if card.iter().any(|c| c.is_some()) {
            let need = |v: Option<String>, flag: &str| {
                read(v, flag)?.ok_or_else(|| {
                    anyhow::anyhow!("a text card needs --card-title, --card-description and --card-url; --{flag} is missing")
                })
            };
            Some(Textcard {
                title: need(self.card_title, "card-title")?,
                description: need(self.card_description, "card-description")?,
                url: need(self.card_url, "card-url")?,
                btntxt: read(self.card_button, "card-button")?,
            })
        } else {
            None
        };
        Ok(TemplateBody {
            subject: read(self.subject, "subject")?,
            text: read(self.text, "text")?,
            html: read(self.html, "html")?,
            markdown: read(self.markdown, "markdown")?,
            textcard,
        })
    }
}

/// Runs one command with the tenant's key (`cx` was made with it).
pub async fn run(cx: &crate::Context, cmd: Templates, out: &mut impl Write) -> anyhow::Result<()> {
    let admin = &cx.admin;
    match cmd {
        Templates::Create {
            name,
            channel,
            parts,
        } => {
            let t = admin
                .api
                .create_template(&NewTemplate {
                    name,
                    channel,
                    parts: parts.body()?,
                })
                .await
                .explained(admin)?;
            show(cx, &t, out)
        }
        Templates::List => {
            let all = admin.api.templates().await.explained(admin)?;
            if cx.json(out, &all)? {
                return Ok(());
            }
            let mut table =
                Table::new(&["ID", "NAME", "CHANNEL", "VERSION", "VARIABLES", "UPDATED"])
                    .right("VERSION");
            for t in all {
                table.row(vec![
                    t.id.to_string(),
                    t.name,
                    t.channel.to_string(),
                    t.version.to_string(),
                    t.variables.join(" "),
                    time(t.updated_at),
                ]);
            }
            table.write(out)?;
            Ok(())
        }
        Templates::Show { id, version } => {
            let t = admin.api.template(id, version).await.explained(admin)?;
            show(cx, &t, out)
        }
        Templates::Update {
            id,
            name,
            channel,
            parts,
        } => {
            let channel = match channel {
                Some(c) => c,
                None => admin.api.template(id, None).await.explained(admin)?.channel,
            };
            let t = admin
                .api
                .put_template(
                    id,
                    &TemplateVersion {
                        name,
                        channel,
                        parts: parts.body()?,
                    },
                )
                .await
                .explained(admin)?;
            show(cx, &t, out)
        }
        Templates::Delete { id } => {
            admin.api.delete_template(id).await.explained(admin)?;
            let deleted = herald_api::DeletedTemplate {
                id: id.into(),
                deleted: true,
            };
            if !cx.json(out, &deleted)? {
                writeln!(
                    out,
                    "Deleted template {id}; messages already queued still render."
                )?;
            }
            Ok(())
        }
    }
}

fn show(cx: &crate::Context, t: &Template, out: &mut impl Write) -> anyhow::Result<()> {
    if cx.json(out, t)? {
        return Ok(());
    }
    let p = &t.parts;
    let card = p.textcard.as_ref();
    pairs(
        out,
        &[
            ("ID", t.id.to_string()),
            ("NAME", t.name.clone()),
            ("CHANNEL", t.channel.to_string()),
            ("VERSION", format!("{} of {}", t.version, t.current_version)),
            ("VARIABLES", t.variables.join(" ")),
            ("SUBJECT", opt(p.subject.as_ref())),
            ("TEXT", opt(p.text.as_ref())),
            ("HTML", opt(p.html.as_ref())),
            ("MARKDOWN", opt(p.markdown.as_ref())),
            (
                "CARD",
                opt(card.map(|c| format!("{} | {} | {}", c.title, c.description, c.url))),
            ),
            ("UPDATED", time(t.updated_at)),
        ],
    )?;
    Ok(())
}
