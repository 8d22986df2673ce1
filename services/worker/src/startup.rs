use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_broker::{Publisher, Topology};
use herald_capacity::Capacity;
use herald_domain::Channel;
use herald_store::catalog::ProviderCatalog;
use herald_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::classify::Classifier;
use crate::process::Worker;
use crate::registry::Registry;
use crate::Settings;

/// Shutdown waits this long for sends in flight to finish and be recorded.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

pub struct App {
    listener: TcpListener,
    worker: Arc<Worker>,
    settings: Settings,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        settings.common.validate()?;
        let classifier = Classifier::load(settings.classifier_file.as_deref())
            .context("Failed to load the failure classifier")?;
        let store = Store::connect(&settings.common.database_url, 8)
            .await
            .context("Failed to connect to PostgreSQL")?;
        let broker = herald_broker::connect(
            &settings.common.amqp_url,
            "herald-worker",
            Duration::from_secs(30),
        )
        .await
        .context("Failed to connect to RabbitMQ")?;
        let capacity = Capacity::connect(&settings.common.redis_url, &settings.common.namespace)
            .await
            .context("Failed to connect to Redis")?;
        let topology = Topology::new(&settings.common.namespace);
        let channel = broker.channel().await?;
        topology
            .declare_core(&channel)
            .await
            .context("Failed to declare the broker topology")?;
        let _ = channel.close(200, "declared".into()).await;
        let (stop_tx, stop_rx) = watch::channel(false);
        let catalog =
            ProviderCatalog::start(store.clone(), Duration::from_secs(10), stop_rx.clone()).await?;
        let publisher = Publisher::new(&broker).await?;
        let worker = Arc::new(Worker {
            store,
            broker,
            publisher,
            topology,
            capacity,
            registry: Registry::new(catalog, Arc::new(classifier)),
            max_attempts: settings.max_attempts.max(1),
            in_doubt: settings.in_doubt_resend.clone(),
            health: settings.circuit.policy(),
        });
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("Failed to bind {}", settings.http_addr))?;
        Ok(App {
            listener,
            worker,
            settings,
            stop_tx,
            stop_rx,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Runs until `shutdown` resolves: then stops taking deliveries,
    /// finishes and records the sends in flight, acks, and closes.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "herald-worker is running.");
        let broker = self.worker.broker.clone();
        let ready: herald_runtime::Readiness = Arc::new(move || broker.is_connected());
        let (http_stop_tx, mut http_stop_rx) = watch::channel(false);
        let http = tokio::spawn(herald_runtime::serve(
            self.listener,
            herald_runtime::ops_router(ready),
            async move {
                let _ = http_stop_rx.wait_for(|s| *s).await;
            },
        ));
        let mut tasks = JoinSet::new();
        for channel in Channel::ALL {
            let worker = self.worker.clone();
            let stop = self.stop_rx.clone();
            let (prefetch, concurrency) = (self.settings.prefetch, self.settings.concurrency);
            tasks.spawn(async move {
                if let Err(e) = worker.run_channel(channel, prefetch, concurrency, stop).await {
                    tracing::error!(channel = %channel, error = %e, "A channel's pipeline stopped.");
                }
            });
        }
        let broker = self.worker.broker.clone();
        let lost = async move { broker.lost().await };
        let mut result = Ok(());
        tokio::select! {
            _ = shutdown => {}
            _ = lost => result = Err(anyhow::anyhow!("Lost the connection to RabbitMQ")),
        }
        let _ = self.stop_tx.send(true);
        if tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(
                "Sends in flight did not finish in time; their deliveries return to the queue."
            );
        }
        self.worker.broker.close().await;
        let _ = http_stop_tx.send(true);
        let _ = http.await;
        tracing::info!("herald-worker stopped.");
        result
    }
}
