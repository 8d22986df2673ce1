//! Long windows outlive Redis: the leader copies every provider's hour and
//! day counters to PostgreSQL every few seconds ([`Capacity::snapshot`]),
//! and after Redis lost its keys a provider's first reservation counts them
//! again from that copy ([`Capacity::restore`]) before anything is granted
//! (docs/decisions/0017). Minute windows and WeWork's per-member caps are
//! not kept: a minute is over by the time Redis is back, and WeWork drops
//! what exceeds a member's cap itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use uuid::Uuid;

use crate::{bucket_ms, Capacity, CapacityError, Limits};

/// Windows at least this long are checkpointed.
pub const CHECKPOINTED_FROM_MS: u64 = 3_600_000;

/// Units charged in one bucket of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketUse {
    pub window_ms: u64,
    /// The bucket's index: the Redis server's time in ms divided by the
    /// window's bucket length.
    pub bucket: i64,
    pub used: i64,
}

/// Where a provider's last checkpoint is read from (the scheduler reads
/// PostgreSQL); an error fails the reservation closed.
pub type CheckpointSource = Arc<
    dyn Fn(Uuid) -> Pin<Box<dyn Future<Output = Result<Vec<BucketUse>, String>> + Send>>
        + Send
        + Sync,
>;

impl Limits {
    /// The windows a checkpoint keeps.
    pub fn checkpointed(&self) -> impl Iterator<Item = u64> + '_ {
        self.windows
            .iter()
            .map(|(w, _)| *w)
            .filter(|w| *w >= CHECKPOINTED_FROM_MS)
    }
}

impl Capacity {
    /// Reads checkpoints from `source` when a provider's windows must be
    /// restored. Without one, a provider after a Redis restart starts
    /// from zero (tests of the scripts alone).
    pub fn with_checkpoints(mut self, source: CheckpointSource) -> Capacity {
        self.checkpoints = Some(source);
        self
    }

    /// The checkpointed windows' buckets of `provider` as Redis holds them
    /// now, or `None` while they wait to be restored (never checkpoint
    /// that: it would overwrite the copy that restores them).
    pub async fn snapshot(
        &self,
        provider: Uuid,
        limits: &Limits,
    ) -> Result<Option<Vec<BucketUse>>, CapacityError> {
        let kept: Vec<u64> = limits.checkpointed().collect();
        if kept.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let reply: Option<Vec<String>> = self
            .snapshot_script
            .key(self.prefix(provider))
            .invoke_async(&mut self.conn.clone())
            .await?;
        let Some(flat) = reply else {
            return Ok(None);
        };
        Ok(Some(
            flat.chunks(2)
                .filter_map(|pair| {
                    let [field, value] = pair else { return None };
                    let (window, bucket) = field.split_once(':')?;
                    let window_ms: u64 = window.parse().ok()?;
                    let bucket: i64 = bucket.parse().ok()?;
                    let used: i64 = value.parse().ok()?;
                    (kept.contains(&window_ms) && used > 0).then_some(BucketUse {
                        window_ms,
                        bucket,
                        used,
                    })
                })
                .collect(),
        ))
    }

    /// Counts `saved` into `provider`'s windows and marks them ready, unless
    /// another process did so first. Returns whether this call restored.
    pub async fn restore(
        &self,
        provider: Uuid,
        limits: &Limits,
        saved: &[BucketUse],
    ) -> Result<bool, CapacityError> {
        let kept: Vec<u64> = limits.checkpointed().collect();
        let mut invocation = self.restore_script.key(self.prefix(provider));
        invocation.arg(kept.len());
        for window in &kept {
            let buckets: Vec<&BucketUse> =
                saved.iter().filter(|b| b.window_ms == *window).collect();
            invocation
                .arg(*window)
                .arg(bucket_ms(*window))
                .arg(buckets.len());
            for b in buckets {
                invocation.arg(b.bucket).arg(b.used);
            }
        }
        let restored: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        if restored == 1 {
            metrics::counter!("herald_capacity_restored_total").increment(1);
            tracing::info!(provider = %provider, buckets = saved.len(), "Counted a provider's hour and day windows again from their checkpoint (Redis had lost them).");
        }
        Ok(restored == 1)
    }

    /// Restores `provider` from the checkpoint source (or from nothing).
    pub(crate) async fn restore_from_source(
        &self,
        provider: Uuid,
        limits: &Limits,
    ) -> Result<(), CapacityError> {
        let saved = match &self.checkpoints {
            Some(source) => source(provider).await.map_err(CapacityError::Checkpoint)?,
            None => Vec::new(),
        };
        self.restore(provider, limits, &saved).await?;
        Ok(())
    }
}
