use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

use crate::BrokerError;

/// One AMQP connection of a service; channels are opened per role.
#[derive(Clone)]
pub struct Broker {
    connection: std::sync::Arc<Connection>,
}

/// Connects to RabbitMQ, retrying with backoff for up to `patience`.
pub async fn connect(url: &str, name: &str, patience: Duration) -> Result<Broker, BrokerError> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut delay = Duration::from_millis(200);
    loop {
        let props = ConnectionProperties::default()
            .with_connection_name(name.into())
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        match Connection::connect(url, props).await {
            Ok(connection) => {
                return Ok(Broker {
                    connection: std::sync::Arc::new(connection),
                })
            }
            Err(e) if tokio::time::Instant::now() + delay < deadline => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "RabbitMQ is not reachable yet; retrying.");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl Broker {
    pub async fn channel(&self) -> Result<lapin::Channel, BrokerError> {
        Ok(self.connection.create_channel().await?)
    }

    /// Resolves once the connection is lost (checked every second).
    pub async fn lost(&self) {
        while self.is_connected() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    pub async fn close(&self) {
        let _ = self.connection.close(200, "shutting down").await;
    }
}
