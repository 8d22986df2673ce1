//! A scripted SMTP server for the adapter's tests: plain, STARTTLS or
//! implicit TLS, with the replies each test needs.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_domain::provider_config::{SmtpConfig, TlsMode};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// How the fake server answers.
#[derive(Clone)]
pub(super) struct Script {
    pub(super) mail: &'static str,
    pub(super) rcpt: &'static str,
    /// The reply after the final dot; `None` closes the connection
    /// without one.
    pub(super) after_body: Option<&'static str>,
    /// Close the session after each accepted message, as a server with a
    /// very short idle timeout would.
    pub(super) close_after_message: bool,
    /// Wait this long before replying after the final dot.
    pub(super) delay_after_body: Duration,
    pub(super) tls: ServerTls,
    /// Offer PIPELINING, and hold the replies to MAIL and RCPT until DATA
    /// arrives (RFC 2920 lets a server answer a group at once): a client
    /// that waits for each reply before its next command never gets one.
    pub(super) pipelining: bool,
}

#[derive(Clone)]
pub(super) enum ServerTls {
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
            pipelining: false,
        }
    }
}

#[derive(Default)]
struct Log {
    commands: Vec<String>,
    messages: Vec<String>,
}

pub(super) struct FakeSmtp {
    port: u16,
    connections: Arc<AtomicUsize>,
    log: Arc<Mutex<Log>>,
}

impl FakeSmtp {
    pub(super) async fn start(script: Script) -> FakeSmtp {
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

    pub(super) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub(super) fn commands(&self) -> Vec<String> {
        self.log.lock().expect("log").commands.clone()
    }

    pub(super) fn messages(&self) -> Vec<String> {
        self.log.lock().expect("log").messages.clone()
    }

    pub(super) fn config(&self) -> SmtpConfig {
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
    // Replies held back until the group's DATA (`Script::pipelining`).
    let mut held = String::new();
    while let Some(command) = next_line(&mut stream).await? {
        log.lock().expect("log").commands.push(command.clone());
        let verb = command
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        if script.pipelining && matches!(verb.as_str(), "MAIL" | "RCPT") {
            let reply = if verb == "MAIL" {
                script.mail
            } else {
                script.rcpt
            };
            held.push_str(&format!("{reply}\r\n"));
            continue;
        }
        if !held.is_empty() {
            stream
                .write_all(std::mem::take(&mut held).as_bytes())
                .await?;
        }
        let ehlo = if script.pipelining {
            "250-fake.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN"
        } else {
            "250-fake.test\r\n250-8BITMIME\r\n250 AUTH PLAIN LOGIN"
        };
        let reply = match verb.as_str() {
            "EHLO" => ehlo,
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
pub(super) fn tls_acceptor() -> (TlsAcceptor, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
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
