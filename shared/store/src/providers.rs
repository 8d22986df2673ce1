use chrono::{DateTime, Utc};
use herald_domain::ProviderId;
use serde_json::Value;
use uuid::Uuid;

use crate::{conflict_or, Result, Store, PROVIDERS_CHANNEL};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProviderRow {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub name: String,
    pub channel: String,
    pub kind: String,
    pub config: Value,
    pub quota: Value,
    pub send_window: Option<Value>,
    pub weight: i32,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewProvider {
    pub id: ProviderId,
    pub tenant_id: Option<Uuid>,
    pub name: String,
    pub channel: String,
    pub kind: String,
    pub config: Value,
    pub quota: Value,
    pub send_window: Option<Value>,
    pub weight: i32,
    pub enabled: bool,
}

/// Fields a PATCH may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProviderPatch {
    pub name: Option<String>,
    pub config: Option<Value>,
    pub quota: Option<Value>,
    /// `Some(None)` removes the window.
    pub send_window: Option<Option<Value>>,
    pub weight: Option<i32>,
    pub enabled: Option<bool>,
}

const COLUMNS: &str =
    "id, tenant_id, name, channel, kind, config, quota, send_window, weight, enabled, created_at, updated_at";

impl Store {
    pub async fn create_provider(&self, p: &NewProvider) -> Result<ProviderRow> {
        let mut tx = self.pool.begin().await?;
        let row: ProviderRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO providers (id, tenant_id, name, channel, kind, config, quota, send_window, weight, enabled)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
        )))
        .bind(p.id.as_uuid())
        .bind(p.tenant_id)
        .bind(&p.name)
        .bind(&p.channel)
        .bind(&p.kind)
        .bind(&p.config)
        .bind(&p.quota)
        .bind(&p.send_window)
        .bind(p.weight)
        .bind(p.enabled)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, &format!("a provider named {:?}", p.name)))?;
        notify(&mut tx, row.id).await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn provider(&self, id: ProviderId) -> Result<Option<ProviderRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM providers WHERE id = $1 AND deleted_at IS NULL"
        )))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn list_providers(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ProviderRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM providers WHERE deleted_at IS NULL AND ($1::uuid IS NULL OR id > $1)
             ORDER BY id LIMIT $2"
        )))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every provider that is not deleted, enabled or not (the services'
    /// cached view; they filter by `enabled` themselves).
    pub async fn all_providers(&self) -> Result<Vec<ProviderRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM providers WHERE deleted_at IS NULL ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn update_provider(
        &self,
        id: ProviderId,
        patch: &ProviderPatch,
    ) -> Result<Option<ProviderRow>> {
        let mut tx = self.pool.begin().await?;
        let row: Option<ProviderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE providers SET
                name = COALESCE($2, name),
                config = COALESCE($3, config),
                quota = COALESCE($4, quota),
                send_window = CASE WHEN $5 THEN $6 ELSE send_window END,
                weight = COALESCE($7, weight),
                enabled = COALESCE($8, enabled),
                updated_at = now()
             WHERE id = $1 AND deleted_at IS NULL RETURNING {COLUMNS}"
        )))
        .bind(id.as_uuid())
        .bind(&patch.name)
        .bind(&patch.config)
        .bind(&patch.quota)
        .bind(patch.send_window.is_some())
        .bind(patch.send_window.clone().flatten())
        .bind(patch.weight)
        .bind(patch.enabled)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, "a provider with that name"))?;
        if row.is_some() {
            notify(&mut tx, id.as_uuid()).await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    /// Soft-deletes a provider (records keep pointing at it).
    pub async fn delete_provider(&self, id: ProviderId) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE providers SET deleted_at = now(), enabled = false, updated_at = now()
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id.as_uuid())
        .execute(&mut *tx)
        .await?;
        notify(&mut tx, id.as_uuid()).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}

async fn notify(tx: &mut sqlx::PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(PROVIDERS_CHANNEL)
        .bind(id.to_string())
        .execute(tx)
        .await?;
    Ok(())
}
