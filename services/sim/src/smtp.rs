//! A small SMTP server (RFC 5321) over tokio: EHLO/HELO, STARTTLS, AUTH
//! PLAIN/LOGIN (any credentials), MAIL, RCPT, DATA, RSET, NOOP, VRFY, QUIT,
//! with pipelining. Accepted messages are counted by their
//! `X-Herald-Message-Id` header; the end of DATA is where latency and
//! failures are injected.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rand::Rng;
use serde_json::json;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
    ReadBuf,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::counters::SimChannel;
use crate::SimState;
use herald_runtime::Shutdown;

/// The largest message accepted, advertised as `SIZE`.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
/// Longest command line; RFC 5321 asks for 512, clients sometimes exceed it.
const MAX_COMMAND_BYTES: usize = 4096;
/// Longest line inside DATA; RFC 5321 says 1000, we are lenient.
const MAX_DATA_LINE_BYTES: usize = 1024 * 1024;
const MAX_RECIPIENTS: usize = 1000;
/// A client silent this long is disconnected (RFC 5321 suggests 5 minutes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping server waits for open sessions before dropping them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Which port a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plaintext; STARTTLS offered and accepted.
    Plain,
    /// TLS from the first byte (SMTPS).
    ImplicitTls,
}

/// Accepts SMTP connections on the simulator's ports.
#[derive(Clone)]
pub struct SmtpServer {
    state: Arc<SimState>,
    acceptor: TlsAcceptor,
    shutdown: Shutdown,
    /// Messages whose DATA ended, for `refuse_every`.
    finished: Arc<std::sync::atomic::AtomicU64>,
}

impl SmtpServer {
    pub(crate) fn new(state: Arc<SimState>, acceptor: TlsAcceptor, shutdown: Shutdown) -> Self {
        SmtpServer {
            state,
            acceptor,
            shutdown,
            finished: Arc::default(),
        }
    }

    /// Accepts until shutdown, then drains the open sessions.
    pub async fn serve(self, listener: TcpListener, mode: Mode) -> anyhow::Result<()> {
        let mut sessions = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                () = self.shutdown.wait() => break,
                accepted = listener.accept() => accepted,
            };
            // Reap finished sessions so the set stays as small as the open ones.
            while sessions.try_join_next().is_some() {}
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually out of file descriptors: wait rather than spin.
                    tracing::warn!(error = %error, "Failed to accept an SMTP connection.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            self.state.counters.record_smtp_connection();
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            sessions.spawn(async move {
                if let Err(error) = server.session(QuickAck(stream), mode).await {
                    tracing::debug!(error = %error, peer = %peer, "An SMTP session ended with an error.");
                }
            });
        }
        drop(listener);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open = sessions.len(),
                "Dropping SMTP sessions still open after the drain timeout."
            );
            sessions.abort_all();
        }
        Ok(())
    }

    async fn session(&self, stream: QuickAck, mode: Mode) -> io::Result<()> {
        match mode {
            Mode::ImplicitTls => {
                let tls = self.handshake(stream).await?;
                self.converse(tls, Security::Tls, true).await?;
            }
            Mode::Plain => {
                if let Some(stream) = self
                    .converse(stream, Security::StartTlsOffered, true)
                    .await?
                {
                    let tls = self.handshake(stream).await?;
                    // After STARTTLS the client starts over with EHLO, unprompted.
                    self.converse(tls, Security::Tls, false).await?;
                }
            }
        }
        Ok(())
    }

    async fn handshake(
        &self,
        stream: QuickAck,
    ) -> io::Result<tokio_rustls::server::TlsStream<QuickAck>> {
        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, self.acceptor.accept(stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
    }

    /// Runs one SMTP dialogue on `stream`. Returns the stream when the client
    /// asked for STARTTLS, so the caller can wrap it in TLS.
    async fn converse<S>(&self, stream: S, security: Security, greet: bool) -> io::Result<Option<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut io = BufReader::with_capacity(64 * 1024, BufWriter::new(stream));
        if greet {
            io.write_all(b"220 localhost ESMTP Herald simulator ready\r\n")
                .await?;
            io.flush().await?;
        }
        let mut session = Session {
            security,
            ..Session::default()
        };
        let mut line = Vec::with_capacity(512);
        let mut body = Vec::new();
        loop {
            match next_command(&mut io, &mut line, &self.shutdown).await? {
                Read::Line => {}
                Read::Eof => return Ok(None),
                Read::TooLong => {
                    io.write_all(b"500 5.5.2 Line too long\r\n").await?;
                    io.flush().await?;
                    continue;
                }
                Read::Idle => {
                    io.write_all(b"421 4.4.2 localhost Idle timeout, closing connection\r\n")
                        .await?;
                    io.flush().await?;
                    return Ok(None);
                }
                Read::Shutdown => {
                    io.write_all(b"421 4.3.2 localhost Service shutting down\r\n")
                        .await?;
                    io.flush().await?;
                    return Ok(None);
                }
            }
            let text = String::from_utf8_lossy(trim_line_end(&line)).into_owned();
            let (verb, args) = match text.split_once(' ') {
                Some((verb, args)) => (verb, args.trim()),
                None => (text.as_str(), ""),
            };
            match verb.to_ascii_uppercase().as_str() {
                "EHLO" => session.ehlo(&mut io, args, true).await?,
                "HELO" => session.ehlo(&mut io, args, false).await?,
                "MAIL" => session.mail(&mut io, args).await?,
                "RCPT" => session.rcpt(&mut io, args).await?,
                "DATA" => {
                    if !self.data(&mut session, &mut io, &mut body, args).await? {
                        return Ok(None);
                    }
                }
                "RSET" => {
                    session.reset_transaction();
                    io.write_all(b"250 2.0.0 OK\r\n").await?;
                }
                "NOOP" => io.write_all(b"250 2.0.0 OK\r\n").await?,
                "VRFY" => {
                    io.write_all(b"252 2.5.0 Cannot VRFY user, but will accept message\r\n")
                        .await?
                }
                "HELP" => {
                    io.write_all(b"214 2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP VRFY QUIT\r\n")
                        .await?
                }
                "QUIT" => {
                    io.write_all(b"221 2.0.0 localhost closing connection\r\n").await?;
                    io.flush().await?;
                    return Ok(None);
                }
                "AUTH" => {
                    if !session.auth(&mut io, &mut line, args).await? {
                        return Ok(None);
                    }
                }
                "STARTTLS" => {
                    if session.security != Security::StartTlsOffered {
                        io.write_all(b"503 5.5.1 TLS already active\r\n").await?;
                    } else if !args.is_empty() {
                        io.write_all(b"501 5.5.4 STARTTLS takes no arguments\r\n").await?;
                    } else {
                        io.write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
                        io.flush().await?;
                        // Anything the client pipelined after STARTTLS is
                        // plaintext it must not rely on (RFC 3207): drop it.
                        return Ok(Some(io.into_inner().into_inner()));
                    }
                }
                _ => io.write_all(b"500 5.5.2 Command not recognized\r\n").await?,
            }
            // Pipelining: answer a group of commands in one write.
            if io.buffer().is_empty() {
                io.flush().await?;
            }
        }
    }

    /// Handles DATA; returns false when the client went away mid-message.
    async fn data<S>(
        &self,
        session: &mut Session,
        io: &mut BufReader<BufWriter<S>>,
        body: &mut Vec<u8>,
        args: &str,
    ) -> io::Result<bool>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if !args.is_empty() {
            io.write_all(b"501 5.5.4 DATA takes no arguments\r\n")
                .await?;
            return Ok(true);
        }
        if session.from.is_none() {
            io.write_all(b"503 5.5.1 Need MAIL before DATA\r\n").await?;
            return Ok(true);
        }
        if session.recipients.is_empty() {
            io.write_all(b"503 5.5.1 Need RCPT before DATA\r\n").await?;
            return Ok(true);
        }
        io.write_all(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n")
            .await?;
        io.flush().await?;
        let outcome = read_data(io, body).await?;
        let result = match outcome {
            Data::Eof => return Ok(false),
            Data::TooBig => {
                self.state.counters.record_rejected(SimChannel::Email);
                io.write_all(b"552 5.3.4 Message too big\r\n").await
            }
            Data::Complete => self.finish_message(session, io, body).await,
        };
        session.reset_transaction();
        // The body buffer is reused across messages; give back a huge one.
        if body.capacity() > 1024 * 1024 {
            *body = Vec::new();
        }
        result.map(|()| true)
    }

    async fn finish_message<S>(
        &self,
        session: &Session,
        io: &mut BufReader<BufWriter<S>>,
        body: &[u8],
    ) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let behaviour = self.state.behaviour().smtp;
        if behaviour.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(behaviour.latency_ms)).await;
        }
        let (reject, fail) = {
            let mut rng = rand::thread_rng();
            (
                rng.gen::<f64>() < behaviour.reject_rate,
                rng.gen::<f64>() < behaviour.fail_rate,
            )
        };
        let n = self
            .finished
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if behaviour.refuse_every > 0 && n.is_multiple_of(u64::from(behaviour.refuse_every)) {
            self.state.counters.record_rejected(SimChannel::Email);
            return io
                .write_all(b"421 4.3.2 simulated refusal, try another server\r\n")
                .await;
        }
        if reject {
            self.state.counters.record_rejected(SimChannel::Email);
            return io
                .write_all(b"550 5.1.1 simulated permanent failure\r\n")
                .await;
        }
        if fail {
            self.state.counters.record_rejected(SimChannel::Email);
            return io
                .write_all(b"451 4.3.0 simulated transient failure\r\n")
                .await;
        }
        let headers = Headers::parse(body);
        let detail = json!({
            "from": session.from,
            "rcpt": session.recipients,
            "subject": headers.subject,
            "message_id": headers.message_id,
            "header_from": headers.from,
            "x_herald_message_id": headers.herald_id,
            "list_unsubscribe": headers.list_unsubscribe,
            "list_unsubscribe_post": headers.list_unsubscribe_post,
            "tracking_urls": tracking_urls(body),
            "size": body.len(),
            "tls": session.security == Security::Tls,
            "authenticated": session.authenticated,
            "helo": session.helo,
        });
        let first = self.state.counters.record_received(
            SimChannel::Email,
            headers.herald_id.as_deref(),
            detail,
        );
        if first {
            self.state.callbacks.accepted(
                SimChannel::Email,
                headers.herald_id.as_deref(),
                session.recipients.first().map(String::as_str),
                session.from.as_deref(),
            );
        }
        let queued = uuid::Uuid::new_v4().simple();
        io.write_all(format!("250 2.0.0 OK queued as {queued}\r\n").as_bytes())
            .await
    }
}

/// A TCP stream that asks the kernel to acknowledge at once after every
/// read. Clients that write the message body and the final `.` separately
/// without `TCP_NODELAY` (lettre does) would otherwise wait for our delayed
/// ACK, about 40 ms per message, before Nagle lets the `.` out. Real servers
/// have the same problem; the simulator removes it so load tests measure
/// Herald, not TCP timers.
struct QuickAck(TcpStream);

impl QuickAck {
    fn acknowledge_promptly(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let filled = buf.filled().len();
        let poll = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > filled {
            self.acknowledge_promptly();
        }
        poll
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Security {
    #[default]
    StartTlsOffered,
    Tls,
}

/// The state of one SMTP dialogue.
#[derive(Default)]
struct Session {
    security: Security,
    helo: Option<String>,
    authenticated: bool,
    from: Option<String>,
    recipients: Vec<String>,
}

impl Session {
    fn reset_transaction(&mut self) {
        self.from = None;
        self.recipients.clear();
    }

    async fn ehlo<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        args: &str,
        extended: bool,
    ) -> io::Result<()> {
        if args.is_empty() {
            return io.write_all(b"501 5.5.4 Syntax: EHLO hostname\r\n").await;
        }
        self.reset_transaction();
        self.helo = Some(args.to_owned());
        if !extended {
            return io.write_all(b"250 localhost\r\n").await;
        }
        let mut reply = format!(
            "250-localhost greets {args}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE {MAX_MESSAGE_BYTES}\r\n"
        );
        if self.security == Security::StartTlsOffered {
            reply.push_str("250-STARTTLS\r\n");
        }
        reply.push_str("250 AUTH PLAIN LOGIN\r\n");
        io.write_all(reply.as_bytes()).await
    }

    async fn mail<W: AsyncWrite + Unpin>(&mut self, io: &mut W, args: &str) -> io::Result<()> {
        if self.helo.is_none() {
            return io.write_all(b"503 5.5.1 Send EHLO or HELO first\r\n").await;
        }
        if self.from.is_some() {
            return io.write_all(b"503 5.5.1 Nested MAIL command\r\n").await;
        }
        let Some((path, params)) = parse_path(args, "FROM:") else {
            return io
                .write_all(b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n")
                .await;
        };
        for param in params.split_ascii_whitespace() {
            if let Some((key, value)) = param.split_once('=') {
                if key.eq_ignore_ascii_case("SIZE")
                    && value
                        .parse::<usize>()
                        .is_ok_and(|size| size > MAX_MESSAGE_BYTES)
                {
                    return io
                        .write_all(b"552 5.3.4 Message size exceeds the limit\r\n")
                        .await;
                }
            }
        }
        self.from = Some(path.to_owned());
        io.write_all(b"250 2.1.0 OK\r\n").await
    }

    async fn rcpt<W: AsyncWrite + Unpin>(&mut self, io: &mut W, args: &str) -> io::Result<()> {
        if self.from.is_none() {
            return io.write_all(b"503 5.5.1 Need MAIL before RCPT\r\n").await;
        }
        let Some((path, _)) = parse_path(args, "TO:").filter(|(path, _)| !path.is_empty()) else {
            return io
                .write_all(b"501 5.5.4 Syntax: RCPT TO:<address>\r\n")
                .await;
        };
        if self.recipients.len() >= MAX_RECIPIENTS {
            return io.write_all(b"452 4.5.3 Too many recipients\r\n").await;
        }
        self.recipients.push(path.to_owned());
        io.write_all(b"250 2.1.5 OK\r\n").await
    }

    /// AUTH PLAIN / LOGIN, accepting any credentials. Returns false when the
    /// client went away mid-exchange.
    async fn auth<S>(
        &mut self,
        io: &mut BufReader<BufWriter<S>>,
        line: &mut Vec<u8>,
        args: &str,
    ) -> io::Result<bool>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.authenticated {
            io.write_all(b"503 5.5.1 Already authenticated\r\n").await?;
            return Ok(true);
        }
        if self.from.is_some() {
            io.write_all(b"503 5.5.1 AUTH not allowed during a mail transaction\r\n")
                .await?;
            return Ok(true);
        }
        let mut words = args.split_ascii_whitespace();
        let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
        let initial = words.next();
        // Base64 prompts: "Username:" and "Password:".
        let prompts: &[&[u8]] = match (mechanism.as_str(), initial) {
            ("PLAIN", Some(_)) => &[],
            ("PLAIN", None) => &[b"334 \r\n"],
            ("LOGIN", Some(_)) => &[b"334 UGFzc3dvcmQ6\r\n"],
            ("LOGIN", None) => &[b"334 VXNlcm5hbWU6\r\n", b"334 UGFzc3dvcmQ6\r\n"],
            _ => {
                io.write_all(b"504 5.5.4 Unrecognized authentication mechanism\r\n")
                    .await?;
                return Ok(true);
            }
        };
        for prompt in prompts {
            io.write_all(prompt).await?;
            io.flush().await?;
            line.clear();
            let read =
                tokio::time::timeout(IDLE_TIMEOUT, read_line_limited(io, line, MAX_COMMAND_BYTES))
                    .await
                    .unwrap_or(Ok(Read::Idle))?;
            match read {
                Read::Line if trim_line_end(line) == b"*" => {
                    io.write_all(b"501 5.7.0 Authentication cancelled\r\n")
                        .await?;
                    return Ok(true);
                }
                Read::Line => {}
                Read::TooLong => {
                    io.write_all(b"500 5.5.6 Authentication exchange line too long\r\n")
                        .await?;
                    return Ok(true);
                }
                Read::Eof | Read::Idle | Read::Shutdown => return Ok(false),
            }
        }
        self.authenticated = true;
        io.write_all(b"235 2.7.0 Authentication successful\r\n")
            .await?;
        Ok(true)
    }
}

/// `FROM:<a@b> SIZE=10` → (`a@b`, `SIZE=10`); the prefix is matched
/// case-insensitively and a space after the colon is tolerated.
fn parse_path<'a>(args: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let head = args.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = args[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((&rest[..end], rest[end + 1..].trim()))
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

enum Read {
    Line,
    Eof,
    TooLong,
    Idle,
    Shutdown,
}

/// Appends one line (with its `\n`) to `buf`, keeping at most `limit + 1`
/// bytes of it; the rest of an over-long line is read and dropped. Cancel
/// safe: bytes already read stay in `buf`, and a new call continues the line.
async fn read_line_limited<R>(reader: &mut R, buf: &mut Vec<u8>, limit: usize) -> io::Result<Read>
where
    R: AsyncBufRead + Unpin,
{
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(Read::Eof);
        }
        let (complete, used) = match available.iter().position(|&byte| byte == b'\n') {
            Some(end) => (true, end + 1),
            None => (false, available.len()),
        };
        let room = (limit + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&available[..used.min(room)]);
        reader.consume(used);
        if complete {
            return Ok(if buf.len() > limit {
                Read::TooLong
            } else {
                Read::Line
            });
        }
    }
}

/// Reads the next command line, giving up when the client idles too long
/// or the server stops between commands.
async fn next_command<R>(
    reader: &mut R,
    line: &mut Vec<u8>,
    shutdown: &Shutdown,
) -> io::Result<Read>
where
    R: AsyncBufRead + Unpin,
{
    line.clear();
    if shutdown.is_triggered() {
        return Ok(Read::Shutdown);
    }
    let idle = tokio::time::sleep(IDLE_TIMEOUT);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            read = read_line_limited(reader, line, MAX_COMMAND_BYTES) => return read,
            () = shutdown.wait(), if line.is_empty() => {
                // A command already begun is finished first.
                if line.is_empty() {
                    return Ok(Read::Shutdown);
                }
            }
            () = &mut idle => return Ok(Read::Idle),
        }
    }
}

enum Data {
    Complete,
    TooBig,
    Eof,
}

/// Reads a message up to `<CRLF>.<CRLF>` into `body`, undoing dot-stuffing.
/// A message over [`MAX_MESSAGE_BYTES`] is read to its end and dropped.
async fn read_data<R>(reader: &mut R, body: &mut Vec<u8>) -> io::Result<Data>
where
    R: AsyncBufRead + Unpin,
{
    body.clear();
    let mut too_big = false;
    loop {
        let start = body.len();
        let read = tokio::time::timeout(
            IDLE_TIMEOUT,
            read_line_limited(reader, body, start + MAX_DATA_LINE_BYTES),
        )
        .await
        .unwrap_or(Ok(Read::Idle))?;
        match read {
            Read::Line => {}
            Read::TooLong => too_big = true,
            Read::Eof | Read::Idle | Read::Shutdown => return Ok(Data::Eof),
        }
        if body.get(start) == Some(&b'.') {
            if matches!(&body[start..], b".\r\n" | b".\n") {
                body.truncate(start);
                return Ok(if too_big {
                    Data::TooBig
                } else {
                    Data::Complete
                });
            }
            body.remove(start);
        }
        if too_big || body.len() > MAX_MESSAGE_BYTES {
            too_big = true;
            body.clear();
        }
    }
}

/// The open-pixel and click-redirect URLs in the email's HTML part (a
/// tracked email's `…/t/o/<token>` and `…/t/c/<token>`), in order.
fn tracking_urls(message: &[u8]) -> Vec<String> {
    static TRACKED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"https?://[^\s"'<>]+/t/[oc]/[A-Za-z0-9_-]+"#).expect("the pattern")
    });
    let Some(parsed) = mail_parser::MessageParser::default().parse(message) else {
        return Vec::new();
    };
    (0..parsed.html_body.len())
        .filter_map(|i| parsed.body_html(i))
        .flat_map(|html| {
            TRACKED
                .find_iter(&html)
                .map(|m| m.as_str().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The headers the simulator reports, read from the message's header block.
#[derive(Debug, Default, PartialEq)]
struct Headers {
    herald_id: Option<String>,
    message_id: Option<String>,
    subject: Option<String>,
    from: Option<String>,
    list_unsubscribe: Option<String>,
    list_unsubscribe_post: Option<String>,
}

impl Headers {
    fn parse(message: &[u8]) -> Headers {
        let mut headers = Headers::default();
        // The header being read, so folded continuation lines join it.
        let mut current: Option<(&'static str, String)> = None;
        for raw in message.split(|&byte| byte == b'\n') {
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            if line
                .first()
                .is_some_and(|byte| *byte == b' ' || *byte == b'\t')
            {
                if let Some((_, value)) = current.as_mut() {
                    value.push(' ');
                    value.push_str(String::from_utf8_lossy(line).trim());
                }
                continue;
            }
            if let Some((name, value)) = current.take() {
                headers.store(name, value);
            }
            if line.is_empty() {
                break;
            }
            let Some(colon) = line.iter().position(|&byte| byte == b':') else {
                continue;
            };
            let name = &line[..colon];
            let known = [
                "X-Herald-Message-Id",
                "Message-ID",
                "Subject",
                "From",
                "List-Unsubscribe",
                "List-Unsubscribe-Post",
            ]
            .into_iter()
            .find(|known| name.eq_ignore_ascii_case(known.as_bytes()));
            if let Some(known) = known {
                let value = String::from_utf8_lossy(&line[colon + 1..])
                    .trim()
                    .to_owned();
                current = Some((known, value));
            }
        }
        if let Some((name, value)) = current.take() {
            headers.store(name, value);
        }
        headers
    }

    /// Keeps the first occurrence of each header.
    fn store(&mut self, name: &str, value: String) {
        let slot = match name {
            "X-Herald-Message-Id" => &mut self.herald_id,
            "Message-ID" => &mut self.message_id,
            "Subject" => &mut self.subject,
            "List-Unsubscribe" => &mut self.list_unsubscribe,
            "List-Unsubscribe-Post" => &mut self.list_unsubscribe_post,
            _ => &mut self.from,
        };
        if slot.is_none() && !value.is_empty() {
            *slot = Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_case_insensitively_and_unfolded() {
        let message = b"from: a@b\r\nx-herald-message-id: 123\r\nSubject: Hello\r\n  world\r\nMessage-ID: <1@x>\r\n\r\nX-Herald-Message-Id: body\r\n";
        let headers = Headers::parse(message);
        assert_eq!(headers.herald_id.as_deref(), Some("123"));
        assert_eq!(headers.subject.as_deref(), Some("Hello world"));
        assert_eq!(headers.message_id.as_deref(), Some("<1@x>"));
        assert_eq!(headers.from.as_deref(), Some("a@b"));
    }

    #[test]
    fn a_header_in_the_body_is_not_a_header() {
        let headers = Headers::parse(b"Subject: x\r\n\r\nX-Herald-Message-Id: 1\r\n");
        assert_eq!(headers.herald_id, None);
    }

    #[test]
    fn paths_parse_with_parameters() {
        assert_eq!(
            parse_path("FROM:<a@b> SIZE=10", "FROM:"),
            Some(("a@b", "SIZE=10"))
        );
        assert_eq!(parse_path("to: <c@d>", "TO:"), Some(("c@d", "")));
        assert_eq!(parse_path("FROM:<>", "FROM:"), Some(("", "")));
        assert_eq!(parse_path("FROM:a@b", "FROM:"), None);
        assert_eq!(parse_path("TO", "TO:"), None);
    }

    #[tokio::test]
    async fn data_ends_at_the_lone_dot_and_is_unstuffed() {
        let input: &[u8] = b"Subject: x\r\n\r\n..leading dot\r\n.\r\nNOOP\r\n";
        let mut reader = BufReader::new(input);
        let mut body = Vec::new();
        let outcome = read_data(&mut reader, &mut body).await.expect("readable");
        assert!(matches!(outcome, Data::Complete));
        assert_eq!(body, b"Subject: x\r\n\r\n.leading dot\r\n");
        let mut rest = Vec::new();
        read_line_limited(&mut reader, &mut rest, 100)
            .await
            .expect("readable");
        assert_eq!(rest, b"NOOP\r\n");
    }

    #[tokio::test]
    async fn data_cut_off_is_not_a_message() {
        let mut reader = BufReader::new(&b"Subject: x\r\n\r\nbody\r\n"[..]);
        let mut body = Vec::new();
        let outcome = read_data(&mut reader, &mut body).await.expect("readable");
        assert!(matches!(outcome, Data::Eof));
    }

    #[tokio::test]
    async fn an_over_long_command_is_reported_and_skipped() {
        let mut input = vec![b'A'; 50];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        let mut reader = BufReader::new(input.as_slice());
        let mut line = Vec::new();
        let read = read_line_limited(&mut reader, &mut line, 10)
            .await
            .expect("readable");
        assert!(matches!(read, Read::TooLong));
        line.clear();
        let read = read_line_limited(&mut reader, &mut line, 10)
            .await
            .expect("readable");
        assert!(matches!(read, Read::Line));
        assert_eq!(line, b"NOOP\r\n");
    }
}
