use chrono::{DateTime, Utc};
use herald_domain::provider_config::ProviderConfig;
use herald_domain::{Channel, Provider, ProviderId, ProviderKind, Quota, SendWindow, TenantId};
use serde_json::Value;
use uuid::Uuid;

use crate::decode::{decode_all, RowError};
use crate::metrics::UNDECODABLE_PROVIDERS;
use crate::{conflict_or, Result, Store, PROVIDERS_CHANNEL};

/// A provider row exactly as stored, for operators only: the admin API
/// shows what was written (secrets redacted), and must go on showing a row
/// that no longer decodes so that it can be seen and fixed. The services
/// never read this: they get [`Provider`]s, decoded once by
/// [`ProviderRow::decode`] (through [`Store::all_providers`] and the
/// catalog).
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

impl ProviderRow {
    /// The provider this row describes, every field parsed and validated
    /// as the admin API validates it on the way in; `Err` names the first
    /// field that does not (see [`crate::decode`] for what then happens).
    pub fn decode(&self) -> std::result::Result<Provider, RowError> {
        let bad = |reason: String| RowError::new("providers", self.id, reason);
        let kind: ProviderKind = self
            .kind
            .parse()
            .map_err(|e: herald_domain::FieldError| bad(e.to_string()))?;
        let channel: Channel = self
            .channel
            .parse()
            .map_err(|e: herald_domain::FieldError| bad(e.to_string()))?;
        if channel != kind.channel() {
            return Err(bad(format!(
                "channel: a {kind} provider serves the {} channel, not {channel}",
                kind.channel()
            )));
        }
        let config = ProviderConfig::parse(kind, &self.config).map_err(|e| bad(e.to_string()))?;
        let quota: Quota =
            serde_json::from_value(self.quota.clone()).map_err(|e| bad(format!("quota: {e}")))?;
        quota.validate().map_err(|e| bad(e.to_string()))?;
        let send_window = match &self.send_window {
            None | Some(Value::Null) => None,
            Some(raw) => {
                let window: SendWindow = serde_json::from_value(raw.clone())
                    .map_err(|e| bad(format!("send_window: {e}")))?;
                window.validate().map_err(|e| bad(e.to_string()))?;
                Some(window)
            }
        };
        let weight = u32::try_from(self.weight)
            .ok()
            .filter(|w| *w >= 1)
            .ok_or_else(|| bad(format!("weight: {} is not at least 1", self.weight)))?;
        Ok(Provider {
            id: ProviderId(self.id),
            tenant_id: self.tenant_id.map(TenantId),
            name: self.name.clone(),
            kind,
            channel,
            config,
            quota,
            send_window,
            weight,
            enabled: self.enabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
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

    /// Every provider that is not deleted and decodes, enabled or not (the
    /// services' cached view; they filter by `enabled` themselves). A row
    /// that does not decode is logged, counted and left out: the provider
    /// is unusable until fixed (the policy of [`crate::decode`]), and
    /// [`UNDECODABLE_PROVIDERS`] says how many there were at this read.
    pub async fn all_providers(&self) -> Result<Vec<Provider>> {
        let rows: Vec<ProviderRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM providers WHERE deleted_at IS NULL ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(decode_providers(rows))
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

/// The providers among `rows` that decode, the others reported.
pub(crate) fn decode_providers(rows: Vec<ProviderRow>) -> Vec<Provider> {
    let (providers, skipped) = decode_all(rows, |row| row.decode());
    metrics::gauge!(UNDECODABLE_PROVIDERS).set(skipped as f64);
    providers
}

async fn notify(tx: &mut sqlx::PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(PROVIDERS_CHANNEL)
        .bind(id.to_string())
        .execute(tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row() -> ProviderRow {
        ProviderRow {
            id: Uuid::now_v7(),
            tenant_id: Some(Uuid::now_v7()),
            name: "mail".into(),
            channel: "email".into(),
            kind: "smtp".into(),
            config: json!({"host": "127.0.0.1", "port": 2525}),
            quota: json!({"per_minute": 60, "concurrency": 4}),
            send_window: Some(json!({"tz": "UTC", "start": "09:00", "end": "18:00"})),
            weight: 7,
            enabled: true,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_row_that_decodes_carries_every_field_typed() {
        let r = row();
        let p = r.decode().expect("decodes");
        assert_eq!(p.id, ProviderId(r.id));
        assert_eq!(p.tenant_id, r.tenant_id.map(TenantId));
        assert_eq!((p.kind, p.channel), (ProviderKind::Smtp, Channel::Email));
        assert!(matches!(p.config, ProviderConfig::Smtp(ref c) if c.port == 2525));
        assert_eq!(p.quota.per_minute, Some(60));
        assert_eq!(p.send_window.map(|w| w.tz), Some("UTC".to_owned()));
        assert_eq!(p.weight, 7);
    }

    #[test]
    fn a_row_with_a_broken_field_does_not_decode_and_names_it() {
        type Spoil = fn(&mut ProviderRow);
        let cases: [(&str, Spoil); 5] = [
            ("config.port", |r| r.config = json!({"host": "h"})),
            ("quota", |r| r.quota = json!({"per_minute": "lots"})),
            ("quota.per_day", |r| r.quota = json!({"per_day": 0})),
            ("send_window.tz", |r| {
                r.send_window = Some(json!({"tz": "Mars/Base", "start": "09:00", "end": "18:00"}))
            }),
            ("channel", |r| r.channel = "wework".into()),
        ];
        for (field, spoil) in cases {
            let mut r = row();
            spoil(&mut r);
            let e = r.decode().expect_err(field);
            assert_eq!((e.table, e.id), ("providers", r.id));
            assert!(e.reason.starts_with(field), "{field}: {e}");
        }
    }

    #[test]
    fn a_null_send_window_is_no_window() {
        let mut r = row();
        r.send_window = Some(Value::Null);
        assert_eq!(r.decode().expect("decodes").send_window, None);
    }
}
