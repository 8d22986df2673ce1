//! The `/sim/*` control API: counters, per-id counts, reset, live fault
//! injection and WeWork token expiry; and the client `herald-sim stats`
//! uses to read the counters. Its bodies are `herald_api::sim`'s types,
//! which the load test reads with.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use herald_api::sim::{
    SimCallbackReport, SimCallbacks, SimIds, SimLast, SimMessage, TokensExpired,
};
use herald_api::{ErrorBody, ErrorDetail};

use crate::config::{self, InvalidSetting, SimBehaviour};
use crate::counters::{SimChannel, SimStats};
use crate::SimState;

/// An error in Herald's shape: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field: String = field.into();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_field",
            message: message.into(),
            field: Some(field).filter(|field| !field.is_empty()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
                index: None,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/sim/stats", get(stats))
        .route("/sim/messages", get(messages))
        .route("/sim/messages/{id}", get(message))
        .route("/sim/reset", post(reset))
        .route("/sim/config", get(read_config).put(change_config))
        .route("/sim/wework/expire-tokens", post(expire_tokens))
        .route("/sim/callbacks", get(read_callbacks).put(change_callbacks))
        .with_state(state)
}

/// The answer to every unknown path.
pub(crate) async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: "There is nothing at this path.".to_owned(),
        field: None,
    }
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "This path does not accept that method.".to_owned(),
        field: None,
    }
}

async fn stats(State(state): State<Arc<SimState>>) -> Json<SimStats> {
    Json(state.counters.stats())
}

async fn messages(
    State(state): State<Arc<SimState>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<SimIds>, ApiError> {
    let channel = params
        .get("channel")
        .and_then(|channel| SimChannel::parse(channel))
        .ok_or_else(|| {
            ApiError::invalid_field("channel", "channel must be email, wework or webhook")
        })?;
    Ok(Json(SimIds {
        ids: state.counters.ids(channel),
    }))
}

async fn message(State(state): State<Arc<SimState>>, Path(id): Path<String>) -> Json<SimMessage> {
    let counters = &state.counters;
    Json(SimMessage {
        email: counters.count(SimChannel::Email, &id),
        wework: counters.count(SimChannel::Wework, &id),
        webhook: counters.count(SimChannel::Webhook, &id),
        last: SimLast {
            email: counters.last(SimChannel::Email, &id),
            wework: counters.last(SimChannel::Wework, &id),
            webhook: counters.last(SimChannel::Webhook, &id),
        },
    })
}

async fn reset(State(state): State<Arc<SimState>>) -> Json<SimStats> {
    state.counters.reset();
    tracing::info!("The simulator's counters were reset.");
    Json(state.counters.stats())
}

/// A body that does not parse: 400 when it is not JSON, 422 naming the
/// field otherwise.
fn refused(refusal: herald_api::ParseError) -> ApiError {
    match refusal {
        herald_api::ParseError::Field(e) => {
            let invalid = InvalidSetting::from(e);
            ApiError::invalid_field(invalid.field, invalid.message)
        }
        herald_api::ParseError::Syntax(error) => ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_json",
            message: format!("The body is not valid JSON: {error}"),
            field: None,
        },
    }
}

async fn read_config(State(state): State<Arc<SimState>>) -> Json<SimBehaviour> {
    Json(state.behaviour())
}

async fn change_config(
    State(state): State<Arc<SimState>>,
    body: Bytes,
) -> Result<Json<SimBehaviour>, ApiError> {
    let patch = config::parse_patch(&body).map_err(refused)?;
    let next = patch.apply(state.behaviour());
    state
        .set_behaviour(next)
        .map_err(|invalid| ApiError::invalid_field(invalid.field, invalid.message))?;
    tracing::info!(behaviour = ?next, "The simulator's fault injection changed.");
    Ok(Json(next))
}

async fn read_callbacks(State(state): State<Arc<SimState>>) -> Json<SimCallbackReport> {
    Json(state.callbacks.report())
}

/// `PUT /sim/callbacks`: replaces where and how often callbacks are made.
async fn change_callbacks(
    State(state): State<Arc<SimState>>,
    body: Bytes,
) -> Result<Json<SimCallbackReport>, ApiError> {
    let settings: SimCallbacks = herald_api::parse_object(&body).map_err(refused)?;
    state
        .callbacks
        .configure(settings)
        .map_err(|e| ApiError::invalid_field(e.field.clone(), e.to_string()))?;
    tracing::info!("The simulator's callbacks changed.");
    Ok(Json(state.callbacks.report()))
}

async fn expire_tokens(State(state): State<Arc<SimState>>) -> Json<TokensExpired> {
    let expired = state.tokens.expire_all();
    tracing::info!(expired, "WeWork access tokens expired on request.");
    Json(TokensExpired {
        expired: expired as u64,
    })
}

/// Reads `GET {url}/sim/stats` from a running simulator, pretty-printed.
pub async fn fetch_stats(url: &str) -> anyhow::Result<String> {
    let endpoint = format!("{}/sim/stats", url.trim_end_matches('/'));
    let response = reqwest::get(&endpoint)
        .await
        .with_context(|| format!("Failed to reach the simulator at {endpoint}"))?
        .error_for_status()
        .with_context(|| format!("The simulator at {endpoint} refused"))?;
    let stats: SimStats = response
        .json()
        .await
        .with_context(|| format!("Failed to read the stats from {endpoint}"))?;
    serde_json::to_string_pretty(&stats).context("Failed to print the stats")
}
