use herald_domain::{ApiKeyId, TenantId, TenantStatus};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Result, Store};

/// Who an API key belongs to.
#[derive(Debug, Clone, Copy)]
pub struct ApiKeyOwner {
    pub key_id: ApiKeyId,
    pub tenant_id: TenantId,
    pub tenant_active: bool,
    /// The tenant's limits at enqueue (absent: unlimited).
    pub daily_quota: Option<u64>,
    pub rate_limit_per_sec: Option<u32>,
    /// The tenant's open and click tracking, stamped on its jobs.
    pub tracking: herald_domain::Tracking,
}

/// Keys are stored as their SHA-256: they are long random strings, so a
/// plain hash is enough and lookups stay one index probe.
pub fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

impl Store {
    /// Stores a new key for `tenant` (only its hash and a display prefix).
    pub async fn create_api_key(&self, tenant: TenantId, key: &str) -> Result<ApiKeyId> {
        let id = ApiKeyId::new();
        let prefix: String = key.chars().take(10).collect();
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, key_hash, prefix) VALUES ($1, $2, $3, $4)",
        )
        .bind(id.as_uuid())
        .bind(tenant.as_uuid())
        .bind(hash_key(key))
        .bind(prefix)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// The owner of an unrevoked key, if any.
    pub async fn api_key_owner(&self, key: &str) -> Result<Option<ApiKeyOwner>> {
        type Row = (Uuid, Uuid, String, Option<i64>, Option<i32>, bool, bool);
        let row: Option<Row> = sqlx::query_as(
            "SELECT k.id, k.tenant_id, t.status, t.daily_quota, t.rate_limit_per_sec,
                    t.track_opens, t.track_clicks
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(hash_key(key))
        .fetch_optional(&self.pool)
        .await?;
        Ok(
            row.map(|(key_id, tenant_id, status, quota, rate, opens, clicks)| {
                // A limit that does not decode (negative) fails closed: the
                // tenant is refused everything rather than left unlimited.
                let active = status.parse::<TenantStatus>() == Ok(TenantStatus::Active);
                let quota = quota.map(|q| u64::try_from(q).ok());
                let rate = rate.map(|r| u32::try_from(r).ok());
                let limits_ok = !matches!(quota, Some(None)) && !matches!(rate, Some(None));
                ApiKeyOwner {
                    key_id: key_id.into(),
                    tenant_id: tenant_id.into(),
                    // An unknown status is not active: a key fails closed.
                    tenant_active: active && limits_ok,
                    daily_quota: quota.flatten(),
                    rate_limit_per_sec: rate.flatten(),
                    tracking: herald_domain::Tracking { opens, clicks },
                }
            }),
        )
    }

    /// Revokes a key; `false` if it does not exist or was revoked already.
    pub async fn revoke_api_key(&self, tenant: TenantId, key: ApiKeyId) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL",
        )
        .bind(key.as_uuid())
        .bind(tenant.as_uuid())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
