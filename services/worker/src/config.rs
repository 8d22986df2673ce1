use std::net::SocketAddr;

use herald_runtime::CommonSettings;
use herald_scoring::CircuitSettings;

/// herald-worker: sends the jobs of the central queues through their
/// providers, records outcomes in PostgreSQL, retries or dead-letters.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "herald-worker", version, about)]
pub struct Settings {
    #[command(flatten)]
    pub common: CommonSettings,
    /// HTTP listen address (/metrics, /healthz, /readyz); 127.0.0.1:0 picks a free port.
    #[arg(long, env = "HERALD_HTTP_ADDR", default_value = "127.0.0.1:8082")]
    pub http_addr: SocketAddr,
    /// Unacked deliveries held per central queue.
    #[arg(long, env = "HERALD_WORKER_PREFETCH", default_value_t = 512)]
    pub prefetch: u16,
    /// Sends in flight at once per channel.
    #[arg(long, env = "HERALD_WORKER_CONCURRENCY", default_value_t = 256)]
    pub concurrency: usize,
    /// Attempts before a transient failure is dead-lettered.
    #[arg(long, env = "HERALD_WORKER_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
    #[command(flatten)]
    pub circuit: CircuitSettings,
}

impl Settings {
    pub fn for_tests(namespace: &str, database: &str) -> Self {
        Settings {
            common: CommonSettings::local(namespace, database),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            prefetch: 512,
            concurrency: 256,
            max_attempts: 5,
            circuit: CircuitSettings::default(),
        }
    }
}
