use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::{
    BatchId, Channel, EmailAddress, MessageId, Priority, Recipients, TemplateId, TenantId,
};

/// A message's content is at most 256 KiB after rendering.
pub const MAX_CONTENT_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub from: Option<EmailAddress>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// Rendered by the worker from this template instead of the bodies.
    pub template_id: Option<TemplateId>,
    /// The version to render: the caller's pin, or (once the producer
    /// resolved it) the version current at enqueue.
    pub template_version: Option<u32>,
    pub variables: BTreeMap<String, String>,
}

impl Content {
    /// Bytes of subject, bodies and variables: what the 256 KiB cap counts.
    pub fn size(&self) -> usize {
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
                template_id: self
                    .content
                    .template_id
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                template_version: self.content.template_version.unwrap_or(0),
                variables: self.content.variables.clone().into_iter().collect(),
                textcard: None,
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
            republished: false,
            tried_providers: Vec::new(),
            track_opens: false,
            track_clicks: false,
        }
    }
}
