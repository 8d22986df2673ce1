//! Tenant templates, compiled once and rendered the same way in two places:
//! the producer renders a message's template at enqueue to refuse what
//! cannot be sent (a missing variable is 422 naming it), and the worker
//! renders the same version again when it sends, so the envelope carries
//! only the template's id, version and variables (decision 0026).
//!
//! The engine is minijinja. The `html` part is HTML-escaped (a variable's
//! `<` arrives as `&lt;`); subject, text, markdown and text-card parts are
//! not. A variable that is printed must be given; one only tested
//! (`{% if coupon %}`) may be absent. Every render runs on a fuel budget, so
//! a template that loops without end fails instead of holding a core, and
//! each compiled template has an environment of its own: no template can
//! include another tenant's.

mod cache;

use std::collections::BTreeSet;

use herald_domain::{check_text, Channel, FieldError, TemplateParts, Textcard, MAX_CONTENT_BYTES};
use herald_proto::v1;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};

pub use cache::{Cache, CacheKey};

/// Most bytes of one version's sources together.
pub const MAX_SOURCE_BYTES: usize = MAX_CONTENT_BYTES;
/// Engine steps one part's render may take (minijinja's fuel): far more
/// than a campaign template needs, far less than a core-second.
const FUEL: u64 = 250_000;
/// WeWork's limits on a text card (bytes, except the button's characters).
const TEXTCARD_TITLE: usize = 128;
const TEXTCARD_DESCRIPTION: usize = 512;
const TEXTCARD_URL: usize = 2048;
const TEXTCARD_BUTTON_CHARS: usize = 4;

/// One version, checked and compiled.
pub struct Compiled {
    env: Environment<'static>,
    channel: Channel,
    parts: Vec<&'static str>,
    variables: BTreeSet<String>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("channel", &self.channel)
            .field("parts", &self.parts)
            .field("variables", &self.variables)
            .finish()
    }
}

/// What a template renders to: the same parts, rendered (their
/// [`TemplateParts::size`] is what the 256 KiB cap counts).
pub type Rendered = TemplateParts;

/// The job's content with the rendered parts in place of the template's
/// (WeWork markdown travels as `html`, as for a message sent without a
/// template). The template's id, version and variables stay, for the record
/// and the webhook payload.
pub fn into_content(rendered: Rendered, mut content: v1::Content) -> v1::Content {
    content.subject = rendered.subject.unwrap_or_default();
    content.text = rendered.text.unwrap_or_default();
    content.html = rendered.markdown.or(rendered.html).unwrap_or_default();
    content.textcard = rendered.textcard.map(|c| v1::Textcard {
        title: c.title,
        description: c.description,
        url: c.url,
        btntxt: c.btntxt.unwrap_or_default(),
    });
    content
}

/// Checks `parts` against what a template of `channel` holds and compiles
/// every part. Each refusal names the part (`html`, `textcard.url`) and,
/// for a syntax error, the line.
pub fn compile(channel: Channel, parts: &TemplateParts) -> Result<Compiled, FieldError> {
    check_shape(channel, parts)?;
    if parts.size() > MAX_SOURCE_BYTES {
        return Err(FieldError::new(
            "text",
            format!(
                "the template's parts are {} bytes; at most {MAX_SOURCE_BYTES} are allowed",
                parts.size()
            ),
        ));
    }
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|name| {
        if name == "html" {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    let mut names = Vec::new();
    for (name, source) in parts.named() {
        check_text(name, source)?;
        env.add_template_owned(name, source.to_owned())
            .map_err(|e| FieldError::new(name, describe("syntax error", &e)))?;
        names.push(name);
    }
    let mut variables = BTreeSet::new();
    for name in &names {
        let template = env
            .get_template(name)
            .map_err(|e| FieldError::new(*name, describe("cannot be compiled", &e)))?;
        variables.extend(template.undeclared_variables(false));
    }
    Ok(Compiled {
        env,
        channel,
        parts: names,
        variables,
    })
}

/// A template of `channel` has the parts that channel sends, and no other.
fn check_shape(channel: Channel, p: &TemplateParts) -> Result<(), FieldError> {
    let not = |field: &str, why: &str| Err(FieldError::new(field, why.to_owned()));
    match channel {
        Channel::Email => {
            if p.markdown.is_some() {
                return not("markdown", "applies to WeWork templates only");
            }
            if p.textcard.is_some() {
                return not("textcard", "applies to WeWork templates only");
            }
            match &p.subject {
                None => return not("subject", "is required for an email template"),
                Some(s) if s.contains(['\r', '\n']) => {
                    return not("subject", "must be one line (no line breaks)")
                }
                Some(_) => {}
            }
            if p.text.is_none() && p.html.is_none() {
                return not("text", "is required (or html) for an email template");
            }
        }
        Channel::Wework => {
            if p.subject.is_some() {
                return not("subject", "applies to email templates only");
            }
            if p.html.is_some() {
                return not(
                    "html",
                    "does not apply to WeWork templates: use markdown or textcard",
                );
            }
            let given = [p.text.is_some(), p.markdown.is_some(), p.textcard.is_some()];
            if given.iter().filter(|g| **g).count() != 1 {
                return not(
                    "text",
                    "a WeWork template has exactly one of text, markdown or textcard",
                );
            }
        }
        Channel::Webhook => {
            for (field, given) in [
                ("subject", p.subject.is_some()),
                ("markdown", p.markdown.is_some()),
                ("textcard", p.textcard.is_some()),
            ] {
                if given {
                    return not(field, "does not apply to webhook templates");
                }
            }
            if p.text.is_none() && p.html.is_none() {
                return not("text", "is required (or html) for a webhook template");
            }
        }
    }
    Ok(())
}

/// An engine error as one sentence, with its line when it has one.
fn describe(what: &str, e: &minijinja::Error) -> String {
    let detail = e
        .detail()
        .map_or_else(|| e.kind().to_string(), str::to_owned);
    match e.line() {
        Some(line) => format!("{what} on line {line}: {detail}"),
        None => format!("{what}: {detail}"),
    }
}

impl Compiled {
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The variables the template refers to (printed or only tested), sorted.
    pub fn variables(&self) -> &BTreeSet<String> {
        &self.variables
    }

    /// Renders every part with `variables` (any map of strings, borrowed:
    /// the producer's `BTreeMap`, the job envelope's `HashMap`). A refusal's
    /// field is `variables` and its message names the missing variable, or
    /// the part and line that failed.
    pub fn render<'a, V>(&self, variables: V) -> Result<Rendered, FieldError>
    where
        V: IntoIterator<Item = (&'a String, &'a String)> + Copy,
    {
        let context = Value::from_iter(
            variables
                .into_iter()
                .map(|(k, v)| (k.as_str(), Value::from(v.as_str()))),
        );
        let mut out = Rendered::default();
        let mut card = Textcard::default();
        let mut has_card = false;
        for name in &self.parts {
            let text = self.render_part(name, &context, variables)?;
            match *name {
                "subject" => out.subject = Some(text),
                "text" => out.text = Some(text),
                "html" => out.html = Some(text),
                "markdown" => out.markdown = Some(text),
                "textcard.title" => (card.title, has_card) = (text, true),
                "textcard.description" => card.description = text,
                "textcard.url" => card.url = text,
                _ => card.btntxt = Some(text),
            }
        }
        if has_card {
            check_textcard(&card)?;
            out.textcard = Some(card);
        }
        if let Some(subject) = &out.subject {
            if subject.contains(['\r', '\n']) {
                return Err(FieldError::new(
                    "variables",
                    "the rendered subject holds a line break; a subject is one line",
                ));
            }
        }
        if out.size() > MAX_CONTENT_BYTES {
            return Err(FieldError::new(
                "variables",
                format!(
                    "the rendered content is {} bytes; at most {MAX_CONTENT_BYTES} are allowed",
                    out.size()
                ),
            ));
        }
        Ok(out)
    }

    fn render_part<'a, V>(
        &self,
        name: &str,
        context: &Value,
        variables: V,
    ) -> Result<String, FieldError>
    where
        V: IntoIterator<Item = (&'a String, &'a String)> + Copy,
    {
        let template = self
            .env
            .get_template(name)
            .map_err(|e| FieldError::new("template_id", describe("cannot be loaded", &e)))?;
        let e = match template.render(context) {
            Ok(text) => return Ok(text),
            Err(e) => e,
        };
        if e.kind() == ErrorKind::UndefinedError {
            let missing: Vec<String> = template
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !variables.into_iter().any(|(k, _)| k == v))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|v| format!("{v:?}"))
                .collect();
            if !missing.is_empty() {
                return Err(FieldError::new(
                    "variables",
                    format!(
                        "missing {}, which the template's {name} prints",
                        missing.join(", ")
                    ),
                ));
            }
        }
        Err(FieldError::new(
            "variables",
            describe(&format!("the template's {name} failed to render"), &e),
        ))
    }
}

/// WeWork refuses a card over its limits or without an http(s) link.
fn check_textcard(card: &Textcard) -> Result<(), FieldError> {
    let over = |part: &str, len: usize, max: usize, unit: &str| {
        FieldError::new(
            "variables",
            format!("the rendered textcard.{part} is {len} {unit}; WeWork takes at most {max}"),
        )
    };
    if card.title.trim().is_empty() {
        return Err(FieldError::new(
            "variables",
            "the rendered textcard.title is empty",
        ));
    }
    if card.description.trim().is_empty() {
        return Err(FieldError::new(
            "variables",
            "the rendered textcard.description is empty",
        ));
    }
    if card.title.len() > TEXTCARD_TITLE {
        return Err(over("title", card.title.len(), TEXTCARD_TITLE, "bytes"));
    }
    if card.description.len() > TEXTCARD_DESCRIPTION {
        return Err(over(
            "description",
            card.description.len(),
            TEXTCARD_DESCRIPTION,
            "bytes",
        ));
    }
    if card.url.len() > TEXTCARD_URL {
        return Err(over("url", card.url.len(), TEXTCARD_URL, "bytes"));
    }
    let url = card.url.trim();
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.contains(char::is_whitespace)
    {
        return Err(FieldError::new(
            "variables",
            format!("the rendered textcard.url {url:?} is not an http(s) URL"),
        ));
    }
    if let Some(b) = &card.btntxt {
        let chars = b.chars().count();
        if chars > TEXTCARD_BUTTON_CHARS {
            return Err(over("btntxt", chars, TEXTCARD_BUTTON_CHARS, "characters"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
