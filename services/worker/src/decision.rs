//! What happens to a message after its send, decided from values alone (the
//! disposition, the attempt, the policy) so that every branch has a unit test.

use std::time::Duration;

use herald_domain::{Disposition, MessageStatus};

/// The worker's next step for one sent (or refused) message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterSend {
    /// Recorded `sent`; nothing is published.
    Sent,
    /// Recorded `pending` and published to the delay tier for `wait`.
    /// `refund`: the provider never saw it, so its charged capacity returns.
    Retry { wait: Duration, refund: bool },
    /// The provider said "too fast": it is throttled, the reservation is
    /// refunded, and the message waits `wait` (its hold, else a second)
    /// for its next try without spending an attempt — the throttle, not
    /// the attempt count, bounds how often it is tried.
    Throttled { wait: Duration },
    /// In doubt on a channel whose receiver dedupes: recorded `pending` with
    /// `in_doubt_resent` and published to the delay tier for `wait`.
    ResendInDoubt { wait: Duration },
    /// In doubt and held: recorded `in_doubt`, dead-lettered as `in_doubt`.
    HoldInDoubt,
    /// Recorded `failed` and dead-lettered with `code`.
    DeadLetter { code: String },
}

impl AfterSend {
    /// The status the message record moves to.
    pub fn status(&self) -> MessageStatus {
        match self {
            AfterSend::Sent => MessageStatus::Sent,
            AfterSend::Retry { .. }
            | AfterSend::Throttled { .. }
            | AfterSend::ResendInDoubt { .. } => MessageStatus::Pending,
            AfterSend::HoldInDoubt => MessageStatus::InDoubt,
            AfterSend::DeadLetter { .. } => MessageStatus::Failed,
        }
    }
}

/// Decides the next step for attempt `attempt` (1 for the first) of at most
/// `max_attempts`. `backoff` is this attempt's jittered back-off;
/// `resends_in_doubt` whether the message's channel resends in-doubt sends.
pub fn after_send(
    disposition: &Disposition,
    attempt: u32,
    max_attempts: u32,
    backoff: Duration,
    resends_in_doubt: bool,
) -> AfterSend {
    let attempts_left = attempt < max_attempts;
    match disposition {
        Disposition::Sent { .. } => AfterSend::Sent,
        Disposition::Throttled { hold, .. } => AfterSend::Throttled {
            wait: hold
                .unwrap_or(Duration::from_secs(1))
                .clamp(Duration::from_secs(1), crate::classify::MAX_RETRY_DELAY),
        },
        // A provider's own delay is a floor, never shortens the back-off.
        Disposition::RetryAfter { after, .. } if attempts_left => AfterSend::Retry {
            wait: backoff.max(*after),
            refund: false,
        },
        // Another provider may take it at once: the scheduler re-scores it.
        Disposition::Failover { .. } if attempts_left => AfterSend::Retry {
            wait: Duration::from_secs(1),
            refund: true,
        },
        Disposition::InDoubt { .. } if resends_in_doubt && attempts_left => {
            AfterSend::ResendInDoubt { wait: backoff }
        }
        Disposition::InDoubt { .. } => AfterSend::HoldInDoubt,
        _ => AfterSend::DeadLetter {
            code: disposition.code().unwrap_or("failed").to_owned(),
        },
    }
}

/// What the send says of the provider's health: `None` for a refused
/// recipient, which says nothing about the provider.
pub fn provider_ok(disposition: &Disposition) -> Option<bool> {
    match disposition {
        Disposition::Sent { .. } => Some(true),
        // A refused recipient says nothing of the provider, nor does "too
        // fast": the throttle answers that, not the success rate.
        Disposition::DeadLetter { .. } | Disposition::Throttled { .. } => None,
        _ => Some(false),
    }
}

/// The `outcome` label of `herald_worker_sends_total`.
pub fn outcome_label(disposition: &Disposition) -> &'static str {
    match disposition {
        Disposition::Sent { .. } => "sent",
        Disposition::RetryAfter { .. } => "retry",
        Disposition::Failover { .. } => "failover",
        Disposition::Throttled { .. } => "throttled",
        Disposition::DeadLetter { .. } => "dead_letter",
        Disposition::InDoubt { .. } => "in_doubt",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Duration = Duration::from_secs(4);

    fn retry_after(secs: u64) -> Disposition {
        Disposition::RetryAfter {
            after: Duration::from_secs(secs),
            code: "smtp_451".into(),
            reason: "try later".into(),
        }
    }

    fn throttled(hold: Option<u64>) -> Disposition {
        Disposition::Throttled {
            hold: hold.map(Duration::from_secs),
            code: "wework_45009".into(),
            reason: "api freq out of limit".into(),
        }
    }

    #[test]
    fn a_rate_limit_answer_waits_its_hold_spends_no_attempt_and_is_no_failure() {
        assert_eq!(
            after_send(&throttled(None), 5, 5, BACKOFF, false),
            AfterSend::Throttled {
                wait: Duration::from_secs(1)
            },
            "even on the last attempt"
        );
        assert_eq!(
            after_send(&throttled(Some(7)), 1, 5, BACKOFF, false),
            AfterSend::Throttled {
                wait: Duration::from_secs(7)
            }
        );
        assert_eq!(
            after_send(&throttled(None), 1, 5, BACKOFF, false).status(),
            MessageStatus::Pending
        );
        assert_eq!(provider_ok(&throttled(None)), None);
    }

    fn failover() -> Disposition {
        Disposition::Failover {
            code: "smtp_connect".into(),
            reason: "refused".into(),
        }
    }

    fn in_doubt() -> Disposition {
        Disposition::InDoubt {
            reason: "no reply after the final dot".into(),
        }
    }

    #[test]
    fn a_sent_message_is_recorded_sent_and_counts_as_a_healthy_send() {
        let sent = Disposition::Sent {
            provider_message_id: None,
        };
        assert_eq!(after_send(&sent, 1, 5, BACKOFF, false), AfterSend::Sent);
        assert_eq!(AfterSend::Sent.status(), MessageStatus::Sent);
        assert_eq!(provider_ok(&sent), Some(true));
    }

    #[test]
    fn a_retry_waits_for_the_longer_of_the_backoff_and_the_providers_delay() {
        assert_eq!(
            after_send(&retry_after(60), 1, 5, BACKOFF, false),
            AfterSend::Retry {
                wait: Duration::from_secs(60),
                refund: false
            }
        );
        assert_eq!(
            after_send(&retry_after(1), 1, 5, BACKOFF, false),
            AfterSend::Retry {
                wait: BACKOFF,
                refund: false
            }
        );
    }

    #[test]
    fn a_failover_is_retried_after_a_second_and_its_capacity_refunded() {
        let next = after_send(&failover(), 2, 5, BACKOFF, false);
        assert_eq!(
            next,
            AfterSend::Retry {
                wait: Duration::from_secs(1),
                refund: true
            }
        );
        assert_eq!(next.status(), MessageStatus::Pending);
        assert_eq!(provider_ok(&failover()), Some(false));
    }

    #[test]
    fn the_last_attempt_dead_letters_a_retry_or_a_failover_with_its_code() {
        assert_eq!(
            after_send(&retry_after(60), 5, 5, BACKOFF, false),
            AfterSend::DeadLetter {
                code: "smtp_451".into()
            }
        );
        assert_eq!(
            after_send(&failover(), 5, 5, BACKOFF, false),
            AfterSend::DeadLetter {
                code: "smtp_connect".into()
            }
        );
    }

    #[test]
    fn a_refused_recipient_is_dead_lettered_and_says_nothing_of_the_provider() {
        let refused = Disposition::DeadLetter {
            code: "smtp_550".into(),
            reason: "no such user".into(),
        };
        let next = after_send(&refused, 1, 5, BACKOFF, true);
        assert_eq!(
            next,
            AfterSend::DeadLetter {
                code: "smtp_550".into()
            }
        );
        assert_eq!(next.status(), MessageStatus::Failed);
        assert_eq!(provider_ok(&refused), None);
    }

    #[test]
    fn an_in_doubt_send_is_held_unless_its_channel_resends() {
        assert_eq!(
            after_send(&in_doubt(), 1, 5, BACKOFF, false),
            AfterSend::HoldInDoubt
        );
        assert_eq!(AfterSend::HoldInDoubt.status(), MessageStatus::InDoubt);
        assert_eq!(
            after_send(&in_doubt(), 1, 5, BACKOFF, true),
            AfterSend::ResendInDoubt { wait: BACKOFF }
        );
    }

    #[test]
    fn an_in_doubt_send_on_its_last_attempt_is_held_even_where_the_channel_resends() {
        assert_eq!(
            after_send(&in_doubt(), 5, 5, BACKOFF, true),
            AfterSend::HoldInDoubt
        );
    }

    #[test]
    fn every_disposition_has_its_own_outcome_label() {
        assert_eq!(outcome_label(&retry_after(1)), "retry");
        assert_eq!(outcome_label(&failover()), "failover");
        assert_eq!(outcome_label(&in_doubt()), "in_doubt");
    }
}
