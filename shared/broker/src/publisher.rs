use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::try_join_all;
use lapin::options::BasicPublishOptions;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use lapin::Confirmation;

use crate::{Broker, BrokerError};

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    /// AMQP priority band (0 when the queue has none).
    pub priority: u8,
    pub headers: Option<FieldTable>,
}

/// Publishes persistent messages and waits for the broker's confirm: a
/// publish that returns `Ok` is on disk in a durable queue.
///
/// A channel closed by the broker (or a lost connection) is reopened by the
/// next publish; a publish never waits forever: a blocked connection or a
/// confirm slower than [`CONFIRM_TIMEOUT`] is an error, never a success.
#[derive(Clone)]
pub struct Publisher {
    broker: Broker,
    channel: Arc<RwLock<lapin::Channel>>,
    reopen: Arc<tokio::sync::Mutex<()>>,
}

/// How long a publish waits for the broker's confirm.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

impl Publisher {
    /// Opens a channel in confirm mode.
    pub async fn new(broker: &Broker) -> Result<Publisher, BrokerError> {
        let channel = open(broker).await?;
        Ok(Publisher {
            broker: broker.clone(),
            channel: Arc::new(RwLock::new(channel)),
            reopen: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    fn current(&self) -> lapin::Channel {
        match self.channel.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.current().status().connected()
    }

    /// The open channel, reopened (and the connection redialled) if it was
    /// closed.
    pub async fn reopen(&self) -> Result<lapin::Channel, BrokerError> {
        let channel = self.current();
        if channel.status().connected() {
            return Ok(channel);
        }
        let _one = self.reopen.lock().await;
        let channel = self.current();
        if channel.status().connected() {
            return Ok(channel);
        }
        let fresh = open(&self.broker).await?;
        match self.channel.write() {
            Ok(mut c) => *c = fresh.clone(),
            Err(poisoned) => *poisoned.into_inner() = fresh.clone(),
        }
        Ok(fresh)
    }

    /// Publishes one message and waits for its confirm.
    pub async fn publish(&self, msg: &Outbound) -> Result<(), BrokerError> {
        if self.broker.is_blocked() {
            metrics::counter!("herald_broker_publishes_total", "outcome" => "blocked").increment(1);
            return Err(BrokerError::Blocked);
        }
        let channel = self.reopen().await?;
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/x-protobuf".into())
            .with_priority(msg.priority);
        let props = match &msg.headers {
            Some(h) => props.with_headers(h.clone()),
            None => props,
        };
        // The publish itself waits while RabbitMQ blocks the connection, so
        // the timeout covers it and the confirm.
        match tokio::time::timeout(CONFIRM_TIMEOUT, self.publish_on(&channel, msg, props)).await {
            Ok(result) => result,
            Err(_) => {
                metrics::counter!("herald_broker_publishes_total", "outcome" => "timeout")
                    .increment(1);
                Err(BrokerError::ConfirmTimeout)
            }
        }
    }

    async fn publish_on(
        &self,
        channel: &lapin::Channel,
        msg: &Outbound,
        props: BasicProperties,
    ) -> Result<(), BrokerError> {
        let confirm = channel
            .basic_publish(
                msg.exchange.as_str().into(),
                msg.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &msg.body,
                props,
            )
            .await?;
        let result = match confirm.await? {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_returned)) => {
                Err(BrokerError::Unroutable(msg.routing_key.clone()))
            }
            Confirmation::Nack(_) => Err(BrokerError::Nacked),
        };
        let outcome = if result.is_ok() {
            "confirmed"
        } else {
            "refused"
        };
        metrics::counter!("herald_broker_publishes_total", "outcome" => outcome).increment(1);
        result
    }

    /// Publishes all messages at once (pipelined on the channel) and waits
    /// for every confirm. On `Err` some of them may have been confirmed.
    pub async fn publish_all(&self, msgs: &[Outbound]) -> Result<(), BrokerError> {
        try_join_all(msgs.iter().map(|m| self.publish(m))).await?;
        Ok(())
    }
}

async fn open(broker: &Broker) -> Result<lapin::Channel, BrokerError> {
    let channel = broker.channel().await?;
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}
