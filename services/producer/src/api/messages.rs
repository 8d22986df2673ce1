//! `/v1/messages`: send, send a batch, read, list, cancel.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use herald_api::{
    Accepted, BatchAccepted, Cancelled, ErrorBody, ListMessages, MessageRecord, Page, SendBatch,
    SendMessage, MAX_BATCH_ITEMS,
};
use herald_domain::{FieldError, MessageId, MessageStatus};
use herald_store::MessageFilter;

use super::auth::{Caller, Tenant};
use super::error::ApiError;
use super::extract::{JsonBody, QueryParams, MAX_BATCH_BODY};
use super::refusals::TenantAuthErrors;
use super::views;
use super::AppState;
use crate::enqueue::{enqueue, Item};

/// `POST /v1/messages` → 202 `{id, status}`.
#[utoipa::path(
    post, path = "/v1/messages", tag = "messages", operation_id = "send_message",
    summary = "Send a message",
    request_body = SendMessage,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same as the body's idempotency_key (when both are given they must be equal); HTTP drops spaces around it", pattern = "^[ \t]*[!-~](?:[\t -~]{0,253}[!-~])?[ \t]*$")),
    responses(
        (status = 202, description = "Recorded and confirmed by the broker", body = Accepted),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        TenantAuthErrors,
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "A field is invalid (named in `field`), or the idempotency key was used with another body", body = ErrorBody),
        (status = 429, description = "Over the tenant's rate limit (`rate_limited`) or daily quota (`quota_exceeded`); retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "The broker or database could not confirm; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn send(
    State(state): State<AppState>,
    Tenant(caller): Tenant,
    headers: HeaderMap,
    JsonBody(mut request): JsonBody<SendMessage>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    // The Idempotency-Key header is the same as the body's field.
    if let Some(key) = headers.get("idempotency-key") {
        let key = key.to_str().map_err(|_| {
            ApiError::invalid_field(FieldError::new("Idempotency-Key", "must be visible ASCII"))
        })?;
        match &request.idempotency_key {
            Some(k) if k != key => {
                return Err(ApiError::invalid_field(FieldError::new(
                    "idempotency_key",
                    "differs from the Idempotency-Key header",
                )))
            }
            _ => request.idempotency_key = Some(key.to_owned()),
        }
    }
    let item = Item::new(request, Utc::now()).map_err(ApiError::invalid_field)?;
    // A single message's refusal names its field, not an index.
    let accepted = enqueue(&state, caller, vec![item])
        .await
        .map_err(ApiError::unindexed)?;
    let first = accepted
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("Enqueue returned nothing", "empty result"))?;
    Ok((StatusCode::ACCEPTED, Json(first)))
}

/// `POST /v1/messages/batch` → 202 `{ids}`, in request order; one bad item
/// rejects the whole request, naming its index and field.
#[utoipa::path(
    post, path = "/v1/messages/batch", tag = "messages", operation_id = "send_batch",
    summary = "Send up to 1,000 messages, all or nothing",
    request_body = SendBatch,
    responses(
        (status = 202, description = "Every message recorded and confirmed", body = BatchAccepted),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        TenantAuthErrors,
        (status = 413, description = "The body is over 16 MiB", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
        (status = 422, description = "An item is invalid (`index` and `field` name it), or the batch is larger than the tenant's rate limit admits at once (`field`: `messages`); nothing was sent", body = ErrorBody),
        (status = 429, description = "The batch would go over the tenant's rate limit (`rate_limited`) or daily quota (`quota_exceeded`, with what remains today); nothing was sent; retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "The broker or database could not confirm; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn send_batch(
    State(state): State<AppState>,
    Tenant(caller): Tenant,
    JsonBody(batch): JsonBody<SendBatch, MAX_BATCH_BODY>,
) -> Result<(StatusCode, Json<BatchAccepted>), ApiError> {
    let messages = batch.messages;
    if messages.is_empty() {
        return Err(ApiError::invalid_field(FieldError::new(
            "messages",
            "must hold at least one message",
        )));
    }
    if messages.len() > MAX_BATCH_ITEMS {
        return Err(ApiError::invalid_field(FieldError::new(
            "messages",
            format!(
                "at most {MAX_BATCH_ITEMS} messages per request, got {}",
                messages.len()
            ),
        )));
    }
    let now = Utc::now();
    let items = messages
        .into_iter()
        .enumerate()
        .map(|(index, request)| {
            Item::new(request, now).map_err(|e| ApiError::invalid_field(e).at(index))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let accepted = enqueue(&state, caller, items).await?;
    let ids = accepted.into_iter().map(|a| a.id).collect();
    Ok((StatusCode::ACCEPTED, Json(BatchAccepted { ids })))
}

fn parse_id(raw: &str) -> Result<MessageId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("no such message"))
}

/// `GET /v1/messages/{id}`; another tenant's message is 404.
#[utoipa::path(
    get, path = "/v1/messages/{id}", tag = "messages", operation_id = "get_message",
    summary = "Read a message's record",
    params(("id" = String, Path, description = "The message's id")),
    responses(
        (status = 200, description = "The record", body = MessageRecord),
        TenantAuthErrors,
        (status = 404, description = "No such message for this tenant", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
    Path(id): Path<String>,
) -> Result<Json<MessageRecord>, ApiError> {
    let id = parse_id(&id)?;
    let record = state
        .store
        .message(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such message"))?;
    let events = state.store.message_events(id).await?;
    Ok(Json(views::record_with_events(record, events)?))
}

/// `GET /v1/messages?status=&batch_id=&cursor=&limit=` → `{items, next_cursor}`.
#[utoipa::path(
    get, path = "/v1/messages", tag = "messages", operation_id = "list_messages",
    summary = "List the tenant's messages",
    params(ListMessages),
    responses(
        (status = 200, description = "A page of records, newest first", body = Page<MessageRecord>),
        TenantAuthErrors,
        (status = 422, description = "A filter is invalid", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
    QueryParams(q): QueryParams<ListMessages>,
) -> Result<Json<Page<MessageRecord>>, ApiError> {
    let q = q.parse().map_err(ApiError::invalid_field)?;
    let filter = MessageFilter {
        status: q.status,
        batch_id: q.batch_id.map(|b| b.as_uuid()),
        before: q.before.map(|b| b.as_uuid()),
        limit: i64::from(q.limit) + 1,
    };
    let rows = state.store.list_messages(tenant, &filter).await?;
    let page = Page::from_rows(rows, q.limit as usize, |r| r.id.to_string(), views::record);
    Ok(Json(Page {
        items: page.items.into_iter().collect::<Result<_, _>>()?,
        next_cursor: page.next_cursor,
    }))
}

/// `POST /v1/messages/{id}/cancel`: only while queued, scheduled or pending.
#[utoipa::path(
    post, path = "/v1/messages/{id}/cancel", tag = "messages", operation_id = "cancel_message",
    summary = "Cancel a message that is not being sent yet",
    params(("id" = String, Path, description = "The message's id")),
    responses(
        (status = 200, description = "Cancelled", body = Cancelled),
        TenantAuthErrors,
        (status = 404, description = "No such message for this tenant", body = ErrorBody),
        (status = 409, description = "Already sending or finished", body = ErrorBody),
        (status = 503, description = "The database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    Tenant(Caller { tenant, .. }): Tenant,
    Path(id): Path<String>,
) -> Result<Json<Cancelled>, ApiError> {
    let id = parse_id(&id)?;
    match state.store.cancel_message(tenant, id).await? {
        None => Err(ApiError::not_found("no such message")),
        Some(false) => Err(ApiError::conflict(
            "the message is already being sent or finished; it can no longer be cancelled",
        )),
        Some(true) => Ok(Json(Cancelled {
            id,
            status: MessageStatus::Cancelled,
        })),
    }
}
