//! Opening a session (TCP, TLS, EHLO, AUTH) and one mail transaction on it,
//! stage by stage. Where the server offers PIPELINING (RFC 2920), MAIL, RCPT
//! and DATA go out in one write and their replies are read in order: two
//! round trips per message instead of four.

use std::future::Future;
use std::net::SocketAddr;

use herald_domain::Disposition;
use lettre::transport::smtp::authentication::Mechanism;
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::net::TcpStream;

use super::compose::Email;
use super::dialogue::starttls_dialogue;
use super::outcome::{failover, Failed, Stage, StageError};
use super::tls::{TlsTransport, GREETING_AFTER_STARTTLS};
use super::{SmtpAdapter, CONNECTIONS_OPENED};

/// An open SMTP session and what its server offers beyond lettre's view.
pub(super) struct Session {
    pub(super) conn: AsyncSmtpConnection,
    /// The server's EHLO listed PIPELINING.
    pub(super) pipelining: bool,
}

/// Text written as it is: commands already formatted with their CRLFs, or
/// a DATA section.
struct Raw<'a>(&'a str);

impl std::fmt::Display for Raw<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl SmtpAdapter {
    /// One mail transaction on an open session, stage by stage. Every
    /// failure drops the session (the caller does), so replies a failed
    /// pipelined group left unread never confuse a later transaction.
    pub(super) async fn transact(
        &self,
        session: &mut Session,
        email: &Email,
    ) -> Result<Response, Failed> {
        let pipelining = session.pipelining;
        let conn = &mut session.conn;
        let mut parameters = Vec::new();
        let non_ascii = email
            .envelope
            .from()
            .into_iter()
            .chain(email.envelope.to())
            .any(|address| !AsRef::<str>::as_ref(address).is_ascii());
        if non_ascii {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(Failed {
                    stage: Stage::Mail,
                    error: StageError::Unsupported(
                        "smtp_utf8_unsupported",
                        "the addresses need SMTPUTF8, which the server does not offer",
                    ),
                });
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        // lettre encodes bodies as 7bit, quoted-printable or base64 and
        // headers per RFC 2047, so the content itself is always ASCII.
        let sender = email.envelope.from().cloned();
        let mail = Mail::new(sender, parameters);
        let recipients = email.envelope.to();
        if pipelining {
            // One write: MAIL, every RCPT and DATA (the last command of a
            // group, RFC 2920 §3.1); then each reply in order. The first
            // reply comes back with the write.
            let mut group = mail.to_string();
            for recipient in recipients {
                group.push_str(&Rcpt::new(recipient.clone(), Vec::new()).to_string());
            }
            group.push_str(&Data.to_string());
            self.stage(Stage::Mail, conn.command(Raw(&group))).await?;
            for _ in recipients {
                self.stage(Stage::Rcpt, conn.read_response()).await?;
            }
            self.stage(Stage::Data, conn.read_response()).await?;
        } else {
            self.stage(Stage::Mail, conn.command(mail)).await?;
            for recipient in recipients {
                self.stage(
                    Stage::Rcpt,
                    conn.command(Rcpt::new(recipient.clone(), Vec::new())),
                )
                .await?;
            }
            self.stage(Stage::Data, conn.command(Data)).await?;
        }
        // The body and its final dot in one write, one TLS record.
        self.stage(Stage::Body, conn.command(Raw(&email.data)))
            .await
    }

    pub(super) async fn stage(
        &self,
        stage: Stage,
        step: impl Future<Output = Result<Response, lettre::transport::smtp::Error>>,
    ) -> Result<Response, Failed> {
        match tokio::time::timeout(self.timeout, step).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => Err(Failed {
                stage,
                error: StageError::from_smtp(&error),
            }),
            Err(_elapsed) => Err(Failed {
                stage,
                error: StageError::TimedOut,
            }),
        }
    }

    /// Opens a session: TCP, TLS as configured, greeting, EHLO, AUTH. Every
    /// failure here fails over: the server never saw the message.
    pub(super) async fn connect(&self) -> Result<Session, Disposition> {
        match tokio::time::timeout(self.timeout, self.open()).await {
            Ok(result) => result,
            Err(_elapsed) => Err(failover(
                "smtp_timeout",
                format!(
                    "opening an SMTP session with {} took longer than {} s",
                    self.server,
                    self.timeout.as_secs()
                ),
            )),
        }
    }

    pub(super) async fn open(&self) -> Result<Session, Disposition> {
        let mut tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| {
                failover(
                    "smtp_connect",
                    format!("cannot connect to {}: {e}", self.server),
                )
            })?;
        // lettre writes the body's final dot as a separate write; without
        // TCP_NODELAY, Nagle holds it back until the server's delayed ACK
        // (about 40 ms per message).
        tcp.set_nodelay(true)
            .map_err(|e| failover("smtp_connect", format!("cannot set TCP_NODELAY: {e}")))?;
        let hello = client_id(&tcp);
        let stream: Box<dyn AsyncTokioStream> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let greeting = if tls.implicit {
                    &[][..]
                } else {
                    starttls_dialogue(&mut tcp, &hello, &self.server).await?;
                    GREETING_AFTER_STARTTLS
                };
                let stream = tls
                    .connector
                    .connect(tls.server_name.clone(), tcp)
                    .await
                    .map_err(|e| {
                        failover(
                            "smtp_tls",
                            format!("TLS handshake with {} failed: {e}", self.server),
                        )
                    })?;
                Box::new(TlsTransport { greeting, stream })
            }
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &hello)
            .await
            .map_err(|e| {
                let code = e
                    .status()
                    .map_or_else(|| "smtp_connect".to_owned(), |c| format!("smtp_{c}"));
                failover(
                    code,
                    format!("the SMTP session with {} did not open: {e}", self.server),
                )
            })?;
        // lettre keeps only the EHLO keywords it uses; a second EHLO (RFC
        // 5321 §4.1.4 allows it, and it resets nothing yet) says whether the
        // server pipelines. Once per session, which carries many messages.
        let ehlo = conn.command(Ehlo::new(hello.clone())).await.map_err(|e| {
            failover(
                "smtp_connect",
                format!("{} refused a second EHLO: {e}", self.server),
            )
        })?;
        let pipelining = ehlo.message().skip(1).any(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|keyword| keyword.eq_ignore_ascii_case("PIPELINING"))
        });
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| {
                    failover(
                        "smtp_auth",
                        format!("authentication with {} failed: {e}", self.server),
                    )
                })?;
        }
        metrics::counter!(CONNECTIONS_OPENED, "server" => self.server.clone()).increment(1);
        tracing::debug!(server = %self.server, pipelining, "Opened an SMTP session.");
        Ok(Session { conn, pipelining })
    }
}

/// EHLO's argument: the local address as an address literal, which RFC 5321
/// prescribes when the client has no obvious host name.
pub(super) fn client_id(tcp: &TcpStream) -> ClientId {
    match tcp.local_addr() {
        Ok(SocketAddr::V4(addr)) => ClientId::Ipv4(*addr.ip()),
        Ok(SocketAddr::V6(addr)) => ClientId::Ipv6(*addr.ip()),
        Err(_) => ClientId::Domain("localhost".to_owned()),
    }
}
