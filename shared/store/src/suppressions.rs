//! A tenant's suppression list (`suppressions`): addresses never sent to
//! again. Enqueue checks it inside the records' insert
//! ([`Store::insert_messages`]); hard bounces and complaints add to it as
//! their callbacks are applied.

use chrono::{DateTime, Utc};
use herald_domain::TenantId;
use uuid::Uuid;

use crate::{Result, Store};

/// One entry.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SuppressionRow {
    pub address: String,
    /// `hard_bounce`, `complaint`, `unsubscribe` or `manual`.
    pub reason: String,
    pub message_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// A page of `tenant`'s entries in address order, after `after`.
    pub async fn list_suppressions(
        &self,
        tenant: TenantId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SuppressionRow>> {
        Ok(sqlx::query_as(
            "SELECT address, reason, message_id, created_at FROM suppressions
             WHERE tenant_id = $1 AND ($2::text IS NULL OR address > $2)
             ORDER BY address LIMIT $3",
        )
        .bind(tenant.as_uuid())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Adds `address` (already lower-cased) unless it is there; the entry
    /// and whether it was added now.
    pub async fn add_suppression(
        &self,
        tenant: TenantId,
        address: &str,
        reason: &str,
        message_id: Option<Uuid>,
    ) -> Result<(SuppressionRow, bool)> {
        let added: Option<SuppressionRow> = sqlx::query_as(
            "INSERT INTO suppressions (tenant_id, address, reason, message_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, address) DO NOTHING
             RETURNING address, reason, message_id, created_at",
        )
        .bind(tenant.as_uuid())
        .bind(address)
        .bind(reason)
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = added {
            return Ok((row, true));
        }
        let row = sqlx::query_as(
            "SELECT address, reason, message_id, created_at FROM suppressions
             WHERE tenant_id = $1 AND address = $2",
        )
        .bind(tenant.as_uuid())
        .bind(address)
        .fetch_one(&self.pool)
        .await?;
        Ok((row, false))
    }

    /// Removes `address`; `false` when it was not there.
    pub async fn remove_suppression(&self, tenant: TenantId, address: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM suppressions WHERE tenant_id = $1 AND address = $2")
                .bind(tenant.as_uuid())
                .bind(address)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }
}
