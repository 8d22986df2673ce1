//! Composing the email: Herald's headers, the body parts and the envelope.

use herald_domain::Disposition;
use lettre::address::Envelope;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;

use super::outcome::dead_letter;
use super::SmtpAdapter;
use crate::provider::Outgoing;

const HERALD_MESSAGE_ID: HeaderName = HeaderName::new_from_ascii_str("X-Herald-Message-Id");

/// A message ready for the wire.
pub(super) struct Email {
    pub(super) envelope: Envelope,
    pub(super) bytes: Vec<u8>,
}

impl SmtpAdapter {
    /// Builds the email: headers that let downstream systems recognise the
    /// message and its duplicates, and the envelope from its addresses.
    pub(super) fn compose(&self, out: &Outgoing<'_>) -> Result<Email, Disposition> {
        let content = out.content;
        if !content.template_id.is_empty() {
            return Err(dead_letter(
                "template_unsupported",
                format!(
                    "template {} cannot be rendered: templates are not supported yet",
                    content.template_id
                ),
            ));
        }
        let from = if content.from.is_empty() {
            self.default_from.clone().ok_or_else(|| {
                dead_letter(
                    "no_sender",
                    "the message has no from address and the provider has no default sender",
                )
            })?
        } else {
            content.from.parse::<Mailbox>().map_err(|e| {
                dead_letter(
                    "invalid_sender",
                    format!("from {:?} is not an email address: {e}", content.from),
                )
            })?
        };
        if out.recipients.is_empty() {
            return Err(dead_letter("no_recipient", "the message has no recipient"));
        }
        let mut builder = Message::builder()
            .from(from)
            .message_id(Some(format!(
                "<{}@{}>",
                out.message_id, self.message_id_domain
            )))
            .raw_header(HeaderValue::new(
                HERALD_MESSAGE_ID,
                out.message_id.to_string(),
            ));
        if !content.subject.is_empty() {
            builder = builder.subject(content.subject.clone());
        }
        for recipient in out.recipients {
            let to = recipient.parse::<Mailbox>().map_err(|e| {
                dead_letter(
                    "invalid_recipient",
                    format!("{recipient:?} is not an email address: {e}"),
                )
            })?;
            builder = builder.to(to);
        }
        let message = match (content.text.is_empty(), content.html.is_empty()) {
            (false, false) => builder.multipart(MultiPart::alternative_plain_html(
                content.text.clone(),
                content.html.clone(),
            )),
            (true, false) => builder.singlepart(SinglePart::html(content.html.clone())),
            _ => builder.singlepart(SinglePart::plain(content.text.clone())),
        }
        .map_err(|e| dead_letter("invalid_message", format!("the email cannot be built: {e}")))?;
        Ok(Email {
            envelope: message.envelope().clone(),
            bytes: message.formatted(),
        })
    }
}
