//! `/v1/webhooks`: the calling tenant's webhook (decision 0028) — its
//! settings, its signing secret (made and shown once here), the delivery
//! log, and resending a delivery. The admin sets `webhook_url` and
//! `webhook_events` on the tenant; workers post the events.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use herald_api::{DeliveryQuery, ErrorBody, Page, WebhookDelivery, WebhookSecret, WebhookSettings};
use herald_domain::{DeliveryState, MessageId, TenantId, WebhookEvent};
use herald_store::DeliveryRow;
use uuid::Uuid;

use super::auth::{Caller, Tenant};
use super::error::ApiError;
use super::extract::QueryParams;
use super::refusals::TenantAuthErrors;
use super::AppState;

/// How long a rotated-out secret keeps signing beside the new one.
pub const SECRET_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// How long a resent delivery is retried.
pub const RETRY_FOR: Duration = Duration::from_secs(24 * 3600);

fn view(row: DeliveryRow) -> Result<WebhookDelivery, ApiError> {
    let event: WebhookEvent = row.event.parse().map_err(|()| {
        ApiError::internal("A stored delivery's event does not decode", &row.event)
    })?;
    let state = DeliveryState::parse(&row.state).ok_or_else(|| {
        ApiError::internal("A stored delivery's state does not decode", &row.state)
    })?;
    Ok(WebhookDelivery {
        id: row.id,
        event,
        message_id: MessageId(row.message_id),
        occurred_at: row.occurred_at,
        detail: row.detail,
        state,
        attempts: row.attempts.max(0) as u32,
        next_attempt_at: (state == DeliveryState::Pending).then_some(row.next_attempt_at),
        give_up_at: row.give_up_at,
        last_attempt_at: row.last_attempt_at,
        last_status: row.last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.last_error,
        delivered_at: row.delivered_at,
        created_at: row.created_at,
    })
}

/// A delivery id from the path; an id that cannot be one is 404, like
/// one that names no delivery of this tenant.
fn delivery_id(raw: &str) -> Result<Uuid, ApiError> {
    (raw.len() == 36)
        .then(|| raw.parse::<Uuid>().ok())
        .flatten()
        .ok_or_else(|| ApiError::not_found("no such delivery"))
}

/// `GET /v1/webhooks`.
#[utoipa::path(
    get, path = "/v1/webhooks", tag = "webhooks", operation_id = "get_webhook",
    summary = "The tenant's webhook: where events go, which, and when its secret was made",
    responses(
        (status = 200, description = "The webhook's settings", body = WebhookSettings),
        TenantAuthErrors,
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_webhook(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
) -> Result<Json<WebhookSettings>, ApiError> {
    let row = state
        .store
        .tenant(tenant)
        .await?
        .ok_or_else(|| ApiError::not_found("no such tenant"))?;
    let dates = state.store.webhook_secret_dates(tenant).await?;
    Ok(Json(WebhookSettings {
        url: row.webhook_url,
        events: row.webhook_events,
        secret_created_at: dates.map(|d| d.created_at),
        previous_secret_valid_until: dates.and_then(|d| d.previous_until),
    }))
}

/// Makes a new signing secret for `tenant`.
pub async fn rotate(state: &AppState, tenant: TenantId) -> Result<WebhookSecret, ApiError> {
    let secret = format!("whsec_{}", hex::encode(rand::random::<[u8; 32]>()));
    let dates = state
        .store
        .rotate_webhook_secret(tenant, &secret, SECRET_OVERLAP)
        .await?;
    tracing::info!(tenant_id = %tenant, "Made a new webhook signing secret.");
    Ok(WebhookSecret {
        secret,
        created_at: dates.created_at,
        previous_valid_until: dates.previous_until,
    })
}

/// `POST /v1/webhooks/secret`.
#[utoipa::path(
    post, path = "/v1/webhooks/secret", tag = "webhooks", operation_id = "rotate_webhook_secret",
    summary = "Make a new signing secret (shown only in this answer); the previous one signs beside it for 24 hours",
    responses(
        (status = 201, description = "The new secret", body = WebhookSecret),
        TenantAuthErrors,
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
) -> Result<(StatusCode, Json<WebhookSecret>), ApiError> {
    Ok((StatusCode::CREATED, Json(rotate(&state, tenant).await?)))
}

/// `GET /v1/webhooks/deliveries`.
#[utoipa::path(
    get, path = "/v1/webhooks/deliveries", tag = "webhooks", operation_id = "list_webhook_deliveries",
    summary = "The delivery log, newest first",
    params(DeliveryQuery),
    responses(
        (status = 200, description = "A page of deliveries", body = Page<WebhookDelivery>),
        TenantAuthErrors,
        (status = 422, description = "A parameter is invalid (named in `field`)", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
    QueryParams(q): QueryParams<DeliveryQuery>,
) -> Result<Json<Page<WebhookDelivery>>, ApiError> {
    let q = q.parse().map_err(ApiError::invalid_field)?;
    let filter = herald_store::DeliveryFilter {
        state: q.state,
        event: q.event,
        message_id: q.message_id.map(|m| m.as_uuid()),
    };
    let rows = state
        .store
        .list_webhook_deliveries(tenant, &filter, q.before, i64::from(q.limit) + 1)
        .await?;
    let page = Page::from_rows(rows, q.limit as usize, |r| r.id.to_string(), view);
    Ok(Json(Page {
        items: page.items.into_iter().collect::<Result<_, _>>()?,
        next_cursor: page.next_cursor,
    }))
}

/// `GET /v1/webhooks/deliveries/{id}`.
#[utoipa::path(
    get, path = "/v1/webhooks/deliveries/{id}", tag = "webhooks", operation_id = "get_webhook_delivery",
    summary = "One delivery",
    params(("id" = String, Path, description = "The delivery's (the event's) id")),
    responses(
        (status = 200, description = "The delivery", body = WebhookDelivery),
        TenantAuthErrors,
        (status = 404, description = "The tenant has no such delivery", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get_delivery(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
    Path(id): Path<String>,
) -> Result<Json<WebhookDelivery>, ApiError> {
    let row = state
        .store
        .webhook_delivery(tenant, delivery_id(&id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("no such delivery"))?;
    Ok(Json(view(row)?))
}

/// `POST /v1/webhooks/deliveries/{id}/resend`.
#[utoipa::path(
    post, path = "/v1/webhooks/deliveries/{id}/resend", tag = "webhooks", operation_id = "resend_webhook_delivery",
    summary = "Post a delivery again now (under the same event id), retrying for another 24 hours",
    params(("id" = String, Path, description = "The delivery's (the event's) id")),
    responses(
        (status = 202, description = "Due now", body = WebhookDelivery),
        TenantAuthErrors,
        (status = 404, description = "The tenant has no such delivery", body = ErrorBody),
        (status = 409, description = "The tenant has no webhook_url to post to", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn resend_delivery(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<WebhookDelivery>), ApiError> {
    let id = delivery_id(&id)?;
    let has_url = state
        .store
        .tenant(tenant)
        .await?
        .is_some_and(|t| t.webhook_url.is_some());
    if !has_url {
        // 404 first: a delivery id of another tenant says nothing.
        state
            .store
            .webhook_delivery(tenant, id)
            .await?
            .ok_or_else(|| ApiError::not_found("no such delivery"))?;
        return Err(ApiError::conflict(
            "the tenant has no webhook_url; an admin sets it with PATCH /v1/admin/tenants/{id}",
        ));
    }
    let row = state
        .store
        .resend_webhook_delivery(tenant, id, RETRY_FOR)
        .await?
        .ok_or_else(|| ApiError::not_found("no such delivery"))?;
    tracing::info!(tenant_id = %tenant, delivery_id = %id, "Resending a webhook delivery.");
    Ok((StatusCode::ACCEPTED, Json(view(row)?)))
}
