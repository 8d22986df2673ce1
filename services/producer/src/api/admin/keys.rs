//! `/v1/admin/tenants/{id}/keys`: a tenant's API keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use herald_api::{ErrorBody, Key, RevokedKey};
use herald_domain::{ApiKeyId, TenantId};
use rand::RngCore;

use super::path_id;
use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::api::refusals::AdminAuthErrors;
use crate::api::AppState;

/// `POST /v1/admin/tenants/{id}/keys` → 201 `{id, tenant_id, key}`; the key
/// is shown only here, and stored hashed.
#[utoipa::path(
    post, path = "/v1/admin/tenants/{id}/keys", tag = "admin", operation_id = "create_key",
    summary = "Create an API key for a tenant (shown once)",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 201, description = "The key; only its hash is stored", body = Key),
        AdminAuthErrors,
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn create_key(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Key>), ApiError> {
    let tenant: TenantId = path_id(&id, "tenant")?;
    state
        .store
        .tenant(tenant)
        .await?
        .ok_or_else(|| ApiError::not_found("no such tenant"))?;
    let mut secret = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut secret);
    let key = format!("hk_{}", hex::encode(secret));
    let id = state.store.create_api_key(tenant, &key).await?;
    Ok((
        StatusCode::CREATED,
        Json(Key {
            id,
            tenant_id: tenant,
            key,
        }),
    ))
}

#[utoipa::path(
    delete, path = "/v1/admin/tenants/{id}/keys/{key_id}", tag = "admin", operation_id = "revoke_key",
    summary = "Revoke an API key",
    params(("id" = String, Path, description = "The tenant's id"), ("key_id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "Revoked", body = RevokedKey),
        AdminAuthErrors,
        (status = 404, description = "No such key, or it was revoked already", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    _: Admin,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<RevokedKey>, ApiError> {
    let tenant: TenantId = path_id(&id, "tenant")?;
    let key: ApiKeyId = path_id(&key_id, "key")?;
    if state.store.revoke_api_key(tenant, key).await? {
        // This producer refuses the key at once; other replicas within
        // their cache's 10 s.
        state.keys.forget_all();
        Ok(Json(RevokedKey {
            id: key,
            revoked: true,
        }))
    } else {
        Err(ApiError::not_found(
            "no such key, or it was revoked already",
        ))
    }
}
