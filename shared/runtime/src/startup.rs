//! The start-up the three services share: connect to PostgreSQL, RabbitMQ and
//! Redis, declare the core topology, and serve the ops endpoints beside the work.

use std::time::Duration;

use anyhow::Context;
use herald_broker::{Broker, Topology};
use herald_capacity::Capacity;
use herald_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::ops::{ops_router, serve, Readiness};
use crate::settings::CommonSettings;
use crate::shutdown::{Shutdown, Trigger};

/// How long a service keeps dialling RabbitMQ at start before giving up
/// (then `supervise` restarts it, or a first start fails).
const BROKER_PATIENCE: Duration = Duration::from_secs(30);

/// A service's connections, opened and its core topology declared.
pub struct Connections {
    pub store: Store,
    pub broker: Broker,
    pub capacity: Capacity,
}

impl Connections {
    /// Connects to PostgreSQL (a pool of `db_pool`), RabbitMQ (named
    /// `service`, retried with backoff for [`BROKER_PATIENCE`]) and Redis, and
    /// declares `topology`'s core exchanges and queues with the arguments
    /// every service uses.
    pub async fn open(
        service: &str,
        common: &CommonSettings,
        db_pool: u32,
        topology: &Topology,
    ) -> anyhow::Result<Connections> {
        let store = Store::connect(&common.database_url, db_pool)
            .await
            .context("Failed to connect to PostgreSQL")?;
        let broker = herald_broker::connect(&common.amqp_url, service, BROKER_PATIENCE)
            .await
            .context("Failed to connect to RabbitMQ")?;
        let capacity = Capacity::connect(&common.redis_url, &common.namespace)
            .await
            .context("Failed to connect to Redis")?;
        let channel = broker.channel().await?;
        topology
            .declare_core(&channel)
            .await
            .context("Failed to declare the broker topology")?;
        let _ = channel.close(200, "declared".into()).await;
        Ok(Connections {
            store,
            broker,
            capacity,
        })
    }
}

/// Binds a service's HTTP address (port 0 in tests).
pub async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("Failed to bind {addr}"))
}

/// `/metrics`, `/healthz` and `/readyz` served in the background, ready while
/// the broker connection is up; stopped last, after the work has drained.
pub struct OpsServer {
    trigger: Trigger,
    task: JoinHandle<std::io::Result<()>>,
}

impl OpsServer {
    pub fn spawn(listener: TcpListener, broker: Broker) -> OpsServer {
        let ready: Readiness = std::sync::Arc::new(move || broker.is_connected());
        let (trigger, stop) = Shutdown::new();
        let task = tokio::spawn(serve(listener, ops_router(ready), async move {
            stop.wait().await
        }));
        OpsServer { trigger, task }
    }

    /// Stops serving and waits for open requests to finish.
    pub async fn stop(self) {
        self.trigger.trigger();
        let _ = self.task.await;
    }
}
