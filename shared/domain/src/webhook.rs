//! What a tenant's webhook reports: the status changes of its messages.

use std::fmt;
use std::str::FromStr;

use crate::{EventKind, FieldError, MessageStatus};

/// One kind of event posted to a tenant's `webhook_url`: a message reached
/// a status a tenant acts on. Each maps to the [`MessageStatus`] of the
/// same name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    /// The provider accepted the message.
    Sent,
    /// Sending failed for good (after its retries, or refused outright).
    Failed,
    /// A worker stopped mid-send; the message was set aside, not resent.
    InDoubt,
    /// Accepted for an address on the suppression list; never sent.
    Suppressed,
    /// Cancelled before it was sent.
    Cancelled,
    Delivered,
    Read,
    Clicked,
    Replied,
    Bounced,
    Complained,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 11] = [
        WebhookEvent::Sent,
        WebhookEvent::Failed,
        WebhookEvent::InDoubt,
        WebhookEvent::Suppressed,
        WebhookEvent::Cancelled,
        WebhookEvent::Delivered,
        WebhookEvent::Read,
        WebhookEvent::Clicked,
        WebhookEvent::Replied,
        WebhookEvent::Bounced,
        WebhookEvent::Complained,
    ];

    pub fn status(self) -> MessageStatus {
        match self {
            WebhookEvent::Sent => MessageStatus::Sent,
            WebhookEvent::Failed => MessageStatus::Failed,
            WebhookEvent::InDoubt => MessageStatus::InDoubt,
            WebhookEvent::Suppressed => MessageStatus::Suppressed,
            WebhookEvent::Cancelled => MessageStatus::Cancelled,
            WebhookEvent::Delivered => MessageStatus::Delivered,
            WebhookEvent::Read => MessageStatus::Read,
            WebhookEvent::Clicked => MessageStatus::Clicked,
            WebhookEvent::Replied => MessageStatus::Replied,
            WebhookEvent::Bounced => MessageStatus::Bounced,
            WebhookEvent::Complained => MessageStatus::Complained,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.status().as_str()
    }

    /// Parses one entry of `webhook_events`, naming `field` when it is not
    /// an event.
    pub fn parse(field: &str, raw: &str) -> Result<WebhookEvent, FieldError> {
        raw.parse().map_err(|()| {
            let known: Vec<&str> = WebhookEvent::ALL.iter().map(|e| e.as_str()).collect();
            FieldError::new(
                field,
                format!(
                    "{raw:?} is not an event; expected one of {}",
                    known.join(", ")
                ),
            )
        })
    }
}

impl From<EventKind> for WebhookEvent {
    fn from(kind: EventKind) -> Self {
        match kind {
            EventKind::Delivered => WebhookEvent::Delivered,
            EventKind::Read => WebhookEvent::Read,
            EventKind::Clicked => WebhookEvent::Clicked,
            EventKind::Replied => WebhookEvent::Replied,
            EventKind::Bounced => WebhookEvent::Bounced,
            EventKind::Complained => WebhookEvent::Complained,
        }
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WebhookEvent {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        WebhookEvent::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or(())
    }
}

/// Where a delivery stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt (or under way).
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// No attempt succeeded within 24 hours (or the webhook was removed).
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_reads_back_and_names_its_status() {
        for e in WebhookEvent::ALL {
            assert_eq!(e.as_str().parse::<WebhookEvent>(), Ok(e));
            assert_eq!(
                serde_json::to_value(e).expect("a value"),
                serde_json::json!(e.as_str())
            );
        }
        for k in EventKind::ALL {
            assert_eq!(WebhookEvent::from(k).as_str(), k.as_str());
        }
        let err = WebhookEvent::parse("webhook_events[1]", "queued").expect_err("an error");
        assert_eq!(err.field, "webhook_events[1]");
        assert!(err.message.contains("\"queued\" is not an event"), "{err}");
    }
}
