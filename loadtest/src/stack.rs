//! A whole private Herald: its own RabbitMQ node, Redis and PostgreSQL
//! cluster (see [`crate::chaos::cluster`]), the simulator, a producer, a
//! scheduler and workers started from their binaries, a tenant with a key
//! and the simulator's providers registered. The chaos and bench scenarios
//! run on one, so they never disturb (or are disturbed by) a running system.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use herald_api::Client;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

use crate::chaos::cluster::{
    bin_dir_of_this_build, free_port, wait_port, PrivatePostgres, PrivateRabbit, PrivateRedis,
    Process,
};
use crate::chaos::relay::Relay;
use crate::setup;

const ADMIN_TOKEN: &str = "stack-admin-token";

/// How to start a stack.
pub struct StackOptions {
    /// Names the temporary directory and the namespace.
    pub name: &'static str,
    /// Where the Herald binaries are (default: this build's directory).
    pub bin_dir: Option<PathBuf>,
    pub workers: usize,
    /// Extra environment for every worker (e.g. HERALD_WORKER_CONCURRENCY).
    pub worker_env: Vec<(String, String)>,
    /// Extra environment for the scheduler (e.g. HERALD_RECONCILE_AFTER_SECS).
    pub scheduler_env: Vec<(String, String)>,
    /// The producer reaches RabbitMQ through a [`Relay`] that can partition
    /// them (the chaos run's "publish in flight" fault).
    pub relay: bool,
    /// Extra lines of the private RabbitMQ node's `rabbitmq.conf`.
    pub rabbit_config: Vec<String>,
}

impl StackOptions {
    pub fn new(name: &'static str, workers: usize) -> StackOptions {
        StackOptions {
            name,
            bin_dir: None,
            workers,
            worker_env: Vec::new(),
            scheduler_env: Vec::new(),
            relay: false,
            rabbit_config: Vec::new(),
        }
    }
}

pub struct Stack {
    /// Logs in `logs/`, the instances' data beside them.
    pub root: PathBuf,
    pub rabbit: PrivateRabbit,
    /// Between the producer and RabbitMQ, when asked for.
    pub relay: Option<Relay>,
    pub redis: PrivateRedis,
    pub pg: PrivatePostgres,
    pub sim: Process,
    pub producer: Process,
    pub scheduler: Process,
    pub workers: Vec<Process>,
    pub sim_url: String,
    pub producer_url: String,
    /// The producer's gRPC API, `http://127.0.0.1:port`.
    pub grpc_url: String,
    pub database_url: String,
    pub namespace: String,
    /// The tenant's client (its API key).
    pub client: Client,
    /// The tenant's API key (for the gRPC API).
    pub api_key: String,
    /// The operator's client (the admin token).
    pub admin: Client,
    pub tenant_id: String,
    pub db: PgPool,
    bins: PathBuf,
    logs: PathBuf,
    worker_env: Vec<(String, String)>,
}

impl Stack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Stack> {
        let bins = match options.bin_dir {
            Some(dir) => dir,
            None => bin_dir_of_this_build()?,
        };
        for b in [
            "herald-producer",
            "herald-scheduler",
            "herald-worker",
            "herald-sim",
        ] {
            anyhow::ensure!(
                bins.join(b).exists(),
                "{} is missing: build the workspace first (cargo build --workspace --bins)",
                bins.join(b).display()
            );
        }
        let root = std::env::temp_dir().join(format!(
            "herald-{}-{}",
            options.name,
            Uuid::new_v4().simple()
        ));
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs)?;

        let mut rabbit = PrivateRabbit::new(&root)?;
        for line in &options.rabbit_config {
            rabbit.configure(line)?;
        }
        let mut redis = PrivateRedis::new(&root)?;
        let mut pg = PrivatePostgres::init(&root).await?;
        let (r, d, p) = tokio::join!(rabbit.start(), redis.start(), pg.start());
        r?;
        d?;
        p?;

        let database_url = pg.url("herald");
        let namespace = options.name.to_owned();
        let common = vec![
            ("HERALD_AMQP_URL".to_owned(), rabbit.url()),
            ("HERALD_REDIS_URL".to_owned(), redis.url()),
            ("HERALD_DATABASE_URL".to_owned(), database_url.clone()),
            ("HERALD_NAMESPACE".to_owned(), namespace.clone()),
            ("HERALD_ADMIN_TOKEN".to_owned(), ADMIN_TOKEN.to_owned()),
            (
                "RUST_LOG".to_owned(),
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            ),
        ];
        let with = |extra: &[(&str, String)]| {
            let mut env = common.clone();
            env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
            env
        };
        let (sim_http, sim_smtp, sim_smtps) = (free_port()?, free_port()?, free_port()?);
        let producer_port = free_port()?;
        let grpc_port = free_port()?;
        let cert_dir = root.join("sim-certs");
        let any_port = "127.0.0.1:0".to_owned();
        let mut sim = Process::new(
            "sim",
            bins.join("herald-sim"),
            with(&[
                ("HERALD_HTTP_ADDR", format!("127.0.0.1:{sim_http}")),
                ("HERALD_SIM_SMTP_ADDR", format!("127.0.0.1:{sim_smtp}")),
                ("HERALD_SIM_SMTPS_ADDR", format!("127.0.0.1:{sim_smtps}")),
                ("HERALD_SIM_CERT_DIR", cert_dir.display().to_string()),
            ]),
            &logs,
        );
        let relay = match options.relay {
            true => Some(Relay::start(([127, 0, 0, 1], rabbit.port).into()).await?),
            false => None,
        };
        let mut producer_env = vec![
            ("HERALD_HTTP_ADDR", format!("127.0.0.1:{producer_port}")),
            ("HERALD_GRPC_ADDR", format!("127.0.0.1:{grpc_port}")),
        ];
        if let Some(relay) = &relay {
            producer_env.push(("HERALD_AMQP_URL", relay.amqp_url()));
        }
        let mut producer = Process::new(
            "producer",
            bins.join("herald-producer"),
            with(&producer_env),
            &logs,
        );
        let mut scheduler_env = with(&[("HERALD_HTTP_ADDR", any_port.clone())]);
        scheduler_env.extend(options.scheduler_env);
        let mut scheduler = Process::new(
            "scheduler",
            bins.join("herald-scheduler"),
            scheduler_env,
            &logs,
        );
        let mut worker_env = with(&[("HERALD_HTTP_ADDR", any_port)]);
        worker_env.extend(options.worker_env);

        sim.start()?;
        wait_port(sim_http, Duration::from_secs(30), "herald-sim").await?;
        producer.start()?;
        let producer_url = format!("http://127.0.0.1:{producer_port}");
        wait_ready(&producer_url, Duration::from_secs(90)).await?;
        scheduler.start()?;

        let admin = Client::new(&producer_url, ADMIN_TOKEN)?;
        let tenant = setup::ensure_tenant(&admin).await?;
        let key = setup::create_key(&admin, &tenant.id).await?;
        let ca = cert_dir.join("ca.pem");
        setup::ensure_provider(
            &admin,
            &setup::email_provider("127.0.0.1", sim_smtp, ca.exists().then_some(ca.as_path())),
        )
        .await?;
        let sim_url = format!("http://127.0.0.1:{sim_http}");
        setup::ensure_provider(&admin, &setup::wework_provider(&sim_url)).await?;
        let db = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(&database_url)?;
        let mut stack = Stack {
            root,
            rabbit,
            relay,
            redis,
            pg,
            sim,
            producer,
            scheduler,
            workers: Vec::new(),
            sim_url,
            producer_url,
            grpc_url: format!("http://127.0.0.1:{grpc_port}"),
            database_url,
            namespace,
            client: admin.with_token(&key),
            api_key: key,
            admin,
            tenant_id: tenant.id,
            db,
            bins,
            logs,
            worker_env,
        };
        stack.set_workers(options.workers.max(1)).await?;
        Ok(stack)
    }

    /// Starts or stops (SIGTERM) workers until `n` run.
    pub async fn set_workers(&mut self, n: usize) -> anyhow::Result<()> {
        while self.workers.len() > n {
            if let Some(mut w) = self.workers.pop() {
                w.terminate().await;
            }
        }
        while self.workers.len() < n {
            let mut w = Process::new(
                &format!("worker{}", self.workers.len()),
                self.bins.join("herald-worker"),
                self.worker_env.clone(),
                &self.logs,
            );
            w.start()?;
            self.workers.push(w);
        }
        Ok(())
    }

    /// Restarts the producer (SIGTERM, then start) with `env` set on top
    /// of its environment, and waits until it is ready again.
    pub async fn restart_producer_with(&mut self, env: &[(&str, &str)]) -> anyhow::Result<()> {
        self.producer.terminate().await;
        for (key, value) in env {
            self.producer.set_env(key, value);
        }
        self.producer.start()?;
        wait_ready(&self.producer_url, Duration::from_secs(90)).await
    }

    /// Sets a variable for workers started from now on.
    pub fn set_worker_env(&mut self, key: &str, value: &str) {
        self.clear_worker_env(key);
        self.worker_env.push((key.to_owned(), value.to_owned()));
    }

    pub fn clear_worker_env(&mut self, key: &str) {
        self.worker_env.retain(|(k, _)| k != key);
    }

    /// Every Herald process, the simulator last.
    pub fn processes(&mut self) -> impl Iterator<Item = &mut Process> {
        std::iter::once(&mut self.producer)
            .chain(std::iter::once(&mut self.scheduler))
            .chain(self.workers.iter_mut())
            .chain(std::iter::once(&mut self.sim))
    }

    /// Stops everything; removes the directory unless `keep`.
    pub async fn stop(mut self, keep: bool) {
        for p in self.processes() {
            p.terminate().await;
        }
        self.db.close().await;
        self.rabbit.stop().await;
        self.redis.stop().await;
        self.pg.stop().await;
        if !keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Waits until the producer at `url` answers `/readyz`.
pub async fn wait_ready(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = http.get(format!("{url}/readyz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the producer at {url} was not ready within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
