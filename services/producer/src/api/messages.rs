//! `/v1/messages`: send, send a batch, read, list, cancel.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use herald_domain::MessageRecord;
use herald_domain::{FieldError, MessageId, MessageStatus, SendRequest};
use herald_store::MessageFilter;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Tenant;
use super::error::ApiError;
use super::extract::{JsonBody, MAX_BATCH_BODY, MAX_BODY};
use super::schema;
use super::AppState;
use crate::enqueue::{enqueue, Item};

/// Most items in one batch request.
pub const MAX_BATCH_ITEMS: usize = 1000;

/// `POST /v1/messages` → 202 `{id, status}`.
#[utoipa::path(
    post, path = "/v1/messages", tag = "messages", operation_id = "send_message",
    summary = "Send a message",
    request_body = schema::SendMessage,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same as the body's idempotency_key")),
    responses(
        (status = 202, description = "Recorded and confirmed by the broker", body = schema::Accepted),
        (status = 400, description = "The body is not JSON", body = schema::ErrorBody),
        schema::TenantAuthErrors,
        (status = 413, description = "The body is over 1 MiB", body = schema::ErrorBody),
        (status = 415, description = "The body is not application/json", body = schema::ErrorBody),
        (status = 422, description = "A field is invalid (named in `field`), or the idempotency key was used with another body", body = schema::ErrorBody),
        (status = 503, description = "The broker or database could not confirm; retry after `Retry-After` seconds", body = schema::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn send(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    JsonBody(mut body): JsonBody<MAX_BODY>,
) -> Result<Response, ApiError> {
    // The Idempotency-Key header is the same as the body's field.
    if let Some(key) = headers.get("idempotency-key") {
        let key = key.to_str().map_err(|_| {
            ApiError::invalid_field(FieldError::new("Idempotency-Key", "must be visible ASCII"))
        })?;
        if let Some(obj) = body.as_object_mut() {
            match obj.get("idempotency_key") {
                Some(Value::String(k)) if k != key => {
                    return Err(ApiError::invalid_field(FieldError::new(
                        "idempotency_key",
                        "differs from the Idempotency-Key header",
                    )))
                }
                _ => {
                    obj.insert("idempotency_key".into(), Value::String(key.to_owned()));
                }
            }
        }
    }
    let message = SendRequest::parse(&body, Utc::now()).map_err(ApiError::invalid_field)?;
    let item = Item::new(&body, message);
    drop(body);
    let accepted = enqueue(&state, tenant, vec![item]).await?;
    let first = accepted
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::internal("Enqueue returned nothing", "empty result"))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": first.id, "status": first.status})),
    )
        .into_response())
}

/// `POST /v1/messages/batch` → 202 `{ids}`, in request order; one bad item
/// rejects the whole request, naming its index and field.
#[utoipa::path(
    post, path = "/v1/messages/batch", tag = "messages", operation_id = "send_batch",
    summary = "Send up to 1,000 messages, all or nothing",
    request_body = schema::SendBatch,
    responses(
        (status = 202, description = "Every message recorded and confirmed", body = schema::BatchAccepted),
        (status = 400, description = "The body is not JSON", body = schema::ErrorBody),
        schema::TenantAuthErrors,
        (status = 413, description = "The body is over 16 MiB", body = schema::ErrorBody),
        (status = 422, description = "An item is invalid (`index` and `field` name it); nothing was sent", body = schema::ErrorBody),
        (status = 503, description = "The broker or database could not confirm; retry after `Retry-After` seconds", body = schema::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn send_batch(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    JsonBody(body): JsonBody<MAX_BATCH_BODY>,
) -> Result<Response, ApiError> {
    let messages = match body.get("messages") {
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::invalid_field(FieldError::new(
                "messages",
                "must be an array of messages",
            )))
        }
        None => {
            return Err(ApiError::invalid_field(FieldError::new(
                "messages",
                "is required",
            )))
        }
    };
    if let Some(extra) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "messages"))
    {
        return Err(ApiError::invalid_field(FieldError::new(
            extra.clone(),
            "is not a field of a batch request",
        )));
    }
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
    let mut items = Vec::with_capacity(messages.len());
    for (index, raw) in messages.iter().enumerate() {
        let message =
            SendRequest::parse(raw, now).map_err(|e| ApiError::invalid_field(e).at(index))?;
        items.push(Item::new(raw, message));
    }
    // The parsed messages are all the enqueue needs: free the JSON now.
    drop(body);
    let accepted = enqueue(&state, tenant, items).await?;
    let ids: Vec<_> = accepted.iter().map(|a| a.id).collect();
    Ok((StatusCode::ACCEPTED, Json(json!({ "ids": ids }))).into_response())
}

/// A record as the API shows it.
pub fn record_json(m: &MessageRecord) -> Value {
    json!({
        "id": m.id,
        "status": m.status,
        "channel": m.channel,
        "to": m.recipient,
        "provider": m.provider_id,
        "provider_name": m.provider_name,
        "attempts": m.attempts,
        "priority": m.priority,
        "batch_id": m.batch_id,
        "error_code": m.error_code,
        "error_message": m.error_message,
        "metadata": m.metadata,
        "scheduled_at": m.scheduled_at,
        "created_at": m.created_at,
        "sent_at": m.sent_at,
        "delivered_at": m.delivered_at,
        "events": [],
    })
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
        (status = 200, description = "The record", body = schema::MessageRecord),
        schema::TenantAuthErrors,
        (status = 404, description = "No such message for this tenant", body = schema::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let record = state
        .store
        .message(tenant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such message"))?;
    Ok(Json(record_json(&record)))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    batch_id: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// `GET /v1/messages?status=&batch_id=&cursor=&limit=` → `{items, next_cursor}`.
#[utoipa::path(
    get, path = "/v1/messages", tag = "messages", operation_id = "list_messages",
    summary = "List the tenant's messages",
    params(
        ("status" = Option<String>, Query, description = "Only records with this status"),
        ("batch_id" = Option<String>, Query, description = "Only records of this batch"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, description = "1 to 1,000; 100 when absent"),
    ),
    responses(
        (status = 200, description = "A page of records, newest first", body = schema::MessagePage),
        schema::TenantAuthErrors,
        (status = 422, description = "A filter is invalid", body = schema::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let invalid = |f: &str, m: &str| ApiError::invalid_field(FieldError::new(f, m));
    let status = q
        .status
        .as_deref()
        .map(|s| {
            s.parse::<MessageStatus>()
                .map_err(|e| invalid("status", &e))
        })
        .transpose()?;
    let batch_id = q
        .batch_id
        .as_deref()
        .map(|b| {
            b.parse::<uuid::Uuid>()
                .map_err(|_| invalid("batch_id", "is not a batch id"))
        })
        .transpose()?;
    let before = q
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse::<uuid::Uuid>()
                .map_err(|_| invalid("cursor", "is not a cursor from a previous page"))
        })
        .transpose()?;
    let limit = match q.limit.as_deref() {
        None => 100,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(invalid("limit", "must be an integer from 1 to 1000")),
        },
    };
    let filter = MessageFilter {
        status,
        batch_id,
        before,
        limit: limit + 1,
    };
    let mut rows = state.store.list_messages(tenant, &filter).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.to_string())
    } else {
        None
    };
    let items: Vec<Value> = rows.iter().map(record_json).collect();
    Ok(Json(json!({"items": items, "next_cursor": next})))
}

/// `POST /v1/messages/{id}/cancel`: only while queued, scheduled or pending.
#[utoipa::path(
    post, path = "/v1/messages/{id}/cancel", tag = "messages", operation_id = "cancel_message",
    summary = "Cancel a message that is not being sent yet",
    params(("id" = String, Path, description = "The message's id")),
    responses(
        (status = 200, description = "Cancelled", body = schema::Cancelled),
        schema::TenantAuthErrors,
        (status = 404, description = "No such message for this tenant", body = schema::ErrorBody),
        (status = 409, description = "Already sending or finished", body = schema::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    match state.store.cancel_message(tenant, id).await? {
        None => Err(ApiError::not_found("no such message")),
        Some(false) => Err(ApiError::conflict(
            "the message is already being sent or finished; it can no longer be cancelled",
        )),
        Some(true) => Ok(Json(json!({"id": id, "status": "cancelled"}))),
    }
}
