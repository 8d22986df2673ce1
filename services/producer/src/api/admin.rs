//! `/v1/admin/*`: tenants, their API keys, providers, any tenant's
//! message records, queue depths and dead-letter replay.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use herald_broker::lapin;
use herald_domain::provider_config::{ProviderConfig, SECRET_FIELDS};
use herald_domain::{
    Channel, FieldError, MessageId, ProviderId, ProviderKind, Quota, SendWindow, TenantId,
};
use herald_store::{NewProvider, NewTenant, ProviderPatch, ProviderRow, TenantRow};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::auth::Admin;
use super::error::ApiError;
use super::extract::{JsonBody, MAX_BODY};
use super::schema;
use super::AppState;

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_field(FieldError::new(field, message))
}

fn object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object()
        .ok_or_else(|| invalid("", "the body must be a JSON object"))
}

fn reject_unknown(obj: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(k, "is not a field of this request")),
        None => Ok(()),
    }
}

fn opt_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            herald_domain::check_text(field, s).map_err(ApiError::invalid_field)?;
            Ok(Some(s))
        }
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

fn opt_int(
    obj: &Map<String, Value>,
    field: &str,
    min: i64,
    max: i64,
) -> Result<Option<i64>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(invalid(
                field,
                format!("must be an integer from {min} to {max}"),
            )),
        },
    }
}

fn opt_bool(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(field, "must be true or false")),
    }
}

fn path_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(&format!("no such {what}")))
}

#[derive(Debug, Deserialize)]
pub struct Page {
    cursor: Option<String>,
    limit: Option<String>,
}

impl Page {
    fn parse(&self) -> Result<(Option<uuid::Uuid>, i64), ApiError> {
        let after = self
            .cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.parse()
                    .map_err(|_| invalid("cursor", "is not a cursor from a previous page"))
            })
            .transpose()?;
        let limit = match self.limit.as_deref() {
            None => 100,
            Some(l) => l
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| invalid("limit", "must be an integer from 1 to 1000"))?,
        };
        Ok((after, limit))
    }
}

fn page<T>(
    mut rows: Vec<T>,
    limit: i64,
    id: impl Fn(&T) -> uuid::Uuid,
    show: impl Fn(&T) -> Value,
) -> Value {
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| id(r).to_string())
    } else {
        None
    };
    json!({"items": rows.iter().map(show).collect::<Vec<_>>(), "next_cursor": next})
}

// ---- tenants ----

fn tenant_json(t: &TenantRow) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// `POST /v1/admin/tenants` → 201 with the tenant. Its user queues are
/// declared before the record exists, so a scheduler that hears of the
/// tenant always finds them.
#[utoipa::path(
    post, path = "/v1/admin/tenants", tag = "admin", operation_id = "create_tenant",
    summary = "Create a tenant",
    request_body = schema::NewTenant,
    responses(
        (status = 201, description = "Created", body = schema::Tenant),
        schema::AdminAuthErrors,
        (status = 422, description = "A field is invalid (named in `field`)", body = schema::ErrorBody),
        (status = 409, description = "The code is taken", body = schema::ErrorBody),
        (status = 503, description = "The broker or database is unavailable; retry after `Retry-After` seconds", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn create_tenant(
    State(state): State<AppState>,
    _: Admin,
    JsonBody(body): JsonBody<MAX_BODY>,
) -> Result<Response, ApiError> {
    let obj = object(&body)?;
    reject_unknown(
        obj,
        &[
            "code",
            "name",
            "weight",
            "daily_quota",
            "rate_limit_per_sec",
            "webhook_url",
        ],
    )?;
    let code = opt_str(obj, "code")?.ok_or_else(|| invalid("code", "is required"))?;
    let code_ok = !code.is_empty()
        && code.len() <= 64
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !code_ok {
        return Err(invalid("code", "must be 1 to 64 characters of a-z 0-9 - _"));
    }
    let name = opt_str(obj, "name")?.ok_or_else(|| invalid("name", "is required"))?;
    if name.is_empty() || name.len() > 200 {
        return Err(invalid("name", "must have 1 to 200 characters"));
    }
    let webhook_url = opt_str(obj, "webhook_url")?
        .map(|u| {
            herald_domain::WebhookUrl::parse("webhook_url", u).map_err(ApiError::invalid_field)
        })
        .transpose()?;
    let tenant = NewTenant {
        id: TenantId::new(),
        code: code.to_owned(),
        name: name.to_owned(),
        weight: opt_int(obj, "weight", 1, 1000)?.unwrap_or(1) as i32,
        daily_quota: opt_int(obj, "daily_quota", 1, i64::MAX)?,
        rate_limit_per_sec: opt_int(obj, "rate_limit_per_sec", 1, 1_000_000)?.map(|n| n as i32),
        webhook_url: webhook_url.map(|u| u.as_str().to_owned()),
    };
    state
        .topology
        .declare_tenant(&state.broker, tenant.id)
        .await
        .map_err(|e| ApiError::internal("Failed to declare the tenant's queues", e))?;
    let row = state.store.create_tenant(&tenant).await?;
    tracing::info!(tenant_id = %row.id, code = %row.code, "Created a tenant.");
    Ok((StatusCode::CREATED, Json(tenant_json(&row))).into_response())
}

#[utoipa::path(
    get, path = "/v1/admin/tenants", tag = "admin", operation_id = "list_tenants",
    summary = "List tenants",
    params(
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, description = "1 to 1,000; 100 when absent"),
    ),
    responses(
        (status = 200, description = "A page of tenants", body = schema::TenantPage),
        schema::AdminAuthErrors,
        (status = 422, description = "A field is invalid (named in `field`)", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_tenants(
    State(state): State<AppState>,
    _: Admin,
    Query(q): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let (after, limit) = q.parse()?;
    let rows = state.store.list_tenants(after, limit + 1).await?;
    Ok(Json(page(rows, limit, |t| t.id, tenant_json)))
}

#[utoipa::path(
    get, path = "/v1/admin/tenants/{id}", tag = "admin", operation_id = "get_tenant",
    summary = "Read a tenant",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The tenant", body = schema::Tenant),
        schema::AdminAuthErrors,
        (status = 404, description = "No such tenant", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn get_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: TenantId = path_id(&id, "tenant")?;
    let row = state
        .store
        .tenant(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such tenant"))?;
    Ok(Json(tenant_json(&row)))
}

async fn set_status(state: &AppState, id: &str, status: &str) -> Result<Json<Value>, ApiError> {
    let id: TenantId = path_id(id, "tenant")?;
    let row = state
        .store
        .set_tenant_status(id, status)
        .await?
        .ok_or_else(|| ApiError::not_found("no such tenant"))?;
    state.keys.forget_all();
    Ok(Json(tenant_json(&row)))
}

#[utoipa::path(
    post, path = "/v1/admin/tenants/{id}/disable", tag = "admin", operation_id = "disable_tenant",
    summary = "Disable a tenant (its keys are refused)",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The tenant, disabled", body = schema::Tenant),
        schema::AdminAuthErrors,
        (status = 404, description = "No such tenant", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn disable_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(&state, &id, "disabled").await
}

#[utoipa::path(
    post, path = "/v1/admin/tenants/{id}/enable", tag = "admin", operation_id = "enable_tenant",
    summary = "Enable a tenant again",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 200, description = "The tenant, active", body = schema::Tenant),
        schema::AdminAuthErrors,
        (status = 404, description = "No such tenant", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn enable_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(&state, &id, "active").await
}

/// `POST /v1/admin/tenants/{id}/keys` → 201 `{id, key}`; the key is shown
/// only here, and stored hashed.
#[utoipa::path(
    post, path = "/v1/admin/tenants/{id}/keys", tag = "admin", operation_id = "create_key",
    summary = "Create an API key for a tenant (shown once)",
    params(("id" = String, Path, description = "The tenant's id")),
    responses(
        (status = 201, description = "The key; only its hash is stored", body = schema::NewKey),
        schema::AdminAuthErrors,
        (status = 404, description = "No such tenant", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn create_key(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant: TenantId = path_id(&id, "tenant")?;
    state
        .store
        .tenant(tenant)
        .await?
        .ok_or_else(|| ApiError::not_found("no such tenant"))?;
    let mut secret = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut secret);
    let key = format!("hk_{}", hex::encode(secret));
    let key_id = state.store.create_api_key(tenant, &key).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": key_id, "tenant_id": tenant, "key": key})),
    )
        .into_response())
}

#[utoipa::path(
    delete, path = "/v1/admin/tenants/{id}/keys/{key_id}", tag = "admin", operation_id = "revoke_key",
    summary = "Revoke an API key",
    params(("id" = String, Path, description = "The tenant's id"), ("key_id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "Revoked", body = schema::RevokedKey),
        schema::AdminAuthErrors,
        (status = 404, description = "No such key, or it was revoked already", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    _: Admin,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let tenant: TenantId = path_id(&id, "tenant")?;
    let key: herald_domain::ApiKeyId = path_id(&key_id, "key")?;
    if state.store.revoke_api_key(tenant, key).await? {
        // This producer refuses the key at once; other replicas within
        // their cache's 10 s.
        state.keys.forget_all();
        Ok(Json(json!({"id": key, "revoked": true})))
    } else {
        Err(ApiError::not_found(
            "no such key, or it was revoked already",
        ))
    }
}

// ---- providers ----

pub fn provider_json(p: &ProviderRow) -> Value {
    json!({
        "id": p.id,
        "tenant_id": p.tenant_id,
        "name": p.name,
        "channel": p.channel,
        "kind": p.kind,
        "config": ProviderConfig::redact(&p.config),
        "quota": p.quota,
        "send_window": p.send_window,
        "weight": p.weight,
        "enabled": p.enabled,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    })
}

fn parse_quota(v: &Value) -> Result<Value, ApiError> {
    let quota: Quota =
        serde_json::from_value(v.clone()).map_err(|e| invalid("quota", e.to_string()))?;
    quota.validate().map_err(ApiError::invalid_field)?;
    serde_json::to_value(quota).map_err(|e| ApiError::internal("Failed to encode a quota", e))
}

fn parse_window(v: &Value) -> Result<Option<Value>, ApiError> {
    if v.is_null() {
        return Ok(None);
    }
    let window: SendWindow =
        serde_json::from_value(v.clone()).map_err(|e| invalid("send_window", e.to_string()))?;
    window.validate().map_err(ApiError::invalid_field)?;
    Ok(Some(v.clone()))
}

const PROVIDER_FIELDS: &[&str] = &[
    "name",
    "channel",
    "kind",
    "config",
    "quota",
    "send_window",
    "weight",
    "enabled",
    "tenant_id",
];

/// `POST /v1/admin/providers` → 201 with the provider (secrets redacted).
#[utoipa::path(
    post, path = "/v1/admin/providers", tag = "admin", operation_id = "create_provider",
    summary = "Register a provider",
    request_body = schema::NewProvider,
    responses(
        (status = 201, description = "Created; secrets shown as ***", body = schema::Provider),
        schema::AdminAuthErrors,
        (status = 422, description = "A field is invalid (named in `field`)", body = schema::ErrorBody),
        (status = 409, description = "The name is taken", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn create_provider(
    State(state): State<AppState>,
    _: Admin,
    JsonBody(body): JsonBody<MAX_BODY>,
) -> Result<Response, ApiError> {
    let obj = object(&body)?;
    reject_unknown(obj, PROVIDER_FIELDS)?;
    let name = opt_str(obj, "name")?.ok_or_else(|| invalid("name", "is required"))?;
    if name.is_empty() || name.len() > 128 {
        return Err(invalid("name", "must have 1 to 128 characters"));
    }
    let kind: ProviderKind = opt_str(obj, "kind")?
        .ok_or_else(|| invalid("kind", "is required"))?
        .parse()
        .map_err(ApiError::invalid_field)?;
    if let Some(channel) = opt_str(obj, "channel")? {
        let channel: Channel = channel.parse().map_err(ApiError::invalid_field)?;
        if channel != kind.channel() {
            return Err(invalid(
                "channel",
                format!("a {kind} provider serves the {} channel", kind.channel()),
            ));
        }
    }
    let config = obj
        .get("config")
        .ok_or_else(|| invalid("config", "is required"))?;
    ProviderConfig::parse(kind, config).map_err(ApiError::invalid_field)?;
    let quota = parse_quota(obj.get("quota").unwrap_or(&json!({})))?;
    let send_window = parse_window(obj.get("send_window").unwrap_or(&Value::Null))?;
    let tenant_id = match opt_str(obj, "tenant_id")? {
        None => None,
        Some(raw) => {
            let id: TenantId = raw
                .parse()
                .map_err(|_| invalid("tenant_id", "is not a tenant id"))?;
            state
                .store
                .tenant(id)
                .await?
                .ok_or_else(|| invalid("tenant_id", "no such tenant"))?;
            Some(id.as_uuid())
        }
    };
    let provider = NewProvider {
        id: ProviderId::new(),
        tenant_id,
        name: name.to_owned(),
        channel: kind.channel().as_str().to_owned(),
        kind: kind.as_str().to_owned(),
        config: config.clone(),
        quota,
        send_window,
        weight: opt_int(obj, "weight", 1, 10_000)?.unwrap_or(100) as i32,
        enabled: opt_bool(obj, "enabled")?.unwrap_or(true),
    };
    let row = state.store.create_provider(&provider).await?;
    tracing::info!(provider_id = %row.id, name = %row.name, kind = %row.kind, "Created a provider.");
    Ok((StatusCode::CREATED, Json(provider_json(&row))).into_response())
}

#[utoipa::path(
    get, path = "/v1/admin/providers", tag = "admin", operation_id = "list_providers",
    summary = "List providers",
    params(
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<u32>, Query, description = "1 to 1,000; 100 when absent"),
    ),
    responses(
        (status = 200, description = "A page of providers", body = schema::ProviderPage),
        schema::AdminAuthErrors,
        (status = 422, description = "A field is invalid (named in `field`)", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_providers(
    State(state): State<AppState>,
    _: Admin,
    Query(q): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    let (after, limit) = q.parse()?;
    let rows = state.store.list_providers(after, limit + 1).await?;
    Ok(Json(page(rows, limit, |p| p.id, provider_json)))
}

#[utoipa::path(
    get, path = "/v1/admin/providers/{id}", tag = "admin", operation_id = "get_provider",
    summary = "Read a provider",
    params(("id" = String, Path, description = "The provider's id")),
    responses(
        (status = 200, description = "The provider; secrets shown as ***", body = schema::Provider),
        schema::AdminAuthErrors,
        (status = 404, description = "No such provider", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn get_provider(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: ProviderId = path_id(&id, "provider")?;
    let row = find_provider(&state, id).await?;
    Ok(Json(provider_json(&row)))
}

async fn find_provider(state: &AppState, id: ProviderId) -> Result<ProviderRow, ApiError> {
    state
        .store
        .provider(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such provider"))
}

/// `GET /v1/admin/providers/{id}/score`: the provider's score now, as the
/// schedulers compute it (same weights, same Redis state), with its parts,
/// its usage per window and its circuit.
#[utoipa::path(
    get, path = "/v1/admin/providers/{id}/score", tag = "admin", operation_id = "provider_score",
    summary = "Explain a provider's current score",
    params(("id" = String, Path, description = "The provider's id")),
    responses(
        (status = 200, description = "The score, its parts and usage", body = schema::ProviderScore),
        schema::AdminAuthErrors,
        (status = 404, description = "No such provider", body = schema::ErrorBody),
        (status = 503, description = "The broker or database is unavailable; retry after `Retry-After` seconds", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn provider_score(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    use herald_scoring::{recent_mean, score, ProviderView, UNLIMITED};
    let id: ProviderId = path_id(&id, "provider")?;
    let row = find_provider(&state, id).await?;
    let Some(view) = ProviderView::from_row(&row) else {
        return Ok(Json(json!({
            "provider_id": row.id,
            "name": row.name,
            "channel": row.channel,
            "eligible": false,
            "state": "disabled",
            "total": 0.0,
        })));
    };
    // `recent` compares with the other providers of the channel.
    let rows = state.store.all_providers().await?;
    let views: Vec<ProviderView> = rows
        .iter()
        .filter_map(ProviderView::from_row)
        .filter(|v| v.channel == view.channel)
        .collect();
    let pairs: Vec<(uuid::Uuid, &herald_capacity::Limits)> =
        views.iter().map(|v| (v.id, &v.limits)).collect();
    let loads = state
        .capacity
        .load(&pairs)
        .await
        .map_err(|e| ApiError::unavailable(format!("Redis: {e}"), 1))?;
    let mean = recent_mean(views.iter().zip(loads.iter().map(Some)));
    let load = views
        .iter()
        .position(|v| v.id == view.id)
        .and_then(|i| loads.get(i));
    let now = chrono::Utc::now();
    let s = score(&view, load, mean, &state.weights, &state.health, now);
    let windows: Vec<Value> = view
        .limits
        .windows
        .iter()
        .enumerate()
        .map(|(i, (ms, limit))| {
            json!({
                "window_secs": ms / 1000,
                "limit": (*limit < UNLIMITED).then_some(*limit),
                "used": load.and_then(|l| l.used.get(i)).copied().unwrap_or(0),
            })
        })
        .collect();
    let mut body =
        serde_json::to_value(s).map_err(|e| ApiError::internal("Failed to encode a score", e))?;
    if let Value::Object(obj) = &mut body {
        obj.insert("provider_id".into(), json!(view.id));
        obj.insert("name".into(), json!(view.name));
        obj.insert("channel".into(), json!(view.channel));
        obj.insert("eligible".into(), json!(s.state.is_eligible()));
        obj.insert("weights".into(), json!(state.weights));
        obj.insert(
            "load".into(),
            json!({
                "windows": windows,
                "leases": load.map_or(0, |l| l.leases),
                "concurrency": view.limits.concurrency,
                "success_rate": load.and_then(|l| l.success_rate),
                "latency_ms": load.and_then(|l| l.latency_ms),
                "consecutive_failures": load.map_or(0, |l| l.consecutive_failures),
                "recent_use": herald_scoring::recent_use(&view, load),
                "recent_mean": mean,
            }),
        );
        obj.insert("computed_at".into(), json!(now));
    }
    Ok(Json(body))
}

/// `PATCH /v1/admin/providers/{id}`: changes the given fields. A secret sent
/// back as `"***"` (as a GET shows it) keeps its stored value.
#[utoipa::path(
    patch, path = "/v1/admin/providers/{id}", tag = "admin", operation_id = "update_provider",
    summary = "Change a provider live",
    request_body = schema::ProviderPatch,
    params(("id" = String, Path, description = "The provider's id")),
    responses(
        (status = 200, description = "The provider as changed", body = schema::Provider),
        schema::AdminAuthErrors,
        (status = 404, description = "No such provider", body = schema::ErrorBody),
        (status = 422, description = "A field is invalid (named in `field`)", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn update_provider(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<MAX_BODY>,
) -> Result<Json<Value>, ApiError> {
    let id: ProviderId = path_id(&id, "provider")?;
    let obj = object(&body)?;
    reject_unknown(
        obj,
        &[
            "name",
            "config",
            "quota",
            "send_window",
            "weight",
            "enabled",
        ],
    )?;
    let current = find_provider(&state, id).await?;
    let kind: ProviderKind = current.kind.parse().map_err(ApiError::invalid_field)?;
    let config = match obj.get("config") {
        None => None,
        Some(Value::Object(new)) => {
            let mut merged = new.clone();
            for field in SECRET_FIELDS {
                if merged.get(*field).and_then(Value::as_str) == Some("***") {
                    match current.config.get(*field) {
                        Some(old) => merged.insert((*field).to_owned(), old.clone()),
                        None => merged.remove(*field),
                    };
                }
            }
            let merged = Value::Object(merged);
            ProviderConfig::parse(kind, &merged).map_err(ApiError::invalid_field)?;
            Some(merged)
        }
        Some(_) => return Err(invalid("config", "must be an object")),
    };
    let patch = ProviderPatch {
        name: opt_str(obj, "name")?.map(str::to_owned),
        config,
        quota: obj.get("quota").map(parse_quota).transpose()?,
        send_window: obj.get("send_window").map(parse_window).transpose()?,
        weight: opt_int(obj, "weight", 1, 10_000)?.map(|w| w as i32),
        enabled: opt_bool(obj, "enabled")?,
    };
    let row = state
        .store
        .update_provider(id, &patch)
        .await?
        .ok_or_else(|| ApiError::not_found("no such provider"))?;
    Ok(Json(provider_json(&row)))
}

#[utoipa::path(
    delete, path = "/v1/admin/providers/{id}", tag = "admin", operation_id = "delete_provider",
    summary = "Delete a provider",
    params(("id" = String, Path, description = "The provider's id")),
    responses(
        (status = 200, description = "Deleted", body = schema::Deleted),
        schema::AdminAuthErrors,
        (status = 404, description = "No such provider", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn delete_provider(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: ProviderId = path_id(&id, "provider")?;
    if state.store.delete_provider(id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("no such provider"))
    }
}

/// `POST /v1/admin/dead-letters/replay` `{tenant_id?, provider_id?, reason?,
/// limit?}`: sends the matching dead letters back to the scheduler
/// (attempts reset) and answers what was scanned, replayed and kept.
#[utoipa::path(
    post, path = "/v1/admin/dead-letters/replay", tag = "admin", operation_id = "replay_dead_letters",
    summary = "Send dead letters back to the scheduler",
    request_body = schema::ReplayRequest,
    responses(
        (status = 200, description = "What was scanned, replayed and kept", body = schema::ReplayReport),
        schema::AdminAuthErrors,
        (status = 422, description = "A field is invalid (named in `field`)", body = schema::ErrorBody),
        (status = 503, description = "The broker or database is unavailable; retry after `Retry-After` seconds", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn replay_dead_letters(
    State(state): State<AppState>,
    _: Admin,
    JsonBody(body): JsonBody<MAX_BODY>,
) -> Result<Json<Value>, ApiError> {
    let obj = object(&body)?;
    reject_unknown(obj, &["tenant_id", "provider_id", "reason", "limit"])?;
    let uuid_field = |field: &str| -> Result<Option<uuid::Uuid>, ApiError> {
        opt_str(obj, field)?
            .map(|s| s.parse().map_err(|_| invalid(field, "must be an id")))
            .transpose()
    };
    let filter = crate::replay::Filter {
        tenant: uuid_field("tenant_id")?,
        provider: uuid_field("provider_id")?,
        reason: opt_str(obj, "reason")?.map(str::to_owned),
        limit: opt_int(obj, "limit", 1, 100_000)?.unwrap_or(1_000) as usize,
    };
    let report = crate::replay::replay(
        &state.broker,
        &state.publisher,
        &state.topology,
        &state.store,
        &filter,
    )
    .await
    .map_err(|e| ApiError::unavailable(format!("The replay stopped: {e:#}"), 1))?;
    Ok(Json(json!(report)))
}

// ---- messages and queues ----

/// `GET /v1/admin/messages/{id}`: any tenant's record, as the tenant's
/// `GET /v1/messages/{id}` shows it, plus its `tenant_id`.
#[utoipa::path(
    get, path = "/v1/admin/messages/{id}", tag = "admin", operation_id = "admin_get_message",
    summary = "Read any tenant's message record",
    params(("id" = String, Path, description = "The message's id")),
    responses(
        (status = 200, description = "The record and its tenant", body = schema::AdminMessageRecord),
        schema::AdminAuthErrors,
        (status = 404, description = "No such message", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn get_message(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: MessageId = path_id(&id, "message")?;
    let row = state
        .store
        .any_message(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such message"))?;
    let mut body = super::messages::record_json(&row);
    body["tenant_id"] = json!(row.tenant_id);
    Ok(Json(body))
}

/// One queue of the deployment, as `GET /v1/admin/queues` names it.
struct QueueRef {
    name: String,
    kind: &'static str,
    tenant_id: Option<TenantId>,
    channel: Option<Channel>,
}

/// Every queue of the deployment: the tenants' user queues (by tenant id,
/// then channel), the central queues, the return queue (jobs waiting to
/// come back to the scheduler), the delay tiers, the dead letters and the
/// callbacks.
async fn deployment_queues(state: &AppState) -> Result<Vec<QueueRef>, ApiError> {
    let t = &state.topology;
    let mut queues = Vec::new();
    let mut after = None;
    loop {
        let tenants = state.store.list_tenants(after, 1000).await?;
        for tenant in &tenants {
            let id = TenantId(tenant.id);
            queues.extend(Channel::ALL.iter().map(|c| QueueRef {
                name: t.user_queue(id, *c),
                kind: "user",
                tenant_id: Some(id),
                channel: Some(*c),
            }));
        }
        match tenants.last() {
            Some(last) if tenants.len() == 1000 => after = Some(last.id),
            _ => break,
        }
    }
    let core = |name: String, kind: &'static str, channel: Option<Channel>| QueueRef {
        name,
        kind,
        tenant_id: None,
        channel,
    };
    queues.extend(
        Channel::ALL
            .iter()
            .map(|c| core(t.central_queue(*c), "central", Some(*c))),
    );
    queues.push(core(t.return_queue(), "return", None));
    queues.extend(
        herald_broker::DELAY_TIERS
            .iter()
            .map(|s| core(t.delay_queue(*s), "delay", None)),
    );
    queues.push(core(t.dead_letter_queue(), "dead_letter", None));
    queues.push(core(t.callbacks_queue(), "callbacks", None));
    Ok(queues)
}

/// `GET /v1/admin/queues` → `{items, next_cursor: null}`, each item
/// `{name, kind, tenant_id, channel, exists, messages, consumers}`:
/// `messages` counts those ready for delivery (not those delivered and
/// unacked). A queue that does not exist is listed with `exists: false`.
/// Publish and deliver rates need RabbitMQ's management API, which Herald
/// does not use, so they are not reported.
#[utoipa::path(
    get, path = "/v1/admin/queues", tag = "admin", operation_id = "list_queues",
    summary = "Queue depths and consumers",
    responses(
        (status = 200, description = "Every queue of the deployment", body = schema::QueuePage),
        schema::AdminAuthErrors,
        (status = 503, description = "The broker or database is unavailable; retry after `Retry-After` seconds", body = schema::ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_queues(State(state): State<AppState>, _: Admin) -> Result<Json<Value>, ApiError> {
    let broker_down = |e: &dyn std::fmt::Display| {
        ApiError::unavailable(format!("RabbitMQ could not be asked: {e}"), 1)
    };
    let queues = deployment_queues(&state).await?;
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let mut ch = state.broker.channel().await.map_err(|e| broker_down(&e))?;
    let mut items = Vec::with_capacity(queues.len());
    for q in &queues {
        let depth = match ch
            .queue_declare(
                q.name.as_str().into(),
                passive,
                lapin::types::FieldTable::default(),
            )
            .await
        {
            Ok(d) => Some((d.message_count(), d.consumer_count())),
            // A passive declare of a missing queue closes the channel.
            Err(e) if matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if p.get_id() == 404) =>
            {
                ch = state.broker.channel().await.map_err(|e| broker_down(&e))?;
                None
            }
            Err(e) => return Err(broker_down(&e)),
        };
        items.push(json!({
            "name": q.name,
            "kind": q.kind,
            "tenant_id": q.tenant_id,
            "channel": q.channel.map(|c| c.as_str()),
            "exists": depth.is_some(),
            "messages": depth.map(|d| d.0),
            "consumers": depth.map(|d| d.1),
        }));
    }
    let _ = ch.close(200, "queues read".into()).await;
    Ok(Json(json!({"items": items, "next_cursor": null})))
}
