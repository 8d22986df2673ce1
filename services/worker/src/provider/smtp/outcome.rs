//! Where a transaction failed and what that means: one disposition per
//! failure.

use std::fmt;
use std::time::Duration;

use herald_domain::Disposition;
use lettre::transport::smtp::response::Response;

use crate::classify::Classifier;

/// Where in a mail transaction a failure happened: it decides whether the
/// server may have the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    Mail,
    Rcpt,
    Data,
    /// Writing the content and its final dot, then awaiting the reply.
    Body,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Mail => "MAIL FROM",
            Stage::Rcpt => "RCPT TO",
            Stage::Data => "DATA",
            Stage::Body => "the message body",
        })
    }
}

#[derive(Debug)]
pub(super) enum StageError {
    /// The server answered with a negative reply: 4xx or 5xx.
    Reply {
        code: u16,
        text: String,
    },
    /// The session broke: an I/O error, a closed connection, a garbled reply.
    Broken(String),
    TimedOut,
    /// The server lacks an extension this message needs.
    Unsupported(&'static str, &'static str),
}

impl StageError {
    pub(super) fn from_smtp(error: &lettre::transport::smtp::Error) -> StageError {
        match error.status() {
            Some(code) if error.is_transient() || error.is_permanent() => StageError::Reply {
                code: u16::from(code),
                // The source of a reply error is the server's text.
                text: std::error::Error::source(error)
                    .map_or_else(|| error.to_string(), |text| text.to_string()),
            },
            _ => StageError::Broken(error.to_string()),
        }
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageError::Reply { code, text, .. } => write!(f, "{code} {text}"),
            StageError::Broken(error) => f.write_str(error),
            StageError::TimedOut => f.write_str("timed out"),
            StageError::Unsupported(_, reason) => f.write_str(reason),
        }
    }
}

pub(super) struct Failed {
    pub(super) stage: Stage,
    pub(super) error: StageError,
}

impl Failed {
    /// Whether a reused session failed in a way a session closed while idle
    /// would: before MAIL FROM was accepted and without a permanent reply.
    pub(super) fn is_stale_session(&self) -> bool {
        self.stage == Stage::Mail
            && match &self.error {
                StageError::Reply { code, .. } => code / 100 != 5,
                StageError::Broken(_) | StageError::TimedOut => true,
                StageError::Unsupported(..) => false,
            }
    }

    /// A negative reply goes through `classifier`; a broken or silent
    /// session fails over before the body and is in doubt after it.
    pub(super) fn into_disposition(
        self,
        timeout: Duration,
        classifier: &Classifier,
        attempt: u32,
    ) -> Disposition {
        let stage = self.stage;
        match self.error {
            StageError::Reply { code, text } => {
                classifier
                    .smtp(code, &text)
                    .disposition(attempt, format!("smtp_{code}"), text)
            }
            StageError::Unsupported(code, reason) => failover(code, reason),
            // After the body started, the server may have the message.
            StageError::Broken(error) if stage == Stage::Body => Disposition::InDoubt {
                reason: format!("the SMTP session failed after the message body was sent: {error}"),
            },
            StageError::TimedOut if stage == Stage::Body => Disposition::InDoubt {
                reason: format!(
                    "no reply within {} s after the message body was sent",
                    timeout.as_secs()
                ),
            },
            StageError::Broken(error) => failover(
                "smtp_connection",
                format!("the SMTP session failed at {stage}: {error}"),
            ),
            StageError::TimedOut => failover(
                "smtp_timeout",
                format!("no reply to {stage} within {} s", timeout.as_secs()),
            ),
        }
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

/// The queue id from a `250 2.0.0 Ok: queued as 4F2X` reply, or the whole
/// reply text when the server words it differently.
pub(super) fn provider_message_id(reply: &Response) -> Option<String> {
    let text = reply.message().collect::<Vec<_>>().join(" ");
    let lower = text.to_ascii_lowercase();
    if let Some(at) = lower.find("queued as ") {
        let id = text[at + "queued as ".len()..]
            .split_whitespace()
            .next()
            .map(|id| id.trim_matches(|c: char| matches!(c, '<' | '>' | '(' | ')' | '.' | ',')))
            .filter(|id| !id.is_empty());
        if let Some(id) = id {
            return Some(id.to_owned());
        }
    }
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
