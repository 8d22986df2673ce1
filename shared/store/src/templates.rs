//! `templates` and `template_versions`: a tenant's templates, each version
//! kept as written. Every read is scoped to the tenant, so another tenant's
//! id reads as absent.

use chrono::{DateTime, Utc};
use herald_domain::{Channel, TemplateId, TemplateParts, TenantId};
use uuid::Uuid;

use crate::decode::{decode_all, RowError};
use crate::{conflict_or, Result, Store, StoreError, TEMPLATES_CHANNEL};

/// One version of a template, with the template's current version beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTemplate {
    pub id: TemplateId,
    pub tenant: TenantId,
    pub name: String,
    pub channel: Channel,
    /// The version this value holds.
    pub version: u32,
    /// The template's newest version.
    pub current_version: u32,
    pub parts: TemplateParts,
    pub created_at: DateTime<Utc>,
    /// When this version was written.
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct TemplateRow {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    channel: String,
    version: i32,
    current_version: i32,
    parts: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<TemplateRow> for StoredTemplate {
    type Error = RowError;

    fn try_from(row: TemplateRow) -> std::result::Result<StoredTemplate, RowError> {
        let bad = |reason: String| RowError::new("templates", row.id, reason);
        let channel: Channel = row
            .channel
            .parse()
            .map_err(|_| bad(format!("channel: {:?} is not a channel", row.channel)))?;
        let parts: TemplateParts = serde_json::from_value(row.parts.clone())
            .map_err(|e| bad(format!("parts of version {}: {e}", row.version)))?;
        let version = |v: i32| {
            u32::try_from(v)
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| bad(format!("version {v} is not at least 1")))
        };
        Ok(StoredTemplate {
            id: TemplateId(row.id),
            tenant: TenantId(row.tenant_id),
            name: row.name,
            channel,
            version: version(row.version)?,
            current_version: version(row.current_version)?,
            parts,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

fn decode(row: TemplateRow) -> Result<StoredTemplate> {
    StoredTemplate::try_from(row).map_err(|e| {
        e.report();
        StoreError::Undecodable(e)
    })
}

/// The columns of a version joined with its template.
const SELECT: &str =
    "SELECT t.id, t.tenant_id, t.name, t.channel, v.version, t.version AS current_version,
        v.parts, t.created_at, v.created_at AS updated_at
   FROM templates t JOIN template_versions v ON v.template_id = t.id";

/// Tells every producer that the template's current version changed (at
/// commit), so none pins a message to the one before.
async fn announce(tx: &mut sqlx::PgConnection, tenant: TenantId, id: TemplateId) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(TEMPLATES_CHANNEL)
        .bind(format!("{tenant}/{id}"))
        .execute(tx)
        .await?;
    Ok(())
}

/// Writes version `version` of the template and announces it (both at the
/// transaction's commit).
async fn write_version(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    id: TemplateId,
    version: i32,
    channel: Channel,
    parts: &serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO template_versions (template_id, version, channel, parts) VALUES ($1, $2, $3, $4)",
    )
    .bind(id.as_uuid())
    .bind(version)
    .bind(channel.as_str())
    .bind(parts)
    .execute(&mut *tx)
    .await?;
    announce(tx, tenant, id).await
}

fn parts_json(parts: &TemplateParts) -> Result<serde_json::Value> {
    serde_json::to_value(parts).map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))
}

impl Store {
    /// A new template at version 1. A name the tenant already uses is
    /// [`StoreError::Conflict`].
    pub async fn create_template(
        &self,
        tenant: TenantId,
        id: TemplateId,
        name: &str,
        channel: Channel,
        parts: &TemplateParts,
    ) -> Result<StoredTemplate> {
        let parts = parts_json(parts)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO templates (id, tenant_id, name, channel, version) VALUES ($1, $2, $3, $4, 1)",
        )
        .bind(id.as_uuid())
        .bind(tenant.as_uuid())
        .bind(name)
        .bind(channel.as_str())
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, &format!("a template named {name:?}")))?;
        write_version(&mut tx, tenant, id, 1, channel, &parts).await?;
        tx.commit().await?;
        self.template(tenant, id, None)
            .await?
            .ok_or_else(|| StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// Writes `parts` as the template's next version, of `channel` (and
    /// renames it when `name` is given). `None`: no such template of this
    /// tenant.
    pub async fn put_template(
        &self,
        tenant: TenantId,
        id: TemplateId,
        name: Option<&str>,
        channel: Channel,
        parts: &TemplateParts,
    ) -> Result<Option<StoredTemplate>> {
        let parts = parts_json(parts)?;
        let mut tx = self.pool.begin().await?;
        let version: Option<i32> = sqlx::query_scalar(
            "UPDATE templates SET version = version + 1, name = COALESCE($3, name), channel = $4,
                    updated_at = now()
              WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL
             RETURNING version",
        )
        .bind(id.as_uuid())
        .bind(tenant.as_uuid())
        .bind(name)
        .bind(channel.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| conflict_or(e, &format!("a template named {:?}", name.unwrap_or(""))))?;
        let Some(version) = version else {
            return Ok(None);
        };
        write_version(&mut tx, tenant, id, version, channel, &parts).await?;
        tx.commit().await?;
        self.template(tenant, id, None).await
    }

    /// The template's current version, or `version`; `None` when the
    /// tenant has no such template (deleted ones included) or version.
    pub async fn template(
        &self,
        tenant: TenantId,
        id: TemplateId,
        version: Option<u32>,
    ) -> Result<Option<StoredTemplate>> {
        self.read_version(tenant, id, version, false).await
    }

    /// A version as written, whether or not the template was deleted since:
    /// what a worker renders for a message queued before the delete.
    pub async fn template_version(
        &self,
        tenant: TenantId,
        id: TemplateId,
        version: u32,
    ) -> Result<Option<StoredTemplate>> {
        self.read_version(tenant, id, Some(version), true).await
    }

    /// `version` (the current one when `None`) of the tenant's template;
    /// of a deleted template only when `deleted` says so.
    async fn read_version(
        &self,
        tenant: TenantId,
        id: TemplateId,
        version: Option<u32>,
        deleted: bool,
    ) -> Result<Option<StoredTemplate>> {
        let row: Option<TemplateRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE t.id = $1 AND t.tenant_id = $2 AND ($4 OR t.deleted_at IS NULL)
                AND v.version = COALESCE($3, t.version)"
        )))
        .bind(id.as_uuid())
        .bind(tenant.as_uuid())
        .bind(version.map(|v| v as i32))
        .bind(deleted)
        .fetch_optional(&self.pool)
        .await?;
        row.map(decode).transpose()
    }

    /// The template's channel and current version, without its parts: what
    /// the producer reads per request to pin the version (the parts come
    /// from its cache).
    pub async fn current_template(
        &self,
        tenant: TenantId,
        id: TemplateId,
    ) -> Result<Option<(Channel, u32)>> {
        let row: Option<(String, i32)> = sqlx::query_as(
            "SELECT channel, version FROM templates WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL",
        )
        .bind(id.as_uuid())
        .bind(tenant.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        let Some((channel, version)) = row else {
            return Ok(None);
        };
        let bad = |reason: String| {
            let e = RowError::new("templates", id.as_uuid(), reason);
            e.report();
            StoreError::Undecodable(e)
        };
        let channel = channel
            .parse()
            .map_err(|_| bad(format!("channel: {channel:?} is not a channel")))?;
        let version = u32::try_from(version).map_err(|_| bad(format!("version {version}")))?;
        Ok(Some((channel, version)))
    }

    /// The tenant's templates (current versions) by id, after `after`.
    pub async fn list_templates(
        &self,
        tenant: TenantId,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<StoredTemplate>> {
        let rows: Vec<TemplateRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE t.tenant_id = $1 AND t.deleted_at IS NULL AND v.version = t.version
                AND ($2::uuid IS NULL OR t.id > $2)
              ORDER BY t.id LIMIT $3"
        )))
        .bind(tenant.as_uuid())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(decode_all(rows, StoredTemplate::try_from).0)
    }

    /// Deletes the template for new messages; its versions stay for those
    /// already queued. `false`: no such template of this tenant.
    pub async fn delete_template(&self, tenant: TenantId, id: TemplateId) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE templates SET deleted_at = now(), updated_at = now()
              WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL",
        )
        .bind(id.as_uuid())
        .bind(tenant.as_uuid())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        announce(&mut tx, tenant, id).await?;
        tx.commit().await?;
        Ok(true)
    }
}
