//! `/v1/templates`: a tenant's versioned templates.

use chrono::{DateTime, Utc};
use herald_domain::{display_name, Channel, FieldError, TemplateId, TemplateParts, Textcard};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/templates`. Which parts a template has depends on its
/// channel: email needs `subject` and `text` and/or `html`; WeWork exactly
/// one of `text`, `markdown` or `textcard`; a webhook `text` and/or `html`.
/// Parts are minijinja (Jinja2) templates; `html` is HTML-escaped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTemplate {
    /// Unique among the tenant's templates; 1 to 200 characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00]*$",
        example = "welcome"
    )]
    pub name: String,
    pub channel: Channel,
    #[serde(flatten)]
    pub parts: TemplateBody,
}

/// A template's parts (each a minijinja source).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TemplateBody {
    /// Email: one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[^\\x00\\r\\n]*$", example = "Welcome, {{ first_name }}")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[^\\x00]*$")]
    pub text: Option<String>,
    /// HTML-escaped: a variable's `<` renders as `&lt;`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[^\\x00]*$")]
    pub html: Option<String>,
    /// WeWork only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[^\\x00]*$")]
    pub markdown: Option<String>,
    /// WeWork only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textcard: Option<Textcard>,
}

impl From<TemplateBody> for TemplateParts {
    fn from(b: TemplateBody) -> TemplateParts {
        TemplateParts {
            subject: b.subject,
            text: b.text,
            html: b.html,
            markdown: b.markdown,
            textcard: b.textcard,
        }
    }
}

impl From<TemplateParts> for TemplateBody {
    fn from(p: TemplateParts) -> TemplateBody {
        TemplateBody {
            subject: p.subject,
            text: p.text,
            html: p.html,
            markdown: p.markdown,
            textcard: p.textcard,
        }
    }
}

/// `PUT /v1/templates/{id}`: the next version, whole (parts not given are
/// absent from it), with its channel (a version may change it: messages
/// pinned to earlier versions keep theirs); `name` renames the template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateVersion {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\x00]*$")]
    pub name: Option<String>,
    pub channel: Channel,
    #[serde(flatten)]
    pub parts: TemplateBody,
}

/// A template's name, checked.
pub fn template_name(raw: &str) -> Result<String, FieldError> {
    display_name("name", raw, 200)
}

/// A template at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Template {
    pub id: TemplateId,
    pub name: String,
    /// This version's channel.
    pub channel: Channel,
    /// The version shown (the current one unless `?version=` asked).
    pub version: u32,
    /// The template's newest version.
    pub current_version: u32,
    #[serde(flatten)]
    pub parts: TemplateBody,
    /// The variables the parts refer to, sorted; those printed must be
    /// given with each message.
    pub variables: Vec<String>,
    #[schema(format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// When this version was written.
    #[schema(format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

/// `?version=` of `GET /v1/templates/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TemplateQuery {
    /// A version number; the current version when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 2147483647)]
    pub version: Option<String>,
}

impl TemplateQuery {
    pub fn parse(&self) -> Result<Option<u32>, FieldError> {
        self.version
            .as_deref()
            .map(|raw| {
                raw.parse::<u32>()
                    .ok()
                    .filter(|v| (1..=i32::MAX as u32).contains(v))
                    .ok_or_else(|| {
                        FieldError::new("version", format!("{raw:?} is not a version number"))
                    })
            })
            .transpose()
    }
}

/// `204` of `DELETE /v1/templates/{id}` has no body; this is what the CLI
/// prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeletedTemplate {
    pub id: TemplateId,
    pub deleted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_body;

    #[test]
    fn a_template_body_reads_its_parts_and_refuses_others() {
        let t: NewTemplate = parse_body(
            br#"{"name": "w", "channel": "wework", "textcard": {"title": "t", "description": "d", "url": "https://x"}}"#,
        )
        .expect("parses");
        assert_eq!(t.channel, Channel::Wework);
        assert_eq!(t.parts.textcard.expect("card").url, "https://x");
        assert!(
            parse_body::<NewTemplate>(br#"{"name": "w", "channel": "email", "body": "x"}"#)
                .is_err()
        );
        assert!(parse_body::<TemplateVersion>(br#"{"text": "x"}"#).is_err());
        assert_eq!(
            TemplateQuery {
                version: Some("0".into())
            }
            .parse()
            .expect_err("refused")
            .field,
            "version"
        );
        assert_eq!(
            TemplateQuery {
                version: Some("3".into())
            }
            .parse(),
            Ok(Some(3))
        );
    }
}
