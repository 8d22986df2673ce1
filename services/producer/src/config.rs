use std::net::SocketAddr;

use herald_runtime::{CommonSettings, Secret};
use herald_scoring::{CircuitSettings, ScoreWeights};

/// herald-producer: accepts sends over HTTP/JSON and publishes them to the
/// tenants' user queues in RabbitMQ.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "herald-producer", version, about)]
pub struct Settings {
    #[command(flatten)]
    pub common: CommonSettings,
    /// HTTP listen address (API, /metrics, /healthz, /readyz).
    #[arg(long, env = "HERALD_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// gRPC listen address (the enqueue API, proto/herald/v1/enqueue.proto).
    #[arg(long, env = "HERALD_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// Bearer token for /v1/admin/*; without one the admin API refuses every call.
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// PostgreSQL connections in the pool.
    #[arg(long, env = "HERALD_DB_POOL", default_value_t = 16)]
    pub db_pool: u32,
    /// The schedulers' score weights, to explain scores the same way.
    #[command(flatten)]
    pub weights: ScoreWeights,
    #[command(flatten)]
    pub circuit: CircuitSettings,
    /// How concurrent requests share commits.
    #[command(flatten)]
    pub group: crate::group::GroupSettings,
    /// Where the return path's SMTP listener takes bounce and complaint
    /// reports (the MX of HERALD_BOUNCE_DOMAIN, e.g. 0.0.0.0:25); unset:
    /// no listener.
    #[arg(long, env = "HERALD_BOUNCE_SMTP_ADDR")]
    pub bounce_smtp_addr: Option<SocketAddr>,
}

impl Settings {
    /// Settings for tests: local services, port 0, the given namespace.
    pub fn for_tests(namespace: &str, database: &str, admin_token: &str) -> Self {
        Settings {
            common: CommonSettings::local(namespace, database),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_token: Some(Secret::new(admin_token)),
            db_pool: 8,
            weights: ScoreWeights::default(),
            circuit: CircuitSettings::default(),
            group: crate::group::GroupSettings::default(),
            bounce_smtp_addr: None,
        }
    }
}
