use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use herald_broker::{Publisher, Topology};
use herald_runtime::Connections;
use tokio::net::TcpListener;

use crate::api::{self, auth::KeyCache, AppState, Shared};
use crate::Settings;

/// A built producer: connected, topology declared, port bound.
pub struct App {
    _catalog_stop: herald_runtime::Trigger,
    listener: TcpListener,
    grpc_listener: TcpListener,
    /// The return path's SMTP listener, when HERALD_BOUNCE_SMTP_ADDR is set.
    bounce_listener: Option<TcpListener>,
    state: AppState,
    broker: herald_broker::Broker,
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        settings.common.validate()?;
        let topology = Topology::new(&settings.common.namespace)
            .with_user_queue_max_length(settings.common.user_queue_max_length);
        let Connections {
            store,
            broker,
            capacity,
        } = Connections::open(
            "herald-producer",
            &settings.common,
            settings.db_pool,
            &topology,
        )
        .await?;
        // Re-declare every tenant's queues with identical arguments, so a
        // broker that lost them (a fresh node) routes again.
        for tenant in store.active_tenants().await? {
            topology
                .declare_tenant(&broker, tenant.id)
                .await
                .with_context(|| format!("Failed to declare tenant {}'s queues", tenant.id))?;
        }
        let publisher = Publisher::new(&broker).await?;
        let listener = herald_runtime::bind(settings.http_addr).await?;
        let grpc_listener = TcpListener::bind(settings.grpc_addr)
            .await
            .with_context(|| format!("Failed to bind {} (gRPC)", settings.grpc_addr))?;
        let bounce_listener = match settings.bounce_smtp_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("Failed to bind {addr} (the bounce listener)"))?,
            ),
            None => None,
        };
        let confirms = crate::confirms::Confirms::start(store.clone());
        let committer = crate::group::Committer::start(
            crate::enqueue::Pipeline {
                store: store.clone(),
                publisher: publisher.clone(),
                topology: topology.clone(),
                confirms: confirms.clone(),
                capacity: capacity.clone(),
            },
            settings.group,
        );
        // The catalog's refresh task stops when the App (its trigger) is dropped.
        let (catalog_stop, stop_catalog) = herald_runtime::Shutdown::new();
        let catalog = herald_store::catalog::ProviderCatalog::start(
            store.clone(),
            Duration::from_secs(10),
            stop_catalog.watch(),
        )
        .await?;
        let callbacks =
            crate::callbacks::CallbackPublisher::start(publisher.clone(), topology.clone());
        let link_key = store
            .shared_secret("links", rand::random())
            .await
            .context("Failed to read the links key")?;
        let links = herald_callbacks::links::Links::new(&link_key, &settings.common.public_url);
        let state = AppState::new(Shared {
            links,
            callbacks,
            catalog,
            confirms,
            committer,
            templates: Default::default(),
            store,
            publisher,
            topology,
            admin_token: settings.admin_token.clone(),
            keys: KeyCache::default(),
            broker: broker.clone(),
            capacity,
            weights: settings.weights.clone(),
            health: settings.circuit.policy(),
        });
        Ok(App {
            _catalog_stop: catalog_stop,
            listener,
            grpc_listener,
            bounce_listener,
            state,
            broker,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The gRPC API's port.
    /// The bounce listener's port (0 without one).
    pub fn bounce_port(&self) -> u16 {
        self.bounce_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or(0, |a| a.port())
    }

    pub fn grpc_port(&self) -> u16 {
        self.grpc_listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(0)
    }

    /// Serves until `shutdown` resolves, then finishes open requests (each
    /// already holds its confirm or its error) and closes the connection.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(
            addr = %self.listener.local_addr()?,
            grpc = %self.grpc_listener.local_addr()?,
            "herald-producer is listening."
        );
        let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
        let router = api::router(self.state.clone());
        // While RabbitMQ is away, publishes answer 503; this redials in the
        // background so that readiness (and publishing) come back with it.
        let publisher = self.state.publisher.clone();
        let keepalive = tokio::spawn(async move {
            let mut delay = Duration::from_millis(500);
            loop {
                tokio::time::sleep(delay).await;
                if publisher.is_open() {
                    delay = Duration::from_millis(500);
                    continue;
                }
                match publisher.reopen().await {
                    Ok(_) => delay = Duration::from_millis(500),
                    Err(e) => {
                        tracing::warn!(error = %e, "RabbitMQ is unreachable; enqueues answer 503 until it returns.");
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        let changes = tokio::spawn(api::auth::listen_for_changes(
            self.state.store.clone(),
            self.state.keys.clone(),
        ));
        let state = self.state.clone();
        let template_writes =
            tokio::spawn(async move { state.templates.listen(state.store.clone()).await });
        let bounces = self.bounce_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(addr = %addr, "The bounce listener takes reports.");
            }
            tokio::spawn(crate::bounces::serve(listener, self.state.clone()))
        });
        let grpc = crate::grpc::serve(self.grpc_listener, self.state.clone(), shutdown.clone());
        let http = herald_runtime::serve(self.listener, router, shutdown);
        let (http, grpc) = tokio::join!(http, grpc);
        http?;
        grpc.context("The gRPC server failed")?;
        keepalive.abort();
        changes.abort();
        template_writes.abort();
        if let Some(bounces) = bounces {
            bounces.abort();
        }
        self.state.confirms.flush().await;
        self.broker.close().await;
        tracing::info!("herald-producer stopped.");
        Ok(())
    }
}
