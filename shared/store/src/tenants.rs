use chrono::{DateTime, Utc};
use herald_domain::TenantId;
use uuid::Uuid;

use crate::{conflict_or, Result, Store, TENANTS_CHANNEL};

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct TenantRow {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub status: String,
    pub weight: i32,
    pub daily_quota: Option<i64>,
    pub rate_limit_per_sec: Option<i32>,
    pub webhook_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
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
}

const COLUMNS: &str = "id, code, name, status, weight, daily_quota, rate_limit_per_sec, webhook_url, created_at, updated_at";

impl Store {
    /// Creates a tenant and announces it to the schedulers.
    pub async fn create_tenant(&self, t: &NewTenant) -> Result<TenantRow> {
        let mut tx = self.pool.begin().await?;
        let row: TenantRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO tenants (id, code, name, weight, daily_quota, rate_limit_per_sec, webhook_url)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
        )))
        .bind(t.id.as_uuid())
        .bind(&t.code)
        .bind(&t.name)
        .bind(t.weight)
        .bind(t.daily_quota)
        .bind(t.rate_limit_per_sec)
        .bind(&t.webhook_url)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, &format!("a tenant with code {:?}", t.code)))?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(TENANTS_CHANNEL)
            .bind(row.id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn tenant(&self, id: TenantId) -> Result<Option<TenantRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tenants WHERE id = $1"
        )))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Tenants in creation order after `after`, at most `limit`.
    pub async fn list_tenants(&self, after: Option<Uuid>, limit: i64) -> Result<Vec<TenantRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tenants WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"
        )))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every active tenant (the scheduler's view).
    pub async fn active_tenants(&self) -> Result<Vec<TenantRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tenants WHERE status = 'active' ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Enables or disables a tenant and announces the change.
    pub async fn set_tenant_status(&self, id: TenantId, status: &str) -> Result<Option<TenantRow>> {
        let mut tx = self.pool.begin().await?;
        let row: Option<TenantRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE tenants SET status = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
        )))
        .bind(id.as_uuid())
        .bind(status)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(TENANTS_CHANNEL)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row)
    }
}
