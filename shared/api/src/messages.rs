//! `/v1/messages`: what a sender posts and what it reads back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use herald_domain::{
    check_text, BatchId, Channel, Content, EmailAddress, EventKind, FieldError, MessageId,
    MessageStatus, NewMessage, Priority, ProviderId, Recipients, TemplateId, TenantId,
    MAX_CONTENT_BYTES,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Most messages in one batch request.
pub const MAX_BATCH_ITEMS: usize = 1000;
/// Most entries in `metadata`.
pub const MAX_METADATA: usize = 64;

/// A message to send (`POST /v1/messages`, and each item of a batch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    pub channel: Channel,
    /// An email address, WeWork user ids `u1|u2`, or an http(s) URL, as
    /// the channel takes them.
    #[schema(example = "alice@example.com")]
    pub to: String,
    /// Email only; optional when the provider has a default sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Email only; required unless a template supplies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[^\\x00]*$")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[^\\x00]*$")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[^\\x00]*$")]
    pub html: Option<String>,
    /// A template of the tenant (`/v1/templates`), instead of
    /// subject/text/html; the worker renders the version current at
    /// enqueue (or `template_version`) with `variables`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub template_id: Option<String>,
    /// With `template_id`: render this version, not the current one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "herald_domain::json_int::opt"
    )]
    #[schema(minimum = 1, maximum = 2147483647)]
    pub template_version: Option<i64>,
    /// The template's variables; every one it prints must be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<BTreeMap<String, String>>,
    /// 1 (lowest) to 10 (highest); 5 when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "herald_domain::json_int::opt"
    )]
    #[schema(minimum = 1, maximum = 10)]
    pub priority: Option<i64>,
    /// RFC 3339; a future time schedules the send, a past one sends now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub scheduled_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub batch_id: Option<String>,
    /// The same key within 24 h returns the same id and sends nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\x00]*$")]
    pub idempotency_key: Option<String>,
    /// Echoed back in records and webhooks; at most 64 entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl SendMessage {
    /// A message on `channel` to `to` with a text body; the other fields
    /// absent (set them on the value).
    pub fn new(channel: Channel, to: impl Into<String>, text: impl Into<String>) -> Self {
        SendMessage {
            channel,
            to: to.into(),
            from: None,
            subject: None,
            text: Some(text.into()),
            html: None,
            template_id: None,
            template_version: None,
            variables: None,
            priority: None,
            scheduled_at: None,
            batch_id: None,
            idempotency_key: None,
            metadata: None,
        }
    }

    /// An email with a subject and a text body.
    pub fn email(
        to: impl Into<String>,
        subject: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        SendMessage {
            subject: Some(subject.into()),
            ..SendMessage::new(Channel::Email, to, text)
        }
    }

    /// The validated message; `now` decides whether `scheduled_at` is in the
    /// future. Each refusal names its field.
    pub fn into_message(self, now: DateTime<Utc>) -> Result<NewMessage, FieldError> {
        let text = |field: &str, v: &Option<String>| match v {
            Some(s) => check_text(field, s),
            None => Ok(()),
        };
        let channel = self.channel;
        check_text("to", &self.to)?;
        let to = Recipients::parse(channel, "to", &self.to)?;
        text("from", &self.from)?;
        let from = match self.from {
            Some(f) if channel == Channel::Email => Some(EmailAddress::parse("from", &f)?),
            Some(_) => return Err(FieldError::new("from", "applies to email only")),
            None => None,
        };
        text("subject", &self.subject)?;
        if self.subject.is_some() && channel != Channel::Email {
            return Err(FieldError::new("subject", "applies to email only"));
        }
        text("text", &self.text)?;
        text("html", &self.html)?;
        let template_id = self
            .template_id
            .map(|raw| {
                check_text("template_id", &raw)?;
                raw.parse::<TemplateId>().map_err(|_| {
                    FieldError::new("template_id", format!("{raw:?} is not a template id"))
                })
            })
            .transpose()?;
        let template_version = match (self.template_version, template_id) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(FieldError::new(
                    "template_version",
                    "applies only with template_id",
                ))
            }
            (Some(v), Some(_)) => {
                Some(
                    crate::tenants::in_range("template_version", v, 1, i64::from(i32::MAX))? as u32,
                )
            }
        };
        let variables = string_map("variables", self.variables)?;
        let content = Content {
            from,
            subject: self.subject,
            text: self.text,
            html: self.html,
            template_id,
            template_version,
            variables,
        };
        let has_body = content.text.is_some() || content.html.is_some();
        match (&content.template_id, has_body) {
            (Some(_), true) => {
                return Err(FieldError::new(
                    "template_id",
                    "give either template_id or text/html, not both",
                ))
            }
            (None, false) => {
                return Err(FieldError::new(
                    "text",
                    "is required (or html, or template_id)",
                ))
            }
            _ => {}
        }
        if content.template_id.is_some() && content.subject.is_some() {
            return Err(FieldError::new(
                "subject",
                "comes from the template; give either template_id or subject",
            ));
        }
        if channel == Channel::Email && content.template_id.is_none() && content.subject.is_none() {
            return Err(FieldError::new(
                "subject",
                "is required for email unless a template supplies it",
            ));
        }
        if content.size() > MAX_CONTENT_BYTES {
            return Err(FieldError::new(
                "text",
                format!(
                    "the content is {} bytes; at most {MAX_CONTENT_BYTES} are allowed",
                    content.size()
                ),
            ));
        }
        let priority = match self.priority {
            None => Priority::DEFAULT,
            Some(p) => Priority::parse(p)?,
        };
        text("scheduled_at", &self.scheduled_at)?;
        let scheduled_at = match self.scheduled_at {
            None => None,
            Some(raw) => {
                let at = DateTime::parse_from_rfc3339(&raw)
                    .map_err(|_| {
                        FieldError::new(
                            "scheduled_at",
                            format!(
                                "{raw:?} is not an RFC 3339 time like \"2026-12-01T09:00:00Z\""
                            ),
                        )
                    })?
                    .with_timezone(&Utc);
                (at > now).then_some(at)
            }
        };
        let batch_id =
            match self.batch_id {
                None => None,
                Some(raw) => Some(raw.parse::<BatchId>().map_err(|_| {
                    FieldError::new("batch_id", format!("{raw:?} is not a batch id"))
                })?),
            };
        text("idempotency_key", &self.idempotency_key)?;
        if let Some(key) = &self.idempotency_key {
            if key.is_empty() || key.chars().count() > 255 {
                return Err(FieldError::new(
                    "idempotency_key",
                    "must have 1 to 255 characters",
                ));
            }
        }
        let metadata = string_map("metadata", self.metadata)?;
        if metadata.len() > MAX_METADATA {
            return Err(FieldError::new("metadata", "at most 64 entries"));
        }
        Ok(NewMessage {
            id: MessageId::new(),
            channel,
            to,
            content,
            priority,
            scheduled_at,
            batch_id,
            idempotency_key: self.idempotency_key,
            metadata,
        })
    }
}

impl TryFrom<SendMessage> for NewMessage {
    type Error = FieldError;

    /// Validates against the current time (see [`SendMessage::into_message`]).
    fn try_from(request: SendMessage) -> Result<Self, Self::Error> {
        request.into_message(Utc::now())
    }
}

fn string_map(
    field: &str,
    map: Option<BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, FieldError> {
    let map = map.unwrap_or_default();
    for (k, v) in &map {
        let name = format!("{field}.{k}");
        check_text(&name, k)?;
        check_text(&name, v)?;
    }
    Ok(map)
}

/// `202`: the broker confirmed the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    pub id: MessageId,
    /// `queued`, or `scheduled` when `scheduled_at` is in the future.
    pub status: MessageStatus,
}

/// `POST /v1/messages/batch`: all or nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBatch {
    /// 1 to 1,000 messages.
    #[serde(deserialize_with = "crate::object::vec")]
    #[schema(min_items = 1, max_items = 1000)]
    pub messages: Vec<SendMessage>,
}

/// `202`: every message of the batch, ids in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchAccepted {
    pub ids: Vec<MessageId>,
}

/// Something that happened to a message after it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageEvent {
    pub event: EventKind,
    /// When it happened, by the provider's account.
    pub at: DateTime<Utc>,
    /// What the provider said beyond the event (a bounce's diagnostic, a
    /// click's URL, a WeWork member's reply).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub detail: serde_json::Map<String, serde_json::Value>,
}

/// A message's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessageRecord {
    pub id: MessageId,
    pub status: MessageStatus,
    pub channel: Channel,
    pub to: String,
    /// The provider's id.
    pub provider: Option<ProviderId>,
    pub provider_name: Option<String>,
    pub attempts: u32,
    pub priority: u8,
    pub batch_id: Option<BatchId>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The provider's reports, oldest first: in `GET /v1/messages/{id}`
    /// (empty in lists).
    pub events: Vec<MessageEvent>,
}

/// An operator's view of a record: the record plus its tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AdminMessageRecord {
    pub tenant_id: TenantId,
    #[serde(flatten)]
    pub record: MessageRecord,
}

/// `POST /v1/messages/{id}/cancel` → the message is cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Cancelled {
    pub id: MessageId,
    /// Always `cancelled`.
    pub status: MessageStatus,
}

/// `GET /v1/messages?status=&batch_id=&cursor=&limit=`. Values stay strings
/// so that a bad one is refused naming the parameter.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListMessages {
    /// Only records with this status.
    #[param(value_type = Option<MessageStatus>)]
    pub status: Option<String>,
    /// Only records of this batch.
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub batch_id: Option<String>,
    /// `next_cursor` of the previous page (an id; empty is the first page).
    #[param(
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    pub cursor: Option<String>,
    /// 1 to 1,000; 100 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// A parsed [`ListMessages`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageQuery {
    pub status: Option<MessageStatus>,
    pub batch_id: Option<BatchId>,
    /// Records older than this id.
    pub before: Option<MessageId>,
    pub limit: u32,
}

impl ListMessages {
    pub fn parse(&self) -> Result<MessageQuery, FieldError> {
        let status = self
            .status
            .as_deref()
            .map(|s| {
                s.parse::<MessageStatus>()
                    .map_err(|e| FieldError::new("status", e))
            })
            .transpose()?;
        let batch_id = self
            .batch_id
            .as_deref()
            .map(|b| {
                crate::page::parse_id::<BatchId>(b)
                    .ok_or_else(|| FieldError::new("batch_id", "is not a batch id"))
            })
            .transpose()?;
        Ok(MessageQuery {
            status,
            batch_id,
            before: crate::page::parse_cursor(self.cursor.as_deref())?.map(MessageId),
            limit: crate::page::parse_limit(self.limit.as_deref())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::parse::{parse_body, ParseError};

    fn parse(v: Value) -> Result<NewMessage, FieldError> {
        match parse_body::<SendMessage>(v.to_string().as_bytes()) {
            Ok(request) => request.into_message(Utc::now()),
            Err(ParseError::Field(e)) => Err(e),
            Err(ParseError::Syntax(e)) => panic!("not JSON: {e}"),
        }
    }

    #[test]
    fn a_plain_email_parses_with_defaults() {
        let m =
            parse(json!({"channel": "email", "to": "a@example.com", "subject": "Hi", "text": "x"}))
                .expect("valid");
        assert_eq!(m.priority, Priority::DEFAULT);
        assert_eq!(m.initial_status(), MessageStatus::Queued);
    }

    #[test]
    fn each_mistake_names_its_field() {
        let cases = [
            (json!({"to": "a@example.com", "text": "x"}), "channel"),
            (
                json!({"channel": "fax", "to": "a@example.com", "text": "x"}),
                "channel",
            ),
            (
                json!({"channel": "email", "subject": "s", "text": "x"}),
                "to",
            ),
            (
                json!({"channel": "email", "to": "nope", "subject": "s", "text": "x"}),
                "to",
            ),
            (
                json!({"channel": "email", "to": 5, "subject": "s", "text": "x"}),
                "to",
            ),
            (
                json!({"channel": "email", "to": "a@example.com", "text": "x"}),
                "subject",
            ),
            (
                json!({"channel": "email", "to": "a@example.com", "subject": "s"}),
                "text",
            ),
            (
                json!({"channel": "email", "to": "a@example.com", "subject": "s", "text": "x", "priority": 11}),
                "priority",
            ),
            (
                json!({"channel": "email", "to": "a@example.com", "subject": "s", "text": "x", "priority": "high"}),
                "priority",
            ),
            (
                json!({"channel": "email", "to": "a@example.com", "subject": "s", "text": "x", "priority": 2.5}),
                "priority",
            ),
            (
                json!({"channel": "email", "to": "a@example.com", "subject": "s", "text": "x", "scheduled_at": "tomorrow"}),
                "scheduled_at",
            ),
            (
                json!({"channel": "email", "to": "a@example.com", "subject": "s", "text": "x", "metadata": {"k": 1}}),
                "metadata.k",
            ),
            (
                json!({"channel": "email", "to": "a@example.com", "subject": "s", "text": "x", "metadata": {"k": "a\u{0}"}}),
                "metadata.k",
            ),
            (
                json!({"channel": "email", "to": "a@example.com", "subject": "s", "text": "a\u{0}b"}),
                "text",
            ),
            (
                json!({"channel": "wework", "to": "u1", "subject": "s", "text": "x"}),
                "subject",
            ),
            (
                json!({"channel": "email", "to": "a@example.com", "subject": "s", "text": "x", "colour": "red"}),
                "colour",
            ),
            (
                json!({"channel": "email", "to": "a@example.com", "subject": "s", "text": "x", "batch_id": "b"}),
                "batch_id",
            ),
            (
                json!({"channel": "email", "to": "a@example.com", "subject": "s", "text": "x", "idempotency_key": ""}),
                "idempotency_key",
            ),
        ];
        for (body, field) in cases {
            let err = parse(body.clone()).expect_err(&body.to_string());
            assert_eq!(err.field, field, "{body}: {err}");
        }
    }

    #[test]
    fn null_is_the_same_as_absent() {
        let m = parse(json!({"channel": "wework", "to": "u1", "text": "x", "from": null, "priority": null, "metadata": null}))
            .expect("valid");
        assert_eq!(m.priority, Priority::DEFAULT);
        assert!(m.metadata.is_empty());
    }

    #[test]
    fn content_over_256_kib_is_refused() {
        let big = "x".repeat(MAX_CONTENT_BYTES + 1);
        let err =
            parse(json!({"channel": "wework", "to": "u1", "text": big})).expect_err("too big");
        assert_eq!(err.field, "text");
    }

    #[test]
    fn a_future_scheduled_at_makes_the_message_scheduled() {
        let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let m = parse(json!({"channel": "wework", "to": "u1", "text": "x", "scheduled_at": later}))
            .expect("valid");
        assert_eq!(m.initial_status(), MessageStatus::Scheduled);
        let past = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let m = parse(json!({"channel": "wework", "to": "u1", "text": "x", "scheduled_at": past}))
            .expect("valid");
        assert_eq!(m.initial_status(), MessageStatus::Queued);
    }

    #[test]
    fn a_request_round_trips_through_json() {
        let mut m = SendMessage::email("a@example.com", "Hi", "x");
        m.metadata = Some(BTreeMap::from([("k".to_owned(), "v".to_owned())]));
        let back: SendMessage =
            parse_body(&serde_json::to_vec(&m).expect("encode")).expect("decode");
        assert_eq!(back, m);
        assert_eq!(
            serde_json::to_value(&m).expect("encode"),
            json!({"channel": "email", "to": "a@example.com", "subject": "Hi", "text": "x", "metadata": {"k": "v"}})
        );
    }

    #[test]
    fn list_filters_name_the_parameter() {
        let q = ListMessages {
            status: Some("lost".into()),
            ..Default::default()
        };
        assert_eq!(q.parse().expect_err("status").field, "status");
        let q = ListMessages {
            batch_id: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(q.parse().expect_err("batch").field, "batch_id");
        assert_eq!(ListMessages::default().parse().expect("empty").limit, 100);
    }
}
