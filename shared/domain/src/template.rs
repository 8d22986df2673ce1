//! A template's sources as a tenant stores them, one version at a time.
//! Compiling and rendering them is `herald-templates`' job; here they are
//! plain data, so the store can decode a version and the API can carry it.

use serde::{Deserialize, Serialize};

/// One version's parts. Which of them a template has depends on its
/// channel: email has `subject` and `text` and/or `html`; WeWork exactly
/// one of `text`, `markdown` or `textcard`; a webhook `text` and/or `html`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateParts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markdown: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textcard: Option<Textcard>,
}

/// WeWork's text card: a title, a description, a link and its button.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Textcard {
    #[schema(pattern = "^[^\\x00]*$")]
    pub title: String,
    #[schema(pattern = "^[^\\x00]*$")]
    pub description: String,
    /// An http(s) URL after rendering.
    #[schema(pattern = "^[^\\x00]*$")]
    pub url: String,
    /// The button's text; WeWork shows "详情" when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[^\\x00]*$")]
    pub btntxt: Option<String>,
}

impl TemplateParts {
    /// Bytes of every part's source.
    pub fn size(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        opt(&self.subject)
            + opt(&self.text)
            + opt(&self.html)
            + opt(&self.markdown)
            + self.textcard.as_ref().map_or(0, |c| {
                c.title.len() + c.description.len() + c.url.len() + opt(&c.btntxt)
            })
    }

    /// Each part that is present, by the name errors and the engine use
    /// (`textcard.title`, …), with its source.
    pub fn named(&self) -> Vec<(&'static str, &str)> {
        let mut out: Vec<(&'static str, &str)> = [
            ("subject", &self.subject),
            ("text", &self.text),
            ("html", &self.html),
            ("markdown", &self.markdown),
        ]
        .into_iter()
        .filter_map(|(name, v)| v.as_deref().map(|s| (name, s)))
        .collect();
        if let Some(c) = &self.textcard {
            out.push(("textcard.title", c.title.as_str()));
            out.push(("textcard.description", c.description.as_str()));
            out.push(("textcard.url", c.url.as_str()));
            if let Some(b) = &c.btntxt {
                out.push(("textcard.btntxt", b.as_str()));
            }
        }
        out
    }
}
