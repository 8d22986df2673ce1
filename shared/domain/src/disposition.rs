use std::time::Duration;

/// What happens next after a send attempt. Provider adapters map every
/// outcome to exactly one of these and the worker acts on it, never on
/// error strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The provider accepted the message (SMTP 250, WeWork errcode 0, 2xx).
    Sent { provider_message_id: Option<String> },
    /// A transient failure: try again no sooner than `after`.
    RetryAfter {
        after: Duration,
        code: String,
        reason: String,
    },
    /// This provider cannot take it now (throttled, unreachable before the
    /// message was handed over): try another provider.
    Failover { code: String, reason: String },
    /// The provider answered "too fast" (a rate limit): the provider is
    /// throttled as a whole — its admitted rate lowered, held for `hold`
    /// when it said how long — and the message is tried again without
    /// spending an attempt. Not a failure of the provider.
    Throttled {
        hold: Option<Duration>,
        code: String,
        reason: String,
    },
    /// A permanent failure: dead-letter with the reason.
    DeadLetter { code: String, reason: String },
    /// The provider may or may not have taken it (a timeout after SMTP's
    /// final dot): never resent silently, recorded `in_doubt`.
    InDoubt { reason: String },
}

impl Disposition {
    pub fn is_sent(&self) -> bool {
        matches!(self, Disposition::Sent { .. })
    }

    /// The error code recorded for a failed outcome (`None` when sent).
    pub fn code(&self) -> Option<&str> {
        match self {
            Disposition::Sent { .. } => None,
            Disposition::RetryAfter { code, .. }
            | Disposition::Failover { code, .. }
            | Disposition::Throttled { code, .. }
            | Disposition::DeadLetter { code, .. } => Some(code),
            Disposition::InDoubt { .. } => Some("in_doubt"),
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Disposition::Sent { .. } => None,
            Disposition::RetryAfter { reason, .. }
            | Disposition::Failover { reason, .. }
            | Disposition::Throttled { reason, .. }
            | Disposition::DeadLetter { reason, .. }
            | Disposition::InDoubt { reason } => Some(reason),
        }
    }
}
