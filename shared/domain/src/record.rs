use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{BatchId, Channel, MessageId, MessageStatus, Priority, ProviderId, TenantId};

/// A message record as the store hands it out (the tiered tables' one view).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub channel: Channel,
    pub recipient: String,
    pub status: MessageStatus,
    pub provider_id: Option<ProviderId>,
    /// The provider's name, while the provider exists.
    pub provider_name: Option<String>,
    pub attempts: u32,
    pub priority: Priority,
    pub batch_id: Option<BatchId>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub metadata: Value,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}
