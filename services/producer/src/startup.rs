use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_broker::{Publisher, Topology};
use herald_domain::TenantId;
use herald_store::Store;
use tokio::net::TcpListener;

use crate::api::{self, auth::KeyCache, AppState};
use crate::Settings;

/// A built producer: connected, topology declared, port bound.
pub struct App {
    listener: TcpListener,
    state: AppState,
    broker: herald_broker::Broker,
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        settings.common.validate()?;
        let store = Store::connect(&settings.common.database_url, settings.db_pool)
            .await
            .context("Failed to connect to PostgreSQL")?;
        let broker = herald_broker::connect(
            &settings.common.amqp_url,
            "herald-producer",
            Duration::from_secs(30),
        )
        .await
        .context("Failed to connect to RabbitMQ")?;
        let topology = Topology::new(&settings.common.namespace);
        let channel = broker.channel().await?;
        topology
            .declare_core(&channel)
            .await
            .context("Failed to declare the broker topology")?;
        // Re-declare every tenant's queues with identical arguments, so a
        // broker that lost them (a fresh node) routes again.
        for tenant in store.active_tenants().await? {
            topology
                .declare_tenant(&channel, TenantId(tenant.id))
                .await?;
        }
        let publisher = Publisher::new(&broker).await?;
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("Failed to bind {}", settings.http_addr))?;
        let state = AppState {
            store,
            publisher,
            topology,
            declare_channel: Arc::new(channel),
            admin_token: settings.admin_token.clone(),
            keys: KeyCache::default(),
            broker: broker.clone(),
            capacity: herald_capacity::Capacity::connect(
                &settings.common.redis_url,
                &settings.common.namespace,
            )
            .await
            .context("Failed to connect to Redis")?,
            weights: settings.weights.clone(),
            health: settings.circuit.policy(),
        };
        Ok(App {
            listener,
            state,
            broker,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` resolves, then finishes open requests (each
    /// already holds its confirm or its error) and closes the connection.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "herald-producer is listening.");
        let router = api::router(self.state.clone());
        herald_runtime::serve(self.listener, router, shutdown).await?;
        self.broker.close().await;
        tracing::info!("herald-producer stopped.");
        Ok(())
    }
}
