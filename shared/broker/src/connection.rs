use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

use crate::BrokerError;

/// One AMQP connection of a service; channels are opened per role. When
/// the connection is lost, the next [`Broker::channel`] dials again (once
/// per call, so the caller's own backoff paces it).
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    name: String,
    connection: RwLock<Arc<Connection>>,
    /// One redial at a time; the others wait for its result.
    redial: tokio::sync::Mutex<()>,
    /// Set by [`Broker::close`]: never dial again.
    closed: AtomicBool,
}

/// How long one dial may take (TCP, TLS and the AMQP handshake).
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing waits for the broker's answer: a blocked connection
/// never writes the close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects to RabbitMQ, retrying with backoff for up to `patience`.
pub async fn connect(url: &str, name: &str, patience: Duration) -> Result<Broker, BrokerError> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut delay = Duration::from_millis(200);
    loop {
        match dial(url, name).await {
            Ok(connection) => {
                return Ok(Broker {
                    inner: Arc::new(Inner {
                        url: url.to_owned(),
                        name: name.to_owned(),
                        connection: RwLock::new(Arc::new(connection)),
                        redial: tokio::sync::Mutex::new(()),
                        closed: AtomicBool::new(false),
                    }),
                })
            }
            Err(e) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "RabbitMQ is not reachable yet; retrying.");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

async fn dial(url: &str, name: &str) -> Result<Connection, BrokerError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    match tokio::time::timeout(DIAL_TIMEOUT, Connection::connect(url, props)).await {
        Ok(connection) => Ok(connection?),
        Err(_) => Err(BrokerError::DialTimeout),
    }
}

impl Broker {
    fn current(&self) -> Arc<Connection> {
        match self.inner.connection.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A new channel, on a fresh connection if the last one was lost.
    pub async fn channel(&self) -> Result<lapin::Channel, BrokerError> {
        let connection = self.current();
        if connection.status().connected() {
            return Ok(connection.create_channel().await?);
        }
        Ok(self.redial().await?.create_channel().await?)
    }

    /// Dials once if the connection is lost; returns the live connection.
    async fn redial(&self) -> Result<Arc<Connection>, BrokerError> {
        let _one = self.inner.redial.lock().await;
        let current = self.current();
        if current.status().connected() {
            return Ok(current);
        }
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        let fresh = Arc::new(dial(&self.inner.url, &self.inner.name).await?);
        match self.inner.connection.write() {
            Ok(mut c) => *c = fresh.clone(),
            Err(poisoned) => *poisoned.into_inner() = fresh.clone(),
        }
        metrics::counter!("herald_broker_reconnects_total").increment(1);
        tracing::info!(name = %self.inner.name, "Reconnected to RabbitMQ.");
        Ok(fresh)
    }

    /// Resolves once the connection current at the call is lost (checked
    /// every second). Consumers end with it: their deliveries return to the
    /// queues.
    pub async fn lost(&self) {
        let connection = self.current();
        while connection.status().connected() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    pub fn is_connected(&self) -> bool {
        self.current().status().connected()
    }

    /// Whether RabbitMQ has blocked the connection's publishers (a memory
    /// or disk alarm): publishes would wait, not fail.
    pub fn is_blocked(&self) -> bool {
        self.current().status().blocked()
    }

    /// Closes the connection (waiting at most [`CLOSE_TIMEOUT`]); the
    /// broker never dials again.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let connection = self.current();
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "shutting down".into()))
            .await;
    }
}
