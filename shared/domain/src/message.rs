use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::{
    check_text, BatchId, Channel, EmailAddress, FieldError, MessageId, Priority, Recipients,
    TenantId,
};

/// A message's content is at most 256 KiB after rendering.
pub const MAX_CONTENT_BYTES: usize = 256 * 1024;

const FIELDS: &[&str] = &[
    "channel",
    "to",
    "from",
    "subject",
    "text",
    "html",
    "template_id",
    "variables",
    "priority",
    "scheduled_at",
    "batch_id",
    "idempotency_key",
    "metadata",
];

/// What a send request carries, parsed field by field from JSON so that each
/// error names the field that is wrong.
pub struct SendRequest;

#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub from: Option<EmailAddress>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub template_id: Option<String>,
    pub variables: BTreeMap<String, String>,
}

impl Content {
    fn size(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        opt(&self.subject)
            + opt(&self.text)
            + opt(&self.html)
            + self
                .variables
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// A validated message, ready to be recorded and queued.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    pub id: MessageId,
    pub channel: Channel,
    pub to: Recipients,
    pub content: Content,
    pub priority: Priority,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub batch_id: Option<BatchId>,
    pub idempotency_key: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

fn string(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            check_text(field, s)?;
            Ok(Some(s.clone()))
        }
        Some(other) => Err(FieldError::new(
            field,
            format!("must be a string, got {}", kind(other)),
        )),
    }
}

fn string_map(
    obj: &Map<String, Value>,
    field: &str,
) -> Result<BTreeMap<String, String>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                let name = format!("{field}.{k}");
                check_text(&name, k)?;
                match v {
                    Value::String(s) => {
                        check_text(&name, s)?;
                        Ok((k.clone(), s.clone()))
                    }
                    other => Err(FieldError::new(
                        name,
                        format!("must be a string, got {}", kind(other)),
                    )),
                }
            })
            .collect(),
        Some(other) => Err(FieldError::new(
            field,
            format!("must be an object of strings, got {}", kind(other)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl SendRequest {
    /// Parses one message of a send request; `now` decides whether
    /// `scheduled_at` is in the future.
    pub fn parse(value: &Value, now: DateTime<Utc>) -> Result<NewMessage, FieldError> {
        let obj = value.as_object().ok_or_else(|| {
            FieldError::new(
                "",
                format!("a message must be a JSON object, got {}", kind(value)),
            )
        })?;
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(FieldError::new(
                unknown.clone(),
                "is not a field of a message",
            ));
        }
        let channel: Channel = string(obj, "channel")?
            .ok_or_else(|| FieldError::new("channel", "is required"))?
            .parse()?;
        let to_raw = string(obj, "to")?.ok_or_else(|| FieldError::new("to", "is required"))?;
        let to = Recipients::parse(channel, "to", &to_raw)?;

        let from = match string(obj, "from")? {
            Some(f) if channel == Channel::Email => Some(EmailAddress::parse("from", &f)?),
            Some(_) => return Err(FieldError::new("from", "applies to email only")),
            None => None,
        };
        let subject = string(obj, "subject")?;
        if subject.is_some() && channel != Channel::Email {
            return Err(FieldError::new("subject", "applies to email only"));
        }
        let content = Content {
            from,
            subject,
            text: string(obj, "text")?,
            html: string(obj, "html")?,
            template_id: string(obj, "template_id")?,
            variables: string_map(obj, "variables")?,
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

        let priority = match obj.get("priority") {
            None | Some(Value::Null) => Priority::DEFAULT,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(p) => Priority::parse(p)?,
                None => {
                    return Err(FieldError::new(
                        "priority",
                        "must be an integer from 1 to 10",
                    ))
                }
            },
            Some(other) => {
                return Err(FieldError::new(
                    "priority",
                    format!("must be an integer from 1 to 10, got {}", kind(other)),
                ))
            }
        };
        let scheduled_at = match string(obj, "scheduled_at")? {
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
                if at > now + chrono::Duration::days(366) {
                    return Err(FieldError::new("scheduled_at", "must be within a year"));
                }
                (at > now).then_some(at)
            }
        };
        let batch_id =
            match string(obj, "batch_id")? {
                None => None,
                Some(raw) => Some(raw.parse::<BatchId>().map_err(|_| {
                    FieldError::new("batch_id", format!("{raw:?} is not a batch id"))
                })?),
            };
        let idempotency_key = string(obj, "idempotency_key")?;
        if let Some(key) = &idempotency_key {
            if key.is_empty() || key.len() > 255 {
                return Err(FieldError::new(
                    "idempotency_key",
                    "must have 1 to 255 characters",
                ));
            }
        }
        let metadata = string_map(obj, "metadata")?;
        if metadata.len() > 64 {
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
            idempotency_key,
            metadata,
        })
    }
}

impl NewMessage {
    pub fn initial_status(&self) -> crate::MessageStatus {
        if self.scheduled_at.is_some() {
            crate::MessageStatus::Scheduled
        } else {
            crate::MessageStatus::Queued
        }
    }

    /// The job envelope that travels on the broker.
    pub fn to_job(
        &self,
        tenant: TenantId,
        now: DateTime<Utc>,
        trace_context: BTreeMap<String, String>,
    ) -> herald_proto::v1::Job {
        use herald_proto::v1;
        v1::Job {
            message_id: self.id.to_string(),
            tenant_id: tenant.to_string(),
            channel: self.channel.to_proto() as i32,
            recipients: self.to.to_vec(),
            content: Some(v1::Content {
                from: self
                    .content
                    .from
                    .as_ref()
                    .map(|f| f.to_string())
                    .unwrap_or_default(),
                subject: self.content.subject.clone().unwrap_or_default(),
                text: self.content.text.clone().unwrap_or_default(),
                html: self.content.html.clone().unwrap_or_default(),
                template_id: self.content.template_id.clone().unwrap_or_default(),
                template_version: 0,
                variables: self.content.variables.clone().into_iter().collect(),
            }),
            priority: u32::from(self.priority.get()),
            scheduled_at_ms: self.scheduled_at.map_or(0, |t| t.timestamp_millis()),
            attempt: 0,
            assignment: None,
            metadata: self.metadata.clone().into_iter().collect(),
            trace_context: trace_context.into_iter().collect(),
            enqueued_at_ms: now.timestamp_millis(),
            batch_id: self.batch_id.map(|b| b.to_string()).unwrap_or_default(),
            last_error: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<NewMessage, FieldError> {
        SendRequest::parse(&v, Utc::now())
    }

    #[test]
    fn a_plain_email_parses_with_defaults() {
        let m =
            parse(json!({"channel": "email", "to": "a@example.com", "subject": "Hi", "text": "x"}))
                .expect("valid");
        assert_eq!(m.priority, Priority::DEFAULT);
        assert_eq!(m.initial_status(), crate::MessageStatus::Queued);
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
                json!({"channel": "email", "to": "nope", "subject": "s", "text": "x"}),
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
                json!({"channel": "email", "to": "a@example.com", "subject": "s", "text": "x", "scheduled_at": "tomorrow"}),
                "scheduled_at",
            ),
            (
                json!({"channel": "email", "to": "a@example.com", "subject": "s", "text": "x", "metadata": {"k": 1}}),
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
        ];
        for (body, field) in cases {
            let err = parse(body.clone()).expect_err(&body.to_string());
            assert_eq!(err.field, field, "{body}: {err}");
        }
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
        assert_eq!(m.initial_status(), crate::MessageStatus::Scheduled);
        let past = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
        let m = parse(json!({"channel": "wework", "to": "u1", "text": "x", "scheduled_at": past}))
            .expect("valid");
        assert_eq!(m.initial_status(), crate::MessageStatus::Queued);
    }
}
