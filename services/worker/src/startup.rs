use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_broker::{Publisher, Topology};
use herald_domain::Channel;
use herald_runtime::{Connections, OpsServer, Shutdown, Trigger};
use herald_store::catalog::ProviderCatalog;
use tokio::net::TcpListener;
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
    stop_trigger: Trigger,
    stop: Shutdown,
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        settings.common.validate()?;
        crate::metrics::describe();
        let classifier = Classifier::load(settings.classifier_file.as_deref())
            .context("Failed to load the failure classifier")?;
        let topology = Topology::new(&settings.common.namespace);
        let Connections {
            store,
            broker,
            capacity,
        } = Connections::open("herald-worker", &settings.common, 8, &topology).await?;
        let (stop_trigger, stop) = Shutdown::new();
        let catalog =
            ProviderCatalog::start(store.clone(), Duration::from_secs(10), stop.watch()).await?;
        let publisher = Publisher::new(&broker).await?;
        let link_key = store
            .shared_secret("links", rand::random())
            .await
            .context("Failed to read the links key")?;
        let links = herald_callbacks::links::Links::new(&link_key, &settings.common.public_url);
        let worker = Arc::new(Worker {
            links,
            bounce_domain: settings.common.bounce_domain.clone(),
            store,
            broker,
            publisher,
            topology,
            capacity,
            registry: Registry::new(catalog, Arc::new(classifier)),
            max_attempts: settings.max_attempts.max(1),
            in_doubt: settings.in_doubt_resend.clone(),
            health: settings.circuit.policy(),
            stop: stop.clone(),
            throttled: Default::default(),
            templates: Default::default(),
        });
        let listener = herald_runtime::bind(settings.http_addr).await?;
        Ok(App {
            listener,
            worker,
            settings,
            stop_trigger,
            stop,
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
        let ops = OpsServer::spawn(self.listener, self.worker.broker.clone());
        let mut tasks = JoinSet::new();
        let s = &self.settings;
        for channel in Channel::ALL {
            let topology = &self.worker.topology;
            for (queue, prefetch, concurrency) in [
                (topology.central_queue(channel), s.prefetch, s.concurrency),
                (
                    topology.express_queue(channel),
                    s.express_prefetch,
                    s.express_concurrency,
                ),
            ] {
                if prefetch == 0 || concurrency == 0 {
                    continue;
                }
                let worker = self.worker.clone();
                let stop = self.stop.clone();
                tasks.spawn(async move {
                    if let Err(e) = worker
                        .run_queue(queue.clone(), prefetch, concurrency, stop)
                        .await
                    {
                        tracing::error!(queue = %queue, error = %e, "A queue's pipeline stopped.");
                    }
                });
            }
        }
        if s.callback_prefetch > 0 {
            let worker = self.worker.clone();
            let stop = self.stop.clone();
            let prefetch = s.callback_prefetch;
            tasks.spawn(async move {
                if let Err(e) = worker.run_callbacks(prefetch, stop).await {
                    tracing::error!(error = %e, "The callbacks pipeline stopped.");
                }
            });
        }
        if s.webhook_concurrency > 0 {
            let store = self.worker.store.clone();
            let stop = self.stop.clone();
            let hooks = s.webhooks();
            tasks.spawn(async move {
                if let Err(e) = crate::webhooks::run(store, hooks, stop).await {
                    tracing::error!(error = %e, "The webhook dispatcher stopped.");
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
        self.stop_trigger.trigger();
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
        ops.stop().await;
        tracing::info!("herald-worker stopped.");
        result
    }
}
