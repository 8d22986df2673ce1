//! The producer's outbox (`unconfirmed_jobs`): a due message's job from the
//! transaction that inserts its record until the producer records the
//! broker's confirm. What stays longer than the reconciler's interval is
//! republished by the leader (docs/decisions/0016).

use std::collections::HashSet;
use std::time::Duration;

use herald_domain::{Channel, MessageId, Priority, TenantId};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::decode::RowError;
use crate::{Result, Store};

/// A job whose confirm was never recorded.
#[derive(Debug, Clone)]
pub struct UnconfirmedJob {
    pub message_id: MessageId,
    pub tenant_id: TenantId,
    pub channel: Channel,
    pub priority: Priority,
    pub envelope: Vec<u8>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct StaleRow {
    #[sqlx(flatten)]
    row: UnconfirmedRow,
    /// The message still waits to be sent (`queued` or `pending`).
    waiting: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct UnconfirmedRow {
    message_id: Uuid,
    tenant_id: Uuid,
    channel: String,
    priority: i16,
    envelope: Vec<u8>,
}

impl TryFrom<UnconfirmedRow> for UnconfirmedJob {
    type Error = RowError;

    fn try_from(row: UnconfirmedRow) -> std::result::Result<UnconfirmedJob, RowError> {
        let bad = |reason: String| RowError::new("unconfirmed_jobs", row.message_id, reason);
        let channel: Channel = row
            .channel
            .parse()
            .map_err(|e: herald_domain::FieldError| bad(e.to_string()))?;
        let priority = Priority::parse(i64::from(row.priority)).map_err(|e| bad(e.to_string()))?;
        Ok(UnconfirmedJob {
            message_id: MessageId(row.message_id),
            tenant_id: TenantId(row.tenant_id),
            channel,
            priority,
            envelope: row.envelope,
        })
    }
}

/// Unconfirmed jobs locked for republishing. Publish them with confirms,
/// then call [`Stale::republished`]; dropping it leaves them for a later
/// round.
pub struct Stale {
    tx: Transaction<'static, Postgres>,
    /// The jobs of messages still waiting to be sent; the rows of messages
    /// already sent, cancelled or failed are deleted with the commit and
    /// not republished.
    pub jobs: Vec<UnconfirmedJob>,
    /// Rows locked in all (`jobs` and the finished ones).
    pub locked: usize,
}

impl Store {
    /// Records the broker's confirm of these messages' jobs (one statement
    /// for many requests' confirms).
    pub async fn confirmed(&self, ids: &[Uuid]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(
            sqlx::query("DELETE FROM unconfirmed_jobs WHERE message_id = ANY($1)")
                .bind(ids)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// Locks up to `limit` jobs left unconfirmed for longer than `age`,
    /// oldest first, skipping those another reconciler holds.
    pub async fn stale_unconfirmed(&self, age: Duration, limit: i64) -> Result<Stale> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<StaleRow> = sqlx::query_as(
            "SELECT u.message_id, u.tenant_id, u.channel, u.priority, u.envelope,
                    COALESCE(m.status IN ('queued', 'pending'), false) AS waiting
             FROM unconfirmed_jobs u LEFT JOIN messages m ON m.id = u.message_id
             WHERE u.created_at <= now() - make_interval(secs => $1)
             ORDER BY u.created_at LIMIT $2 FOR UPDATE OF u SKIP LOCKED",
        )
        .bind(age.as_secs_f64())
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let locked: Vec<Uuid> = rows.iter().map(|r| r.row.message_id).collect();
        let waiting: Vec<UnconfirmedRow> = rows
            .into_iter()
            .filter_map(|r| r.waiting.then_some(r.row))
            .collect();
        let waiting_ids: HashSet<Uuid> = waiting.iter().map(|r| r.message_id).collect();
        // A row that does not decode is reported and kept (not deleted, not
        // published to a guessed queue).
        let (jobs, _) = crate::decode::decode_all(waiting, UnconfirmedJob::try_from);
        let decoded: HashSet<Uuid> = jobs.iter().map(|j| j.message_id.as_uuid()).collect();
        let delete: Vec<Uuid> = locked
            .into_iter()
            .filter(|id| decoded.contains(id) || !waiting_ids.contains(id))
            .collect();
        if !delete.is_empty() {
            sqlx::query("DELETE FROM unconfirmed_jobs WHERE message_id = ANY($1)")
                .bind(&delete)
                .execute(&mut *tx)
                .await?;
        }
        Ok(Stale {
            tx,
            jobs,
            locked: delete.len(),
        })
    }

    /// How many jobs wait for their confirm to be recorded, and the age of
    /// the oldest in seconds.
    pub async fn unconfirmed_backlog(&self) -> Result<(i64, f64)> {
        Ok(sqlx::query_as(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0)
             FROM unconfirmed_jobs",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Deletes up to `limit` idempotency keys older than 24 hours (a key
    /// answers for 24 h; after that it is taken over anyway).
    pub async fn expire_idempotency_keys(&self, limit: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM idempotency_keys WHERE ctid IN (
                 SELECT ctid FROM idempotency_keys
                 WHERE created_at <= now() - interval '24 hours' LIMIT $1)",
        )
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

impl Stale {
    /// Commits: call after every job was published and confirmed.
    pub async fn republished(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}
