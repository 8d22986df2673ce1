//! Herald's domain types. Everything a caller sends is parsed into these once,
//! at the producer's edge; past it no code re-checks a raw string.

mod channel;
mod disposition;
mod event;
mod ids;
pub mod json_int;
mod message;
mod priority;
mod provider;
pub mod provider_config;
mod recipient;
mod record;
mod status;
mod template;
mod tenant;
mod webhook;

pub use channel::Channel;
pub use disposition::Disposition;
pub use event::{status_rank, EventKind, TRACKING_PROVIDER};
pub use ids::{ApiKeyId, BatchId, MessageId, ProviderId, TemplateId, TenantId};
pub use message::{Content, NewMessage, MAX_CONTENT_BYTES};
pub use priority::Priority;
pub use provider::{Provider, ProviderKind, Quota, SendWindow};
pub use recipient::{EmailAddress, Recipients, WebhookUrl, WeworkUserIds};
pub use record::MessageRecord;
pub use status::MessageStatus;
pub use template::{TemplateParts, Textcard};
pub use tenant::{display_name, Tenant, TenantCode, TenantStatus, Tracking};
pub use webhook::{DeliveryState, WebhookEvent};

/// A caller's input that does not parse: names the field and says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The JSON field, dotted for nested ones (`quota.per_minute`).
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Rejects strings a database or a provider would choke on: NUL characters.
pub fn check_text(field: &str, value: &str) -> Result<(), FieldError> {
    if value.contains('\0') {
        return Err(FieldError::new(field, "must not contain NUL characters"));
    }
    Ok(())
}
