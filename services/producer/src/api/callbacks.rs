//! `/v1/callbacks`: provider callbacks (docs/API.md "Callbacks", decision
//! 0027). Each is checked — the provider exists, the signature holds, the
//! timestamp is inside the replay window, the body parses — then published
//! to the callbacks queue with a confirm, and only then answered: a worker
//! stores and applies it. Nothing is written to PostgreSQL on this path.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use herald_api::{CallbackAccepted, ErrorBody, ProviderCallback, WeworkQuery};
use herald_callbacks::wework::{self, WeworkCrypto, WeworkEvent};
use herald_callbacks::{signed, EventKind};
use herald_domain::provider_config::ProviderConfig;
use herald_domain::{Provider, ProviderId};
use herald_proto::v1;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::ApiError;
use super::extract::QueryParams;
use super::AppState;

/// Callbacks older than this are refused (401): a replay of a captured
/// request outside it changes nothing, and inside it the stored event's
/// dedupe key makes it a no-op.
pub const REPLAY_WINDOW: TimeDelta = TimeDelta::hours(24);
/// How far ahead of this producer's clock a callback may claim to be.
pub const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);
/// The largest callback body read.
const MAX_CALLBACK_BODY: usize = 64 * 1024;

fn counted(source: &'static str, outcome: &'static str) {
    metrics::counter!("herald_producer_callbacks_total", "source" => source, "outcome" => outcome)
        .increment(1);
}

/// The provider the path names; a malformed or unknown id is 404. The live
/// catalog answers; a provider it does not know yet (created a moment ago,
/// its announcement still on the way) is read from the database.
async fn provider(state: &AppState, raw: &str) -> Result<Provider, ApiError> {
    let id: ProviderId = raw
        .parse()
        .map_err(|_| ApiError::not_found("no such provider"))?;
    if let Some(p) = state.catalog.snapshot().iter().find(|p| p.id == id) {
        return Ok(p.clone());
    }
    let row = state
        .store
        .provider(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such provider"))?;
    row.decode().map_err(|e| {
        tracing::error!(error = %e, "A provider's row does not decode; its callbacks are refused.");
        ApiError::not_found("no such provider")
    })
}

async fn read_body(body: Body) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_CALLBACK_BODY)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "a callback body is at most 64 KiB",
            )
        })
}

/// Inside the replay window, by this producer's clock.
fn in_window(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), ApiError> {
    if at < now - REPLAY_WINDOW {
        return Err(ApiError::unauthorized(
            "the callback is older than the 24-hour replay window",
        ));
    }
    if at > now + CLOCK_SKEW {
        return Err(ApiError::unauthorized(
            "the callback's time is more than 5 minutes ahead of Herald's clock",
        ));
    }
    Ok(())
}

/// Publishes the event to the callbacks queue (with others that arrive
/// meanwhile) and waits for the confirm.
async fn queue(state: &AppState, event: v1::CallbackEvent) -> Result<(), ApiError> {
    state.callbacks.publish(event).await.map_err(|e| {
        ApiError::internal(
            "The callback could not be queued (RabbitMQ did not confirm)",
            e,
        )
    })
}

fn proto_kind(kind: EventKind) -> v1::EventKind {
    match kind {
        EventKind::Delivered => v1::EventKind::Delivered,
        EventKind::Read => v1::EventKind::Read,
        EventKind::Clicked => v1::EventKind::Clicked,
        EventKind::Replied => v1::EventKind::Replied,
        EventKind::Bounced => v1::EventKind::Bounced,
        EventKind::Complained => v1::EventKind::Complained,
    }
}

/// `POST /v1/callbacks/{provider_id}`: a generic signed callback.
#[utoipa::path(
    post, path = "/v1/callbacks/{provider_id}", tag = "callbacks", operation_id = "provider_callback",
    summary = "A provider reports what happened to a message (signed with its callback_secret)",
    params(
        ("provider_id" = String, Path, description = "The provider's id"),
        ("X-Herald-Signature" = String, Header, description = "sha256=<hex HMAC-SHA256 of the body with the provider's callback_secret>"),
    ),
    request_body = ProviderCallback,
    responses(
        (status = 202, description = "Queued; a retry of an event already taken changes nothing", body = CallbackAccepted),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "The signature is missing or wrong, the provider has no callback_secret, or the event is outside the replay window", body = ErrorBody),
        (status = 404, description = "No such provider", body = ErrorBody),
        (status = 413, description = "The body is larger than 64 KiB", body = ErrorBody),
        (status = 422, description = "A field is invalid (named)", body = ErrorBody),
        (status = 503, description = "RabbitMQ did not confirm; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn generic(
    State(state): State<AppState>,
    Path(provider_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<CallbackAccepted>), ApiError> {
    let result = generic_inner(&state, &provider_id, &headers, body).await;
    counted(
        "generic",
        match &result {
            Ok(_) => "queued",
            Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            Err(_) => "refused",
        },
    );
    result.map(|accepted| (StatusCode::ACCEPTED, Json(accepted)))
}

async fn generic_inner(
    state: &AppState,
    provider_id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<CallbackAccepted, ApiError> {
    let provider = provider(state, provider_id).await?;
    let secret = provider.config.callback_secret().ok_or_else(|| {
        ApiError::unauthorized(
            "this provider has no callback_secret: its callbacks cannot be verified",
        )
    })?;
    let bytes = read_body(body).await?;
    let header = headers
        .get(signed::HEADER)
        .map(|v| v.to_str().unwrap_or_default());
    signed::verify(secret.as_bytes(), header, &bytes)
        .map_err(|e| ApiError::unauthorized(&e.to_string()))?;
    let callback: ProviderCallback = herald_api::parse_object(&bytes).map_err(ApiError::from)?;
    let now = Utc::now();
    in_window(callback.at, now)?;
    let id = Uuid::now_v7();
    let event = v1::CallbackEvent {
        event_id: id.to_string(),
        provider_id: provider.id.to_string(),
        message_id: callback.message_id.to_string(),
        kind: proto_kind(callback.event) as i32,
        at_ms: callback.at.timestamp_millis(),
        detail: serde_json::Value::Object(callback.detail.unwrap_or_default()).to_string(),
        raw: bytes.to_vec(),
        recipient: String::new(),
        dedupe_key: Sha256::digest(&bytes).to_vec(),
        received_at_ms: now.timestamp_millis(),
    };
    queue(state, event).await?;
    Ok(CallbackAccepted { id })
}

/// The provider's WeWork callback settings; 404 when it is not a WeWork
/// provider with a token and an EncodingAESKey.
fn wework_crypto(provider: &Provider) -> Result<WeworkCrypto, ApiError> {
    let ProviderConfig::Wework(c) = &provider.config else {
        return Err(ApiError::not_found("no such WeWork provider"));
    };
    let (Some(token), Some(key)) = (&c.token, &c.encoding_aes_key) else {
        return Err(ApiError::not_found(
            "this WeWork provider has no callback token and encoding_aes_key",
        ));
    };
    WeworkCrypto::new(token, key, &c.corp_id)
        .map_err(|e| ApiError::internal("A WeWork provider's callback settings are invalid", e))
}

/// The three query parameters every WeWork callback carries.
fn signed_query(q: &WeworkQuery) -> Result<(&str, &str, &str), ApiError> {
    fn need<'a>(v: &'a Option<String>, name: &str) -> Result<&'a str, ApiError> {
        v.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
            ApiError::unauthorized(&format!("the {name} query parameter is missing"))
        })
    }
    Ok((
        need(&q.msg_signature, "msg_signature")?,
        need(&q.timestamp, "timestamp")?,
        need(&q.nonce, "nonce")?,
    ))
}

/// WeWork's refusals are plain: it shows the status to the app's admin.
fn plain(e: ApiError) -> Response {
    (e.status, e.message).into_response()
}

/// `GET /v1/callbacks/wework/{provider_id}`: WeWork's URL verification.
/// The answer is the decrypted `echostr` and nothing else.
#[utoipa::path(
    get, path = "/v1/callbacks/wework/{provider_id}", tag = "callbacks", operation_id = "wework_verify",
    summary = "WeWork's callback URL verification",
    params(("provider_id" = String, Path, description = "The WeWork provider's id"), WeworkQuery),
    responses(
        (status = 200, description = "The decrypted echostr", content_type = "text/plain", body = String),
        (status = 400, description = "echostr is missing or does not decrypt", content_type = "text/plain", body = String),
        (status = 401, description = "The signature is missing or wrong", content_type = "text/plain", body = String),
        (status = 404, description = "No such WeWork provider with callback settings", content_type = "text/plain", body = String),
    )
)]
pub async fn wework_verify(
    State(state): State<AppState>,
    Path(provider_id): Path<String>,
    QueryParams(q): QueryParams<WeworkQuery>,
) -> Response {
    let result = async {
        let provider = provider(&state, &provider_id).await?;
        let crypto = wework_crypto(&provider)?;
        let (signature, timestamp, nonce) = signed_query(&q)?;
        let echostr = q
            .echostr
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad_request("the echostr query parameter is missing"))?;
        crypto
            .verify(signature, timestamp, nonce, echostr)
            .map_err(|e| ApiError::unauthorized(&e.to_string()))?;
        crypto
            .decrypt(echostr)
            .map_err(|e| bad_request(&e.to_string()))
    }
    .await;
    match result {
        Ok(echo) => {
            counted("wework", "verified");
            (StatusCode::OK, echo).into_response()
        }
        Err(e) => {
            counted("wework", "refused");
            plain(e)
        }
    }
}

fn bad_request(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message)
}

/// `POST /v1/callbacks/wework/{provider_id}`: an encrypted WeWork message
/// or event. Answered with an empty 200 once queued (WeWork retries a
/// request not answered in 5 s; the retries are stored once).
#[utoipa::path(
    post, path = "/v1/callbacks/wework/{provider_id}", tag = "callbacks", operation_id = "wework_event",
    summary = "An encrypted WeWork message or event",
    params(("provider_id" = String, Path, description = "The WeWork provider's id"), WeworkQuery),
    request_body(content = String, content_type = "text/xml", description = "<xml><ToUserName/><Encrypt/><AgentID/></xml>"),
    responses(
        (status = 200, description = "Queued, or about no message (then dropped); empty body"),
        (status = 400, description = "The body is not WeWork's XML, or does not decrypt", content_type = "text/plain", body = String),
        (status = 401, description = "The signature is missing or wrong, or the timestamp is outside the replay window", content_type = "text/plain", body = String),
        (status = 404, description = "No such WeWork provider with callback settings", content_type = "text/plain", body = String),
        (status = 413, description = "The body is larger than 64 KiB", content_type = "text/plain", body = String),
        (status = 503, description = "RabbitMQ did not confirm; WeWork retries", content_type = "text/plain", body = String),
    )
)]
pub async fn wework_event(
    State(state): State<AppState>,
    Path(provider_id): Path<String>,
    QueryParams(q): QueryParams<WeworkQuery>,
    body: Body,
) -> Response {
    match wework_event_inner(&state, &provider_id, &q, body).await {
        Ok(queued) => {
            counted("wework", if queued { "queued" } else { "not_tracked" });
            StatusCode::OK.into_response()
        }
        Err(e) => {
            counted(
                "wework",
                if e.status == StatusCode::SERVICE_UNAVAILABLE {
                    "unavailable"
                } else {
                    "refused"
                },
            );
            plain(e)
        }
    }
}

/// `Ok(false)`: a genuine event about no message (dropped).
async fn wework_event_inner(
    state: &AppState,
    provider_id: &str,
    q: &WeworkQuery,
    body: Body,
) -> Result<bool, ApiError> {
    let provider = provider(state, provider_id).await?;
    let crypto = wework_crypto(&provider)?;
    let (signature, timestamp, nonce) = signed_query(q)?;
    let bytes = read_body(body).await?;
    let xml = std::str::from_utf8(&bytes).map_err(|_| bad_request("the body is not UTF-8"))?;
    let encrypted = wework::encrypted_part(xml).map_err(|e| bad_request(&e.to_string()))?;
    crypto
        .verify(signature, timestamp, nonce, &encrypted)
        .map_err(|e| ApiError::unauthorized(&e.to_string()))?;
    let now = Utc::now();
    let sent_at = timestamp
        .parse::<i64>()
        .ok()
        .and_then(|t| DateTime::from_timestamp(t, 0))
        .ok_or_else(|| {
            ApiError::unauthorized("the timestamp query parameter is not a Unix time")
        })?;
    in_window(sent_at, now)?;
    let plain_xml = crypto
        .decrypt(&encrypted)
        .map_err(|e| bad_request(&e.to_string()))?;
    let event = WeworkEvent::parse(&plain_xml).map_err(|e| bad_request(&e.to_string()))?;
    let Ok(kind) = event.kind() else {
        return Ok(false);
    };
    let at = DateTime::from_timestamp(event.create_time, 0).unwrap_or(now);
    let mut detail = serde_json::Map::new();
    detail.insert("member".into(), event.from_user.clone().into());
    detail.insert("msg_type".into(), event.msg_type.clone().into());
    for (name, value) in [
        ("event", &event.event),
        ("content", &event.content),
        ("agent_id", &event.agent_id),
        ("msg_id", &event.msg_id),
    ] {
        if let Some(v) = value {
            detail.insert(name.into(), v.clone().into());
        }
    }
    let out = v1::CallbackEvent {
        event_id: Uuid::now_v7().to_string(),
        provider_id: provider.id.to_string(),
        message_id: String::new(),
        kind: proto_kind(kind) as i32,
        at_ms: at.timestamp_millis(),
        detail: serde_json::Value::Object(detail).to_string(),
        raw: plain_xml.into_bytes(),
        recipient: event.from_user.clone(),
        dedupe_key: Sha256::digest(event.dedupe_key().as_bytes()).to_vec(),
        received_at_ms: now.timestamp_millis(),
    };
    queue(state, out).await?;
    Ok(true)
}
