//! What a provider reports after a send, and the rank it gives a message's
//! status.

use std::fmt;
use std::str::FromStr;

use crate::MessageStatus;

/// The "provider" of the events Herald sees itself — opens and clicks of
/// tracked email (`/t/o`, `/t/c`): they are about whatever provider sent
/// the message.
pub const TRACKING_PROVIDER: uuid::Uuid = uuid::Uuid::nil();

/// What a provider reports about a sent message.
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
pub enum EventKind {
    Delivered,
    Read,
    Clicked,
    Replied,
    Bounced,
    Complained,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::Delivered,
        EventKind::Read,
        EventKind::Clicked,
        EventKind::Replied,
        EventKind::Bounced,
        EventKind::Complained,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Delivered => "delivered",
            EventKind::Read => "read",
            EventKind::Clicked => "clicked",
            EventKind::Replied => "replied",
            EventKind::Bounced => "bounced",
            EventKind::Complained => "complained",
        }
    }

    /// The status rank the event moves a message to (`sent` is 1). A
    /// message's status moves only to a higher rank: a late `delivered`
    /// never undoes a `read`; a complaint outranks everything, since it is
    /// what the recipient did last.
    pub fn rank(self) -> u8 {
        match self {
            EventKind::Delivered => 2,
            EventKind::Read => 3,
            EventKind::Clicked => 4,
            EventKind::Replied => 5,
            EventKind::Bounced => 6,
            EventKind::Complained => 7,
        }
    }

    /// Whether the event shows the message reached the recipient (so
    /// `delivered_at` is set by it when no `delivered` came first).
    pub fn implies_delivery(self) -> bool {
        matches!(
            self,
            EventKind::Delivered
                | EventKind::Read
                | EventKind::Clicked
                | EventKind::Replied
                | EventKind::Complained
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not an event (one of delivered, read, clicked, replied, bounced, complained)"
                )
            })
    }
}

/// A status's rank among those callbacks move between: `in_doubt` 0 (a
/// report proves the send), `sent` 1, then each event's [`EventKind::rank`].
/// `None` for statuses no callback changes: those not sent yet (their
/// events wait) and those that ended otherwise (failed, cancelled,
/// suppressed).
pub fn status_rank(status: MessageStatus) -> Option<u8> {
    Some(match status {
        MessageStatus::InDoubt => 0,
        MessageStatus::Sent => 1,
        MessageStatus::Delivered => EventKind::Delivered.rank(),
        MessageStatus::Read => EventKind::Read.rank(),
        MessageStatus::Clicked => EventKind::Clicked.rank(),
        MessageStatus::Replied => EventKind::Replied.rank(),
        MessageStatus::Bounced => EventKind::Bounced.rank(),
        MessageStatus::Complained => EventKind::Complained.rank(),
        _ => return None,
    })
}

impl EventKind {
    /// The status the event moves a message to.
    pub fn status(self) -> MessageStatus {
        match self {
            EventKind::Delivered => MessageStatus::Delivered,
            EventKind::Read => MessageStatus::Read,
            EventKind::Clicked => MessageStatus::Clicked,
            EventKind::Replied => MessageStatus::Replied,
            EventKind::Bounced => MessageStatus::Bounced,
            EventKind::Complained => MessageStatus::Complained,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_ranks_its_own_status() {
        for kind in EventKind::ALL {
            assert_eq!(status_rank(kind.status()), Some(kind.rank()));
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
            assert_eq!(kind.status().as_str(), kind.as_str());
        }
        assert_eq!(status_rank(MessageStatus::Sent), Some(1));
        assert_eq!(status_rank(MessageStatus::Sending), None);
        assert_eq!(status_rank(MessageStatus::Failed), None);
        assert!("opened"
            .parse::<EventKind>()
            .expect_err("refused")
            .contains("opened"));
    }
}
