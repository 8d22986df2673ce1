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
const LIST_UNSUBSCRIBE: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe");
const LIST_UNSUBSCRIBE_POST: HeaderName = HeaderName::new_from_ascii_str("List-Unsubscribe-Post");

/// A message ready for the wire.
pub(super) struct Email {
    pub(super) envelope: Envelope,
    /// The message as DATA carries it: dot-stuffed (RFC 5321 §4.5.2) and
    /// ended by `<CRLF>.<CRLF>`, so that it goes out in one write.
    pub(super) data: String,
}

/// `message` dot-stuffed and terminated for DATA: a line that begins with
/// `.` gets a second one, and `\r\n.\r\n` ends it. `None` unless the
/// message is UTF-8 (lettre encodes bodies as 7bit, quoted-printable or
/// base64 and headers per RFC 2047, so a formatted message is ASCII).
pub(super) fn data_section(message: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let (mut line_start, mut cr) = (true, false);
    for &b in message {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = cr && b == b'\n';
        cr = b == b'\r';
    }
    out.extend_from_slice(b"\r\n.\r\n");
    String::from_utf8(out).ok()
}

impl SmtpAdapter {
    /// Builds the email: headers that let downstream systems recognise the
    /// message and its duplicates, and the envelope from its addresses.
    pub(super) fn compose(&self, out: &Outgoing<'_>) -> Result<Email, Disposition> {
        let content = out.content;
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
        // One-click unsubscribe (RFC 8058): mailbox providers show an
        // "unsubscribe" button that POSTs to the link.
        if let Some(url) = out.unsubscribe {
            builder = builder
                .raw_header(HeaderValue::new(LIST_UNSUBSCRIBE, format!("<{url}>")))
                .raw_header(HeaderValue::new(
                    LIST_UNSUBSCRIBE_POST,
                    "List-Unsubscribe=One-Click".to_owned(),
                ));
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
        let data = data_section(&message.formatted())
            .ok_or_else(|| dead_letter("invalid_message", "the formatted email is not ASCII"))?;
        let envelope = match out.return_path {
            None => message.envelope().clone(),
            Some(rp) => {
                let sender = rp.parse().map_err(|e| {
                    dead_letter(
                        "invalid_sender",
                        format!("the return path {rp:?} is not an address: {e}"),
                    )
                })?;
                Envelope::new(Some(sender), message.envelope().to().to_vec()).map_err(|e| {
                    dead_letter(
                        "invalid_message",
                        format!("the envelope cannot be built: {e}"),
                    )
                })?
            }
        };
        Ok(Email { envelope, data })
    }
}
