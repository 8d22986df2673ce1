use chrono::{DateTime, Utc};
use herald_domain::{Tenant, TenantId, TenantStatus, Tracking, WebhookEvent};
use uuid::Uuid;

use crate::decode::{decode_all, RowError};
use crate::{conflict_or, Result, Store, StoreError, TENANTS_CHANNEL};

/// A tenant row as stored; handed out only as a decoded [`Tenant`].
#[derive(Debug, Clone, sqlx::FromRow)]
struct TenantRow {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub status: String,
    pub weight: i32,
    pub daily_quota: Option<i64>,
    pub rate_limit_per_sec: Option<i32>,
    pub webhook_url: Option<String>,
    pub webhook_events: Option<Vec<String>>,
    pub track_opens: bool,
    pub track_clicks: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = RowError;

    fn try_from(row: TenantRow) -> std::result::Result<Tenant, RowError> {
        let bad = |reason: String| RowError::new("tenants", row.id, reason);
        let status: TenantStatus = row
            .status
            .parse()
            .map_err(|e| bad(format!("status: {e}")))?;
        let weight = u32::try_from(row.weight)
            .ok()
            .filter(|w| *w >= 1)
            .ok_or_else(|| bad(format!("weight: {} is not at least 1", row.weight)))?;
        let daily_quota = row
            .daily_quota
            .map(|q| u64::try_from(q).map_err(|_| bad(format!("daily_quota: {q} is negative"))))
            .transpose()?;
        let rate_limit_per_sec = row
            .rate_limit_per_sec
            .map(|r| {
                u32::try_from(r).map_err(|_| bad(format!("rate_limit_per_sec: {r} is negative")))
            })
            .transpose()?;
        let webhook_events = row
            .webhook_events
            .map(|events| {
                events
                    .iter()
                    .map(|e| {
                        e.parse::<WebhookEvent>()
                            .map_err(|()| bad(format!("webhook_events: {e:?} is not an event")))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(Tenant {
            id: TenantId(row.id),
            code: row.code,
            name: row.name,
            status,
            weight,
            daily_quota,
            rate_limit_per_sec,
            webhook_url: row.webhook_url,
            webhook_events,
            tracking: Tracking {
                opens: row.track_opens,
                clicks: row.track_clicks,
            },
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// The tenant, or the error of an undecodable row (reported): a single
/// read never answers with a default.
fn decode_tenant(row: TenantRow) -> Result<Tenant> {
    Tenant::try_from(row).map_err(|e| {
        e.report();
        StoreError::Undecodable(e)
    })
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub id: TenantId,
    pub code: String,
    pub name: String,
    pub weight: i32,
    pub daily_quota: Option<i64>,
    pub rate_limit_per_sec: Option<i32>,
    pub webhook_url: Option<String>,
    /// `None`: every event.
    pub webhook_events: Option<Vec<String>>,
    pub tracking: Tracking,
}

/// `PATCH /v1/admin/tenants/{id}`, checked: `None` leaves a field as it
/// is; `Some(None)` clears a limit or the webhook.
#[derive(Debug, Clone, Default)]
pub struct TenantChange {
    pub name: Option<String>,
    pub weight: Option<i32>,
    pub daily_quota: Option<Option<i64>>,
    pub rate_limit_per_sec: Option<Option<i32>>,
    pub webhook_url: Option<Option<String>>,
    pub webhook_events: Option<Option<Vec<String>>>,
    pub tracking: Option<Tracking>,
}

const COLUMNS: &str = "id, code, name, status, weight, daily_quota, rate_limit_per_sec, webhook_url, webhook_events, track_opens, track_clicks, created_at, updated_at";

impl Store {
    /// Creates a tenant and announces it to the schedulers.
    pub async fn create_tenant(&self, t: &NewTenant) -> Result<Tenant> {
        let mut tx = self.pool.begin().await?;
        let row: TenantRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO tenants (id, code, name, weight, daily_quota, rate_limit_per_sec, webhook_url,
                                  webhook_events, track_opens, track_clicks)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
        )))
        .bind(t.id.as_uuid())
        .bind(&t.code)
        .bind(&t.name)
        .bind(t.weight)
        .bind(t.daily_quota)
        .bind(t.rate_limit_per_sec)
        .bind(&t.webhook_url)
        .bind(&t.webhook_events)
        .bind(t.tracking.opens)
        .bind(t.tracking.clicks)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, &format!("a tenant with code {:?}", t.code)))?;
        announce(&mut tx, row.id).await?;
        tx.commit().await?;
        decode_tenant(row)
    }

    pub async fn tenant(&self, id: TenantId) -> Result<Option<Tenant>> {
        let row: Option<TenantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tenants WHERE id = $1"
        )))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        row.map(decode_tenant).transpose()
    }

    /// Tenants in creation order after `after`, at most `limit`; a row that
    /// does not decode is reported and left out.
    pub async fn list_tenants(&self, after: Option<Uuid>, limit: i64) -> Result<Vec<Tenant>> {
        let rows: Vec<TenantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tenants WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"
        )))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(decode_all(rows, Tenant::try_from).0)
    }

    /// Every active tenant (the scheduler's view); a row that does not
    /// decode is reported and left out, so its queues are not drained.
    pub async fn active_tenants(&self) -> Result<Vec<Tenant>> {
        let rows: Vec<TenantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tenants WHERE status = 'active' ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(decode_all(rows, Tenant::try_from).0)
    }

    /// Changes a tenant and announces it (producers apply new limits, the
    /// schedulers a new weight); `None` if there is no such tenant.
    pub async fn update_tenant(&self, id: TenantId, c: &TenantChange) -> Result<Option<Tenant>> {
        let mut tx = self.pool.begin().await?;
        let row: Option<TenantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE tenants SET
                name = COALESCE($2, name),
                weight = COALESCE($3, weight),
                daily_quota = CASE WHEN $4 THEN $5 ELSE daily_quota END,
                rate_limit_per_sec = CASE WHEN $6 THEN $7 ELSE rate_limit_per_sec END,
                webhook_url = CASE WHEN $8 THEN $9 ELSE webhook_url END,
                webhook_events = CASE WHEN $10 THEN $11 ELSE webhook_events END,
                track_opens = COALESCE($12, track_opens),
                track_clicks = COALESCE($13, track_clicks),
                updated_at = now()
             WHERE id = $1 RETURNING {COLUMNS}"
        )))
        .bind(id.as_uuid())
        .bind(&c.name)
        .bind(c.weight)
        .bind(c.daily_quota.is_some())
        .bind(c.daily_quota.flatten())
        .bind(c.rate_limit_per_sec.is_some())
        .bind(c.rate_limit_per_sec.flatten())
        .bind(c.webhook_url.is_some())
        .bind(c.webhook_url.clone().flatten())
        .bind(c.webhook_events.is_some())
        .bind(c.webhook_events.clone().flatten())
        .bind(c.tracking.map(|t| t.opens))
        .bind(c.tracking.map(|t| t.clicks))
        .fetch_optional(&mut *tx)
        .await?;
        if row.is_some() {
            announce(&mut tx, id.as_uuid()).await?;
        }
        tx.commit().await?;
        row.map(decode_tenant).transpose()
    }

    /// Enables or disables a tenant and announces the change.
    pub async fn set_tenant_status(
        &self,
        id: TenantId,
        status: TenantStatus,
    ) -> Result<Option<Tenant>> {
        let mut tx = self.pool.begin().await?;
        let row: Option<TenantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE tenants SET status = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
        )))
        .bind(id.as_uuid())
        .bind(status.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        announce(&mut tx, id.as_uuid()).await?;
        tx.commit().await?;
        row.map(decode_tenant).transpose()
    }
}

/// Tells the schedulers and producers that tenant `id` changed (sent when
/// the transaction commits).
async fn announce(tx: &mut sqlx::PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(TENANTS_CHANNEL)
        .bind(id.to_string())
        .execute(tx)
        .await?;
    Ok(())
}
