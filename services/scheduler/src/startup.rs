use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use herald_broker::{Publisher, Topology};
use herald_capacity::Capacity;
use herald_runtime::{Connections, OpsServer, Shutdown, Trigger};
use herald_store::catalog::ProviderCatalog;
use herald_store::Store;
use tokio::net::TcpListener;
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
    periodic: crate::leader::Periodic,
    stop_trigger: Trigger,
    stop: Shutdown,
}

/// Where a provider's windows are read back from after Redis lost them.
fn checkpoint_source(store: Store) -> herald_capacity::CheckpointSource {
    Arc::new(move |provider| {
        let store = store.clone();
        Box::pin(async move {
            let saved = store
                .checkpoint(provider)
                .await
                .map_err(|e| e.to_string())?;
            Ok(saved
                .into_iter()
                .map(|b| herald_capacity::BucketUse {
                    window_ms: b.window_ms.max(0) as u64,
                    bucket: b.bucket,
                    used: b.used,
                })
                .collect())
        })
    })
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        settings.validate()?;
        let topology = Topology::new(&settings.common.namespace)
            .with_user_queue_max_length(settings.common.user_queue_max_length);
        let Connections {
            store,
            broker,
            capacity,
        } = Connections::open("herald-scheduler", &settings.common, 8, &topology).await?;
        let capacity = capacity.with_checkpoints(checkpoint_source(store.clone()));
        let (stop_trigger, stop) = Shutdown::new();
        let poll = Duration::from_secs(settings.poll_secs.max(1));
        let catalog = ProviderCatalog::start(store.clone(), poll, stop.watch()).await?;
        let publisher = Publisher::new(&broker).await?;
        let providers_changed = catalog.subscribe();
        let periodic = crate::leader::Periodic {
            broker: broker.clone(),
            store: store.clone(),
            publisher: publisher.clone(),
            topology: topology.clone(),
            reconcile_after: Duration::from_secs(settings.reconcile_after_secs.max(1)),
            capacity: capacity.clone(),
            catalog: catalog.clone(),
            checkpoint_every: Duration::from_secs(settings.checkpoint_secs.max(1)),
            weights: settings.weights.clone(),
            health: settings.circuit.policy(),
        };
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
            tries: crate::poison::Tries::new(
                capacity.connection(),
                &settings.common.namespace,
                settings.max_deliveries,
            ),
        });
        let listener = herald_runtime::bind(settings.http_addr).await?;
        Ok(App {
            listener,
            store,
            drain,
            capacity,
            poll,
            periodic,
            stop_trigger,
            stop,
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
        let ops = OpsServer::spawn(self.listener, self.drain.broker.clone());
        // Retries coming back are served by their own drain, first in line.
        spawn_drain(
            &mut tasks,
            self.drain.clone(),
            Source::Return,
            self.stop.clone(),
        );
        tasks.spawn({
            let (drain, stop) = (self.drain.clone(), self.stop.clone());
            async move { drain.placer.run_refresh(stop).await }
        });
        tasks.spawn(self.drain.clone().poll_depth(self.stop.clone()));
        tasks.spawn({
            let (drain, store, poll, stop) = (
                self.drain.clone(),
                self.store.clone(),
                self.poll,
                self.stop.clone(),
            );
            async move {
                if let Err(e) = discover_tenants(drain, store, poll, stop).await {
                    tracing::error!(error = %e, "Tenant discovery failed.");
                }
            }
        });
        tasks.spawn(crate::maintenance::keep_statistics_fresh(
            self.store.clone(),
            self.stop.clone(),
        ));
        tasks.spawn(self.periodic.clone().run(self.stop.clone()));
        tasks.spawn(release_due(
            self.store.clone(),
            self.drain.publisher.clone(),
            self.drain.topology.clone(),
            self.stop.clone(),
        ));

        let broker = self.drain.broker.clone();
        let lost = async move { broker.lost().await };
        let mut result = Ok(());
        tokio::select! {
            _ = shutdown => {}
            _ = lost => result = Err(anyhow::anyhow!("Lost the connection to RabbitMQ")),
        }
        self.stop_trigger.trigger();
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
        ops.stop().await;
        drop(self.capacity);
        tracing::info!("herald-scheduler stopped.");
        result
    }
}
