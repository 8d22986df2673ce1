//! Provider capacity in Redis. A placement charges the provider's rolling
//! windows (per minute, hour, day) and, on WeWork, each recipient's caps
//! with one atomic Lua script, so any number of schedulers together never
//! overbook a provider; a send the provider never saw is refunded. A worker
//! holds a concurrency lease while it sends ([`lease`]); outcomes feed the
//! provider's statistics and circuit breaker ([`health`]). A tenant's own
//! limits at enqueue are here too ([`tenant`]).
//!
//! Every key of a provider shares the hash tag `{<provider>}`
//! (`<ns>:cap:{<provider>}:w` for its windows, `…:r:<recipient>` for each
//! recipient's, `…:leases`, `…:stats`), so each script touches one Redis
//! Cluster slot. Window semantics are in `docs/decisions/0002-capacity-windows.md`.

pub mod checkpoint;
pub mod health;
pub mod lease;
pub mod tenant;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use herald_domain::{Channel, Quota};
use redis::aio::ConnectionManager;
use redis::Script;
use uuid::Uuid;

pub use checkpoint::{BucketUse, CheckpointSource, CHECKPOINTED_FROM_MS};
pub use health::{HealthPolicy, Observation, ProviderLoad};
pub use lease::Lease;
pub use tenant::{Admission, Admitted, TenantLimits};

/// Buckets per window: a window is counted in sixths (10 s buckets for a
/// minute, 10 min for an hour, 4 h for a day).
pub const BUCKETS_PER_WINDOW: u64 = 6;

/// WeWork's per-member caps on one app: 30 a minute, 1,000 an hour.
pub const WEWORK_RECIPIENT_WINDOWS: [(u64, u64); 2] = [(60_000, 30), (3_600_000, 1_000)];

#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// Redis cannot be reached: reservations fail closed (nothing is sent).
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from a capacity script: {0}")]
    Protocol(String),
    /// A provider's windows had to be restored from their checkpoint and
    /// the checkpoint could not be read: nothing is granted meanwhile.
    #[error("the capacity checkpoint cannot be read: {0}")]
    Checkpoint(String),
}

/// What one provider may take: its windows as `(window_ms, limit)` pairs,
/// the per-recipient windows of its channel, and its concurrency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub windows: Vec<(u64, u64)>,
    pub recipient_windows: Vec<(u64, u64)>,
    pub concurrency: Option<u32>,
}

impl Limits {
    /// The limits of a provider with `quota` on `channel`.
    pub fn new(quota: &Quota, channel: Channel) -> Limits {
        Limits {
            windows: quota.windows().collect(),
            recipient_windows: if channel == Channel::Wework {
                WEWORK_RECIPIENT_WINDOWS.to_vec()
            } else {
                Vec::new()
            },
            concurrency: quota.concurrency.map(|c| c.min(u64::from(u32::MAX)) as u32),
        }
    }

    /// Nothing to charge in Redis for a placement.
    pub fn is_unlimited(&self) -> bool {
        self.windows.is_empty() && self.recipient_windows.is_empty()
    }
}

/// One placement to reserve: its cost in the provider's unit and its
/// recipients (charged only where the provider has per-recipient caps).
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub cost: u32,
    pub recipients: &'a [String],
}

/// Why a reservation was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The provider's own window of this length.
    Provider { window_ms: u64 },
    /// A recipient's cap on this provider (WeWork drops the excess).
    Recipient { window_ms: u64 },
    /// The provider answered "too fast": its admitted rate or hold
    /// ([`throttle`]).
    Throttled,
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Charged at the Redis server's time `at_ms` (keep it to refund).
    Granted { at_ms: i64 },
    /// A window is full; it has room again after `retry_after`.
    Denied { retry_after: Duration, full: Full },
    /// The cost exceeds a window's whole limit: it can never be placed on
    /// this provider.
    TooLarge { window_ms: u64 },
}

/// Reservations against one Redis, under one namespace.
#[derive(Clone)]
pub struct Capacity {
    conn: ConnectionManager,
    namespace: String,
    // Shared, not copied: a clone of a Script copies its Lua source, and
    // a Capacity is cloned wherever a task needs it (the producer cloned
    // all eight sources for every request, decision 0023).
    reserve: Arc<Script>,
    refund: Arc<Script>,
    lease: Arc<Script>,
    observe: Arc<Script>,
    load: Arc<Script>,
    snapshot_script: Arc<Script>,
    restore_script: Arc<Script>,
    throttle_script: Arc<Script>,
    tenant_scripts: tenant::Scripts,
    checkpoints: Option<CheckpointSource>,
}

impl Capacity {
    pub async fn connect(url: &str, namespace: &str) -> Result<Capacity, CapacityError> {
        let client = redis::Client::open(url)?;
        // Reconnect attempts back off from 1 s, doubling, at most 2 s apart
        // (redis jitters each delay below that). A long back-off stalled
        // every placement after a Redis restart (measured by the chaos run;
        // decision 0008).
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_min_delay(Duration::from_secs(1))
            .set_exponent_base(2.0)
            .set_max_delay(Duration::from_secs(2))
            .set_number_of_retries(6);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Capacity {
            conn,
            namespace: namespace.to_owned(),
            reserve: Arc::new(Script::new(include_str!("lua/reserve.lua"))),
            refund: Arc::new(Script::new(include_str!("lua/refund.lua"))),
            lease: Arc::new(Script::new(include_str!("lua/lease.lua"))),
            observe: Arc::new(Script::new(include_str!("lua/observe.lua"))),
            load: Arc::new(Script::new(include_str!("lua/load.lua"))),
            snapshot_script: Arc::new(Script::new(include_str!("lua/snapshot.lua"))),
            restore_script: Arc::new(Script::new(include_str!("lua/restore.lua"))),
            throttle_script: Arc::new(Script::new(include_str!("lua/throttle.lua"))),
            tenant_scripts: tenant::Scripts::new(),
            checkpoints: None,
        })
    }

    /// The connection, for other keys of this namespace.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub(crate) fn prefix(&self, provider: Uuid) -> String {
        format!("{}:cap:{{{}}}", self.namespace, provider)
    }

    /// Charges `cost` units against every window of `limits`, and one unit
    /// against each recipient's caps, at once — or nothing if any is full.
    /// `recipients` matter only when `limits` has recipient windows.
    pub async fn reserve(
        &self,
        provider: Uuid,
        limits: &Limits,
        cost: u32,
        recipients: &[String],
    ) -> Result<Reservation, CapacityError> {
        let mut all = self
            .reserve_many(provider, limits, &[Ask { cost, recipients }])
            .await?;
        all.pop()
            .ok_or_else(|| CapacityError::Protocol("no answer for a reservation".into()))
    }

    /// Several placements on one provider in one script call, in order:
    /// each is all or nothing, and a later one sees the earlier grants.
    pub async fn reserve_many(
        &self,
        provider: Uuid,
        limits: &Limits,
        asks: &[Ask<'_>],
    ) -> Result<Vec<Reservation>, CapacityError> {
        self.reserve_many_on(provider, limits, asks, false).await
    }

    /// [`Capacity::reserve_many`], for a provider that may be throttled
    /// (`throttled`: its last load showed an admitted rate): then even a
    /// provider without windows asks Redis, so that the throttle spaces its
    /// grants.
    pub async fn reserve_many_on(
        &self,
        provider: Uuid,
        limits: &Limits,
        asks: &[Ask<'_>],
        throttled: bool,
    ) -> Result<Vec<Reservation>, CapacityError> {
        if limits.is_unlimited() && !throttled {
            return Ok(vec![Reservation::Granted { at_ms: 0 }; asks.len()]);
        }
        if asks.is_empty() {
            return Ok(Vec::new());
        }
        let mut reply = self.reserve_call(provider, limits, asks).await?;
        if reply == [-1] {
            // Redis lost this provider's long windows: count them again
            // from the checkpoint, then ask once more.
            self.restore_from_source(provider, limits).await?;
            reply = self.reserve_call(provider, limits, asks).await?;
        }
        if reply.len() != asks.len() * 4 {
            return Err(CapacityError::Protocol(format!(
                "{} values for {} reservations",
                reply.len(),
                asks.len()
            )));
        }
        let window = |kind: i64, i: i64| {
            let list = if kind == 1 {
                &limits.recipient_windows
            } else {
                &limits.windows
            };
            list.get(i as usize).map_or(0, |w| w.0)
        };
        reply
            .chunks(4)
            .map(|r| match r {
                [1, at, _, _] => Ok(Reservation::Granted { at_ms: *at }),
                [0, -1, i, kind] => Ok(Reservation::TooLarge {
                    window_ms: window(*kind, *i),
                }),
                [0, wait, _, 2] => Ok(Reservation::Denied {
                    retry_after: Duration::from_millis((*wait).max(1) as u64),
                    full: Full::Throttled,
                }),
                [0, wait, i, kind] => Ok(Reservation::Denied {
                    retry_after: Duration::from_millis((*wait).max(1) as u64),
                    full: if *kind == 1 {
                        Full::Recipient {
                            window_ms: window(1, *i),
                        }
                    } else {
                        Full::Provider {
                            window_ms: window(0, *i),
                        }
                    },
                }),
                other => Err(CapacityError::Protocol(format!("{other:?}"))),
            })
            .collect()
    }

    async fn reserve_call(
        &self,
        provider: Uuid,
        limits: &Limits,
        asks: &[Ask<'_>],
    ) -> Result<Vec<i64>, CapacityError> {
        let mut invocation = self.reserve.key(self.prefix(provider));
        invocation.arg(limits.windows.len());
        for (window, limit) in &limits.windows {
            invocation.arg(*window).arg(bucket_ms(*window)).arg(*limit);
        }
        invocation.arg(limits.recipient_windows.len());
        for (window, limit) in &limits.recipient_windows {
            invocation.arg(*window).arg(bucket_ms(*window)).arg(*limit);
        }
        invocation.arg(asks.len());
        for ask in asks {
            invocation.arg(ask.cost);
            if limits.recipient_windows.is_empty() {
                invocation.arg(0);
            } else {
                let who = distinct(ask.recipients);
                invocation.arg(who.len()).arg(who);
            }
        }
        Ok(invocation.invoke_async(&mut self.conn.clone()).await?)
    }

    /// Gives back a granted reservation the provider never used.
    pub async fn refund(
        &self,
        provider: Uuid,
        limits: &Limits,
        cost: u32,
        at_ms: i64,
        recipients: &[String],
    ) -> Result<(), CapacityError> {
        if limits.is_unlimited() || at_ms <= 0 {
            return Ok(());
        }
        let mut invocation = self.refund.key(self.prefix(provider));
        invocation.arg(cost).arg(at_ms).arg(limits.windows.len());
        for (window, _) in &limits.windows {
            invocation.arg(*window).arg(bucket_ms(*window));
        }
        invocation.arg(limits.recipient_windows.len());
        for (window, _) in &limits.recipient_windows {
            invocation.arg(*window).arg(bucket_ms(*window));
        }
        if !limits.recipient_windows.is_empty() {
            invocation.arg(distinct(recipients));
        }
        let _: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Units charged in the span that counts for `window_ms` now, summed
    /// from the buckets themselves (not the scripts' running sum): tests
    /// check one against the other.
    pub async fn used(&self, provider: Uuid, window_ms: u64) -> Result<u64, CapacityError> {
        self.used_by(&format!("{}:w", self.prefix(provider)), window_ms)
            .await
    }

    /// Units charged to one recipient on a provider in the span that counts
    /// for `window_ms` now.
    pub async fn recipient_used(
        &self,
        provider: Uuid,
        recipient: &str,
        window_ms: u64,
    ) -> Result<u64, CapacityError> {
        let key = format!("{}:r:{}", self.prefix(provider), recipient);
        self.used_by(&key, window_ms).await
    }

    async fn used_by(&self, key: &str, window_ms: u64) -> Result<u64, CapacityError> {
        let size = bucket_ms(window_ms);
        let mut conn = self.conn.clone();
        let time: (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
        let now = time.0 * 1000 + time.1 / 1000;
        let current = now / size;
        let first = current - window_ms / size;
        let fields: Vec<String> = (first..=current)
            .map(|b| format!("{window_ms}:{b}"))
            .collect();
        let values: Vec<Option<u64>> = redis::cmd("HMGET")
            .arg(key)
            .arg(&fields)
            .query_async(&mut conn)
            .await?;
        Ok(values.into_iter().flatten().sum())
    }

    pub async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }
}

/// Each recipient once: a send reaches a member once however often the
/// list names them.
fn distinct(recipients: &[String]) -> Vec<&str> {
    let mut list: Vec<&str> = recipients.iter().map(String::as_str).collect();
    list.sort_unstable();
    list.dedup();
    list
}

pub(crate) fn bucket_ms(window_ms: u64) -> u64 {
    (window_ms / BUCKETS_PER_WINDOW).max(1)
}
