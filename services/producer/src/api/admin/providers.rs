//! `/v1/admin/providers`: register, list, read, change and delete providers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use herald_api::providers::ProviderDraft;
use herald_api::{ErrorBody, NewProvider, Page, PageQuery, Provider, ProviderPatch};
use herald_domain::{ProviderId, ProviderKind};
use herald_store::ProviderRow;

use super::path_id;
use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, QueryParams};
use crate::api::refusals::AdminAuthErrors;
use crate::api::{views, AppState};

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::internal("Failed to encode a provider", e))
}

/// `POST /v1/admin/providers` → 201 with the provider (secrets redacted).
#[utoipa::path(
    post, path = "/v1/admin/providers", tag = "admin", operation_id = "create_provider",
    summary = "Register a provider",
    request_body = NewProvider,
    responses(
        (status = 201, description = "Created; secrets shown as ***", body = Provider),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        AdminAuthErrors,
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "A field is invalid (named in `field`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn create_provider(
    State(state): State<AppState>,
    _: Admin,
    JsonBody(request): JsonBody<NewProvider>,
) -> Result<(StatusCode, Json<Provider>), ApiError> {
    let draft = ProviderDraft::try_from(request).map_err(ApiError::invalid_field)?;
    if let Some(tenant) = draft.tenant_id {
        state.store.tenant(tenant).await?.ok_or_else(|| {
            ApiError::invalid_field(herald_domain::FieldError::new(
                "tenant_id",
                "no such tenant",
            ))
        })?;
    }
    let provider = herald_store::NewProvider {
        id: ProviderId::new(),
        tenant_id: draft.tenant_id.map(|t| t.as_uuid()),
        name: draft.name,
        channel: draft.kind.channel().as_str().to_owned(),
        kind: draft.kind.as_str().to_owned(),
        config: draft.raw_config,
        quota: to_json(&draft.quota)?,
        send_window: draft.send_window.as_ref().map(to_json).transpose()?,
        weight: draft.weight as i32,
        enabled: draft.enabled,
    };
    let row = state.store.create_provider(&provider).await?;
    tracing::info!(provider_id = %row.id, name = %row.name, kind = %row.kind, "Created a provider.");
    Ok((StatusCode::CREATED, Json(views::provider(row)?)))
}

#[utoipa::path(
    get, path = "/v1/admin/providers", tag = "admin", operation_id = "list_providers",
    summary = "List providers",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of providers", body = Page<Provider>),
        AdminAuthErrors,
        (status = 422, description = "A parameter is invalid (named in `field`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_providers(
    State(state): State<AppState>,
    _: Admin,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Json<Page<Provider>>, ApiError> {
    let (after, limit) = q.parse().map_err(ApiError::invalid_field)?;
    let rows = state
        .store
        .list_providers(after, i64::from(limit) + 1)
        .await?;
    let page = Page::from_rows(rows, limit as usize, |p| p.id.to_string(), views::provider);
    Ok(Json(Page {
        items: page.items.into_iter().collect::<Result<_, _>>()?,
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    get, path = "/v1/admin/providers/{id}", tag = "admin", operation_id = "get_provider",
    summary = "Read a provider",
    params(("id" = String, Path, description = "The provider's id")),
    responses(
        (status = 200, description = "The provider; secrets shown as ***", body = Provider),
        AdminAuthErrors,
        (status = 404, description = "No such provider", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn get_provider(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Provider>, ApiError> {
    let id: ProviderId = path_id(&id, "provider")?;
    let row = find_provider(&state, id).await?;
    Ok(Json(views::provider(row)?))
}

pub(super) async fn find_provider(
    state: &AppState,
    id: ProviderId,
) -> Result<ProviderRow, ApiError> {
    state
        .store
        .provider(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such provider"))
}

/// `PATCH /v1/admin/providers/{id}`: changes the given fields. A secret sent
/// back as `"***"` (as a GET shows it) keeps its stored value.
#[utoipa::path(
    patch, path = "/v1/admin/providers/{id}", tag = "admin", operation_id = "update_provider",
    summary = "Change a provider live",
    request_body = ProviderPatch,
    params(("id" = String, Path, description = "The provider's id")),
    responses(
        (status = 200, description = "The provider as changed", body = Provider),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        AdminAuthErrors,
        (status = 404, description = "No such provider", body = ErrorBody),
        (status = 409, description = "The new name is taken", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "A field is invalid (named in `field`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn update_provider(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<ProviderPatch>,
) -> Result<Json<Provider>, ApiError> {
    let id: ProviderId = path_id(&id, "provider")?;
    let current = find_provider(&state, id).await?;
    let kind: ProviderKind = current
        .kind
        .parse()
        .map_err(|e| ApiError::internal("A stored provider does not decode", e))?;
    let change = patch
        .validate(kind, &current.config)
        .map_err(ApiError::invalid_field)?;
    let patch = herald_store::ProviderPatch {
        name: change.name,
        config: change.config,
        quota: change.quota.as_ref().map(to_json).transpose()?,
        send_window: change
            .send_window
            .map(|w| w.as_ref().map(to_json).transpose())
            .transpose()?,
        weight: change.weight.map(|w| w as i32),
        enabled: change.enabled,
    };
    let row = state
        .store
        .update_provider(id, &patch)
        .await?
        .ok_or_else(|| ApiError::not_found("no such provider"))?;
    Ok(Json(views::provider(row)?))
}

#[utoipa::path(
    delete, path = "/v1/admin/providers/{id}", tag = "admin", operation_id = "delete_provider",
    summary = "Delete a provider",
    params(("id" = String, Path, description = "The provider's id")),
    responses(
        (status = 204, description = "Deleted"),
        AdminAuthErrors,
        (status = 404, description = "No such provider", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn delete_provider(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: ProviderId = path_id(&id, "provider")?;
    if state.store.delete_provider(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such provider"))
    }
}
