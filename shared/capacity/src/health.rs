//! Provider health, shared by every worker and scheduler: success rate and
//! latency as exponentially weighted averages, and a circuit breaker that
//! opens after consecutive failures and probes again after a cooldown that
//! doubles on every failed probe. Workers feed outcomes in batches
//! ([`Capacity::observe`]); schedulers read them with the window usage in
//! one round trip per provider ([`Capacity::load`]).

use std::time::Duration;

use redis::Value;
use uuid::Uuid;

use crate::{bucket_ms, Capacity, CapacityError, Limits};

/// How outcomes move the statistics and the circuit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthPolicy {
    /// Weight of one outcome in the averages (0.05: about the last 20).
    pub alpha: f64,
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// First open period; it doubles on each failed probe up to `max_open`.
    pub open_for: Duration,
    pub max_open: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            alpha: 0.05,
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
            max_open: Duration::from_secs(300),
        }
    }
}

/// A batch of outcomes on one provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observation {
    pub successes: u32,
    /// Failures that are the provider's fault (errors, timeouts,
    /// throttling), not a rejected recipient.
    pub failures: u32,
    pub latency_ms_sum: u64,
    pub latency_count: u32,
}

impl Observation {
    pub fn is_empty(&self) -> bool {
        self.successes == 0 && self.failures == 0 && self.latency_count == 0
    }
}

/// The state of a provider's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    /// No sends until the Redis server's clock reaches `until_ms`.
    Open {
        until_ms: i64,
    },
    /// The cooldown passed after failures: a few probes may go.
    HalfOpen,
}

/// What scoring reads of one provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderLoad {
    /// The Redis server's clock when read.
    pub now_ms: i64,
    /// Units used in each window of the limits, in their order.
    pub used: Vec<u64>,
    /// Live concurrency leases.
    pub leases: u64,
    /// `None` until the first outcome is observed.
    pub success_rate: Option<f64>,
    pub latency_ms: Option<f64>,
    pub consecutive_failures: u32,
    pub open_until_ms: i64,
    /// Units per second the provider is admitted at while it is throttled
    /// after a rate-limit answer (`throttle`); `None` when it is not.
    pub admitted_rate: Option<f64>,
}

impl ProviderLoad {
    pub fn circuit(&self, policy: &HealthPolicy) -> Circuit {
        if self.open_until_ms > self.now_ms {
            Circuit::Open {
                until_ms: self.open_until_ms,
            }
        } else if self.consecutive_failures >= policy.failure_threshold {
            Circuit::HalfOpen
        } else {
            Circuit::Closed
        }
    }
}

impl Capacity {
    /// Feeds `obs` into `provider`'s statistics and circuit.
    pub async fn observe(
        &self,
        provider: Uuid,
        obs: &Observation,
        policy: &HealthPolicy,
    ) -> Result<(), CapacityError> {
        if obs.is_empty() {
            return Ok(());
        }
        let _: Vec<String> = self
            .observe
            .key(self.prefix(provider))
            .arg(obs.successes)
            .arg(obs.failures)
            .arg(obs.latency_ms_sum)
            .arg(obs.latency_count)
            .arg(policy.alpha)
            .arg(policy.failure_threshold)
            .arg(policy.open_for.as_millis() as u64)
            .arg(policy.max_open.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Reads the usage and health of each provider; the calls are
    /// pipelined on the one multiplexed connection.
    pub async fn load(
        &self,
        providers: &[(Uuid, &Limits)],
    ) -> Result<Vec<ProviderLoad>, CapacityError> {
        let calls = providers.iter().map(|(id, limits)| async move {
            let mut invocation = self.load.key(self.prefix(*id));
            invocation.arg(limits.windows.len());
            for (window, _) in &limits.windows {
                invocation.arg(*window).arg(bucket_ms(*window));
            }
            let reply: Vec<Value> = invocation.invoke_async(&mut self.conn.clone()).await?;
            parse_load(&reply, limits.windows.len())
        });
        futures::future::try_join_all(calls).await
    }
}

fn parse_load(reply: &[Value], windows: usize) -> Result<ProviderLoad, CapacityError> {
    if reply.len() != windows + 7 {
        return Err(CapacityError::Protocol(format!(
            "load returned {} values",
            reply.len()
        )));
    }
    let int = |v: &Value| -> i64 {
        match v {
            Value::Int(i) => *i,
            Value::BulkString(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .map_or(0, |f| f as i64),
            _ => 0,
        }
    };
    let float = |v: &Value| -> Option<f64> {
        match v {
            Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    };
    Ok(ProviderLoad {
        now_ms: int(&reply[0]),
        used: reply[1..=windows]
            .iter()
            .map(|v| int(v).max(0) as u64)
            .collect(),
        leases: int(&reply[windows + 1]).max(0) as u64,
        success_rate: float(&reply[windows + 2]),
        latency_ms: float(&reply[windows + 3]),
        consecutive_failures: int(&reply[windows + 4]).max(0) as u32,
        open_until_ms: int(&reply[windows + 5]),
        admitted_rate: float(&reply[windows + 6]),
    })
}
