use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A message record's status (docs/API.md). Callback statuses move forward by
/// rank and never backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Queued,
    Scheduled,
    Pending,
    Sending,
    Sent,
    Delivered,
    Read,
    Clicked,
    Replied,
    Bounced,
    Complained,
    Failed,
    Cancelled,
    Suppressed,
    InDoubt,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 15] = [
        MessageStatus::Queued,
        MessageStatus::Scheduled,
        MessageStatus::Pending,
        MessageStatus::Sending,
        MessageStatus::Sent,
        MessageStatus::Delivered,
        MessageStatus::Read,
        MessageStatus::Clicked,
        MessageStatus::Replied,
        MessageStatus::Bounced,
        MessageStatus::Complained,
        MessageStatus::Failed,
        MessageStatus::Cancelled,
        MessageStatus::Suppressed,
        MessageStatus::InDoubt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Scheduled => "scheduled",
            MessageStatus::Pending => "pending",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Clicked => "clicked",
            MessageStatus::Replied => "replied",
            MessageStatus::Bounced => "bounced",
            MessageStatus::Complained => "complained",
            MessageStatus::Failed => "failed",
            MessageStatus::Cancelled => "cancelled",
            MessageStatus::Suppressed => "suppressed",
            MessageStatus::InDoubt => "in_doubt",
        }
    }

    /// Still waiting to be handed to a provider: a cancel can stop it.
    pub fn is_cancellable(self) -> bool {
        matches!(
            self,
            MessageStatus::Queued | MessageStatus::Scheduled | MessageStatus::Pending
        )
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?}"))
    }
}
