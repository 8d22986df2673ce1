use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use herald_domain::{Channel, FieldError};
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
    /// Unacked messages held per central queue (each carries up to 16
    /// jobs). What a worker holds is queued ahead of every tenant's next
    /// job, out of the scheduler's sight: keep prefetch × 16 near the
    /// worker's concurrency.
    #[arg(long, env = "HERALD_WORKER_PREFETCH", default_value_t = 32)]
    pub prefetch: u16,
    /// Sends in flight at once per channel.
    #[arg(long, env = "HERALD_WORKER_CONCURRENCY", default_value_t = 256)]
    pub concurrency: usize,
    /// Unacked messages held per express queue (the jobs of quiet tenants
    /// that overtake the central queue's backlog, decision 0024); 0 does
    /// not consume it.
    #[arg(long, env = "HERALD_WORKER_EXPRESS_PREFETCH", default_value_t = 8)]
    pub express_prefetch: u16,
    /// Sends in flight at once per express queue, beside the channel's
    /// `HERALD_WORKER_CONCURRENCY`.
    #[arg(long, env = "HERALD_WORKER_EXPRESS_CONCURRENCY", default_value_t = 32)]
    pub express_concurrency: usize,
    /// Unacked deliveries held from the callbacks queue (each a batch of
    /// up to 256 events from the producer); their events are stored and
    /// applied up to 1,024 per transaction. 0 does not consume the queue.
    #[arg(long, env = "HERALD_WORKER_CALLBACK_PREFETCH", default_value_t = 64)]
    pub callback_prefetch: u16,
    /// Tenant webhook requests in flight at once (every tenant together);
    /// 0: this worker posts none.
    #[arg(long, env = "HERALD_WEBHOOK_CONCURRENCY", default_value_t = 64)]
    pub webhook_concurrency: usize,
    /// How long one tenant webhook request may take, in milliseconds.
    #[arg(long, env = "HERALD_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,
    /// The wait before a failed webhook delivery's first retry, in
    /// milliseconds; each later wait doubles, up to an hour, for 24 hours.
    #[arg(long, env = "HERALD_WEBHOOK_RETRY_BASE_MS", default_value_t = 30_000)]
    pub webhook_retry_base_ms: u64,
    /// Attempts before a transient failure is dead-lettered.
    #[arg(long, env = "HERALD_WORKER_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
    /// JSON file of failure-classifier rules, tried before the built-in
    /// defaults (docs/classifier.md). Without it, the defaults alone.
    #[arg(long, env = "HERALD_CLASSIFIER_FILE")]
    pub classifier_file: Option<PathBuf>,
    /// Channels whose messages are sent again after an attempt left them in
    /// doubt (comma-separated, or `none`). The others are set aside as
    /// `in_doubt` for an operator. WeWork drops a resend of the same content
    /// to the same users (`enable_duplicate_check`), so it is resent.
    #[arg(long, env = "HERALD_IN_DOUBT_RESEND", default_value = "wework")]
    pub in_doubt_resend: InDoubtPolicy,
    #[command(flatten)]
    pub circuit: CircuitSettings,
}

/// The channels whose in-doubt messages are resent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InDoubtPolicy(Vec<Channel>);

impl InDoubtPolicy {
    pub fn resend(channels: &[Channel]) -> Self {
        InDoubtPolicy(channels.to_vec())
    }

    pub fn resends(&self, channel: Option<Channel>) -> bool {
        channel.is_some_and(|c| self.0.contains(&c))
    }
}

impl FromStr for InDoubtPolicy {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            return Ok(InDoubtPolicy::default());
        }
        s.split(',')
            .map(|c| {
                c.trim().parse::<Channel>().map_err(|e| {
                    FieldError::new("HERALD_IN_DOUBT_RESEND", format!("{c:?}: {}", e.message))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(InDoubtPolicy)
    }
}

impl Settings {
    pub fn webhooks(&self) -> crate::webhooks::HookSettings {
        crate::webhooks::HookSettings {
            concurrency: self.webhook_concurrency,
            timeout: std::time::Duration::from_millis(self.webhook_timeout_ms.max(1)),
            retry_base: std::time::Duration::from_millis(self.webhook_retry_base_ms.max(1)),
        }
    }

    pub fn for_tests(namespace: &str, database: &str) -> Self {
        Settings {
            common: CommonSettings::local(namespace, database),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            prefetch: 32,
            concurrency: 256,
            express_prefetch: 8,
            express_concurrency: 32,
            callback_prefetch: 64,
            webhook_concurrency: 64,
            webhook_timeout_ms: 2_000,
            // Retries in a test come within a second.
            webhook_retry_base_ms: 300,
            max_attempts: 5,
            classifier_file: None,
            in_doubt_resend: InDoubtPolicy::resend(&[Channel::Wework]),
            circuit: CircuitSettings::default(),
        }
    }
}
