use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::{Result, Store};

/// A job held in PostgreSQL until its time.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ParkedJob {
    pub message_id: Uuid,
    pub tenant_id: Uuid,
    pub channel: String,
    pub due_at: DateTime<Utc>,
    pub envelope: Vec<u8>,
}

/// Due jobs locked for release. Publish them, then call
/// [`DueJobs::released`]; dropping it instead leaves them parked (another
/// scheduler or a later round takes them).
pub struct DueJobs {
    tx: Transaction<'static, Postgres>,
    pub jobs: Vec<ParkedJob>,
}

impl Store {
    /// Locks up to `limit` jobs due by now, skipping those another
    /// scheduler holds.
    pub async fn due_jobs(&self, limit: i64) -> Result<DueJobs> {
        let mut tx = self.pool.begin().await?;
        let jobs = sqlx::query_as(
            "SELECT message_id, tenant_id, channel, due_at, envelope FROM parked_jobs
             WHERE due_at <= now() ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        Ok(DueJobs { tx, jobs })
    }

    /// The earliest due time of any parked job.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar("SELECT min(due_at) FROM parked_jobs")
            .fetch_one(&self.pool)
            .await?)
    }
}

impl DueJobs {
    /// Removes the released jobs and marks their records `queued`.
    pub async fn released(mut self) -> Result<()> {
        let ids: Vec<Uuid> = self.jobs.iter().map(|j| j.message_id).collect();
        sqlx::query("DELETE FROM parked_jobs WHERE message_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *self.tx)
            .await?;
        sqlx::query(
            "UPDATE messages SET status = 'queued', updated_at = now()
             WHERE id = ANY($1) AND status = 'scheduled'",
        )
        .bind(&ids)
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await?;
        Ok(())
    }
}
