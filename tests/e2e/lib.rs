//! A whole Herald in one process for end-to-end tests: the simulator, a
//! producer ([`TestApp`]), a scheduler and workers, against the machine's
//! RabbitMQ, Redis and PostgreSQL, isolated by a fresh database and a
//! random namespace ([`Isolation`]). [`postfix`]: a private Postfix, the
//! real MTA some tests send through.

pub mod postfix;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use herald_sim::{Sim, SimConfig, SimHandle};
use herald_testing::{fixtures, unique, Isolation, TestApp};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub struct Harness {
    /// The producer, its isolation, the admin token and typed clients.
    pub app: TestApp,
    pub producer_url: String,
    /// The producer's gRPC API, `http://127.0.0.1:port`.
    pub grpc_url: String,
    pub sim: SimHandle,
    pub sim_smtp_port: u16,
    pub sim_http_port: u16,
    pub ca_file: PathBuf,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

fn stopper(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

impl Harness {
    /// Starts the simulator, a producer, a scheduler and `workers` workers.
    pub async fn start(workers: usize) -> anyhow::Result<Harness> {
        Harness::start_with(workers, None).await
    }

    /// [`Harness::start`], with return paths at `bounce_domain` and the
    /// producer's bounce listener on a free port (`app.bounce_port`).
    pub async fn start_with(
        workers: usize,
        bounce_domain: Option<&str>,
    ) -> anyhow::Result<Harness> {
        let _ = herald_telemetry::init("herald-e2e");
        let isolation = Isolation::new("t");
        let (namespace, database) = (isolation.namespace.clone(), isolation.database.clone());
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let sim = Sim::build(SimConfig::ephemeral()).await?;
        let (sim_handle, sim_smtp_port, sim_http_port) =
            (sim.handle(), sim.smtp_port(), sim.http_port());
        let ca_file = sim.ca_file().to_path_buf();
        tasks.push(tokio::spawn(sim.run(stopper(&stop_rx))));

        let bounce = bounce_domain.map(str::to_owned);
        let app = TestApp::start_with(isolation, ADMIN_TOKEN, |s| {
            if bounce.is_some() {
                s.common.bounce_domain = bounce.clone();
                s.bounce_smtp_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
            }
        })
        .await?;

        let scheduler = herald_scheduler::App::build(herald_scheduler::Settings::for_tests(
            &namespace, &database,
        ))
        .await?;
        tasks.push(tokio::spawn(scheduler.run(stopper(&stop_rx))));

        for _ in 0..workers {
            let mut settings = herald_worker::Settings::for_tests(&namespace, &database);
            settings.common.bounce_domain = bounce_domain.map(str::to_owned);
            let worker = herald_worker::App::build(settings).await?;
            tasks.push(tokio::spawn(worker.run(stopper(&stop_rx))));
        }
        Ok(Harness {
            producer_url: app.url.clone(),
            grpc_url: app.grpc_url.clone(),
            app,
            sim: sim_handle,
            sim_smtp_port,
            sim_http_port,
            ca_file,
            stop,
            tasks,
        })
    }

    /// Creates a tenant and an API key for it: `(tenant_id, key)`.
    pub async fn tenant(&self, code: &str) -> anyhow::Result<(String, String)> {
        let (tenant, key) = self.app.tenant_with_key(code).await?;
        Ok((tenant.id.to_string(), key))
    }

    /// Registers the simulator's SMTP (over STARTTLS) and WeWork providers.
    pub async fn sim_providers(&self) -> anyhow::Result<(String, String)> {
        let email = fixtures::sim_smtp(&unique("sim-email"), self.sim_smtp_port, &self.ca_file);
        let email = self
            .app
            .admin
            .create_provider(&email)
            .await
            .map_err(|e| anyhow::anyhow!("email provider: {e}"))?;
        let wework = fixtures::sim_wework(&unique("sim-wework"), self.sim_http_port);
        let wework = self
            .app
            .admin
            .create_provider(&wework)
            .await
            .map_err(|e| anyhow::anyhow!("wework provider: {e}"))?;
        Ok((email.id.to_string(), wework.id.to_string()))
    }

    /// Registers a webhook provider whose secret the simulator's receiver
    /// verifies.
    pub async fn sim_webhook(&self) -> anyhow::Result<herald_api::Provider> {
        self.app
            .admin
            .create_provider(&herald_api::NewProvider {
                name: unique("sim-webhook"),
                channel: None,
                kind: herald_domain::ProviderKind::Webhook,
                config: serde_json::json!({
                    "signing_secret": herald_sim::config::DEFAULT_WEBHOOK_SECRET,
                    "allow_private_addresses": true,
                    "timeout_ms": 5000,
                }),
                quota: None,
                send_window: None,
                weight: None,
                enabled: None,
                tenant_id: None,
            })
            .await
            .map_err(|e| anyhow::anyhow!("webhook provider: {e}"))
    }

    /// Sends `messages` as one batch with `key`; the accepted ids.
    pub async fn send_all(
        &self,
        key: &str,
        messages: &[herald_api::SendMessage],
    ) -> Vec<uuid::Uuid> {
        self.app
            .client(key)
            .send_batch(messages)
            .await
            .expect("the batch is accepted")
            .ids
            .iter()
            .map(|id| id.as_uuid())
            .collect()
    }

    /// How many of `ids` are recorded `sent`.
    pub async fn sent(db: &sqlx::PgPool, ids: &[uuid::Uuid]) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE id = ANY($1) AND status = 'sent'")
            .bind(ids)
            .fetch_one(db)
            .await
            .unwrap_or(0)
    }

    /// A connection to this test's database.
    pub async fn db(&self) -> anyhow::Result<sqlx::PgPool> {
        self.app.isolation.pool().await
    }

    /// Stops every service (as SIGTERM would) and tears the isolation down.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let producer = self.app.shutdown().await;
        for task in self.tasks {
            match tokio::time::timeout(Duration::from_secs(40), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => anyhow::bail!("a service ended with an error: {e:#}"),
                Ok(Err(e)) => anyhow::bail!("a service panicked: {e}"),
                Err(_) => anyhow::bail!("a service did not stop within 40 s"),
            }
        }
        producer.map_err(|e| anyhow::anyhow!("the producer: {e:#}"))?;
        self.app.stop().await;
        Ok(())
    }
}
