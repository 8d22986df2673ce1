//! `/v1/admin/dead-letters/replay`: dead letters back to the scheduler.

use axum::extract::State;
use axum::Json;
use herald_api::dead_letters::ReplayFilter;
use herald_api::{ErrorBody, ReplayReport, ReplayRequest};

use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::api::extract::JsonBody;
use crate::api::refusals::AdminAuthErrors;
use crate::api::AppState;

/// `POST /v1/admin/dead-letters/replay` `{tenant_id?, provider_id?, reason?,
/// limit?}`: sends the matching dead letters back to the scheduler
/// (attempts reset) and answers what was scanned, replayed and kept.
#[utoipa::path(
    post, path = "/v1/admin/dead-letters/replay", tag = "admin", operation_id = "replay_dead_letters",
    summary = "Send dead letters back to the scheduler",
    request_body = ReplayRequest,
    responses(
        (status = 200, description = "What was scanned, replayed and kept", body = ReplayReport),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        AdminAuthErrors,
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "A field is invalid (named in `field`)", body = ErrorBody),
        (status = 503, description = "The broker or database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn replay_dead_letters(
    State(state): State<AppState>,
    _: Admin,
    JsonBody(request): JsonBody<ReplayRequest>,
) -> Result<Json<ReplayReport>, ApiError> {
    let filter = ReplayFilter::try_from(request).map_err(ApiError::invalid_field)?;
    let report = crate::replay::replay(
        &state.broker,
        &state.publisher,
        &state.topology,
        &state.store,
        &filter,
    )
    .await
    .map_err(|e| ApiError::unavailable(format!("The replay stopped: {e:#}"), 1))?;
    Ok(Json(report))
}
