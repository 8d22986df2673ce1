//! The leader's checkpoints of provider windows (`capacity_checkpoints`),
//! read back when Redis lost its keys (docs/decisions/0017).

use uuid::Uuid;

use crate::{Result, Store};

/// Units charged in one bucket of one provider window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct SavedBucket {
    pub window_ms: i64,
    pub bucket: i64,
    pub used: i64,
}

impl Store {
    /// Replaces the checkpoints of `providers` with `buckets` (each with
    /// its provider) in one transaction.
    pub async fn save_checkpoints(
        &self,
        providers: &[Uuid],
        buckets: &[(Uuid, SavedBucket)],
    ) -> Result<()> {
        if providers.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM capacity_checkpoints WHERE provider_id = ANY($1)")
            .bind(providers)
            .execute(&mut *tx)
            .await?;
        if !buckets.is_empty() {
            let ids: Vec<Uuid> = buckets.iter().map(|(p, _)| *p).collect();
            let windows: Vec<i64> = buckets.iter().map(|(_, b)| b.window_ms).collect();
            let indexes: Vec<i64> = buckets.iter().map(|(_, b)| b.bucket).collect();
            let used: Vec<i64> = buckets.iter().map(|(_, b)| b.used).collect();
            sqlx::query(
                "INSERT INTO capacity_checkpoints (provider_id, window_ms, bucket, used)
                 SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::int8[], $4::int8[])",
            )
            .bind(&ids)
            .bind(&windows)
            .bind(&indexes)
            .bind(&used)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The last checkpoint of one provider's windows.
    pub async fn checkpoint(&self, provider: Uuid) -> Result<Vec<SavedBucket>> {
        Ok(sqlx::query_as(
            "SELECT window_ms, bucket, used FROM capacity_checkpoints WHERE provider_id = $1",
        )
        .bind(provider)
        .fetch_all(&self.pool)
        .await?)
    }
}
