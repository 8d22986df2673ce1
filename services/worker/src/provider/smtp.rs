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

const DEFAULT_POOL_SIZE: u32 = 4;
const DEFAULT_TIMEOUT_SECS: u64 = 30;
const DEFAULT_MESSAGE_ID_DOMAIN: &str = "herald.local";
/// Idle connections older than this are closed rather than reused: servers
/// drop idle sessions after a while, and a dead one costs a failed MAIL.
const MAX_IDLE: Duration = Duration::from_secs(60);
/// How long to wait before retrying after a 4xx reply.
const TRANSIENT_RETRY_AFTER: Duration = Duration::from_secs(60);
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
    /// Prepares the adapter (TLS trust, default sender); connects lazily on
    /// the first send. Fails when `ca_file` cannot be read or a field does
    /// not parse.
    pub fn new(config: SmtpConfig) -> Result<SmtpAdapter, FieldError> {
        let tls = match config.tls {
            TlsMode::None => None,
            mode => Some(TlsSetup {
                connector: TlsConnector::from(Arc::new(tls_client_config(&config)?)),
                server_name: ServerName::try_from(config.host.clone()).map_err(|e| {
                    FieldError::new("config.host", format!("is not a valid TLS server name: {e}"))
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
            timeout: Duration::from_secs(config.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS)),
            permits: Semaphore::new(pool_size as usize),
            idle: Mutex::new(Vec::new()),
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
                Err(failed) => return failed.into_disposition(self.timeout),
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
            .message_id(Some(format!("<{}@{}>", out.message_id, self.message_id_domain)))
            .raw_header(HeaderValue::new(HERALD_MESSAGE_ID, out.message_id.to_string()));
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
            .any(|address| !address.as_ref().is_ascii());
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
        self.stage(Stage::Mail, conn.command(Mail::new(sender, parameters))).await?;
        for recipient in email.envelope.to() {
            self.stage(Stage::Rcpt, conn.command(Rcpt::new(recipient.clone(), Vec::new())))
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
            .map_err(|e| failover("smtp_connect", format!("cannot connect to {}: {e}", self.server)))?;
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
                let code = e.status().map_or_else(|| "smtp_connect".to_owned(), |c| format!("smtp_{c}"));
                failover(code, format!("the SMTP session with {} did not open: {e}", self.server))
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
            .field("tls", &self.tls.as_ref().map(|t| if t.implicit { "tls" } else { "starttls" }))
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
    /// The server answered with a negative reply.
    Reply {
        code: String,
        text: String,
        permanent: bool,
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
                code: code.to_string(),
                // The source of a reply error is the server's text.
                text: std::error::Error::source(error)
                    .map_or_else(|| error.to_string(), |text| text.to_string()),
                permanent: error.is_permanent(),
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
                StageError::Reply { permanent, .. } => !permanent,
                StageError::Broken(_) | StageError::TimedOut => true,
                StageError::Unsupported(..) => false,
            }
    }

    fn into_disposition(self, timeout: Duration) -> Disposition {
        let stage = self.stage;
        match self.error {
            StageError::Reply {
                code,
                text,
                permanent: false,
            } => Disposition::RetryAfter {
                after: TRANSIENT_RETRY_AFTER,
                code: format!("smtp_{code}"),
                reason: text,
            },
            StageError::Reply {
                code,
                text,
                permanent: true,
            } => dead_letter(format!("smtp_{code}"), text),
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
            StageError::Broken(error) => {
                failover("smtp_connection", format!("the SMTP session failed at {stage}: {error}"))
            }
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
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
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
    read_reply(&mut reader, server).await?.expect(2, server, "STARTTLS")?;
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
            format!("{server} answered {step} with {} {}", self.code, self.lines.join(" ")),
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
