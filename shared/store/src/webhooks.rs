//! Tenant webhooks (decision 0028): `webhook_deliveries` is an outbox. A
//! status change that a tenant's webhook takes writes its delivery in the
//! same statement as the change ([`webhook_outbox!`]); workers claim due
//! deliveries ([`Store::claim_webhook_deliveries`]), post them, and record
//! each attempt ([`Store::record_webhook_attempts`]).

use chrono::{DateTime, Utc};
use herald_domain::{DeliveryState, TenantId, WebhookEvent};
use serde_json::Value;
use uuid::Uuid;

use crate::{Result, Store};

/// The SQL of an `INSERT INTO webhook_deliveries` for the rows of
/// `$events` — a query naming `tenant_id`, `message_id`, `event` and
/// `occurred_at` — whose tenant has a webhook that takes the event;
/// `$detail` is each delivery's detail, an expression over the row `e`
/// (computed only for the rows kept). Used inside the statement that
/// changes the status, so the delivery commits or rolls back with it.
macro_rules! webhook_outbox {
    ($events:literal, $detail:literal) => {
        concat!(
            "INSERT INTO webhook_deliveries (tenant_id, message_id, event, occurred_at, detail)
             SELECT e.tenant_id, e.message_id, e.event, e.occurred_at, ",
            $detail,
            " FROM (",
            $events,
            ") e
             JOIN tenants t ON t.id = e.tenant_id
             WHERE t.webhook_url IS NOT NULL
               AND e.event = ANY ('{sent,failed,in_doubt,suppressed,cancelled,delivered,read,clicked,replied,bounced,complained}'::text[])
               AND (t.webhook_events IS NULL OR e.event = ANY (t.webhook_events))"
        )
    };
}
pub(crate) use webhook_outbox;

/// A due delivery, claimed for one attempt, with what the attempt needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueDelivery {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub message_id: Uuid,
    pub event: String,
    pub occurred_at: DateTime<Utc>,
    pub detail: Value,
    /// Attempts made before this one.
    pub attempts: i32,
    pub give_up_at: DateTime<Utc>,
    /// The tenant's webhook now (`None`: removed since).
    pub webhook_url: Option<String>,
    pub secret: Option<String>,
    /// The secret replaced by a rotation, while it still signs.
    pub previous_secret: Option<String>,
    pub recipient: Option<String>,
    pub channel: Option<String>,
    pub metadata: Option<Value>,
}

/// What became of one claimed delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub id: Uuid,
    /// Whether a request was made (`false`: postponed without trying).
    pub tried: bool,
    pub state: DeliveryState,
    /// The HTTP status answered, if any.
    pub status: Option<i32>,
    pub error: Option<String>,
    /// When the next attempt is due (`state` pending).
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// One delivery as the tenant's log shows it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub message_id: Uuid,
    pub event: String,
    pub occurred_at: DateTime<Utc>,
    pub detail: Value,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub give_up_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Filters of the delivery log.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    pub event: Option<WebhookEvent>,
    pub message_id: Option<Uuid>,
}

/// When a tenant's signing secret was made, and until when the one it
/// replaced still signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct SecretDates {
    pub created_at: DateTime<Utc>,
    pub previous_until: Option<DateTime<Utc>>,
}

const DELIVERY_COLUMNS: &str =
    "id, message_id, event, occurred_at, detail, state, attempts, next_attempt_at, give_up_at,
     last_attempt_at, last_status, last_error, delivered_at, created_at";

impl Store {
    /// Claims up to `limit` due deliveries for one attempt each: they are
    /// not due again until `lease` is over (so a worker that dies mid-post
    /// leaves them to another then). Oldest due first; deliveries another
    /// worker is claiming are skipped.
    pub async fn claim_webhook_deliveries(
        &self,
        limit: i64,
        lease: std::time::Duration,
    ) -> Result<Vec<DueDelivery>> {
        Ok(sqlx::query_as(
            "WITH due AS (
                SELECT id FROM webhook_deliveries
                WHERE state = 'pending' AND next_attempt_at <= now()
                ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
             ), claimed AS (
                UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $2)
                FROM due WHERE d.id = due.id
                RETURNING d.id, d.tenant_id, d.message_id, d.event, d.occurred_at, d.detail,
                          d.attempts, d.give_up_at
             )
             SELECT c.*, t.webhook_url, s.secret,
                    CASE WHEN s.previous_until > now() THEN s.previous END AS previous_secret,
                    m.recipient, m.channel, m.metadata
             FROM claimed c
             JOIN tenants t ON t.id = c.tenant_id
             LEFT JOIN webhook_secrets s ON s.tenant_id = c.tenant_id
             LEFT JOIN messages m ON m.id = c.message_id",
        )
        .bind(limit)
        .bind(lease.as_secs_f64())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a round of attempts in one statement.
    pub async fn record_webhook_attempts(&self, attempts: &[Attempt]) -> Result<u64> {
        if attempts.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = attempts.iter().map(|a| a.id).collect();
        let tried: Vec<bool> = attempts.iter().map(|a| a.tried).collect();
        let states: Vec<&str> = attempts.iter().map(|a| a.state.as_str()).collect();
        let statuses: Vec<Option<i32>> = attempts.iter().map(|a| a.status).collect();
        let errors: Vec<Option<&str>> = attempts.iter().map(|a| a.error.as_deref()).collect();
        let next: Vec<Option<DateTime<Utc>>> = attempts.iter().map(|a| a.next_attempt_at).collect();
        Ok(sqlx::query(
            "UPDATE webhook_deliveries d SET
                state = r.state,
                attempts = d.attempts + CASE WHEN r.tried THEN 1 ELSE 0 END,
                next_attempt_at = COALESCE(r.next_at, now()),
                last_attempt_at = CASE WHEN r.tried THEN now() ELSE d.last_attempt_at END,
                last_status = CASE WHEN r.tried THEN r.status ELSE d.last_status END,
                last_error = r.error,
                delivered_at = CASE WHEN r.state = 'delivered' THEN now() ELSE d.delivered_at END
             FROM UNNEST($1::uuid[], $2::bool[], $3::text[], $4::int4[], $5::text[], $6::timestamptz[])
                  AS r(id, tried, state, status, error, next_at)
             WHERE d.id = r.id AND d.state = 'pending'",
        )
        .bind(&ids)
        .bind(&tried)
        .bind(&states)
        .bind(&statuses)
        .bind(&errors)
        .bind(&next)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// A page of `tenant`'s delivery log, newest first, before `before`.
    pub async fn list_webhook_deliveries(
        &self,
        tenant: TenantId,
        filter: &DeliveryFilter,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
             WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id < $2)
               AND ($3::text IS NULL OR state = $3) AND ($4::text IS NULL OR event = $4)
               AND ($5::uuid IS NULL OR message_id = $5)
             ORDER BY id DESC LIMIT $6"
        )))
        .bind(tenant.as_uuid())
        .bind(before)
        .bind(filter.state.map(DeliveryState::as_str))
        .bind(filter.event.map(WebhookEvent::as_str))
        .bind(filter.message_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn webhook_delivery(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<Option<DeliveryRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2"
        )))
        .bind(tenant.as_uuid())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Makes a delivery due now, with a fresh 24 hours of retries (a
    /// delivered one is posted again, under the same event id). `None` if
    /// the tenant has no such delivery.
    pub async fn resend_webhook_delivery(
        &self,
        tenant: TenantId,
        id: Uuid,
        retry_for: std::time::Duration,
    ) -> Result<Option<DeliveryRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = now(),
                 give_up_at = now() + make_interval(secs => $3), last_error = NULL
             WHERE tenant_id = $1 AND id = $2 RETURNING {DELIVERY_COLUMNS}"
        )))
        .bind(tenant.as_uuid())
        .bind(id)
        .bind(retry_for.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Makes `secret` the tenant's signing secret; the one it replaces
    /// keeps signing beside it for `overlap`.
    pub async fn rotate_webhook_secret(
        &self,
        tenant: TenantId,
        secret: &str,
        overlap: std::time::Duration,
    ) -> Result<SecretDates> {
        Ok(sqlx::query_as(
            "INSERT INTO webhook_secrets (tenant_id, secret) VALUES ($1, $2)
             ON CONFLICT (tenant_id) DO UPDATE SET
                previous = webhook_secrets.secret,
                previous_until = now() + make_interval(secs => $3),
                secret = EXCLUDED.secret,
                created_at = now()
             RETURNING created_at, previous_until",
        )
        .bind(tenant.as_uuid())
        .bind(secret)
        .bind(overlap.as_secs_f64())
        .fetch_one(&self.pool)
        .await?)
    }

    /// When the tenant's secret was made (`None`: it has none yet).
    pub async fn webhook_secret_dates(&self, tenant: TenantId) -> Result<Option<SecretDates>> {
        Ok(sqlx::query_as(
            "SELECT created_at, CASE WHEN previous_until > now() THEN previous_until END AS previous_until
             FROM webhook_secrets WHERE tenant_id = $1",
        )
        .bind(tenant.as_uuid())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Deliveries waiting to be posted, and the age in seconds of the
    /// oldest due one (the dispatcher's backlog, for the metrics).
    pub async fn webhook_backlog(&self) -> Result<(i64, f64)> {
        Ok(sqlx::query_as(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(next_attempt_at)
                                  FILTER (WHERE next_attempt_at <= now())), 0)::float8
             FROM webhook_deliveries WHERE state = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_takes_exactly_the_webhook_events() {
        let sql = webhook_outbox!("SELECT 1", "'{}'");
        let list = sql
            .split("ANY ('{")
            .nth(1)
            .and_then(|s| s.split('}').next())
            .expect("the event list");
        let listed: Vec<&str> = list.split(',').collect();
        let known: Vec<&str> = WebhookEvent::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(listed, known);
    }
}
