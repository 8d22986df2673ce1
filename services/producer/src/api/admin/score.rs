//! `/v1/admin/providers/{id}/score`: a provider's score explained.

use axum::extract::{Path, State};
use axum::Json;
use herald_api::{ErrorBody, ProviderLoad, ProviderScore, ScoreParts, WindowUse};
use herald_domain::ProviderId;
use herald_scoring::{recent_mean, score, ProviderView, State as CircuitState, UNLIMITED};

use super::path_id;
use super::providers::find_provider;
use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::api::refusals::AdminAuthErrors;
use crate::api::AppState;

/// The state's name and its moment, as the score shows them.
fn state_parts(
    state: &CircuitState,
) -> (
    &'static str,
    Option<i64>,
    Option<chrono::DateTime<chrono::Utc>>,
) {
    match state {
        CircuitState::Ready => ("ready", None, None),
        CircuitState::HalfOpen => ("half_open", None, None),
        CircuitState::CircuitOpen { until_ms } => ("circuit_open", Some(*until_ms), None),
        CircuitState::WindowClosed { opens_at } => ("window_closed", None, *opens_at),
        CircuitState::Exhausted => ("exhausted", None, None),
    }
}

/// `GET /v1/admin/providers/{id}/score`: the provider's score now, as the
/// schedulers compute it (same weights, same Redis state), with its parts,
/// its usage per window and its circuit.
#[utoipa::path(
    get, path = "/v1/admin/providers/{id}/score", tag = "admin", operation_id = "provider_score",
    summary = "Explain a provider's current score",
    params(("id" = String, Path, description = "The provider's id")),
    responses(
        (status = 200, description = "The score, its parts and usage", body = ProviderScore),
        AdminAuthErrors,
        (status = 404, description = "No such provider", body = ErrorBody),
        (status = 503, description = "The broker or database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn provider_score(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<ProviderScore>, ApiError> {
    let id: ProviderId = path_id(&id, "provider")?;
    let row = find_provider(&state, id).await?;
    // A row that does not decode is unusable until fixed (the store's
    // policy): it scores as not eligible, and says why in `state`.
    let view = match row.decode() {
        Ok(provider) => ProviderView::of(&provider),
        Err(e) => {
            tracing::warn!(provider_id = %row.id, error = %e.reason, "A provider's stored row does not decode; it takes no sends until fixed.");
            None
        }
    };
    let Some(view) = view else {
        let channel = row
            .channel
            .parse()
            .map_err(|e| ApiError::internal("A stored provider does not decode", e))?;
        return Ok(Json(ProviderScore {
            provider_id: id,
            name: row.name,
            channel,
            eligible: false,
            state: if row.enabled {
                "undecodable"
            } else {
                "disabled"
            }
            .to_owned(),
            until_ms: None,
            opens_at: None,
            total: 0.0,
            parts: None,
            weights: None,
            load: None,
            computed_at: None,
        }));
    };
    // `recent` compares with the other providers of the channel.
    let rows = state.store.all_providers().await?;
    let views: Vec<ProviderView> = rows
        .iter()
        .filter_map(ProviderView::of)
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
    let windows = view
        .limits
        .windows
        .iter()
        .enumerate()
        .map(|(i, (ms, limit))| WindowUse {
            window_secs: ms / 1000,
            limit: (*limit < UNLIMITED).then_some(*limit),
            used: load.and_then(|l| l.used.get(i)).copied().unwrap_or(0),
        })
        .collect();
    let (state_name, until_ms, opens_at) = state_parts(&s.state);
    let w = &state.weights;
    Ok(Json(ProviderScore {
        provider_id: id,
        name: view.name.clone(),
        channel: view.channel,
        eligible: s.state.is_eligible(),
        state: state_name.to_owned(),
        until_ms,
        opens_at,
        total: s.total,
        parts: Some(ScoreParts {
            quota: s.parts.quota,
            headroom: s.parts.headroom,
            success: s.parts.success,
            latency: s.parts.latency,
            recent: s.parts.recent,
        }),
        weights: Some(herald_api::providers::ScoreWeights {
            quota: w.quota,
            headroom: w.headroom,
            success: w.success,
            latency: w.latency,
            recent: w.recent,
            band: w.band,
            latency_ref_ms: w.latency_ref_ms,
        }),
        load: Some(ProviderLoad {
            windows,
            leases: load.map_or(0, |l| l.leases),
            concurrency: view.limits.concurrency.map(u64::from),
            success_rate: load.and_then(|l| l.success_rate),
            latency_ms: load.and_then(|l| l.latency_ms),
            consecutive_failures: load.map_or(0, |l| u64::from(l.consecutive_failures)),
            recent_use: herald_scoring::recent_use(&view, load),
            recent_mean: mean,
            admitted_rate: load.and_then(|l| l.admitted_rate),
        }),
        computed_at: Some(now),
    }))
}
