//! `herald-sim`, the provider simulator and Herald's built-in default
//! provider: it receives what Herald sends, counts it by
//! `X-Herald-Message-Id`, and fails or slows down on demand.
//!
//! - [`config`]: listen addresses ([`SimConfig`]), live fault injection
//!   ([`SimBehaviour`]) and the command line.
//! - [`smtp`]: the SMTP server, plain with STARTTLS and implicit TLS.
//! - [`tls`]: the CA and server certificate generated at start, `ca.pem`.
//! - [`wework`]: the WeWork-compatible `gettoken` and `message/send`.
//! - [`webhook`]: a webhook receiver that checks `X-Herald-Signature`.
//! - [`counters`]: what was received, per channel and per message id.
//! - [`control`]: the `/sim/*` HTTP API (stats, counts, reset, config).
//! - [`callbacks`]: the callbacks a provider would make for what was
//!   accepted (delivered, read, clicked, replied, bounced, complained).
//!
//! [`Sim::build`] binds every port and writes the certificate; [`Sim::run`]
//! serves until the shutdown future resolves. A [`SimHandle`] reads the
//! counters and changes the behaviour from the same process (tests).

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub mod callbacks;
pub mod config;
pub mod control;
pub mod counters;
pub mod smtp;
pub mod tls;
pub mod webhook;
pub mod wework;

pub use config::{
    InvalidSetting, SimBehaviour, SimConfig, SmtpBehaviour, WebhookBehaviour, WeworkBehaviour,
};
pub use counters::{SimChannel, SimStats, SmtpStats, WebhookStats, WeworkStats};

/// What the servers share: the counters, the live behaviour, the WeWork
/// tokens and the webhook secret.
pub(crate) struct SimState {
    pub(crate) counters: counters::Counters,
    behaviour: Mutex<SimBehaviour>,
    pub(crate) tokens: wework::Tokens,
    pub(crate) webhook_secret: String,
    /// WeWork sends accepted in the last second (`rate_limit_per_sec`).
    pub(crate) wework_recent: Mutex<std::collections::VecDeque<std::time::Instant>>,
    pub(crate) callbacks: Arc<callbacks::Reporter>,
}

impl SimState {
    pub(crate) fn behaviour(&self) -> SimBehaviour {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn set_behaviour(&self, behaviour: SimBehaviour) -> Result<(), InvalidSetting> {
        config::validate(&behaviour)?;
        *self
            .behaviour
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = behaviour;
        Ok(())
    }
}

/// A cheap, cloneable view of a simulator that stays valid after
/// [`Sim::run`] took the simulator.
#[derive(Clone)]
pub struct SimHandle {
    state: Arc<SimState>,
}

impl SimHandle {
    /// The same data as `GET /sim/stats`.
    pub fn stats(&self) -> SimStats {
        self.state.counters.stats()
    }

    /// How many times the message `message_id` was accepted on `channel`.
    pub fn count(&self, channel: SimChannel, message_id: &str) -> u32 {
        self.state.counters.count(channel, message_id)
    }

    /// The summary of the last accepted reception of `message_id` on
    /// `channel` (as `GET /sim/messages/{id}` shows it under `last`).
    pub fn last(&self, channel: SimChannel, message_id: &str) -> Option<serde_json::Value> {
        self.state.counters.last(channel, message_id)
    }

    /// The live fault injection.
    pub fn behaviour(&self) -> SimBehaviour {
        self.state.behaviour()
    }

    /// Replaces the live fault injection; refused when a rate is outside
    /// `0..=1` or a latency too long.
    pub fn set_behaviour(&self, behaviour: SimBehaviour) -> Result<(), InvalidSetting> {
        self.state.set_behaviour(behaviour)
    }

    /// Zeroes every counter and forgets every message id.
    pub fn reset(&self) {
        self.state.counters.reset();
    }

    /// Where and how often the simulator makes provider callbacks.
    pub fn set_callbacks(
        &self,
        settings: herald_api::sim::SimCallbacks,
    ) -> Result<(), herald_api::FieldError> {
        self.state.callbacks.configure(settings)
    }

    /// The callback settings and counts.
    pub fn callbacks(&self) -> herald_api::sim::SimCallbackReport {
        self.state.callbacks.report()
    }

    /// Invalidates every WeWork access token issued so far; returns how many.
    pub fn expire_wework_tokens(&self) -> usize {
        self.state.tokens.expire_all()
    }
}

/// A simulator with its ports bound, ready to [`run`](Sim::run).
pub struct Sim {
    http: TcpListener,
    smtp: TcpListener,
    smtps: TcpListener,
    http_port: u16,
    smtp_port: u16,
    smtps_port: u16,
    cert_dir: tls::CertDir,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<SimState>,
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<(TcpListener, u16)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("Failed to bind the {what} listener on {addr}"))?;
    let port = listener
        .local_addr()
        .with_context(|| format!("Failed to read the {what} listener's address"))?
        .port();
    Ok((listener, port))
}

impl Sim {
    /// Generates the certificates, writes `ca.pem` and binds every listener.
    pub async fn build(config: SimConfig) -> anyhow::Result<Sim> {
        let behaviour = config.behaviour();
        config::validate(&behaviour).context("Invalid fault injection settings")?;
        let certificates = tls::generate()?;
        let cert_dir = tls::CertDir::write(config.cert_dir.as_deref(), &certificates.ca_pem)?;
        let (http, http_port) = bind(config.http_addr, "HTTP").await?;
        let (smtp, smtp_port) = bind(config.smtp_addr, "SMTP").await?;
        let (smtps, smtps_port) = bind(config.smtps_addr, "SMTPS").await?;
        Ok(Sim {
            http,
            smtp,
            smtps,
            http_port,
            smtp_port,
            smtps_port,
            cert_dir,
            acceptor: certificates.acceptor,
            state: Arc::new(SimState {
                counters: counters::Counters::default(),
                behaviour: Mutex::new(behaviour),
                tokens: wework::Tokens::default(),
                webhook_secret: config.webhook_secret,
                wework_recent: Mutex::default(),
                callbacks: Arc::default(),
            }),
        })
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
    }

    pub fn smtps_port(&self) -> u16 {
        self.smtps_port
    }

    /// The CA certificate (PEM) that signed the SMTP servers' certificate.
    /// A file in a temporary directory is removed when [`Sim::run`] returns.
    pub fn ca_file(&self) -> &Path {
        self.cert_dir.ca_file()
    }

    pub fn stats(&self) -> SimStats {
        self.handle().stats()
    }

    pub fn count(&self, channel: SimChannel, message_id: &str) -> u32 {
        self.handle().count(channel, message_id)
    }

    pub fn handle(&self) -> SimHandle {
        SimHandle {
            state: self.state.clone(),
        }
    }

    /// Serves HTTP, SMTP and SMTPS until `shutdown` resolves (or a server
    /// fails). Then it stops accepting, lets open SMTP sessions finish their
    /// current command (bounded by [`smtp::DRAIN_TIMEOUT`]) and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (trigger, stopping) = herald_runtime::Shutdown::new();
        let ready: herald_runtime::Readiness = Arc::new(|| true);
        let router = wework::router(self.state.clone())
            .merge(webhook::router(self.state.clone()))
            .merge(control::router(self.state.clone()))
            .merge(herald_runtime::ops_router(ready))
            .fallback(control::not_found)
            .method_not_allowed_fallback(control::method_not_allowed);

        let mut servers = JoinSet::new();
        let http_stop = stopping.clone();
        servers.spawn(async move {
            herald_runtime::serve(self.http, router, async move { http_stop.wait().await })
                .await
                .context("The HTTP server failed")
        });
        let smtp = smtp::SmtpServer::new(self.state.clone(), self.acceptor, stopping);
        servers.spawn(smtp.clone().serve(self.smtp, smtp::Mode::Plain));
        servers.spawn(smtp.serve(self.smtps, smtp::Mode::ImplicitTls));

        let early = tokio::select! {
            () = shutdown => None,
            Some(stopped) = servers.join_next() => Some(stopped),
        };
        trigger.trigger();
        let mut outcome = match early {
            Some(Ok(Ok(()))) => Err(anyhow::anyhow!("A server stopped before shutdown")),
            Some(Ok(Err(error))) => Err(error),
            Some(Err(join)) => Err(anyhow::Error::new(join).context("A server task panicked")),
            None => Ok(()),
        };
        while let Some(stopped) = servers.join_next().await {
            let result = match stopped {
                Ok(result) => result,
                Err(join) => Err(anyhow::Error::new(join).context("A server task panicked")),
            };
            if let (Err(error), true) = (result, outcome.is_ok()) {
                outcome = Err(error);
            }
        }
        tracing::info!("The simulator stopped.");
        drop(self.cert_dir);
        outcome
    }
}
