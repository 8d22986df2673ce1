//! SMTP adapter: a small pool of lettre `AsyncSmtpConnection`s per provider.
//! Each message goes out in stages (MAIL, RCPT, DATA, body) so that every
//! failure maps to exactly one disposition, and never to a silent resend.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use herald_domain::provider_config::{SmtpConfig, TlsMode};
use herald_domain::{Disposition, FieldError};
use lettre::address::Envelope;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailParameter};
use lettre::transport::smtp::response::Response;
use lettre::Message;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::Outgoing;
use crate::classify::Classifier;

const DEFAULT_POOL_SIZE: u32 = 4;
const DEFAULT_TIMEOUT_SECS: u64 = 30;
const DEFAULT_MESSAGE_ID_DOMAIN: &str = "herald.local";
/// Idle connections older than this are closed rather than reused: servers
/// drop idle sessions after a while, and a dead one costs a failed MAIL.
const MAX_IDLE: Duration = Duration::from_secs(60);
const HERALD_MESSAGE_ID: HeaderName = HeaderName::new_from_ascii_str("X-Herald-Message-Id");
/// Counter of SMTP sessions opened, labelled by `server` (`host:port`).
pub const CONNECTIONS_OPENED: &str = "herald_smtp_connections_opened_total";
/// lettre's `connect_with_transport` reads a greeting before its EHLO; after
/// STARTTLS the server sends none, so the TLS stream replays this one.
const GREETING_AFTER_STARTTLS: &[u8] = b"220 TLS session started\r\n";
/// Longest reply line read during the plain-text half of STARTTLS.
const MAX_REPLY_LINE: u64 = 2048;

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

struct TlsSetup {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    /// TLS from the first byte (`tls`) rather than after STARTTLS.
    implicit: bool,
}

struct IdleConnection {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// A message ready for the wire.
struct Email {
    envelope: Envelope,
    bytes: Vec<u8>,
}

impl SmtpAdapter {
    /// Prepares the adapter (TLS trust, default sender) with the built-in
    /// classifier; connects lazily on the first send. Fails when `ca_file`
    /// cannot be read or a field does not parse.
    pub fn new(config: SmtpConfig) -> Result<SmtpAdapter, FieldError> {
        SmtpAdapter::with_classifier(config, Arc::new(Classifier::default()))
    }

    /// As [`SmtpAdapter::new`], with `classifier` deciding what negative
    /// replies mean.
    pub fn with_classifier(
        config: SmtpConfig,
        classifier: Arc<Classifier>,
    ) -> Result<SmtpAdapter, FieldError> {
        let tls = match config.tls {
            TlsMode::None => None,
            mode => Some(TlsSetup {
                connector: TlsConnector::from(Arc::new(tls_client_config(&config)?)),
                server_name: ServerName::try_from(config.host.clone()).map_err(|e| {
                    FieldError::new(
                        "config.host",
                        format!("is not a valid TLS server name: {e}"),
                    )
                })?,
                implicit: mode == TlsMode::Tls,
            }),
        };
        let default_from = config
            .from
            .as_deref()
            .map(|from| {
                from.parse::<Mailbox>().map_err(|e| {
                    FieldError::new("config.from", format!("is not an email address: {e}"))
                })
            })
            .transpose()?;
        let credentials = match (&config.username, &config.password) {
            (Some(username), Some(password)) => {
                Some(Credentials::new(username.clone(), password.clone()))
            }
            _ => None,
        };
        let pool_size = config.pool_size.unwrap_or(DEFAULT_POOL_SIZE).clamp(1, 256);
        Ok(SmtpAdapter {
            server: format!("{}:{}", config.host, config.port),
            host: config.host,
            port: config.port,
            tls,
            credentials,
            default_from,
            message_id_domain: config
                .message_id_domain
                .unwrap_or_else(|| DEFAULT_MESSAGE_ID_DOMAIN.to_owned()),
            timeout: Duration::from_secs(
                config.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS).max(1),
            ),
            permits: Semaphore::new(pool_size as usize),
            idle: Mutex::new(Vec::new()),
            classifier,
        })
    }

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

    /// Builds the email: headers that let downstream systems recognise the
    /// message and its duplicates, and the envelope from its addresses.
    fn compose(&self, out: &Outgoing<'_>) -> Result<Email, Disposition> {
        let content = out.content;
        if !content.template_id.is_empty() {
            return Err(dead_letter(
                "template_unsupported",
                format!(
                    "template {} cannot be rendered: templates are not supported yet",
                    content.template_id
                ),
            ));
        }
        let from = if content.from.is_empty() {
            self.default_from.clone().ok_or_else(|| {
                dead_letter(
                    "no_sender",
                    "the message has no from address and the provider has no default sender",
                )
            })?
        } else {
            content.from.parse::<Mailbox>().map_err(|e| {
                dead_letter(
                    "invalid_sender",
                    format!("from {:?} is not an email address: {e}", content.from),
                )
            })?
        };
        if out.recipients.is_empty() {
            return Err(dead_letter("no_recipient", "the message has no recipient"));
        }
        let mut builder = Message::builder()
            .from(from)
            .message_id(Some(format!(
                "<{}@{}>",
                out.message_id, self.message_id_domain
            )))
            .raw_header(HeaderValue::new(
                HERALD_MESSAGE_ID,
                out.message_id.to_string(),
            ));
        if !content.subject.is_empty() {
            builder = builder.subject(content.subject.clone());
        }
        for recipient in out.recipients {
            let to = recipient.parse::<Mailbox>().map_err(|e| {
                dead_letter(
                    "invalid_recipient",
                    format!("{recipient:?} is not an email address: {e}"),
                )
            })?;
            builder = builder.to(to);
        }
        let message = match (content.text.is_empty(), content.html.is_empty()) {
            (false, false) => builder.multipart(MultiPart::alternative_plain_html(
                content.text.clone(),
                content.html.clone(),
            )),
            (true, false) => builder.singlepart(SinglePart::html(content.html.clone())),
            _ => builder.singlepart(SinglePart::plain(content.text.clone())),
        }
        .map_err(|e| dead_letter("invalid_message", format!("the email cannot be built: {e}")))?;
        Ok(Email {
            envelope: message.envelope().clone(),
            bytes: message.formatted(),
        })
    }

    /// One mail transaction on an open session, stage by stage.
    async fn transact(
        &self,
        conn: &mut AsyncSmtpConnection,
        email: &Email,
    ) -> Result<Response, Failed> {
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
        self.stage(Stage::Mail, conn.command(Mail::new(sender, parameters)))
            .await?;
        for recipient in email.envelope.to() {
            self.stage(
                Stage::Rcpt,
                conn.command(Rcpt::new(recipient.clone(), Vec::new())),
            )
            .await?;
        }
        self.stage(Stage::Data, conn.command(Data)).await?;
        self.stage(Stage::Body, conn.message(&email.bytes)).await
    }

    async fn stage(
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

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|c| c.since.elapsed() < MAX_IDLE && !c.conn.has_broken());
        idle.pop().map(|c| c.conn)
    }

    fn put_idle(&self, conn: AsyncSmtpConnection) {
        if conn.has_broken() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.push(IdleConnection {
            conn,
            since: Instant::now(),
        });
    }

    /// Opens a session: TCP, TLS as configured, greeting, EHLO, AUTH. Every
    /// failure here fails over: the server never saw the message.
    async fn connect(&self) -> Result<AsyncSmtpConnection, Disposition> {
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

    async fn open(&self) -> Result<AsyncSmtpConnection, Disposition> {
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
        tracing::debug!(server = %self.server, "Opened an SMTP session.");
        Ok(conn)
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

/// Where in a mail transaction a failure happened: it decides whether the
/// server may have the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
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
enum StageError {
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
    fn from_smtp(error: &lettre::transport::smtp::Error) -> StageError {
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

struct Failed {
    stage: Stage,
    error: StageError,
}

impl Failed {
    /// Whether a reused session failed in a way a session closed while idle
    /// would: before MAIL FROM was accepted and without a permanent reply.
    fn is_stale_session(&self) -> bool {
        self.stage == Stage::Mail
            && match &self.error {
                StageError::Reply { code, .. } => code / 100 != 5,
                StageError::Broken(_) | StageError::TimedOut => true,
                StageError::Unsupported(..) => false,
            }
    }

    /// A negative reply goes through `classifier`; a broken or silent
    /// session fails over before the body and is in doubt after it.
    fn into_disposition(
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

fn failover(code: impl Into<String>, reason: impl Into<String>) -> Disposition {
    Disposition::Failover {
        code: code.into(),
        reason: reason.into(),
    }
}

fn dead_letter(code: impl Into<String>, reason: impl Into<String>) -> Disposition {
    Disposition::DeadLetter {
        code: code.into(),
        reason: reason.into(),
    }
}

/// The queue id from a `250 2.0.0 Ok: queued as 4F2X` reply, or the whole
/// reply text when the server words it differently.
fn provider_message_id(reply: &Response) -> Option<String> {
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

/// EHLO's argument: the local address as an address literal, which RFC 5321
/// prescribes when the client has no obvious host name.
fn client_id(tcp: &TcpStream) -> ClientId {
    match tcp.local_addr() {
        Ok(SocketAddr::V4(addr)) => ClientId::Ipv4(*addr.ip()),
        Ok(SocketAddr::V6(addr)) => ClientId::Ipv6(*addr.ip()),
        Err(_) => ClientId::Domain("localhost".to_owned()),
    }
}

/// TLS trust for this provider, with the ring provider and nothing
/// process-global: the configured CA file on top of the webpki roots, or no
/// verification at all for test servers.
fn tls_client_config(config: &SmtpConfig) -> Result<rustls::ClientConfig, FieldError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| FieldError::new("config.tls", e.to_string()))?;
    if config.accept_invalid_certs {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &config.ca_file {
        for cert in read_pem_certificates(path)? {
            roots
                .add(cert)
                .map_err(|e| FieldError::new("config.ca_file", format!("{path}: {e}")))?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

fn read_pem_certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, FieldError> {
    let unreadable = |e: io::Error| FieldError::new("config.ca_file", format!("{path}: {e}"));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let certs = rustls_pemfile::certs(&mut io::BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(unreadable)?;
    if certs.is_empty() {
        return Err(FieldError::new(
            "config.ca_file",
            format!("{path} holds no PEM certificate"),
        ));
    }
    Ok(certs)
}

/// `accept_invalid_certs`: any certificate and name pass, but handshake
/// signatures are still checked. For test servers only.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The plain-text half of STARTTLS: greeting, EHLO, STARTTLS. Done here
/// rather than with lettre's `starttls` so that the TLS configuration is
/// this adapter's own. STARTTLS is required: a server that does not offer it
/// fails over.
async fn starttls_dialogue(
    tcp: &mut TcpStream,
    hello: &ClientId,
    server: &str,
) -> Result<(), Disposition> {
    let mut reader = tokio::io::BufReader::new(tcp);
    let greeting = read_reply(&mut reader, server).await?;
    greeting.expect(2, server, "greeting")?;
    write_line(&mut reader, &format!("EHLO {hello}"), server).await?;
    let ehlo = read_reply(&mut reader, server).await?;
    ehlo.expect(2, server, "EHLO")?;
    let offers_starttls = ehlo.lines.iter().skip(1).any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|keyword| keyword.eq_ignore_ascii_case("STARTTLS"))
    });
    if !offers_starttls {
        return Err(failover(
            "smtp_starttls_unavailable",
            format!("{server} does not offer STARTTLS, which this provider requires"),
        ));
    }
    write_line(&mut reader, "STARTTLS", server).await?;
    read_reply(&mut reader, server)
        .await?
        .expect(2, server, "STARTTLS")?;
    // Anything already buffered was sent in plain text before the handshake
    // and must not be read as if it came through TLS (command injection).
    if !reader.buffer().is_empty() {
        return Err(failover(
            "smtp_tls",
            format!("{server} sent data between its STARTTLS reply and the TLS handshake"),
        ));
    }
    Ok(())
}

struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// Fails over unless the reply's first digit is `class`.
    fn expect(&self, class: u16, server: &str, step: &str) -> Result<(), Disposition> {
        if self.code / 100 == class {
            return Ok(());
        }
        Err(failover(
            format!("smtp_{}", self.code),
            format!(
                "{server} answered {step} with {} {}",
                self.code,
                self.lines.join(" ")
            ),
        ))
    }
}

async fn write_line(
    reader: &mut tokio::io::BufReader<&mut TcpStream>,
    line: &str,
    server: &str,
) -> Result<(), Disposition> {
    reader
        .get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| failover("smtp_connect", format!("writing to {server} failed: {e}")))
}

async fn read_reply(
    reader: &mut tokio::io::BufReader<&mut TcpStream>,
    server: &str,
) -> Result<Reply, Disposition> {
    let broken = |what: String| failover("smtp_connect", format!("{server}: {what}"));
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let read = (&mut *reader)
            .take(MAX_REPLY_LINE)
            .read_line(&mut line)
            .await
            .map_err(|e| broken(format!("reading a reply failed: {e}")))?;
        if read == 0 {
            return Err(broken("the server closed the connection".to_owned()));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let code = line
            .get(..3)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| broken(format!("malformed reply {line:?}")))?;
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line.get(4..).unwrap_or_default().to_owned());
        if last {
            return Ok(Reply { code, lines });
        }
        if lines.len() > 100 {
            return Err(broken("the reply has too many lines".to_owned()));
        }
    }
}

/// A TLS session as lettre's transport. After STARTTLS it first replays a
/// greeting, since lettre reads one before sending EHLO.
#[derive(Debug)]
struct TlsTransport {
    greeting: &'static [u8],
    stream: TlsStream<TcpStream>,
}

impl AsyncRead for TlsTransport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.greeting.is_empty() {
            let n = this.greeting.len().min(buf.remaining());
            let (now, rest) = this.greeting.split_at(n);
            buf.put_slice(now);
            this.greeting = rest;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsTransport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl AsyncTokioStream for TlsTransport {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.get_ref().0.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use herald_domain::MessageId;
    use herald_proto::v1;
    use tokio::io::{AsyncBufRead, BufReader};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use super::*;
    use crate::classify::SMTP_RETRY_AFTER as TRANSIENT_RETRY_AFTER;

    /// How the fake server answers.
    #[derive(Clone)]
    struct Script {
        mail: &'static str,
        rcpt: &'static str,
        /// The reply after the final dot; `None` closes the connection
        /// without one.
        after_body: Option<&'static str>,
        /// Close the session after each accepted message, as a server with a
        /// very short idle timeout would.
        close_after_message: bool,
        /// Wait this long before replying after the final dot.
        delay_after_body: Duration,
        tls: ServerTls,
    }

    #[derive(Clone)]
    enum ServerTls {
        Plain,
        Starttls(TlsAcceptor),
        Implicit(TlsAcceptor),
    }

    impl Default for Script {
        fn default() -> Self {
            Script {
                mail: "250 2.1.0 Ok",
                rcpt: "250 2.1.5 Ok",
                after_body: Some("250 2.0.0 Ok: queued as 4F2Xy1"),
                close_after_message: false,
                delay_after_body: Duration::ZERO,
                tls: ServerTls::Plain,
            }
        }
    }

    #[derive(Default)]
    struct Log {
        commands: Vec<String>,
        messages: Vec<String>,
    }

    struct FakeSmtp {
        port: u16,
        connections: Arc<AtomicUsize>,
        log: Arc<Mutex<Log>>,
    }

    impl FakeSmtp {
        async fn start(script: Script) -> FakeSmtp {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().expect("local addr").port();
            let connections = Arc::new(AtomicUsize::new(0));
            let log = Arc::new(Mutex::new(Log::default()));
            let (count, shared) = (Arc::clone(&connections), Arc::clone(&log));
            tokio::spawn(async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    count.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(session(tcp, script.clone(), Arc::clone(&shared)));
                }
            });
            FakeSmtp {
                port,
                connections,
                log,
            }
        }

        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }

        fn commands(&self) -> Vec<String> {
            self.log.lock().expect("log").commands.clone()
        }

        fn messages(&self) -> Vec<String> {
            self.log.lock().expect("log").messages.clone()
        }

        fn config(&self) -> SmtpConfig {
            SmtpConfig {
                host: "127.0.0.1".to_owned(),
                port: self.port,
                tls: TlsMode::None,
                ca_file: None,
                accept_invalid_certs: false,
                username: None,
                password: None,
                from: Some("news@shop.example".to_owned()),
                pool_size: None,
                message_id_domain: None,
                timeout_secs: Some(5),
                callback_secret: None,
            }
        }
    }

    async fn session(tcp: TcpStream, script: Script, log: Arc<Mutex<Log>>) -> io::Result<()> {
        match script.tls.clone() {
            ServerTls::Plain => converse(BufReader::new(tcp), true, &script, &log).await,
            ServerTls::Implicit(acceptor) => {
                let tls = acceptor.accept(tcp).await?;
                converse(BufReader::new(tls), true, &script, &log).await
            }
            ServerTls::Starttls(acceptor) => {
                let mut plain = BufReader::new(tcp);
                plain.write_all(b"220 fake.test ESMTP\r\n").await?;
                loop {
                    let Some(command) = next_line(&mut plain).await? else {
                        return Ok(());
                    };
                    log.lock().expect("log").commands.push(command.clone());
                    if command.starts_with("EHLO") {
                        plain
                            .write_all(b"250-fake.test\r\n250 STARTTLS\r\n")
                            .await?;
                    } else if command == "STARTTLS" {
                        plain.write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
                        break;
                    } else {
                        plain
                            .write_all(b"530 5.7.0 Must issue a STARTTLS command first\r\n")
                            .await?;
                    }
                }
                let tls = acceptor.accept(plain.into_inner()).await?;
                converse(BufReader::new(tls), false, &script, &log).await
            }
        }
    }

    async fn next_line<S: AsyncBufRead + Unpin>(stream: &mut S) -> io::Result<Option<String>> {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
    }

    async fn converse<S: AsyncBufRead + AsyncWrite + Unpin>(
        mut stream: S,
        greet: bool,
        script: &Script,
        log: &Mutex<Log>,
    ) -> io::Result<()> {
        if greet {
            stream.write_all(b"220 fake.test ESMTP\r\n").await?;
        }
        while let Some(command) = next_line(&mut stream).await? {
            log.lock().expect("log").commands.push(command.clone());
            let verb = command
                .split(' ')
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            let reply = match verb.as_str() {
                "EHLO" => "250-fake.test\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN",
                "AUTH" => "235 2.7.0 Authentication successful",
                "MAIL" => script.mail,
                "RCPT" => script.rcpt,
                "QUIT" => {
                    stream.write_all(b"221 2.0.0 Bye\r\n").await?;
                    return Ok(());
                }
                "DATA" => {
                    stream
                        .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let mut message = String::new();
                    loop {
                        let Some(line) = next_line(&mut stream).await? else {
                            return Ok(());
                        };
                        if line == "." {
                            break;
                        }
                        message.push_str(&line);
                        message.push('\n');
                    }
                    log.lock().expect("log").messages.push(message);
                    tokio::time::sleep(script.delay_after_body).await;
                    let Some(reply) = script.after_body else {
                        return Ok(());
                    };
                    stream.write_all(format!("{reply}\r\n").as_bytes()).await?;
                    if script.close_after_message {
                        return Ok(());
                    }
                    continue;
                }
                _ => "250 2.0.0 Ok",
            };
            stream.write_all(format!("{reply}\r\n").as_bytes()).await?;
        }
        Ok(())
    }

    /// A self-signed certificate for 127.0.0.1: the server's TLS acceptor
    /// and the certificate's PEM.
    fn tls_acceptor() -> (TlsAcceptor, String) {
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("server config");
        (TlsAcceptor::from(Arc::new(config)), certified.cert.pem())
    }

    struct Job {
        id: MessageId,
        recipients: Vec<String>,
        content: v1::Content,
        metadata: HashMap<String, String>,
    }

    impl Job {
        fn new() -> Job {
            Job {
                id: MessageId::new(),
                recipients: vec!["alice@example.com".to_owned()],
                content: v1::Content {
                    subject: "Hello".to_owned(),
                    text: "plain body".to_owned(),
                    html: "<p>html body</p>".to_owned(),
                    ..Default::default()
                },
                metadata: HashMap::new(),
            }
        }

        fn out(&self) -> Outgoing<'_> {
            Outgoing {
                message_id: self.id,
                recipients: &self.recipients,
                content: &self.content,
                metadata: &self.metadata,
                attempt: 1,
            }
        }
    }

    fn adapter(config: SmtpConfig) -> SmtpAdapter {
        SmtpAdapter::new(config).expect("adapter")
    }

    #[tokio::test]
    async fn an_accepted_message_is_sent_with_the_servers_queue_id_and_herald_headers() {
        let server = FakeSmtp::start(Script::default()).await;
        let smtp = adapter(server.config());
        let job = Job::new();

        let outcome = smtp.send(job.out()).await;

        assert_eq!(
            outcome,
            Disposition::Sent {
                provider_message_id: Some("4F2Xy1".to_owned())
            }
        );
        let commands = server.commands();
        assert!(
            commands.contains(&"MAIL FROM:<news@shop.example>".to_owned()),
            "{commands:?}"
        );
        assert!(
            commands.contains(&"RCPT TO:<alice@example.com>".to_owned()),
            "{commands:?}"
        );
        let message = &server.messages()[0];
        let lower = message.to_ascii_lowercase();
        assert!(
            lower.contains(&format!("message-id: <{}@herald.local>", job.id)),
            "{message}"
        );
        assert!(
            lower.contains(&format!("x-herald-message-id: {}", job.id)),
            "{message}"
        );
        assert!(lower.contains("multipart/alternative"), "{message}");
        assert!(message.contains("Subject: Hello"), "{message}");
    }

    #[tokio::test]
    async fn the_configured_domain_names_the_message_id() {
        let server = FakeSmtp::start(Script::default()).await;
        let smtp = adapter(SmtpConfig {
            message_id_domain: Some("mail.shop.example".to_owned()),
            ..server.config()
        });
        let job = Job::new();

        assert!(smtp.send(job.out()).await.is_sent());
        let message = server.messages()[0].to_ascii_lowercase();
        assert!(message.contains(&format!("message-id: <{}@mail.shop.example>", job.id)));
    }

    #[tokio::test]
    async fn a_4xx_reply_to_rcpt_retries_later_with_the_servers_text() {
        let server = FakeSmtp::start(Script {
            rcpt: "451 4.7.1 Try again later",
            ..Script::default()
        })
        .await;
        let smtp = adapter(server.config());

        let outcome = smtp.send(Job::new().out()).await;

        let Disposition::RetryAfter {
            after,
            code,
            reason,
        } = outcome
        else {
            panic!("expected RetryAfter, got {outcome:?}");
        };
        assert_eq!(after, TRANSIENT_RETRY_AFTER);
        assert_eq!(code, "smtp_451");
        assert!(reason.contains("Try again later"), "{reason}");
    }

    #[tokio::test]
    async fn a_5xx_reply_to_mail_dead_letters() {
        let server = FakeSmtp::start(Script {
            mail: "550 5.7.1 Sender rejected",
            ..Script::default()
        })
        .await;
        let smtp = adapter(server.config());

        let outcome = smtp.send(Job::new().out()).await;

        assert_eq!(outcome.code(), Some("smtp_550"), "{outcome:?}");
        assert!(
            matches!(outcome, Disposition::DeadLetter { .. }),
            "{outcome:?}"
        );
        assert!(outcome
            .reason()
            .is_some_and(|r| r.contains("Sender rejected")));
    }

    #[tokio::test]
    async fn a_5xx_reply_that_says_frequency_limited_retries_later() {
        let server = FakeSmtp::start(Script {
            rcpt: "550 5.7.1 frequency limited",
            ..Script::default()
        })
        .await;
        let smtp = adapter(server.config());

        let outcome = smtp.send(Job::new().out()).await;

        assert_eq!(
            outcome,
            Disposition::RetryAfter {
                after: Duration::from_secs(60),
                code: "smtp_550".to_owned(),
                reason: "5.7.1 frequency limited".to_owned(),
            }
        );
    }

    #[tokio::test]
    async fn a_connection_closed_after_the_final_dot_leaves_the_message_in_doubt() {
        let server = FakeSmtp::start(Script {
            after_body: None,
            ..Script::default()
        })
        .await;
        let smtp = adapter(server.config());

        let outcome = smtp.send(Job::new().out()).await;

        assert!(
            matches!(outcome, Disposition::InDoubt { .. }),
            "{outcome:?}"
        );
        assert_eq!(server.messages().len(), 1);
    }

    #[tokio::test]
    async fn no_reply_after_the_final_dot_within_the_timeout_leaves_the_message_in_doubt() {
        let server = FakeSmtp::start(Script {
            delay_after_body: Duration::from_secs(3),
            ..Script::default()
        })
        .await;
        let smtp = adapter(SmtpConfig {
            timeout_secs: Some(1),
            ..server.config()
        });

        let outcome = smtp.send(Job::new().out()).await;

        assert!(
            matches!(outcome, Disposition::InDoubt { .. }),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn consecutive_sends_reuse_one_session_without_noop() {
        let server = FakeSmtp::start(Script::default()).await;
        let smtp = adapter(server.config());

        for _ in 0..3 {
            assert!(smtp.send(Job::new().out()).await.is_sent());
        }

        assert_eq!(server.connections(), 1);
        assert_eq!(server.messages().len(), 3);
        assert!(!server
            .commands()
            .iter()
            .any(|c| c.eq_ignore_ascii_case("NOOP")));
    }

    #[tokio::test]
    async fn a_session_the_server_closed_while_idle_is_replaced_and_the_message_sent() {
        let server = FakeSmtp::start(Script {
            close_after_message: true,
            ..Script::default()
        })
        .await;
        let smtp = adapter(server.config());
        assert!(smtp.send(Job::new().out()).await.is_sent());
        // Let the server's close reach the idle session.
        tokio::time::sleep(Duration::from_millis(50)).await;

        let outcome = smtp.send(Job::new().out()).await;

        assert!(outcome.is_sent(), "{outcome:?}");
        assert_eq!(server.connections(), 2);
        assert_eq!(server.messages().len(), 2);
    }

    #[tokio::test]
    async fn concurrent_sends_open_no_more_sessions_than_the_pool_size() {
        let server = FakeSmtp::start(Script::default()).await;
        let smtp = adapter(SmtpConfig {
            pool_size: Some(2),
            ..server.config()
        });
        let jobs: Vec<Job> = (0..10).map(|_| Job::new()).collect();

        let outcomes = futures::future::join_all(jobs.iter().map(|j| smtp.send(j.out()))).await;

        assert!(outcomes.iter().all(Disposition::is_sent), "{outcomes:?}");
        assert!(
            server.connections() <= 2,
            "{} sessions",
            server.connections()
        );
        assert_eq!(server.messages().len(), 10);
    }

    #[tokio::test]
    async fn credentials_authenticate_the_session() {
        let server = FakeSmtp::start(Script::default()).await;
        let smtp = adapter(SmtpConfig {
            username: Some("herald".to_owned()),
            password: Some("secret".to_owned()),
            ..server.config()
        });

        assert!(smtp.send(Job::new().out()).await.is_sent());
        assert!(server
            .commands()
            .iter()
            .any(|c| c.starts_with("AUTH PLAIN")));
    }

    #[tokio::test]
    async fn starttls_upgrades_the_session_trusting_the_configured_ca_file() {
        let (acceptor, pem) = tls_acceptor();
        let server = FakeSmtp::start(Script {
            tls: ServerTls::Starttls(acceptor),
            ..Script::default()
        })
        .await;
        let ca_file = std::env::temp_dir().join(format!("herald-smtp-ca-{}.pem", MessageId::new()));
        std::fs::write(&ca_file, pem).expect("write CA file");
        let smtp = adapter(SmtpConfig {
            tls: TlsMode::Starttls,
            ca_file: Some(ca_file.to_string_lossy().into_owned()),
            ..server.config()
        });
        let _ = std::fs::remove_file(&ca_file);

        let outcome = smtp.send(Job::new().out()).await;

        assert!(outcome.is_sent(), "{outcome:?}");
        let commands = server.commands();
        assert!(commands.contains(&"STARTTLS".to_owned()), "{commands:?}");
        // EHLO before and after the upgrade.
        assert_eq!(commands.iter().filter(|c| c.starts_with("EHLO")).count(), 2);
    }

    #[tokio::test]
    async fn starttls_that_the_server_does_not_offer_fails_over() {
        let server = FakeSmtp::start(Script::default()).await;
        let smtp = adapter(SmtpConfig {
            tls: TlsMode::Starttls,
            accept_invalid_certs: true,
            ..server.config()
        });

        let outcome = smtp.send(Job::new().out()).await;

        assert!(
            matches!(outcome, Disposition::Failover { .. }),
            "{outcome:?}"
        );
        assert_eq!(outcome.code(), Some("smtp_starttls_unavailable"));
        assert!(server.messages().is_empty());
    }

    #[tokio::test]
    async fn implicit_tls_sends_to_a_test_server_when_invalid_certificates_are_accepted() {
        let (acceptor, _) = tls_acceptor();
        let server = FakeSmtp::start(Script {
            tls: ServerTls::Implicit(acceptor),
            ..Script::default()
        })
        .await;
        let smtp = adapter(SmtpConfig {
            tls: TlsMode::Tls,
            accept_invalid_certs: true,
            ..server.config()
        });

        let outcome = smtp.send(Job::new().out()).await;

        assert!(outcome.is_sent(), "{outcome:?}");
        assert_eq!(server.messages().len(), 1);
    }

    #[tokio::test]
    async fn an_untrusted_certificate_fails_over() {
        let (acceptor, _) = tls_acceptor();
        let server = FakeSmtp::start(Script {
            tls: ServerTls::Implicit(acceptor),
            ..Script::default()
        })
        .await;
        let smtp = adapter(SmtpConfig {
            tls: TlsMode::Tls,
            ..server.config()
        });

        let outcome = smtp.send(Job::new().out()).await;

        assert_eq!(outcome.code(), Some("smtp_tls"), "{outcome:?}");
        assert!(matches!(outcome, Disposition::Failover { .. }));
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_over() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        drop(listener);
        let smtp = adapter(SmtpConfig {
            port,
            ..FakeSmtp::start(Script::default()).await.config()
        });

        let outcome = smtp.send(Job::new().out()).await;

        assert_eq!(outcome.code(), Some("smtp_connect"), "{outcome:?}");
        assert!(matches!(outcome, Disposition::Failover { .. }));
    }

    #[tokio::test]
    async fn a_message_without_a_sender_is_dead_lettered() {
        let server = FakeSmtp::start(Script::default()).await;
        let smtp = adapter(SmtpConfig {
            from: None,
            ..server.config()
        });

        let outcome = smtp.send(Job::new().out()).await;

        assert_eq!(outcome.code(), Some("no_sender"), "{outcome:?}");
        assert!(matches!(outcome, Disposition::DeadLetter { .. }));
        assert_eq!(server.connections(), 0);
    }

    #[tokio::test]
    async fn a_template_message_is_dead_lettered_until_templates_exist() {
        let server = FakeSmtp::start(Script::default()).await;
        let smtp = adapter(server.config());
        let mut job = Job::new();
        job.content.template_id = "welcome".to_owned();

        let outcome = smtp.send(job.out()).await;

        assert_eq!(outcome.code(), Some("template_unsupported"), "{outcome:?}");
        assert!(matches!(outcome, Disposition::DeadLetter { .. }));
    }

    #[test]
    fn the_queue_id_is_taken_from_the_reply_text() {
        use lettre::transport::smtp::response::{Category, Code, Detail, Severity};
        let code = Code::new(
            Severity::PositiveCompletion,
            Category::MailSystem,
            Detail::Zero,
        );
        let reply = |text: &str| Response::new(code, vec![text.to_owned()]);
        assert_eq!(
            provider_message_id(&reply("2.0.0 Ok: queued as ABC123")).as_deref(),
            Some("ABC123")
        );
        assert_eq!(
            provider_message_id(&reply("2.0.0 <id-7> accepted")).as_deref(),
            Some("2.0.0 <id-7> accepted")
        );
        assert_eq!(provider_message_id(&reply("")), None);
    }
}
