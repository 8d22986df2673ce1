use futures::future::try_join_all;
use lapin::options::BasicPublishOptions;
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::BasicProperties;

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
#[derive(Clone)]
pub struct Publisher {
    channel: lapin::Channel,
}

impl Publisher {
    /// Opens a channel in confirm mode.
    pub async fn new(broker: &Broker) -> Result<Publisher, BrokerError> {
        let channel = broker.channel().await?;
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await?;
        Ok(Publisher { channel })
    }

    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// Publishes one message and waits for its confirm.
    pub async fn publish(&self, msg: &Outbound) -> Result<(), BrokerError> {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/x-protobuf".into())
            .with_priority(msg.priority);
        let props = match &msg.headers {
            Some(h) => props.with_headers(h.clone()),
            None => props,
        };
        let confirm = self
            .channel
            .basic_publish(
                &msg.exchange,
                &msg.routing_key,
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
