//! TLS trust (the configured CA file, or none for test servers) and the TLS
//! stream lettre reads and writes.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use herald_domain::provider_config::SmtpConfig;
use herald_domain::FieldError;
use lettre::transport::smtp::client::AsyncTokioStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// lettre's `connect_with_transport` reads a greeting before its EHLO; after
/// STARTTLS the server sends none, so the TLS stream replays this one.
pub(super) const GREETING_AFTER_STARTTLS: &[u8] = b"220 TLS session started\r\n";

pub(super) struct TlsSetup {
    pub(super) connector: TlsConnector,
    pub(super) server_name: ServerName<'static>,
    /// TLS from the first byte (`tls`) rather than after STARTTLS.
    pub(super) implicit: bool,
}

/// TLS trust for this provider, with the ring provider and nothing
/// process-global: the configured CA file on top of the webpki roots, or no
/// verification at all for test servers.
pub(super) fn tls_client_config(config: &SmtpConfig) -> Result<rustls::ClientConfig, FieldError> {
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

/// A TLS session as lettre's transport. After STARTTLS it first replays a
/// greeting, since lettre reads one before sending EHLO.
#[derive(Debug)]
pub(super) struct TlsTransport {
    pub(super) greeting: &'static [u8],
    pub(super) stream: TlsStream<TcpStream>,
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
