//! SMTP adapter: a small pool of lettre `AsyncSmtpConnection`s per provider.
//! Each message goes out in stages (MAIL, RCPT, DATA, body) so that every
//! failure maps to exactly one disposition, and never to a silent resend.

mod compose;
mod config;
mod dialogue;
mod outcome;
mod pool;
mod session;
#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;
mod tls;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_domain::Disposition;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use tokio::sync::Semaphore;

use self::outcome::{failover, provider_message_id};
use self::pool::IdleConnection;
use self::tls::TlsSetup;
use crate::classify::Classifier;
use crate::provider::Outgoing;

/// Counter of SMTP sessions opened, labelled by `server` (`host:port`).
pub const CONNECTIONS_OPENED: &str = "herald_smtp_connections_opened_total";

/// Sends email through one SMTP server, keeping up to `pool_size` sessions
/// open between sends.
pub struct SmtpAdapter {
    host: String,
    port: u16,
    /// `host:port`, for logs and metric labels.
    server: String,
    tls: Option<TlsSetup>,
    credentials: Option<Credentials>,
    default_from: Option<Mailbox>,
    message_id_domain: String,
    timeout: Duration,
    /// One permit per send in progress. A session is opened only when no idle
    /// one is left, so open sessions never outnumber the permits.
    permits: Semaphore,
    /// Sessions between sends, most recently used last.
    idle: Mutex<Vec<IdleConnection>>,
    /// Says what a negative reply means.
    classifier: Arc<Classifier>,
}

impl SmtpAdapter {
    /// Sends one message and says what happens next. Never resends a message
    /// whose body may have reached the server.
    pub async fn send(&self, out: Outgoing<'_>) -> Disposition {
        let disposition = self.try_send(&out).await;
        tracing::debug!(
            message_id = %out.message_id,
            server = %self.server,
            attempt = out.attempt,
            outcome = ?disposition,
            "SMTP send finished."
        );
        disposition
    }

    async fn try_send(&self, out: &Outgoing<'_>) -> Disposition {
        let email = match self.compose(out) {
            Ok(email) => email,
            Err(disposition) => return disposition,
        };
        let Ok(_permit) = self.permits.acquire().await else {
            return failover("smtp_closed", "the SMTP adapter is closed");
        };
        let (mut conn, mut reused) = match self.take_idle() {
            Some(conn) => (conn, true),
            None => match self.connect().await {
                Ok(conn) => (conn, false),
                Err(disposition) => return disposition,
            },
        };
        loop {
            match self.transact(&mut conn, &email).await {
                Ok(reply) => {
                    self.put_idle(conn);
                    return Disposition::Sent {
                        provider_message_id: provider_message_id(&reply),
                    };
                }
                // No NOOP probes an idle session before reuse; instead a
                // reused one that fails before the server accepted MAIL FROM
                // (most likely closed while idle) is replaced once. Safe: the
                // server never took this message.
                Err(failed) if reused && failed.is_stale_session() => {
                    tracing::debug!(
                        message_id = %out.message_id,
                        server = %self.server,
                        error = %failed.error,
                        "A reused SMTP session failed before MAIL FROM; retrying on a fresh one."
                    );
                    conn = match self.connect().await {
                        Ok(conn) => conn,
                        Err(disposition) => return disposition,
                    };
                    reused = false;
                }
                // The session is in an unknown state: drop it.
                Err(failed) => {
                    return failed.into_disposition(self.timeout, &self.classifier, out.attempt)
                }
            }
        }
    }
}

impl fmt::Debug for SmtpAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpAdapter")
            .field("server", &self.server)
            .field(
                "tls",
                &self
                    .tls
                    .as_ref()
                    .map(|t| if t.implicit { "tls" } else { "starttls" }),
            )
            .field("auth", &self.credentials.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
