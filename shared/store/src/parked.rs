use chrono::{DateTime, Utc};
use herald_domain::Channel;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::decode::RowError;
use crate::{Result, Store};

/// A job held in PostgreSQL until its time.
#[derive(Debug, Clone)]
pub struct ParkedJob {
    pub message_id: Uuid,
    pub tenant_id: Uuid,
    pub channel: Channel,
    pub due_at: DateTime<Utc>,
    pub envelope: Vec<u8>,
}

/// A parked job as stored; handed out only as a decoded [`ParkedJob`].
#[derive(Debug, Clone, sqlx::FromRow)]
struct ParkedRow {
    message_id: Uuid,
    tenant_id: Uuid,
    channel: String,
    due_at: DateTime<Utc>,
    envelope: Vec<u8>,
}

impl TryFrom<ParkedRow> for ParkedJob {
    type Error = RowError;

    fn try_from(row: ParkedRow) -> std::result::Result<ParkedJob, RowError> {
        let channel: Channel = row
            .channel
            .parse()
            .map_err(|e: herald_domain::FieldError| {
                RowError::new("parked_jobs", row.message_id, e.to_string())
            })?;
        Ok(ParkedJob {
            message_id: row.message_id,
            tenant_id: row.tenant_id,
            channel,
            due_at: row.due_at,
            envelope: row.envelope,
        })
    }
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
    /// scheduler holds, and — inside the same open transaction — removes
    /// them and marks their records `queued`. Until [`DueJobs::released`]
    /// commits, a worker that receives one of them waits on the row lock, so
    /// it never sees the record still `scheduled`.
    pub async fn due_jobs(&self, limit: i64) -> Result<DueJobs> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<ParkedRow> = sqlx::query_as(
            "SELECT message_id, tenant_id, channel, due_at, envelope FROM parked_jobs
             WHERE due_at <= now() ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        // A job whose channel does not decode is reported and stays parked
        // (neither released nor deleted), rather than being published to
        // some channel's queue by guess.
        let (jobs, _) = crate::decode::decode_all(rows, ParkedJob::try_from);
        if !jobs.is_empty() {
            let ids: Vec<Uuid> = jobs.iter().map(|j| j.message_id).collect();
            sqlx::query("DELETE FROM parked_jobs WHERE message_id = ANY($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE messages SET status = 'queued', updated_at = now()
                 WHERE id = ANY($1) AND status = 'scheduled'",
            )
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        }
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
    /// Commits the release: call after every job was published and confirmed.
    pub async fn released(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Parks jobs until their `due_at` (a long wait for a send window or a
    /// quota day); a job parked again keeps its latest due time.
    pub async fn park(&self, jobs: &[ParkedJob]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        // Two copies of one job in a batch (a republished copy beside the
        // first) park once: one statement cannot update a row twice.
        let mut seen = std::collections::HashSet::new();
        let jobs: Vec<&ParkedJob> = jobs
            .iter()
            .rev()
            .filter(|j| seen.insert(j.message_id))
            .collect();
        let ids: Vec<Uuid> = jobs.iter().map(|j| j.message_id).collect();
        let tenants: Vec<Uuid> = jobs.iter().map(|j| j.tenant_id).collect();
        let channels: Vec<&str> = jobs.iter().map(|j| j.channel.as_str()).collect();
        let due: Vec<DateTime<Utc>> = jobs.iter().map(|j| j.due_at).collect();
        let envelopes: Vec<&[u8]> = jobs.iter().map(|j| j.envelope.as_slice()).collect();
        sqlx::query(
            "INSERT INTO parked_jobs (message_id, tenant_id, channel, due_at, envelope)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::bytea[])
             ON CONFLICT (message_id) DO UPDATE
               SET due_at = EXCLUDED.due_at, envelope = EXCLUDED.envelope",
        )
        .bind(&ids)
        .bind(&tenants)
        .bind(&channels)
        .bind(&due)
        .bind(&envelopes)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Dead-lettered records being put back in the queue. Publish their jobs,
/// then call [`Requeued::commit`]; dropping it leaves them as they were.
/// Until the commit, a worker that receives one of them waits on the row
/// lock, so it never finds the record still `failed`.
pub struct Requeued {
    tx: Transaction<'static, Postgres>,
    /// The records that could be requeued (not sent, not cancelled).
    pub ids: Vec<Uuid>,
}

impl Store {
    /// Marks dead-lettered records `queued` again, inside an open
    /// transaction. Records already sent or cancelled are left alone (and
    /// missing from [`Requeued::ids`]); their jobs must not be replayed.
    pub async fn requeue_dead(&self, ids: &[Uuid]) -> Result<Requeued> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE messages SET status = 'queued', updated_at = now()
             WHERE id = ANY($1) AND status IN ('failed', 'in_doubt', 'pending', 'queued')
             RETURNING id",
        )
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
        Ok(Requeued { tx, ids })
    }
}

impl Requeued {
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}
