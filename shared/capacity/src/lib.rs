//! Provider capacity in Redis. A placement charges the provider's rolling
//! windows (per minute, hour, day) with one atomic Lua script, so any
//! number of schedulers together never overbook a provider; a send the
//! provider never saw is refunded. Keys are hash-tagged per provider
//! (`<ns>:cap:{<provider>}:…`) so one script touches one Redis Cluster slot.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use uuid::Uuid;

/// Buckets per window: a window is counted in sixths (10 s buckets for a
/// minute, 10 min for an hour, 4 h for a day).
pub const BUCKETS_PER_WINDOW: u64 = 6;

#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    /// Redis cannot be reached: reservations fail closed (nothing is sent).
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("unexpected reply from the reservation script: {0}")]
    Protocol(String),
}

/// The windows of one provider, as `(window_ms, limit)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub windows: Vec<(u64, u64)>,
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Charged at the Redis server's time `at_ms` (keep it to refund).
    Granted { at_ms: i64 },
    /// A window is full; it has room again after `retry_after`.
    Denied {
        retry_after: Duration,
        window_ms: u64,
    },
    /// The cost exceeds a window's whole limit: it can never be placed on
    /// this provider.
    TooLarge { window_ms: u64 },
}

/// Reservations against one Redis, under one namespace.
#[derive(Clone)]
pub struct Capacity {
    conn: ConnectionManager,
    namespace: String,
    reserve: Script,
    refund: Script,
}

impl Capacity {
    pub async fn connect(url: &str, namespace: &str) -> Result<Capacity, CapacityError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(5))
            .set_response_timeout(Duration::from_secs(5))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Capacity {
            conn,
            namespace: namespace.to_owned(),
            reserve: Script::new(include_str!("reserve.lua")),
            refund: Script::new(include_str!("refund.lua")),
        })
    }

    /// The connection, for other keys of this namespace.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    fn prefix(&self, provider: Uuid) -> String {
        format!("{}:cap:{{{}}}", self.namespace, provider)
    }

    /// Charges `cost` units against every window of `limits` at once, or
    /// nothing if any window is full.
    pub async fn reserve(
        &self,
        provider: Uuid,
        limits: &Limits,
        cost: u32,
    ) -> Result<Reservation, CapacityError> {
        if limits.windows.is_empty() {
            return Ok(Reservation::Granted { at_ms: 0 });
        }
        let mut invocation = self.reserve.key(self.prefix(provider));
        invocation.arg(cost);
        for (window, limit) in &limits.windows {
            invocation.arg(*window).arg(bucket_ms(*window)).arg(*limit);
        }
        let reply: Vec<i64> = invocation.invoke_async(&mut self.conn.clone()).await?;
        match reply.as_slice() {
            [1, at] => Ok(Reservation::Granted { at_ms: *at }),
            [0, -1, i] => Ok(Reservation::TooLarge {
                window_ms: window_at(limits, *i),
            }),
            [0, wait, i] => Ok(Reservation::Denied {
                retry_after: Duration::from_millis((*wait).max(1) as u64),
                window_ms: window_at(limits, *i),
            }),
            other => Err(CapacityError::Protocol(format!("{other:?}"))),
        }
    }

    /// Gives back a granted reservation the provider never used.
    pub async fn refund(
        &self,
        provider: Uuid,
        limits: &Limits,
        cost: u32,
        at_ms: i64,
    ) -> Result<(), CapacityError> {
        if limits.windows.is_empty() || at_ms <= 0 {
            return Ok(());
        }
        let mut invocation = self.refund.key(self.prefix(provider));
        invocation.arg(cost).arg(at_ms);
        for (window, _) in &limits.windows {
            invocation.arg(*window).arg(bucket_ms(*window));
        }
        let _: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Units charged in the span that counts for `window_ms` now (tests,
    /// score explanations).
    pub async fn used(&self, provider: Uuid, window_ms: u64) -> Result<u64, CapacityError> {
        let size = bucket_ms(window_ms);
        let mut conn = self.conn.clone();
        let time: (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
        let now = time.0 * 1000 + time.1 / 1000;
        let current = now / size;
        let span = window_ms / size;
        let keys: Vec<String> = (current - span..=current)
            .map(|b| format!("{}:{}:{}", self.prefix(provider), window_ms, b))
            .collect();
        let values: Vec<Option<u64>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
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

fn bucket_ms(window_ms: u64) -> u64 {
    (window_ms / BUCKETS_PER_WINDOW).max(1)
}

fn window_at(limits: &Limits, index: i64) -> u64 {
    limits.windows.get(index as usize).map_or(0, |w| w.0)
}
