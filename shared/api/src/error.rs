//! The body of every 4xx and 5xx answer.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every 4xx and 5xx body: `{"error": {code, message, field?, index?}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// unauthorized, forbidden, not_found, method_not_allowed,
    /// unsupported_media_type, invalid_json, invalid_field, conflict,
    /// idempotency_conflict, payload_too_large, rate_limited,
    /// quota_exceeded, unavailable.
    pub code: String,
    /// A sentence for people; it starts with the field's name when `field`
    /// is set.
    pub message: String,
    /// The field at fault, dotted for nested ones (`quota.per_minute`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The item's index in a batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
}
