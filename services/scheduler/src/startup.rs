use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_broker::{Publisher, Topology};
use herald_capacity::Capacity;
use herald_store::catalog::ProviderCatalog;
use herald_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::drain::{discover_tenants, spawn_drain, Drain, Source};
use crate::fair::Gate;
use crate::placement::Placer;
use crate::release::release_due;
use crate::Settings;

/// How long shutdown waits for in-flight placements before giving up (held
/// deliveries return to their queues when the connection closes).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

pub struct App {
    listener: TcpListener,
    store: Store,
    drain: Arc<Drain>,
    capacity: Capacity,
    poll: Duration,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        settings.common.validate()?;
        let store = Store::connect(&settings.common.database_url, 8)
            .await
            .context("Failed to connect to PostgreSQL")?;
        let broker = herald_broker::connect(
            &settings.common.amqp_url,
            "herald-scheduler",
            Duration::from_secs(30),
        )
        .await
        .context("Failed to connect to RabbitMQ")?;
        let capacity = Capacity::connect(&settings.common.redis_url, &settings.common.namespace)
            .await
            .context("Failed to connect to Redis")?;
        let topology = Topology::new(&settings.common.namespace)
            .with_user_queue_max_length(settings.common.user_queue_max_length);
        let channel = broker.channel().await?;
        topology
            .declare_core(&channel)
            .await
            .context("Failed to declare the broker topology")?;
        let _ = channel.close(200, "declared".into()).await;
        let (stop_tx, stop_rx) = watch::channel(false);
        let poll = Duration::from_secs(settings.poll_secs.max(1));
        let catalog = ProviderCatalog::start(store.clone(), poll, stop_rx.clone()).await?;
        let publisher = Publisher::new(&broker).await?;
        let providers_changed = catalog.subscribe();
        let drain = Arc::new(Drain {
            broker,
            publisher,
            topology,
            placer: Placer::new(
                capacity.clone(),
                catalog,
                settings.weights.clone(),
                settings.circuit.policy(),
            ),
            gate: Gate::new(settings.gate()),
            store: store.clone(),
            prefetch: settings.prefetch,
            providers_changed,
        });
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("Failed to bind {}", settings.http_addr))?;
        Ok(App {
            listener,
            store,
            drain,
            capacity,
            poll,
            stop_tx,
            stop_rx,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Runs until `shutdown` resolves (or the broker connection is lost,
    /// which ends the run with an error; `main` builds and runs it again
    /// with backoff, and every unacked delivery returns to its queue).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "herald-scheduler is running.");
        let mut tasks = JoinSet::new();
        let drain = self.drain.clone();
        let ready: herald_runtime::Readiness = Arc::new(move || drain.broker.is_connected());
        let (http_stop_tx, mut http_stop_rx) = watch::channel(false);
        let http = tokio::spawn(herald_runtime::serve(
            self.listener,
            herald_runtime::ops_router(ready),
            async move {
                let _ = http_stop_rx.wait_for(|s| *s).await;
            },
        ));
        // Retries coming back are served by their own drain, first in line.
        spawn_drain(
            &mut tasks,
            self.drain.clone(),
            Source::Return,
            self.stop_rx.clone(),
        );
        tasks.spawn({
            let (drain, stop) = (self.drain.clone(), self.stop_rx.clone());
            async move { drain.placer.run_refresh(stop).await }
        });
        tasks.spawn(self.drain.clone().poll_depth(self.stop_rx.clone()));
        tasks.spawn({
            let (drain, store, poll, stop) = (
                self.drain.clone(),
                self.store.clone(),
                self.poll,
                self.stop_rx.clone(),
            );
            async move {
                if let Err(e) = discover_tenants(drain, store, poll, stop).await {
                    tracing::error!(error = %e, "Tenant discovery failed.");
                }
            }
        });
        tasks.spawn(crate::maintenance::keep_statistics_fresh(
            self.store.clone(),
            self.stop_rx.clone(),
        ));
        tasks.spawn(release_due(
            self.store.clone(),
            self.drain.publisher.clone(),
            self.drain.topology.clone(),
            self.stop_rx.clone(),
        ));

        let broker = self.drain.broker.clone();
        let lost = async move { broker.lost().await };
        let mut result = Ok(());
        tokio::select! {
            _ = shutdown => {}
            _ = lost => result = Err(anyhow::anyhow!("Lost the connection to RabbitMQ")),
        }
        let _ = self.stop_tx.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "Some placements did not finish in time; their deliveries return to the queues."
            );
        }
        self.drain.broker.close().await;
        let _ = http_stop_tx.send(true);
        let _ = http.await;
        drop(self.capacity);
        tracing::info!("herald-scheduler stopped.");
        result
    }
}
