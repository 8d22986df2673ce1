//! `/v1/suppressions`: the addresses a tenant never sends to again.

use chrono::{DateTime, Utc};
use herald_domain::{EmailAddress, FieldError, MessageId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// A hard bounce reported by the provider.
    HardBounce,
    /// The recipient marked a message as spam.
    Complaint,
    /// The recipient unsubscribed.
    Unsubscribe,
    /// Added by the tenant.
    Manual,
}

impl SuppressionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::HardBounce => "hard_bounce",
            SuppressionReason::Complaint => "complaint",
            SuppressionReason::Unsubscribe => "unsubscribe",
            SuppressionReason::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<SuppressionReason> {
        [
            SuppressionReason::HardBounce,
            SuppressionReason::Complaint,
            SuppressionReason::Unsubscribe,
            SuppressionReason::Manual,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// One entry of the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Suppression {
    /// Lower-cased.
    pub address: String,
    pub reason: SuppressionReason,
    /// The message whose bounce or complaint added it.
    pub message_id: Option<MessageId>,
    pub created_at: DateTime<Utc>,
}

/// What a tenant may record as the reason (bounces and complaints are
/// added by Herald itself, from provider reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChosenReason {
    Manual,
    Unsubscribe,
}

/// `POST /v1/suppressions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSuppression {
    #[schema(example = "alice@example.com")]
    pub address: String,
    /// `manual` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ChosenReason>,
}

impl NewSuppression {
    /// The address, checked and lower-cased, and the reason.
    pub fn parse(&self) -> Result<(String, SuppressionReason), FieldError> {
        let address = EmailAddress::parse("address", &self.address)?;
        let reason = match self.reason {
            None | Some(ChosenReason::Manual) => SuppressionReason::Manual,
            Some(ChosenReason::Unsubscribe) => SuppressionReason::Unsubscribe,
        };
        Ok((address.as_str().to_lowercase(), reason))
    }
}

/// `GET /v1/suppressions?cursor=&limit=`: in address order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuppressionQuery {
    /// `next_cursor` of the previous page (an address).
    pub cursor: Option<String>,
    /// 1 to 1,000; 100 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

impl SuppressionQuery {
    pub fn parse(&self) -> Result<(Option<String>, u32), FieldError> {
        let limit = crate::page::parse_limit(self.limit.as_deref())?;
        let cursor = self.cursor.clone().filter(|c| !c.is_empty());
        if let Some(c) = &cursor {
            herald_domain::check_text("cursor", c)?;
        }
        Ok((cursor, limit))
    }
}
