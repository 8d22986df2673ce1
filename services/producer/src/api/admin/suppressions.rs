//! `/v1/admin/tenants/{id}/suppressions`: any tenant's suppression list,
//! for operators (the same list the tenant manages at `/v1/suppressions`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use herald_api::{ErrorBody, NewSuppression, Page, Suppression, SuppressionQuery};
use herald_domain::TenantId;

use super::path_id;
use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, QueryParams};
use crate::api::refusals::AdminAuthErrors;
use crate::api::{suppressions, AppState};

/// The tenant the path names; 404 when there is none.
async fn tenant(state: &AppState, id: &str) -> Result<TenantId, ApiError> {
    let tenant: TenantId = path_id(id, "tenant")?;
    state
        .store
        .tenant(tenant)
        .await?
        .ok_or_else(|| ApiError::not_found("no such tenant"))?;
    Ok(tenant)
}

#[utoipa::path(
    get, path = "/v1/admin/tenants/{id}/suppressions", tag = "admin", operation_id = "admin_list_suppressions",
    summary = "A tenant's suppressed addresses (address order)",
    params(("id" = String, Path, description = "The tenant's id"), SuppressionQuery),
    responses(
        (status = 200, description = "A page of entries", body = Page<Suppression>),
        AdminAuthErrors,
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 422, description = "A parameter is invalid (named in `field`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn admin_list_suppressions(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<SuppressionQuery>,
) -> Result<Json<Page<Suppression>>, ApiError> {
    let tenant = tenant(&state, &id).await?;
    suppressions::list(&state, tenant, &q).await
}

#[utoipa::path(
    post, path = "/v1/admin/tenants/{id}/suppressions", tag = "admin", operation_id = "admin_add_suppression",
    summary = "Suppress an address for a tenant",
    params(("id" = String, Path, description = "The tenant's id")),
    request_body = NewSuppression,
    responses(
        (status = 200, description = "Already suppressed: the existing entry", body = Suppression),
        (status = 201, description = "Added", body = Suppression),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        AdminAuthErrors,
        (status = 404, description = "No such tenant", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "`address` is not an email address, or `reason` is not manual or unsubscribe", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn admin_add_suppression(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<NewSuppression>,
) -> Result<(StatusCode, Json<Suppression>), ApiError> {
    let tenant = tenant(&state, &id).await?;
    suppressions::add(&state, tenant, &body).await
}

#[utoipa::path(
    delete, path = "/v1/admin/tenants/{id}/suppressions/{address}", tag = "admin", operation_id = "admin_remove_suppression",
    summary = "Let a tenant send to an address again",
    params(("id" = String, Path, description = "The tenant's id"), ("address" = String, Path, description = "The suppressed address (any case)")),
    responses(
        (status = 204, description = "Removed"),
        AdminAuthErrors,
        (status = 404, description = "No such tenant, or the address is not suppressed for it", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn admin_remove_suppression(
    State(state): State<AppState>,
    _: Admin,
    Path((id, address)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = tenant(&state, &id).await?;
    suppressions::remove(&state, tenant, &address).await
}
