//! Concurrency leases: a worker takes one when it starts a send and
//! releases it after. A lease expires by itself, so a worker killed
//! mid-send gives its slot back after the lease's time to live.

use std::time::Duration;

use uuid::Uuid;

use crate::{Capacity, CapacityError};

/// The answer to a lease request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    Granted,
    /// Every slot is held; the soonest lease expires after this long (a
    /// release frees a slot sooner).
    Busy {
        expires_in: Duration,
    },
}

impl Capacity {
    /// Takes (or renews) `holder`'s slot among `limit` on `provider` for
    /// `ttl`.
    pub async fn acquire_lease(
        &self,
        provider: Uuid,
        limit: u32,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lease, CapacityError> {
        let reply: Vec<i64> = self
            .lease
            .key(self.prefix(provider))
            .arg(limit)
            .arg(holder)
            .arg(ttl.as_millis().max(1) as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        match reply.as_slice() {
            [1, _] => Ok(Lease::Granted),
            [0, ms] => Ok(Lease::Busy {
                expires_in: Duration::from_millis((*ms).max(1) as u64),
            }),
            other => Err(CapacityError::Protocol(format!("{other:?}"))),
        }
    }

    /// Gives `holder`'s slot back.
    pub async fn release_lease(&self, provider: Uuid, holder: &str) -> Result<(), CapacityError> {
        let mut conn = self.conn.clone();
        let _: i64 = redis::cmd("ZREM")
            .arg(format!("{}:leases", self.prefix(provider)))
            .arg(holder)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Live leases on `provider` now.
    pub async fn leases(&self, provider: Uuid) -> Result<u64, CapacityError> {
        let mut conn = self.conn.clone();
        let time: (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
        let now = time.0 * 1000 + time.1 / 1000;
        let n: u64 = redis::cmd("ZCOUNT")
            .arg(format!("{}:leases", self.prefix(provider)))
            .arg(now)
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        Ok(n)
    }
}
