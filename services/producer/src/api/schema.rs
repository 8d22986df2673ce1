//! The shapes of the API's bodies, for the OpenAPI document.
//!
//! The handlers parse requests from JSON themselves (so every bad input is
//! named field by field, API.md) and build responses with `json!`; these
//! types describe those same shapes for `/openapi.json`. They are never
//! built at run time. `tests/api.rs` checks the document against the
//! router, and the API tests check the bodies.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::ToSchema;

/// A message to send (`POST /v1/messages`).
#[derive(ToSchema)]
pub struct SendMessage {
    /// `email`, `wework` or `webhook`.
    #[schema(example = "email")]
    channel: String,
    /// An email address, WeWork user ids `u1|u2`, or an http(s) URL.
    #[schema(example = "alice@example.com")]
    to: String,
    /// Email only; optional when the provider has a default sender.
    from: Option<String>,
    /// Email only; required unless a template supplies it.
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    /// Instead of text/html.
    template_id: Option<String>,
    variables: Option<BTreeMap<String, String>>,
    /// 1 (lowest) to 10 (highest); 5 when absent.
    #[schema(minimum = 1, maximum = 10)]
    priority: Option<u8>,
    /// RFC 3339; a future time schedules the send.
    scheduled_at: Option<String>,
    batch_id: Option<String>,
    /// The same key within 24 h returns the same id and sends nothing.
    idempotency_key: Option<String>,
    /// Echoed back in records and webhooks.
    metadata: Option<BTreeMap<String, String>>,
}

/// `202`: the broker confirmed the message.
#[derive(ToSchema)]
pub struct Accepted {
    id: String,
    /// `queued`, or `scheduled` when `scheduled_at` is in the future.
    status: String,
}

/// `POST /v1/messages/batch`: all or nothing.
#[derive(ToSchema)]
pub struct SendBatch {
    /// 1 to 1,000 messages.
    messages: Vec<SendMessage>,
}

/// `202`: every message of the batch, ids in request order.
#[derive(ToSchema)]
pub struct BatchAccepted {
    ids: Vec<String>,
}

/// A message's record.
#[derive(ToSchema, serde::Serialize)]
pub struct MessageRecord {
    id: String,
    /// queued, scheduled, pending, sending, sent, delivered, read, clicked,
    /// replied, bounced, complained, failed, cancelled, suppressed, in_doubt.
    status: String,
    channel: String,
    to: String,
    /// The provider's id.
    provider: Option<String>,
    provider_name: Option<String>,
    attempts: u32,
    priority: u8,
    batch_id: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    metadata: BTreeMap<String, String>,
    scheduled_at: Option<String>,
    created_at: String,
    sent_at: Option<String>,
    delivered_at: Option<String>,
    events: Vec<Value>,
}

/// An operator's view of a record: the record plus its tenant.
#[derive(ToSchema, serde::Serialize)]
pub struct AdminMessageRecord {
    tenant_id: String,
    #[serde(flatten)]
    record: MessageRecord,
}

/// A page of records.
#[derive(ToSchema)]
pub struct MessagePage {
    items: Vec<MessageRecord>,
    /// Pass as `cursor` for the next page; null on the last.
    next_cursor: Option<String>,
}

/// `POST /v1/messages/{id}/cancel` → the message is cancelled.
#[derive(ToSchema)]
pub struct Cancelled {
    id: String,
    #[schema(example = "cancelled")]
    status: String,
}

/// Every 4xx and 5xx body.
#[derive(ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// unauthorized, forbidden, not_found, method_not_allowed,
    /// unsupported_media_type, invalid_json, invalid_field, conflict,
    /// idempotency_conflict, payload_too_large, rate_limited,
    /// quota_exceeded, unavailable.
    code: String,
    message: String,
    field: Option<String>,
    /// The item's index in a batch.
    index: Option<u32>,
}

/// `POST /v1/admin/tenants`.
#[derive(ToSchema)]
pub struct NewTenant {
    code: String,
    name: String,
    weight: Option<u32>,
    /// Messages per day; absent is unlimited.
    daily_quota: Option<u64>,
    /// Messages per second; absent is unlimited.
    rate_limit_per_sec: Option<u32>,
    webhook_url: Option<String>,
}

#[derive(ToSchema)]
pub struct Tenant {
    id: String,
    code: String,
    name: String,
    /// `active` or `disabled`.
    status: String,
    weight: u32,
    daily_quota: Option<u64>,
    rate_limit_per_sec: Option<u32>,
    webhook_url: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(ToSchema)]
pub struct TenantPage {
    items: Vec<Tenant>,
    next_cursor: Option<String>,
}

/// A new API key, shown once.
#[derive(ToSchema)]
pub struct NewKey {
    id: String,
    tenant_id: String,
    key: String,
}

#[derive(ToSchema)]
pub struct RevokedKey {
    id: String,
    revoked: bool,
}

/// Quota windows are rolling; `{}` is unlimited.
#[derive(ToSchema)]
pub struct Quota {
    per_minute: Option<u64>,
    per_hour: Option<u64>,
    per_day: Option<u64>,
    concurrency: Option<u32>,
}

#[derive(ToSchema)]
pub struct SendWindow {
    /// IANA time zone, e.g. `Asia/Shanghai`.
    tz: String,
    /// `HH:MM`.
    start: String,
    end: String,
    /// ISO weekdays, 1 = Monday.
    days: Vec<u8>,
}

/// `POST /v1/admin/providers`.
#[derive(ToSchema)]
pub struct NewProvider {
    name: String,
    /// Implied by `kind` when absent.
    channel: Option<String>,
    /// `smtp`, `wework` or `webhook`.
    kind: String,
    /// SMTP `{host, port, tls, ca_file?, accept_invalid_certs?, username?,
    /// password?, from?, pool_size?}`; WeWork `{base_url?, corp_id,
    /// corp_secret, agent_id, token?, encoding_aes_key?}`; webhook
    /// `{signing_secret, timeout_ms?, allow_private_addresses?}`.
    config: Value,
    quota: Option<Quota>,
    send_window: Option<SendWindow>,
    weight: Option<u32>,
    enabled: Option<bool>,
    /// A provider with a tenant serves only that tenant.
    tenant_id: Option<String>,
}

/// `PATCH /v1/admin/providers/{id}`: any subset of the fields; a secret
/// sent back as `***` keeps its stored value.
#[derive(ToSchema)]
pub struct ProviderPatch {
    name: Option<String>,
    config: Option<Value>,
    quota: Option<Quota>,
    send_window: Option<SendWindow>,
    weight: Option<u32>,
    enabled: Option<bool>,
}

/// A provider; secrets in `config` are shown as `***`.
#[derive(ToSchema)]
pub struct Provider {
    id: String,
    tenant_id: Option<String>,
    name: String,
    channel: String,
    kind: String,
    config: Value,
    quota: Quota,
    send_window: Option<SendWindow>,
    weight: u32,
    enabled: bool,
    created_at: String,
    updated_at: String,
}

#[derive(ToSchema)]
pub struct ProviderPage {
    items: Vec<Provider>,
    next_cursor: Option<String>,
}

#[derive(ToSchema)]
pub struct Deleted {
    id: String,
    deleted: bool,
}

/// A provider's current score and its parts.
#[derive(ToSchema)]
pub struct ProviderScore {
    provider_id: String,
    name: String,
    channel: String,
    eligible: bool,
    /// closed, open, half_open, disabled, outside_window, exhausted.
    state: String,
    total: f64,
    /// quota, headroom, success, latency, recent (each 0..1).
    parts: Value,
    /// Windows, leases, success rate, latency, consecutive failures.
    usage: Value,
    computed_at: String,
}

/// `POST /v1/admin/dead-letters/replay`: every filter is optional.
#[derive(ToSchema)]
pub struct ReplayRequest {
    tenant_id: Option<String>,
    provider_id: Option<String>,
    /// The dead letter's reason code, e.g. `in_doubt`.
    reason: Option<String>,
    /// 1 to 100,000; 1,000 when absent.
    limit: Option<u32>,
}

#[derive(ToSchema)]
pub struct ReplayReport {
    scanned: u64,
    replayed: u64,
    kept: u64,
}

/// One of the deployment's queues.
#[derive(ToSchema)]
pub struct QueueDepth {
    name: String,
    /// user, central, pending, delay, dead.
    kind: String,
    tenant_id: Option<String>,
    channel: Option<String>,
    exists: bool,
    /// Ready messages; null when the queue does not exist.
    messages: Option<u64>,
    consumers: Option<u32>,
}

#[derive(ToSchema)]
pub struct QueuePage {
    items: Vec<QueueDepth>,
    next_cursor: Option<String>,
}

/// The refusals of a route that takes a tenant's API key.
#[derive(utoipa::IntoResponses)]
pub enum TenantAuthErrors {
    #[response(status = 401, description = "Missing or invalid API key")]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = "The tenant is disabled")]
    Disabled(ErrorBody),
}

/// The refusals of an admin route.
#[derive(utoipa::IntoResponses)]
pub enum AdminAuthErrors {
    #[response(status = 401, description = "Missing or invalid admin token")]
    Unauthorized(ErrorBody),
    #[response(
        status = 403,
        description = "The admin API is off (no HERALD_ADMIN_TOKEN)"
    )]
    Off(ErrorBody),
}
