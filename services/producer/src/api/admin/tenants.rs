//! `/v1/admin/tenants`: create, list, read, change, disable and enable tenants.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use herald_api::tenants::{TenantChange, TenantDraft};
use herald_api::{ErrorBody, NewTenant, Page, PageQuery, Tenant, TenantPatch};
use herald_domain::{TenantId, TenantStatus};

use super::path_id;
use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, QueryParams};
use crate::api::refusals::AdminAuthErrors;
use crate::api::AppState;

/// `POST /v1/admin/tenants` → 201 with the tenant. Its user queues are
/// declared before the record exists, so a scheduler that hears of the
/// tenant always finds them.
#[utoipa::path(
    post, path = "/v1/admin/tenants", tag = "admin", operation_id = "create_tenant",
    summary = "Create a tenant",
    request_body = NewTenant,
    responses(
        (status = 201, description = "Created", body = Tenant),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        AdminAuthErrors,
        (status = 409, description = "The code is taken", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "A field is invalid (named in `field`)", body = ErrorBody),
        (status = 503, description = "The broker or database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn create_tenant(
    State(state): State<AppState>,
    _: Admin,
    JsonBody(request): JsonBody<NewTenant>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    let draft = TenantDraft::try_from(request).map_err(ApiError::invalid_field)?;
    let tenant = herald_store::NewTenant {
        id: TenantId::new(),
        code: draft.code.as_str().to_owned(),
        name: draft.name,
        weight: draft.weight as i32,
        daily_quota: draft.daily_quota.map(|q| q.min(i64::MAX as u64) as i64),
        rate_limit_per_sec: draft.rate_limit_per_sec.map(|r| r as i32),
        webhook_url: draft.webhook_url.map(|u| u.as_str().to_owned()),
        webhook_events: draft.webhook_events.map(event_names),
        tracking: draft.tracking,
    };
    state
        .topology
        .declare_tenant(&state.broker, tenant.id)
        .await
        .map_err(|e| ApiError::internal("Failed to declare the tenant's queues", e))?;
    let row = match state.store.create_tenant(&tenant).await {
        Ok(row) => row,
        Err(e) => {
            // The queues were declared for an id that now names nothing.
            if let Err(e) = state.topology.forget_tenant(&state.broker, tenant.id).await {
                tracing::warn!(tenant_id = %tenant.id, error = %e, "Failed to delete the queues of a tenant that was not created.");
            }
            return Err(e.into());
        }
    };
    tracing::info!(tenant_id = %row.id, code = %row.code, "Created a tenant.");
    Ok((StatusCode::CREATED, Json(row)))
}

#[utoipa::path(
    get, path = "/v1/admin/tenants", tag = "admin", operation_id = "list_tenants",
    summary = "List tenants",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of tenants", body = Page<Tenant>),
        AdminAuthErrors,
        (status = 422, description = "A parameter is invalid (named in `field`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_tenants(
    State(state): State<AppState>,
    _: Admin,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Json<Page<Tenant>>, ApiError> {
    let (after, limit) = q.parse().map_err(ApiError::invalid_field)?;
    let rows = state
        .store
        .list_tenants(after, i64::from(limit) + 1)
        .await?;
    Ok(Json(Page::from_rows(
        rows,
        limit as usize,
        |t| t.id.to_string(),
        |t| t,
    )))
}

#[utoipa::path(
    get, path = "/v1/admin/tenants/{id}", tag = "admin", operation_id = "get_tenant",
    summary = "Read a tenant",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        AdminAuthErrors,
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn get_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    let id: TenantId = path_id(&id, "tenant")?;
    let row = state
        .store
        .tenant(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such tenant"))?;
    Ok(Json(row))
}

/// `PATCH /v1/admin/tenants/{id}` → 200 with the tenant. New limits apply
/// from the next request on, on every producer (the change is announced);
/// what was counted so far today still counts.
#[utoipa::path(
    patch, path = "/v1/admin/tenants/{id}", tag = "admin", operation_id = "update_tenant",
    summary = "Change a tenant's name, weight, limits or webhook",
    params(("id" = String, Path, description = "The tenant's id")),
    request_body = TenantPatch,
    responses(
        (status = 200, description = "The tenant, changed", body = Tenant),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        AdminAuthErrors,
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "A field is invalid (named in `field`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn update_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<TenantPatch>,
) -> Result<Json<Tenant>, ApiError> {
    let id: TenantId = path_id(&id, "tenant")?;
    let change = TenantChange::try_from(patch).map_err(ApiError::invalid_field)?;
    let change = herald_store::TenantChange {
        name: change.name,
        weight: change.weight.map(|w| w as i32),
        daily_quota: change
            .daily_quota
            .map(|q| q.map(|q| q.min(i64::MAX as u64) as i64)),
        rate_limit_per_sec: change.rate_limit_per_sec.map(|r| r.map(|r| r as i32)),
        webhook_url: change.webhook_url.map(|u| u.map(|u| u.as_str().to_owned())),
        webhook_events: change.webhook_events.map(|e| e.map(event_names)),
        tracking: change.tracking,
    };
    let row = state
        .store
        .update_tenant(id, &change)
        .await?
        .ok_or_else(|| ApiError::not_found("no such tenant"))?;
    state.keys.forget_all();
    tracing::info!(tenant_id = %row.id, daily_quota = ?row.daily_quota, rate_limit_per_sec = ?row.rate_limit_per_sec, weight = row.weight, "Changed a tenant.");
    Ok(Json(row))
}

fn event_names(events: Vec<herald_domain::WebhookEvent>) -> Vec<String> {
    events.iter().map(|e| e.as_str().to_owned()).collect()
}

async fn set_status(
    state: &AppState,
    id: &str,
    status: TenantStatus,
) -> Result<Json<Tenant>, ApiError> {
    let id: TenantId = path_id(id, "tenant")?;
    let row = state
        .store
        .set_tenant_status(id, status)
        .await?
        .ok_or_else(|| ApiError::not_found("no such tenant"))?;
    state.keys.forget_all();
    Ok(Json(row))
}

#[utoipa::path(
    post, path = "/v1/admin/tenants/{id}/disable", tag = "admin", operation_id = "disable_tenant",
    summary = "Disable a tenant (its keys are refused)",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The tenant, disabled", body = Tenant),
        AdminAuthErrors,
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn disable_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    set_status(&state, &id, TenantStatus::Disabled).await
}

#[utoipa::path(
    post, path = "/v1/admin/tenants/{id}/enable", tag = "admin", operation_id = "enable_tenant",
    summary = "Enable a tenant again",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The tenant, active", body = Tenant),
        AdminAuthErrors,
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn enable_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    set_status(&state, &id, TenantStatus::Active).await
}

#[utoipa::path(
    post, path = "/v1/admin/tenants/{id}/webhook-secret", tag = "admin", operation_id = "admin_rotate_webhook_secret",
    summary = "Make a new webhook signing secret for a tenant (shown only in this answer); the previous one signs beside it for 24 hours",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 201, description = "The new secret", body = herald_api::WebhookSecret),
        AdminAuthErrors,
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn admin_rotate_webhook_secret(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<herald_api::WebhookSecret>), ApiError> {
    let id: TenantId = path_id(&id, "tenant")?;
    state
        .store
        .tenant(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such tenant"))?;
    let secret = crate::api::webhooks::rotate(&state, id).await?;
    Ok((StatusCode::CREATED, Json(secret)))
}
