//! What a reply or a transport error means for the message: one disposition
//! each.

use std::time::Duration;

use herald_domain::Disposition;

use super::client::SendReply;
use crate::classify;
use crate::provider::Outgoing;

pub(super) fn sent(out: &Outgoing<'_>, reply: SendReply) -> Disposition {
    // WeWork sends to the valid users and lists the others; the message
    // counts as sent. (All invalid is errcode 81013, a dead letter.)
    if !(reply.invaliduser.is_empty()
        && reply.invalidparty.is_empty()
        && reply.invalidtag.is_empty())
    {
        tracing::warn!(
            message_id = %out.message_id,
            invaliduser = %reply.invaliduser,
            invalidparty = %reply.invalidparty,
            invalidtag = %reply.invalidtag,
            "WeWork accepted the message but skipped invalid recipients."
        );
    }
    Disposition::Sent {
        provider_message_id: (!reply.msgid.is_empty()).then_some(reply.msgid),
    }
}

/// A transport error on `message/send`. Before the request left (connect
/// failure) WeWork never saw it: fail over. After it left (timeout, broken
/// connection) it may have been delivered, but WeWork's
/// `enable_duplicate_check` drops a resend of the same content to the same
/// users within `duplicate_check_interval`, so a retry is safe.
pub(super) fn transport_failure(out: &Outgoing<'_>, error: reqwest::Error) -> Disposition {
    let (connect, builder, timeout) = (error.is_connect(), error.is_builder(), error.is_timeout());
    let error = describe(error);
    if connect {
        failover(
            "wework_unreachable",
            format!("cannot reach WeWork: {error}"),
        )
    } else if builder {
        failover(
            "wework_request",
            format!("the request cannot be built: {error}"),
        )
    } else if timeout {
        retry_after(out, Duration::from_secs(30), "wework_timeout", error)
    } else {
        retry_after(out, Duration::from_secs(30), "wework_transport", error)
    }
}

/// The error and its causes, without the URL: it carries the corp secret or
/// the access token.
pub(super) fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `base`, doubled for each attempt after the first, up to 15 minutes.
pub(super) fn retry_after(
    out: &Outgoing<'_>,
    base: Duration,
    code: impl Into<String>,
    reason: impl Into<String>,
) -> Disposition {
    Disposition::RetryAfter {
        after: classify::retry_delay(base, out.attempt),
        code: code.into(),
        reason: reason.into(),
    }
}

pub(super) fn failover(code: impl Into<String>, reason: impl Into<String>) -> Disposition {
    Disposition::Failover {
        code: code.into(),
        reason: reason.into(),
    }
}

pub(super) fn dead_letter(code: impl Into<String>, reason: impl Into<String>) -> Disposition {
    Disposition::DeadLetter {
        code: code.into(),
        reason: reason.into(),
    }
}
