//! Tenant limits at enqueue: `rate_limit_per_sec` as a GCRA (a burst of
//! one second's messages, then one every 1/rate s) and `daily_quota` per
//! UTC day, both in one Lua call for a group of requests, so any number of
//! producers keep them together (`lua/admit.lua`). Each request is
//! admitted whole or refused whole.
//!
//! Keys: `<ns>:tl:{<tenant>}:rate` (the GCRA's theoretical arrival time)
//! and `…:day` (the UTC day and its count), one Redis Cluster slot per
//! tenant. A day count Redis lost (a restart without persistence, a
//! flush) is started again from what PostgreSQL recorded that day, which
//! the caller counts (see [`Capacity::admit`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use uuid::Uuid;

use crate::{Capacity, CapacityError};

/// What a tenant may send: absent is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantLimits {
    /// Messages per second; bursts of as many at once.
    pub rate_per_sec: Option<u32>,
    /// Messages per UTC day.
    pub daily_quota: Option<u64>,
}

impl TenantLimits {
    pub fn is_unlimited(&self) -> bool {
        self.rate_per_sec.is_none() && self.daily_quota.is_none()
    }

    /// The most messages one request may carry under the rate limit.
    pub fn burst(&self) -> Option<u32> {
        self.rate_per_sec
    }
}

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Over `rate_limit_per_sec`: it would fit after `retry_after`.
    RateLimited {
        retry_after: Duration,
    },
    /// Over `daily_quota`: `remaining` messages are left today; the next
    /// UTC day begins after `retry_after`.
    QuotaExceeded {
        remaining: u64,
        retry_after: Duration,
    },
    /// More messages than the rate limit admits at once: it never fits.
    OverBurst {
        burst: u32,
    },
}

/// The answers to a group of requests, and the day they were charged to
/// (to give a charge back, [`Capacity::unadmit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub day: i64,
    pub answers: Vec<Admission>,
}

/// The two scripts, shared (not copied) by every clone of a [`Capacity`].
#[derive(Clone)]
pub(crate) struct Scripts {
    admit: Arc<Script>,
    unadmit: Arc<Script>,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            admit: Arc::new(Script::new(include_str!("lua/admit.lua"))),
            unadmit: Arc::new(Script::new(include_str!("lua/unadmit.lua"))),
        }
    }
}

/// The first id a UUIDv7 made at `ms` (Unix milliseconds) can have: every
/// message id made at or after `ms` sorts at or after it.
pub fn first_id_at(ms: i64) -> Uuid {
    let ms = u128::from(ms.max(0) as u64) & ((1 << 48) - 1);
    Uuid::from_u128((ms << 80) | (0x7 << 76) | (0b10 << 62))
}

/// Unix milliseconds at which UTC day `day` begins.
pub fn day_start_ms(day: i64) -> i64 {
    day.saturating_mul(86_400_000)
}

impl Capacity {
    fn tenant_keys(&self, tenant: Uuid) -> (String, String) {
        let prefix = format!("{}:tl:{{{tenant}}}", self.namespace);
        (format!("{prefix}:rate"), format!("{prefix}:day"))
    }

    /// Admits requests of `sizes` messages each, in order, against
    /// `limits` of `tenant`. When Redis has no count for the day (it lost
    /// it), `count_since(ms)` gives the messages the tenant had accepted
    /// since the day began at Unix `ms`, and counting goes on from there.
    /// Redis unreachable is an error: the caller refuses rather than let
    /// a limit go unchecked.
    pub async fn admit<F, Fut>(
        &self,
        tenant: Uuid,
        limits: TenantLimits,
        sizes: &[u64],
        count_since: F,
    ) -> Result<Admitted, CapacityError>
    where
        F: FnOnce(i64) -> Fut,
        Fut: Future<Output = Result<u64, String>>,
    {
        self.admit_at(tenant, limits, sizes, None, count_since)
            .await
    }

    /// [`Capacity::admit`] at `now_us` (Unix µs) instead of the Redis
    /// server's clock: for tests.
    pub async fn admit_at<F, Fut>(
        &self,
        tenant: Uuid,
        limits: TenantLimits,
        sizes: &[u64],
        now_us: Option<i64>,
        count_since: F,
    ) -> Result<Admitted, CapacityError>
    where
        F: FnOnce(i64) -> Fut,
        Fut: Future<Output = Result<u64, String>>,
    {
        if limits.is_unlimited() || sizes.is_empty() {
            return Ok(Admitted {
                day: 0,
                answers: vec![Admission::Admitted; sizes.len()],
            });
        }
        let mut reply = self.admit_call(tenant, limits, sizes, None, now_us).await?;
        if let [-1, day] = reply[..] {
            let seed = count_since(day_start_ms(day))
                .await
                .map_err(CapacityError::Checkpoint)?;
            reply = self
                .admit_call(tenant, limits, sizes, Some(seed), now_us)
                .await?;
        }
        let (day, rest) = match reply.split_first() {
            Some((&day, rest)) if day >= 0 && rest.len() == sizes.len() * 3 => (day, rest),
            _ => {
                return Err(CapacityError::Protocol(format!(
                    "admit.lua answered {reply:?} for {} requests",
                    sizes.len()
                )))
            }
        };
        let ms = |v: i64| Duration::from_millis(v.max(1) as u64);
        let answers = rest
            .chunks(3)
            .map(|r| match r {
                [0, _, _] => Ok(Admission::Admitted),
                [1, wait, _] => Ok(Admission::RateLimited {
                    retry_after: ms(*wait),
                }),
                [2, wait, left] => Ok(Admission::QuotaExceeded {
                    remaining: (*left).max(0) as u64,
                    retry_after: ms(*wait),
                }),
                [3, _, _] => Ok(Admission::OverBurst {
                    burst: limits.burst().unwrap_or(0),
                }),
                other => Err(CapacityError::Protocol(format!("{other:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Admitted { day, answers })
    }

    async fn admit_call(
        &self,
        tenant: Uuid,
        limits: TenantLimits,
        sizes: &[u64],
        seed: Option<u64>,
        now_us: Option<i64>,
    ) -> Result<Vec<i64>, CapacityError> {
        let (rate_key, day_key) = self.tenant_keys(tenant);
        let mut inv = self.tenant_scripts.admit.prepare_invoke();
        inv.key(rate_key)
            .key(day_key)
            .arg(limits.rate_per_sec.unwrap_or(0))
            .arg(limits.burst().unwrap_or(0))
            .arg(limits.daily_quota.unwrap_or(0))
            .arg(seed.map(|s| s.to_string()).unwrap_or_default())
            .arg(now_us.map(|n| n.to_string()).unwrap_or_default());
        for size in sizes {
            inv.arg(*size);
        }
        let mut conn = self.conn.clone();
        Ok(inv.invoke_async(&mut conn).await?)
    }

    /// Gives back `messages` that [`Capacity::admit`] charged to `day`
    /// and that were not accepted after all.
    pub async fn unadmit(
        &self,
        tenant: Uuid,
        limits: TenantLimits,
        messages: u64,
        day: i64,
    ) -> Result<(), CapacityError> {
        self.unadmit_at(tenant, limits, messages, day, None).await
    }

    /// [`Capacity::unadmit`] at `now_us` (Unix µs): for tests.
    pub async fn unadmit_at(
        &self,
        tenant: Uuid,
        limits: TenantLimits,
        messages: u64,
        day: i64,
        now_us: Option<i64>,
    ) -> Result<(), CapacityError> {
        if limits.is_unlimited() || messages == 0 {
            return Ok(());
        }
        let (rate_key, day_key) = self.tenant_keys(tenant);
        let mut conn = self.conn.clone();
        let _: i64 = self
            .tenant_scripts
            .unadmit
            .key(rate_key)
            .key(day_key)
            .arg(limits.rate_per_sec.unwrap_or(0))
            .arg(messages)
            .arg(day)
            .arg(now_us.map(|n| n.to_string()).unwrap_or_default())
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_id_of_a_millisecond_sorts_before_every_id_made_in_it() {
        let ms = 1_764_806_400_123i64;
        let first = first_id_at(ms);
        assert_eq!(first.get_version_num(), 7);
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            (ms / 1000) as u64,
            (ms % 1000) as u32 * 1_000_000,
        );
        for _ in 0..100 {
            let id = Uuid::new_v7(ts);
            assert!(id >= first, "{id} < {first}");
        }
        let before = uuid::Timestamp::from_unix(
            uuid::NoContext,
            ((ms - 1) / 1000) as u64,
            ((ms - 1) % 1000) as u32 * 1_000_000,
        );
        assert!(Uuid::new_v7(before) < first);
        assert_eq!(day_start_ms(20_426), 20_426 * 86_400_000);
    }
}
