use std::net::SocketAddr;

use herald_runtime::CommonSettings;

/// herald-scheduler: drains the tenants' user queues fairly into the central
/// queues, choosing a provider and reserving its capacity for each job.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "herald-scheduler", version, about)]
pub struct Settings {
    #[command(flatten)]
    pub common: CommonSettings,
    /// HTTP listen address (/metrics, /healthz, /readyz).
    #[arg(long, env = "HERALD_HTTP_ADDR", default_value = "127.0.0.1:8081")]
    pub http_addr: SocketAddr,
    /// Unacked deliveries held per user queue: how far ahead of placement
    /// the scheduler reads one tenant's channel.
    #[arg(long, env = "HERALD_SCHEDULER_PREFETCH", default_value_t = 128)]
    pub prefetch: u16,
    /// Seconds between polls for tenants and providers (NOTIFY is the fast path).
    #[arg(long, env = "HERALD_SCHEDULER_POLL_SECS", default_value_t = 10)]
    pub poll_secs: u64,
}

impl Settings {
    pub fn for_tests(namespace: &str, database: &str) -> Self {
        Settings {
            common: CommonSettings::local(namespace, database),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            prefetch: 128,
            poll_secs: 2,
        }
    }
}
