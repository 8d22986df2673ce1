//! `/v1/admin/messages/{id}`: any tenant's message record.

use axum::extract::{Path, State};
use axum::Json;
use herald_api::{AdminMessageRecord, ErrorBody};
use herald_domain::MessageId;

use super::path_id;
use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::api::refusals::AdminAuthErrors;
use crate::api::{views, AppState};

/// `GET /v1/admin/messages/{id}`: any tenant's record, as the tenant's
/// `GET /v1/messages/{id}` shows it, plus its `tenant_id`.
#[utoipa::path(
    get, path = "/v1/admin/messages/{id}", tag = "admin", operation_id = "admin_get_message",
    summary = "Read any tenant's message record",
    params(("id" = String, Path, description = "The message's id")),
    responses(
        (status = 200, description = "The record and its tenant", body = AdminMessageRecord),
        AdminAuthErrors,
        (status = 404, description = "No such message", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn get_message(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<AdminMessageRecord>, ApiError> {
    let id: MessageId = path_id(&id, "message")?;
    let row = state
        .store
        .any_message(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such message"))?;
    let tenant_id = row.tenant_id;
    let events = state.store.message_events(id).await?;
    Ok(Json(AdminMessageRecord {
        tenant_id,
        record: views::record_with_events(row, events)?,
    }))
}
