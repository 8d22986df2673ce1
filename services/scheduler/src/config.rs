use std::net::SocketAddr;
use std::time::Duration;

use herald_runtime::CommonSettings;
use herald_scoring::{CircuitSettings, ScoreWeights};

use crate::fair::{ExpressSettings, GateSettings};

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
    /// Unacked messages held per user queue (each carries up to 64 jobs):
    /// how far ahead of placement the scheduler reads one tenant's channel.
    #[arg(long, env = "HERALD_SCHEDULER_PREFETCH", default_value_t = 32)]
    pub prefetch: u16,
    /// Seconds between polls for tenants and providers (NOTIFY is the fast path).
    #[arg(long, env = "HERALD_SCHEDULER_POLL_SECS", default_value_t = 10)]
    pub poll_secs: u64,
    /// Milliseconds of work kept ready in each central queue (its target
    /// depth is this times the workers' measured rate).
    #[arg(long, env = "HERALD_SCHEDULER_AHEAD_MS", default_value_t = 500)]
    pub ahead_ms: u64,
    /// Bounds of a central queue's target depth.
    #[arg(long, env = "HERALD_SCHEDULER_MIN_DEPTH", default_value_t = 256)]
    pub min_depth: u64,
    #[arg(long, env = "HERALD_SCHEDULER_MAX_DEPTH", default_value_t = 20_000)]
    pub max_depth: u64,
    /// Jobs each channel's express queue may hold: the lane by which a
    /// quiet tenant's jobs overtake the central queue's backlog (0: no
    /// express lane; decision 0024).
    #[arg(long, env = "HERALD_SCHEDULER_EXPRESS_DEPTH", default_value_t = 256)]
    pub express_depth: u64,
    /// Jobs per second a tenant of weight 1 may send by the express lane
    /// (per channel); what it sends faster waits its turn in the gate.
    #[arg(long, env = "HERALD_SCHEDULER_EXPRESS_RATE", default_value_t = 32.0)]
    pub express_rate: f64,
    /// Seconds of that rate a tenant that was idle may send at once.
    #[arg(
        long,
        env = "HERALD_SCHEDULER_EXPRESS_BURST_SECS",
        default_value_t = 2.0
    )]
    pub express_burst_secs: f64,
    /// Seconds a job may wait for the producer to record its broker confirm
    /// before the leader's reconciler publishes it again.
    #[arg(long, env = "HERALD_RECONCILE_AFTER_SECS", default_value_t = 30)]
    pub reconcile_after_secs: u64,
    /// Seconds between checkpoints of the providers' hour and day windows
    /// to PostgreSQL (what Redis may lose in a restart is at most this
    /// long's sends).
    #[arg(long, env = "HERALD_CAPACITY_CHECKPOINT_SECS", default_value_t = 5)]
    pub checkpoint_secs: u64,
    /// Placements a job may fail (its drain errs or the scheduler dies
    /// holding it) before it is dead-lettered as `poison`.
    #[arg(long, env = "HERALD_SCHEDULER_MAX_DELIVERIES", default_value_t = 10)]
    pub max_deliveries: u32,
    #[command(flatten)]
    pub weights: ScoreWeights,
    #[command(flatten)]
    pub circuit: CircuitSettings,
}

impl Settings {
    pub fn for_tests(namespace: &str, database: &str) -> Self {
        Settings {
            common: CommonSettings::local(namespace, database),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            prefetch: 32,
            poll_secs: 2,
            ahead_ms: 500,
            min_depth: 256,
            max_depth: 20_000,
            express_depth: 256,
            express_rate: 32.0,
            express_burst_secs: 2.0,
            reconcile_after_secs: 30,
            checkpoint_secs: 5,
            max_deliveries: 10,
            weights: ScoreWeights::default(),
            circuit: CircuitSettings::default(),
        }
    }

    pub fn gate(&self) -> GateSettings {
        GateSettings {
            ahead: Duration::from_millis(self.ahead_ms.max(1)),
            min_depth: self.min_depth.max(1),
            max_depth: self.max_depth.max(self.min_depth).max(1),
            express: ExpressSettings {
                depth: self.express_depth,
                rate: self.express_rate,
                burst: self.express_burst_secs,
            },
        }
    }

    /// Refuses settings that cannot work, naming the variable.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.common.validate()?;
        for (name, value) in [
            ("HERALD_SCHEDULER_EXPRESS_RATE", self.express_rate),
            (
                "HERALD_SCHEDULER_EXPRESS_BURST_SECS",
                self.express_burst_secs,
            ),
        ] {
            anyhow::ensure!(
                value.is_finite() && (0.0..=1_000_000.0).contains(&value),
                "{name} must be a number from 0 to 1000000, not {value}"
            );
        }
        Ok(())
    }
}
