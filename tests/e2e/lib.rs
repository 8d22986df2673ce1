//! A whole Herald in one process for end-to-end tests: the simulator, a
//! producer, a scheduler and workers, against the machine's RabbitMQ, Redis
//! and PostgreSQL, isolated by a fresh database and a random namespace.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use herald_sim::{Sim, SimConfig, SimHandle};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Polls `check` until it is true or `timeout` passes.
pub async fn wait_for<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A unique lowercase suffix for names.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..12)
            .unwrap_or("x")
    )
}

pub struct Harness {
    pub namespace: String,
    pub database: String,
    pub producer_url: String,
    /// The producer's gRPC API, `http://127.0.0.1:port`.
    pub grpc_url: String,
    pub http: reqwest::Client,
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
        let _ = herald_telemetry::init("herald-e2e");
        let namespace = unique("t");
        let database = format!("herald_{namespace}");
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let sim = Sim::build(SimConfig::ephemeral()).await?;
        let (sim_handle, sim_smtp_port, sim_http_port) =
            (sim.handle(), sim.smtp_port(), sim.http_port());
        let ca_file = sim.ca_file().to_path_buf();
        tasks.push(tokio::spawn(sim.run(stopper(&stop_rx))));

        let producer = herald_producer::App::build(herald_producer::Settings::for_tests(
            &namespace,
            &database,
            ADMIN_TOKEN,
        ))
        .await?;
        let producer_url = format!("http://127.0.0.1:{}", producer.port());
        let grpc_url = format!("http://127.0.0.1:{}", producer.grpc_port());
        tasks.push(tokio::spawn(producer.run(stopper(&stop_rx))));

        let scheduler = herald_scheduler::App::build(herald_scheduler::Settings::for_tests(
            &namespace, &database,
        ))
        .await?;
        tasks.push(tokio::spawn(scheduler.run(stopper(&stop_rx))));

        for _ in 0..workers {
            let worker = herald_worker::App::build(herald_worker::Settings::for_tests(
                &namespace, &database,
            ))
            .await?;
            tasks.push(tokio::spawn(worker.run(stopper(&stop_rx))));
        }
        Ok(Harness {
            namespace,
            database,
            producer_url,
            grpc_url,
            http: reqwest::Client::new(),
            sim: sim_handle,
            sim_smtp_port,
            sim_http_port,
            ca_file,
            stop,
            tasks,
        })
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.producer_url, path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Creates a tenant and an API key for it: `(tenant_id, key)`.
    pub async fn tenant(&self, code: &str) -> anyhow::Result<(String, String)> {
        let (status, t) = self
            .admin(
                reqwest::Method::POST,
                "/v1/admin/tenants",
                Some(json!({"code": code, "name": code})),
            )
            .await?;
        anyhow::ensure!(status == StatusCode::CREATED, "tenant: {status} {t}");
        let id = t["id"].as_str().unwrap_or_default().to_owned();
        let (status, k) = self
            .admin(
                reqwest::Method::POST,
                &format!("/v1/admin/tenants/{id}/keys"),
                None,
            )
            .await?;
        anyhow::ensure!(status == StatusCode::CREATED, "key: {status} {k}");
        Ok((id, k["key"].as_str().unwrap_or_default().to_owned()))
    }

    /// Registers the simulator's SMTP (over STARTTLS) and WeWork providers.
    pub async fn sim_providers(&self) -> anyhow::Result<(String, String)> {
        let (status, email) = self
            .admin(
                reqwest::Method::POST,
                "/v1/admin/providers",
                Some(json!({
                    "name": unique("sim-email"), "kind": "smtp",
                    "config": {"host": "127.0.0.1", "port": self.sim_smtp_port, "tls": "starttls",
                               "ca_file": self.ca_file, "from": "e2e@herald.local", "pool_size": 8},
                    "quota": {"per_minute": 1_000_000}
                })),
            )
            .await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "email provider: {status} {email}"
        );
        let (status, wework) = self
            .admin(
                reqwest::Method::POST,
                "/v1/admin/providers",
                Some(json!({
                    "name": unique("sim-wework"), "kind": "wework",
                    "config": {"base_url": format!("http://127.0.0.1:{}", self.sim_http_port),
                               "corp_id": "corp", "corp_secret": "secret", "agent_id": 1000002},
                })),
            )
            .await?;
        anyhow::ensure!(
            status == StatusCode::CREATED,
            "wework provider: {status} {wework}"
        );
        Ok((
            email["id"].as_str().unwrap_or_default().to_owned(),
            wework["id"].as_str().unwrap_or_default().to_owned(),
        ))
    }

    pub async fn post(
        &self,
        key: &str,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let resp = self
            .http
            .post(format!("{}{}", self.producer_url, path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await?;
        let status = resp.status();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// A connection to this test's database.
    pub async fn db(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::PgPool::connect(&format!(
            "postgres://postgres@127.0.0.1:5432/{}",
            self.database
        ))
        .await?)
    }

    /// Stops every service (as SIGTERM would) and drops the test database.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            match tokio::time::timeout(Duration::from_secs(40), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => anyhow::bail!("a service ended with an error: {e:#}"),
                Ok(Err(e)) => anyhow::bail!("a service panicked: {e}"),
                Err(_) => anyhow::bail!("a service did not stop within 40 s"),
            }
        }
        teardown(&self.namespace, &self.database).await;
        Ok(())
    }
}

/// Deletes a test's queues, exchanges and database.
pub async fn teardown(namespace: &str, database: &str) {
    let db_url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    let tenants: Vec<uuid::Uuid> = match sqlx::PgPool::connect(&db_url).await {
        Ok(pool) => {
            let t = sqlx::query_scalar("SELECT id FROM tenants")
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
            pool.close().await;
            t
        }
        Err(_) => Vec::new(),
    };
    let amqp = "amqp://guest:guest@127.0.0.1:5672/%2f";
    if let Ok(broker) =
        herald_broker::connect(amqp, "herald-test-teardown", Duration::from_secs(5)).await
    {
        if let Ok(ch) = broker.channel().await {
            let tenants: Vec<herald_domain::TenantId> =
                tenants.into_iter().map(herald_domain::TenantId).collect();
            let _ = herald_broker::Topology::new(namespace)
                .delete_all(&ch, &tenants)
                .await;
        }
        broker.close().await;
    }
    let _ = herald_store::Store::drop_database(&format!(
        "postgres://postgres@127.0.0.1:5432/{database}"
    ))
    .await;
}
