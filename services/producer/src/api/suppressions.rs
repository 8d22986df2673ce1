//! `/v1/suppressions`: the calling tenant's suppression list. An email to
//! an address on it is accepted and recorded `suppressed`, never sent.
//! Hard bounces and complaints add to it (decision 0027); the tenant adds
//! (`manual`, `unsubscribe`) and removes entries here.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use herald_api::{
    ErrorBody, NewSuppression, Page, Suppression, SuppressionQuery, SuppressionReason,
};
use herald_domain::{MessageId, TenantId};
use herald_store::SuppressionRow;

use super::auth::{Caller, Tenant};
use super::error::ApiError;
use super::extract::{JsonBody, QueryParams};
use super::refusals::TenantAuthErrors;
use super::AppState;

fn view(row: SuppressionRow) -> Result<Suppression, ApiError> {
    Ok(Suppression {
        reason: SuppressionReason::parse(&row.reason).ok_or_else(|| {
            ApiError::internal("A stored suppression's reason does not decode", &row.reason)
        })?,
        address: row.address,
        message_id: row.message_id.map(MessageId),
        created_at: row.created_at,
    })
}

/// `GET /v1/suppressions?cursor=&limit=`.
#[utoipa::path(
    get, path = "/v1/suppressions", tag = "suppressions", operation_id = "list_suppressions",
    summary = "List the tenant's suppressed addresses (address order)",
    params(SuppressionQuery),
    responses(
        (status = 200, description = "A page of entries", body = Page<Suppression>),
        TenantAuthErrors,
        (status = 422, description = "A parameter is invalid (named in `field`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_suppressions(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
    QueryParams(q): QueryParams<SuppressionQuery>,
) -> Result<Json<Page<Suppression>>, ApiError> {
    list(&state, tenant, &q).await
}

/// A page of `tenant`'s list (the tenant's route and the admin's).
pub async fn list(
    state: &AppState,
    tenant: TenantId,
    q: &SuppressionQuery,
) -> Result<Json<Page<Suppression>>, ApiError> {
    let (after, limit) = q.parse().map_err(ApiError::invalid_field)?;
    let rows = state
        .store
        .list_suppressions(tenant, after.as_deref(), i64::from(limit) + 1)
        .await?;
    let page = Page::from_rows(rows, limit as usize, |r| r.address.clone(), view);
    Ok(Json(Page {
        items: page.items.into_iter().collect::<Result<_, _>>()?,
        next_cursor: page.next_cursor,
    }))
}

/// `POST /v1/suppressions`: 201 when added, 200 when it was there already.
#[utoipa::path(
    post, path = "/v1/suppressions", tag = "suppressions", operation_id = "add_suppression",
    summary = "Suppress an address",
    request_body = NewSuppression,
    responses(
        (status = 200, description = "Already suppressed: the existing entry", body = Suppression),
        (status = 201, description = "Added", body = Suppression),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        TenantAuthErrors,
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "`address` is not an email address, or `reason` is not manual or unsubscribe", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn add_suppression(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
    JsonBody(body): JsonBody<NewSuppression>,
) -> Result<(StatusCode, Json<Suppression>), ApiError> {
    add(&state, tenant, &body).await
}

/// Adds to `tenant`'s list: 201, or 200 with the entry already there.
pub async fn add(
    state: &AppState,
    tenant: TenantId,
    body: &NewSuppression,
) -> Result<(StatusCode, Json<Suppression>), ApiError> {
    let (address, reason) = body.parse().map_err(ApiError::invalid_field)?;
    let (row, added) = state
        .store
        .add_suppression(tenant, &address, reason.as_str(), None)
        .await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(row)?)))
}

/// `DELETE /v1/suppressions/{address}` → 204.
#[utoipa::path(
    delete, path = "/v1/suppressions/{address}", tag = "suppressions", operation_id = "remove_suppression",
    summary = "Send to an address again",
    params(("address" = String, Path, description = "The suppressed address (any case)")),
    responses(
        (status = 204, description = "Removed"),
        TenantAuthErrors,
        (status = 404, description = "The address is not suppressed for this tenant", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn remove_suppression(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
    Path(address): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove(&state, tenant, &address).await
}

/// Removes from `tenant`'s list: 204, or 404 when it is not there.
pub async fn remove(
    state: &AppState,
    tenant: TenantId,
    address: &str,
) -> Result<StatusCode, ApiError> {
    let address = address.trim().to_lowercase();
    if address.contains('\0') {
        return Err(ApiError::not_found("the address is not suppressed"));
    }
    if state.store.remove_suppression(tenant, &address).await? {
        tracing::info!(tenant_id = %tenant, "Removed an address from the suppression list.");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("the address is not suppressed"))
    }
}
