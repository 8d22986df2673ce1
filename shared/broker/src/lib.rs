//! RabbitMQ for Herald: the topology (every exchange and queue, with its
//! arguments), a publisher that waits for broker confirms, and consumer
//! helpers. See `docs/TOPOLOGY.md` for the why of each queue.

mod connection;
mod publisher;
mod topology;

pub use connection::{connect, Broker};
pub use lapin;
pub use publisher::{Outbound, Publisher};
pub use topology::{Topology, DELAY_TIERS};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker refused to take responsibility (queue full, internal error).
    #[error("the broker did not confirm the publish (nack)")]
    Nacked,
    /// RabbitMQ blocked publishers (a memory or disk alarm).
    #[error("the broker is blocking publishers (memory or disk alarm)")]
    Blocked,
    /// No confirm came in time: the message may or may not be queued.
    #[error("the broker did not confirm the publish in time")]
    ConfirmTimeout,
    /// Connecting took longer than its timeout.
    #[error("connecting to RabbitMQ timed out")]
    DialTimeout,
    /// The broker was closed (the service is stopping).
    #[error("the broker connection was closed")]
    Closed,
    /// No queue is bound for the routing key: nothing would receive it.
    #[error("no queue for routing key {0:?}")]
    Unroutable(String),
}

impl BrokerError {
    /// The connection or channel is gone: reconnect before trying again.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            BrokerError::Amqp(e) if matches!(
                e.kind(),
                lapin::ErrorKind::IOError(_)
                    | lapin::ErrorKind::RuntimeShutdownError(_)
                    | lapin::ErrorKind::InvalidChannelState(..)
                    | lapin::ErrorKind::InvalidConnectionState(_)
                    | lapin::ErrorKind::ChannelsLimitReached
            )
        )
    }
}
