//! `/v1/webhooks`: the tenant's webhook — its signing secret, the events
//! posted to it, and the log of their deliveries.
//!
//! Each event is POSTed to the tenant's `webhook_url` as a [`WebhookPayload`]
//! with `X-Herald-Signature: t=<unix seconds>,sha256=<hex HMAC-SHA256 of
//! "<t>.<body>">` keyed with the secret; during a rotation's overlap a
//! second `sha256=` entry is signed with the previous secret.

use chrono::{DateTime, Utc};
pub use herald_domain::DeliveryState;
use herald_domain::{FieldError, MessageId, WebhookEvent};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// The body of one webhook POST.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookPayload {
    /// The event's id: the same in every attempt and resend (dedupe by it).
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: WebhookEvent,
    pub message_id: MessageId,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The message's channel and recipient (absent once the record is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// The message's `metadata`, as sent.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// What the provider or Herald said: `provider_id`, `error_code`,
    /// `error_message`, a bounce's `status` and `diagnostic`, …
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// One event's delivery, as the log shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookDelivery {
    /// The event's id (`id` of the payload).
    pub id: Uuid,
    pub event: WebhookEvent,
    pub message_id: MessageId,
    pub occurred_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub state: DeliveryState,
    /// Requests made so far.
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// No attempt starts after this.
    pub give_up_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last attempt, if one was answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// `GET /v1/webhooks/deliveries?state=&event=&message_id=&cursor=&limit=`,
/// newest first. Values stay strings so that a bad one is refused naming
/// the parameter.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    #[param(value_type = Option<DeliveryState>)]
    pub state: Option<String>,
    #[param(value_type = Option<WebhookEvent>)]
    pub event: Option<String>,
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub message_id: Option<String>,
    /// `next_cursor` of the previous page (an id; empty is the first page).
    #[param(
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    pub cursor: Option<String>,
    /// 1 to 1,000; 100 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// A parsed [`DeliveryQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    pub event: Option<WebhookEvent>,
    pub message_id: Option<MessageId>,
    /// Deliveries older than this id.
    pub before: Option<Uuid>,
    pub limit: u32,
}

impl DeliveryQuery {
    pub fn parse(&self) -> Result<DeliveryFilter, FieldError> {
        let state = self
            .state
            .as_deref()
            .map(|s| {
                DeliveryState::parse(s).ok_or_else(|| {
                    FieldError::new(
                        "state",
                        format!("{s:?} is not pending, delivered or failed"),
                    )
                })
            })
            .transpose()?;
        let event = self
            .event
            .as_deref()
            .map(|e| WebhookEvent::parse("event", e))
            .transpose()?;
        let message_id = self
            .message_id
            .as_deref()
            .map(|m| {
                crate::page::parse_id::<MessageId>(m)
                    .ok_or_else(|| FieldError::new("message_id", "is not a message id"))
            })
            .transpose()?;
        Ok(DeliveryFilter {
            state,
            event,
            message_id,
            before: crate::page::parse_cursor(self.cursor.as_deref())?,
            limit: crate::page::parse_limit(self.limit.as_deref())?,
        })
    }
}

/// `201` of `POST /v1/webhooks/secret`: the new signing secret, shown only
/// here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookSecret {
    /// `whsec_` and 64 hex digits; the HMAC key is this whole string.
    pub secret: String,
    pub created_at: DateTime<Utc>,
    /// The secret it replaced signs beside it until then (absent for the
    /// first secret).
    pub previous_valid_until: Option<DateTime<Utc>>,
}

/// `GET /v1/webhooks`: the tenant's webhook as the admin set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WebhookSettings {
    /// Where events go; `null` posts none.
    pub url: Option<String>,
    /// The events posted; `null` is every event.
    pub events: Option<Vec<WebhookEvent>>,
    /// When the signing secret was made; `null`: there is none yet, and
    /// deliveries wait (pending) until `POST /v1/webhooks/secret` makes one.
    pub secret_created_at: Option<DateTime<Utc>>,
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filters_name_their_parameter() {
        for (q, field) in [
            (
                DeliveryQuery {
                    state: Some("gone".into()),
                    ..Default::default()
                },
                "state",
            ),
            (
                DeliveryQuery {
                    event: Some("queued".into()),
                    ..Default::default()
                },
                "event",
            ),
            (
                DeliveryQuery {
                    message_id: Some("x".into()),
                    ..Default::default()
                },
                "message_id",
            ),
            (
                DeliveryQuery {
                    limit: Some("0".into()),
                    ..Default::default()
                },
                "limit",
            ),
        ] {
            assert_eq!(q.parse().expect_err("an error").field, field);
        }
        let ok = DeliveryQuery {
            state: Some("failed".into()),
            event: Some("bounced".into()),
            ..Default::default()
        }
        .parse()
        .expect("a value");
        assert_eq!(ok.state, Some(DeliveryState::Failed));
        assert_eq!(ok.event, Some(WebhookEvent::Bounced));
        assert_eq!(ok.limit, 100);
    }

    #[test]
    fn the_payload_names_its_type() {
        let p = WebhookPayload {
            id: Uuid::nil(),
            kind: WebhookEvent::Delivered,
            message_id: MessageId(Uuid::nil()),
            at: DateTime::from_timestamp(1_800_000_000, 0).expect("a value"),
            channel: Some("email".into()),
            recipient: Some("a@example.com".into()),
            metadata: serde_json::json!({"campaign": "winter"}),
            detail: serde_json::json!({}),
        };
        let v = serde_json::to_value(&p).expect("a value");
        assert_eq!(v["type"], "delivered");
        assert_eq!(v["metadata"]["campaign"], "winter");
        assert_eq!(
            serde_json::from_value::<WebhookPayload>(v).expect("a value"),
            p
        );
    }
}
