use std::collections::HashSet;

use chrono::{DateTime, Utc};
use herald_domain::{
    BatchId, Channel, MessageId, MessageRecord, MessageStatus, Priority, ProviderId, TenantId,
};
use serde_json::Value;
use uuid::Uuid;

use crate::decode::{decode_all, RowError};
use crate::webhooks::webhook_outbox;
use crate::{Result, Store, StoreError};

/// A message record about to be inserted by the producer.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub id: MessageId,
    pub channel: &'static str,
    pub recipient: String,
    pub status: MessageStatus,
    pub priority: i16,
    pub batch_id: Option<Uuid>,
    pub idempotency_key: Option<String>,
    /// SHA-256 of the canonical request, to tell a replay from a conflict.
    pub request_hash: Vec<u8>,
    pub metadata: Value,
    pub scheduled_at: Option<DateTime<Utc>>,
    /// The encoded job: parked until `scheduled_at` when that is set,
    /// otherwise kept in the outbox (`unconfirmed_jobs`) until the producer
    /// records the broker's confirm. `None` keeps no job (tests that
    /// publish by hand).
    pub envelope: Option<Vec<u8>>,
}

/// A key seen within the last 24 hours.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IdempotentHit {
    pub key: String,
    pub request_hash: Vec<u8>,
    pub message_id: Uuid,
    /// The status the first response gave (`queued`, `scheduled` or
    /// `suppressed`).
    pub status: String,
    /// The message's job while the broker has not confirmed it (the first
    /// request's producer died or lost the broker before the confirm was
    /// recorded): the replay publishes it before answering.
    pub unconfirmed: Option<Vec<u8>>,
    /// The job's priority, with `unconfirmed`.
    pub priority: Option<i16>,
}

/// A message row as stored; handed out only as a decoded [`MessageRecord`].
#[derive(Debug, Clone, sqlx::FromRow)]
struct MessageRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub channel: String,
    pub recipient: String,
    pub status: String,
    pub provider_id: Option<Uuid>,
    pub provider_name: Option<String>,
    pub attempts: i32,
    pub priority: i16,
    pub batch_id: Option<Uuid>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub metadata: Value,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl TryFrom<MessageRow> for MessageRecord {
    type Error = RowError;

    fn try_from(row: MessageRow) -> std::result::Result<MessageRecord, RowError> {
        let bad = |reason: String| RowError::new("messages", row.id, reason);
        let channel: Channel = row
            .channel
            .parse()
            .map_err(|e: herald_domain::FieldError| bad(e.to_string()))?;
        let status: MessageStatus = row
            .status
            .parse()
            .map_err(|e| bad(format!("status: {e}")))?;
        let attempts = u32::try_from(row.attempts)
            .map_err(|_| bad(format!("attempts: {} is negative", row.attempts)))?;
        let priority = Priority::parse(i64::from(row.priority)).map_err(|e| bad(e.to_string()))?;
        Ok(MessageRecord {
            id: MessageId(row.id),
            tenant_id: TenantId(row.tenant_id),
            channel,
            recipient: row.recipient,
            status,
            provider_id: row.provider_id.map(ProviderId),
            provider_name: row.provider_name,
            attempts,
            priority,
            batch_id: row.batch_id.map(BatchId),
            error_code: row.error_code,
            error_message: row.error_message,
            metadata: row.metadata,
            scheduled_at: row.scheduled_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            sent_at: row.sent_at,
            delivered_at: row.delivered_at,
        })
    }
}

/// The record, or the error of an undecodable row (reported): a single
/// read never answers with a default.
fn decode_record(row: MessageRow) -> Result<MessageRecord> {
    MessageRecord::try_from(row).map_err(|e| {
        e.report();
        StoreError::Undecodable(e)
    })
}

#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub status: Option<MessageStatus>,
    pub batch_id: Option<Uuid>,
    /// Return messages older than this id (the previous page's cursor).
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// A message the worker claimed for sending, with the status it had.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedMessage {
    pub id: Uuid,
    pub previous_status: String,
}

/// The recorded result of one send attempt.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: Uuid,
    pub status: MessageStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

const SELECT_MESSAGE: &str =
    "SELECT m.id, m.tenant_id, m.channel, m.recipient, m.status, m.provider_id,
    p.name AS provider_name, m.attempts, m.priority, m.batch_id, m.error_code, m.error_message,
    m.metadata, m.scheduled_at, m.created_at, m.updated_at, m.sent_at, m.delivered_at
    FROM messages m LEFT JOIN providers p ON p.id = m.provider_id";

impl Store {
    /// The keys among `keys` that `tenant` used in the last 24 hours.
    pub async fn idempotent_hits(
        &self,
        tenant: TenantId,
        keys: &[String],
    ) -> Result<Vec<IdempotentHit>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(
            // One primary-key lookup per key (the LIMIT keeps the planner
            // from flattening the lateral into a join): with the flat form
            // and stale statistics PostgreSQL filtered every key of the
            // tenant against the array, 24 ms per call (decision 0011).
            "SELECT k.key, k.request_hash, k.message_id,
                    CASE WHEN m.status = 'suppressed' AND m.error_code = 'suppressed' THEN 'suppressed'
                         WHEN m.scheduled_at IS NOT NULL THEN 'scheduled' ELSE 'queued' END AS status,
                    u.envelope AS unconfirmed, u.priority
             FROM UNNEST($2::text[]) AS i(key)
             CROSS JOIN LATERAL (
                 SELECT key, request_hash, message_id FROM idempotency_keys
                 WHERE tenant_id = $1 AND key = i.key AND created_at > now() - interval '24 hours'
                 LIMIT 1) k
             LEFT JOIN messages m ON m.id = k.message_id
             LEFT JOIN unconfirmed_jobs u ON u.message_id = k.message_id",
        )
        .bind(tenant.as_uuid())
        .bind(keys)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Inserts the records (and their idempotency keys, parked jobs and
    /// unconfirmed jobs) in one transaction. `Err(Conflict)` when another request claimed one of
    /// the keys meanwhile: look the keys up again.
    /// How many messages `tenant` has recorded with an id at or after
    /// `first` (ids are UUIDv7: since the moment `first` was made). One
    /// range of the `(tenant_id, id)` index; the producer asks only when
    /// Redis lost the day's count of a tenant with a daily quota.
    pub async fn messages_since(&self, tenant: TenantId, first: Uuid) -> Result<u64> {
        let (n,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM messages WHERE tenant_id = $1 AND id >= $2")
                .bind(tenant.as_uuid())
                .bind(first)
                .fetch_one(&self.pool)
                .await?;
        Ok(n.max(0) as u64)
    }

    /// Returns the ids recorded `suppressed` (emails to an address on the
    /// tenant's suppression list): they have no job, so the caller must not
    /// publish them.
    pub async fn insert_messages(
        &self,
        tenant: TenantId,
        records: &[NewRecord],
    ) -> Result<HashSet<Uuid>> {
        if records.is_empty() {
            return Ok(HashSet::new());
        }
        let mut tx = self.pool.begin().await?;
        let ids: Vec<Uuid> = records.iter().map(|r| r.id.as_uuid()).collect();
        let channels: Vec<&str> = records.iter().map(|r| r.channel).collect();
        let recipients: Vec<&str> = records.iter().map(|r| r.recipient.as_str()).collect();
        let statuses: Vec<&str> = records.iter().map(|r| r.status.as_str()).collect();
        let priorities: Vec<i16> = records.iter().map(|r| r.priority).collect();
        let batches: Vec<Option<Uuid>> = records.iter().map(|r| r.batch_id).collect();
        let keys: Vec<Option<&str>> = records
            .iter()
            .map(|r| r.idempotency_key.as_deref())
            .collect();
        let metadata: Vec<String> = records.iter().map(|r| r.metadata.to_string()).collect();
        let scheduled: Vec<Option<DateTime<Utc>>> =
            records.iter().map(|r| r.scheduled_at).collect();
        // An email to an address on the tenant's suppression list is
        // recorded `suppressed` and gets no job (see below).
        let suppressed: HashSet<Uuid> = sqlx::query_scalar(concat!(
            "WITH ins AS (
                INSERT INTO messages (id, tenant_id, channel, recipient, status, priority, batch_id,
                                      idempotency_key, metadata, scheduled_at, error_code, error_message)
                SELECT u.id, $1, u.channel, u.recipient,
                       CASE WHEN s.reason IS NULL THEN u.status ELSE 'suppressed' END,
                       u.priority, u.batch_id, u.key, u.metadata::jsonb, u.scheduled_at,
                       CASE WHEN s.reason IS NULL THEN NULL ELSE 'suppressed' END,
                       CASE WHEN s.reason IS NULL THEN NULL
                            ELSE 'the address is on the tenant''s suppression list (' || s.reason || ')' END
                FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::int2[], $7::uuid[],
                            $8::text[], $9::text[], $10::timestamptz[])
                     AS u(id, channel, recipient, status, priority, batch_id, key, metadata, scheduled_at)
                LEFT JOIN suppressions s
                       ON u.channel = 'email' AND s.tenant_id = $1 AND s.address = lower(u.recipient)
                RETURNING id, tenant_id, status, error_message, created_at
             ), hooks AS (",
            webhook_outbox!(
                "SELECT tenant_id, id AS message_id, status AS event, created_at AS occurred_at,
                        error_message FROM ins WHERE status = 'suppressed'",
                "jsonb_build_object('error_code', 'suppressed', 'error_message', e.error_message)"
            ),
            ") SELECT id FROM ins WHERE status = 'suppressed'"
        ))
        .bind(tenant.as_uuid())
        .bind(&ids)
        .bind(&channels)
        .bind(&recipients)
        .bind(&statuses)
        .bind(&priorities)
        .bind(&batches)
        .bind(&keys)
        .bind(&metadata)
        .bind(&scheduled)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();

        let keyed: Vec<&NewRecord> = records
            .iter()
            .filter(|r| r.idempotency_key.is_some())
            .collect();
        if !keyed.is_empty() {
            let k_keys: Vec<&str> = keyed
                .iter()
                .filter_map(|r| r.idempotency_key.as_deref())
                .collect();
            let k_hashes: Vec<&[u8]> = keyed.iter().map(|r| r.request_hash.as_slice()).collect();
            let k_ids: Vec<Uuid> = keyed.iter().map(|r| r.id.as_uuid()).collect();
            // An expired key (older than 24 h) is taken over; a live one is a race lost.
            let done = sqlx::query(
                "INSERT INTO idempotency_keys (tenant_id, key, request_hash, message_id)
                 SELECT $1, u.key, u.hash, u.id FROM UNNEST($2::text[], $3::bytea[], $4::uuid[]) AS u(key, hash, id)
                 ON CONFLICT (tenant_id, key) DO UPDATE
                   SET request_hash = EXCLUDED.request_hash, message_id = EXCLUDED.message_id, created_at = now()
                   WHERE idempotency_keys.created_at <= now() - interval '24 hours'",
            )
            .bind(tenant.as_uuid())
            .bind(&k_keys)
            .bind(&k_hashes)
            .bind(&k_ids)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != keyed.len() as u64 {
                return Err(StoreError::Conflict("an idempotency key".into()));
            }
        }

        // Scheduled jobs wait in `parked_jobs`, due ones in the outbox until
        // their confirm is recorded; both tables take the same columns.
        for (scheduled, insert) in [
            (
                true,
                "INSERT INTO parked_jobs (message_id, tenant_id, channel, due_at, envelope)
                 SELECT u.id, $1, u.channel, u.due, u.env
                 FROM UNNEST($2::uuid[], $3::text[], $4::timestamptz[], $5::bytea[], $6::int2[])
                      AS u(id, channel, due, env, priority)",
            ),
            (
                false,
                "INSERT INTO unconfirmed_jobs (message_id, tenant_id, channel, envelope, priority)
                 SELECT u.id, $1, u.channel, u.env, u.priority
                 FROM UNNEST($2::uuid[], $3::text[], $4::timestamptz[], $5::bytea[], $6::int2[])
                      AS u(id, channel, due, env, priority)",
            ),
        ] {
            let jobs: Vec<&NewRecord> = records
                .iter()
                .filter(|r| r.envelope.is_some() && r.scheduled_at.is_some() == scheduled)
                .filter(|r| !suppressed.contains(&r.id.as_uuid()))
                .collect();
            if jobs.is_empty() {
                continue;
            }
            let j_ids: Vec<Uuid> = jobs.iter().map(|r| r.id.as_uuid()).collect();
            let j_channels: Vec<&str> = jobs.iter().map(|r| r.channel).collect();
            let j_due: Vec<DateTime<Utc>> = jobs
                .iter()
                .map(|r| r.scheduled_at.unwrap_or_else(Utc::now))
                .collect();
            let j_env: Vec<&[u8]> = jobs.iter().filter_map(|r| r.envelope.as_deref()).collect();
            let j_priority: Vec<i16> = jobs.iter().map(|r| r.priority).collect();
            sqlx::query(insert)
                .bind(tenant.as_uuid())
                .bind(&j_ids)
                .bind(&j_channels)
                .bind(&j_due)
                .bind(&j_env)
                .bind(&j_priority)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(suppressed)
    }

    /// One of `tenant`'s messages (another tenant's id is `None`).
    pub async fn message(&self, tenant: TenantId, id: MessageId) -> Result<Option<MessageRecord>> {
        let row: Option<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT_MESSAGE} WHERE m.id = $1 AND m.tenant_id = $2"
        )))
        .bind(id.as_uuid())
        .bind(tenant.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        row.map(decode_record).transpose()
    }

    /// Any tenant's message, for operators (the admin API).
    pub async fn any_message(&self, id: MessageId) -> Result<Option<MessageRecord>> {
        let row: Option<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT_MESSAGE} WHERE m.id = $1"
        )))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        row.map(decode_record).transpose()
    }

    /// A page of `tenant`'s messages, newest first; a row that does not
    /// decode is reported and left out, so one bad row does not hide a page.
    pub async fn list_messages(
        &self,
        tenant: TenantId,
        f: &MessageFilter,
    ) -> Result<Vec<MessageRecord>> {
        let rows: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT_MESSAGE} WHERE m.tenant_id = $1 AND ($2::text IS NULL OR m.status = $2)
               AND ($3::uuid IS NULL OR m.batch_id = $3) AND ($4::uuid IS NULL OR m.id < $4)
             ORDER BY m.id DESC LIMIT $5"
        )))
        .bind(tenant.as_uuid())
        .bind(f.status.map(MessageStatus::as_str))
        .bind(f.batch_id)
        .bind(f.before)
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(decode_all(rows, MessageRecord::try_from).0)
    }

    /// Cancels a message still waiting; `Ok(None)` if there is no such
    /// message, `Ok(Some(false))` if it is already sending or later.
    pub async fn cancel_message(&self, tenant: TenantId, id: MessageId) -> Result<Option<bool>> {
        let mut tx = self.pool.begin().await?;
        let status: Option<String> = sqlx::query_scalar(
            "SELECT status FROM messages WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
        )
        .bind(id.as_uuid())
        .bind(tenant.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(status) = status else {
            return Ok(None);
        };
        let cancellable = status
            .parse::<MessageStatus>()
            .map(MessageStatus::is_cancellable)
            .unwrap_or(false);
        if !cancellable {
            return Ok(Some(false));
        }
        sqlx::query(concat!(
            "WITH done AS (
                UPDATE messages SET status = 'cancelled', updated_at = now() WHERE id = $1
                RETURNING id, tenant_id, status, updated_at)",
            webhook_outbox!(
                "SELECT tenant_id, id AS message_id, status AS event, updated_at AS occurred_at FROM done",
                "'{}'::jsonb"
            )
        ))
        .bind(id.as_uuid())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM parked_jobs WHERE message_id = $1")
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(true))
    }

    /// Claims messages for sending in one statement: those still waiting
    /// become `sending` (attempt + 1); those found already `sending` — a
    /// worker died after handing them to a provider, or may have — become
    /// `in_doubt`. Anything else (sent, cancelled, …) is not returned and
    /// must not be sent. Rows are locked in id order so workers never deadlock.
    ///
    /// `resend[i]` is the in-doubt policy of message `i`'s channel: when
    /// set, a message found `sending` is claimed again (attempt + 1) and its
    /// `in_doubt_resends` counted, instead of being set aside — at most
    /// [`MAX_IN_DOUBT_RESENDS`] times, so a message that kills every worker
    /// sending it (a poison message) ends `in_doubt`, not in a crash loop.
    /// `previous_status` is then `in_doubt_resent`; `sending` means the
    /// message was set aside as `in_doubt`. A message claimed less than
    /// `live_for` ago may still be in another worker's hands: it is left
    /// as it is and comes back as `sending_live`, to be looked at later.
    /// So does one found `sending` by a second copy (`copies[i]`, a job
    /// published again because its first confirm was never recorded): the
    /// first copy may be mid-send, and if its worker died, the first copy's
    /// redelivery sets it aside.
    pub async fn claim_for_sending(
        &self,
        ids: &[Uuid],
        providers: &[Uuid],
        resend: &[bool],
        copies: &[bool],
        live_for: std::time::Duration,
    ) -> Result<Vec<ClaimedMessage>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(concat!(
            // `scheduled` is claimable: the scheduler publishes a due job
            // first and marks it `queued` in the transaction after the
            // confirm, so a fast worker can see it still `scheduled` (only
            // the release ever publishes a scheduled message's job).
            // Refusing it there acked the job unsent and left the record
            // `queued` for good (an e2e flake under CI load).
            //
            // One row per claimed message, its policy computed beside the
            // lock: every join is by primary key, so a window of n costs n
            // index lookups. (An earlier form joined CTE scans of the
            // window with each other, n² to n³ comparisons: 4 s per claim of
            // 256 under load, bench `scaling`.)
            "WITH input AS (SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bool[], $6::bool[]) AS i(id, provider_id, resend, copy)),
             prev AS (SELECT m.id, m.status, input.provider_id,
                             m.status = 'sending' AND NOT input.copy AND NOT (input.resend AND m.in_doubt_resends < $4) AS held,
                             m.status = 'sending' AND NOT input.copy AND input.resend AND m.in_doubt_resends < $4
                                 AND m.updated_at <= now() - make_interval(secs => $5) AS resent,
                             m.status = 'sending' AND (input.copy OR (input.resend AND m.in_doubt_resends < $4
                                 AND m.updated_at > now() - make_interval(secs => $5))) AS live
                      FROM input JOIN messages m ON m.id = input.id
                      WHERE m.status IN ('queued', 'pending', 'sending', 'scheduled')
                      ORDER BY m.id FOR UPDATE OF m),
             claimed AS (UPDATE messages m SET
                status = CASE WHEN prev.held THEN 'in_doubt' ELSE 'sending' END,
                attempts = m.attempts + CASE WHEN prev.held OR prev.live THEN 0 ELSE 1 END,
                in_doubt_resends = m.in_doubt_resends + CASE WHEN prev.resent THEN 1 ELSE 0 END,
                provider_id = CASE WHEN prev.live THEN m.provider_id ELSE prev.provider_id END,
                error_code = CASE WHEN prev.held THEN 'in_doubt' ELSE m.error_code END,
                error_message = CASE WHEN prev.held
                    THEN 'the worker sending this message stopped before recording the outcome'
                    ELSE m.error_message END,
                updated_at = CASE WHEN prev.live THEN m.updated_at ELSE now() END
             FROM prev
             WHERE m.id = prev.id
             RETURNING m.id, m.tenant_id, m.status, m.updated_at,
                CASE WHEN prev.resent THEN 'in_doubt_resent'
                     WHEN prev.live THEN 'sending_live'
                     ELSE prev.status END AS previous_status),
             hooks AS (",
            // A message set aside is reported to its tenant's webhook.
            webhook_outbox!(
                "SELECT tenant_id, id AS message_id, status AS event, updated_at AS occurred_at
                 FROM claimed WHERE status = 'in_doubt'",
                "jsonb_build_object('error_code', 'in_doubt')"
            ),
            ") SELECT id, previous_status FROM claimed"
        ))
        .bind(ids)
        .bind(providers)
        .bind(resend)
        .bind(MAX_IN_DOUBT_RESENDS)
        .bind(live_for.as_secs_f64())
        .bind(copies)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records the outcomes of sends in one statement. Only rows still
    /// `sending` change, so a late duplicate never overwrites a newer state.
    pub async fn record_outcomes(&self, outcomes: &[Outcome]) -> Result<u64> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = outcomes.iter().map(|o| o.id).collect();
        let statuses: Vec<&str> = outcomes.iter().map(|o| o.status.as_str()).collect();
        let codes: Vec<Option<&str>> = outcomes.iter().map(|o| o.error_code.as_deref()).collect();
        let texts: Vec<Option<&str>> = outcomes
            .iter()
            .map(|o| o.error_message.as_deref())
            .collect();
        // The tenant's webhook event of each change is written with it.
        let done: i64 = sqlx::query_scalar(concat!(
            "WITH done AS (
                UPDATE messages m SET status = u.status, error_code = u.code, error_message = u.text,
                    sent_at = CASE WHEN u.status = 'sent' THEN now() ELSE m.sent_at END,
                    in_doubt_resends = m.in_doubt_resends + CASE WHEN u.code = 'in_doubt_resent' THEN 1 ELSE 0 END,
                    updated_at = now()
                FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u(id, status, code, text)
                WHERE m.id = u.id AND m.status = 'sending'
                RETURNING m.id, m.tenant_id, m.status, m.provider_id, m.error_code, m.error_message, m.updated_at
             ), hooks AS (",
            webhook_outbox!(
                "SELECT tenant_id, id AS message_id, status AS event, updated_at AS occurred_at,
                        provider_id, error_code, error_message FROM done",
                "jsonb_strip_nulls(jsonb_build_object('provider_id', e.provider_id,
                     'error_code', e.error_code, 'error_message', e.error_message))"
            ),
            ") SELECT count(*) FROM done"
        ))
        .bind(&ids)
        .bind(&statuses)
        .bind(&codes)
        .bind(&texts)
        .fetch_one(&self.pool)
        .await?;
        Ok(done.max(0) as u64)
    }

    /// Marks records that wait for provider capacity `pending` (those
    /// still `queued`; one statement for a round of placements).
    pub async fn mark_pending(&self, ids: &[Uuid]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(sqlx::query(
            "UPDATE messages SET status = 'pending', updated_at = now()
             WHERE id = ANY($1) AND status = 'queued'",
        )
        .bind(ids)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Counts of `tenant`'s messages by status (demo summaries, tests).
    pub async fn status_counts(&self, tenant: Option<TenantId>) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT status, count(*) FROM messages WHERE ($1::uuid IS NULL OR tenant_id = $1)
             GROUP BY status ORDER BY status",
        )
        .bind(tenant.map(|t| t.as_uuid()))
        .fetch_all(&self.pool)
        .await?)
    }
}

/// How many times a message left in doubt is sent again under a resend
/// policy before it is set aside as `in_doubt`.
pub const MAX_IN_DOUBT_RESENDS: i32 = 3;

impl Store {
    /// Marks messages whose publish the broker did not confirm as failed
    /// (`unavailable`), if they are still queued: the caller was answered
    /// 503, so they must not go out later.
    pub async fn mark_unpublished(&self, ids: &[Uuid], reason: &str) -> Result<u64> {
        // The caller was refused (503): its idempotency keys are freed, so
        // that its retry under the same key is accepted afresh instead of
        // answering with this unpublished record.
        let done = sqlx::query(
            "WITH refused AS (
                UPDATE messages SET status = 'failed', error_code = 'unavailable', error_message = $2,
                    updated_at = now()
                WHERE id = ANY($1) AND status = 'queued'
                RETURNING id
             ), freed AS (
                DELETE FROM idempotency_keys WHERE message_id IN (SELECT id FROM refused)
             ), dropped AS (
                DELETE FROM unconfirmed_jobs WHERE message_id IN (SELECT id FROM refused)
             )
             SELECT count(*) FROM refused",
        )
        .bind(ids)
        .bind(reason)
        .fetch_one(&self.pool)
        .await?;
        Ok(sqlx::Row::get::<i64, _>(&done, 0) as u64)
    }
}
