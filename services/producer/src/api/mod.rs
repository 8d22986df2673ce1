//! The HTTP API (API.md): routes, shared state, and the error shape.

pub mod admin;
pub mod auth;
pub mod error;
pub mod extract;
pub mod messages;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use herald_broker::{Publisher, Topology};
use herald_runtime::Secret;
use herald_store::Store;

use self::auth::KeyCache;
use self::error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub publisher: Publisher,
    pub topology: Topology,
    pub admin_token: Option<Secret>,
    pub keys: KeyCache,
    /// For declaring new tenants' queues and reading the dead-letter
    /// queue (replay).
    pub broker: herald_broker::Broker,
    /// Provider loads, for explaining scores.
    pub capacity: herald_capacity::Capacity,
    pub weights: herald_scoring::ScoreWeights,
    pub health: herald_capacity::HealthPolicy,
}

pub fn router(state: AppState) -> Router {
    let ready_state = state.clone();
    let ready: herald_runtime::Readiness = Arc::new(move || ready_state.publisher.is_open());
    let api = Router::new()
        .route("/v1/messages", post(messages::send).get(messages::list))
        .route("/v1/messages/batch", post(messages::send_batch))
        .route("/v1/messages/{id}", get(messages::get))
        .route("/v1/messages/{id}/cancel", post(messages::cancel))
        .route(
            "/v1/admin/tenants",
            post(admin::create_tenant).get(admin::list_tenants),
        )
        .route("/v1/admin/tenants/{id}", get(admin::get_tenant))
        .route(
            "/v1/admin/tenants/{id}/disable",
            post(admin::disable_tenant),
        )
        .route("/v1/admin/tenants/{id}/enable", post(admin::enable_tenant))
        .route("/v1/admin/tenants/{id}/keys", post(admin::create_key))
        .route(
            "/v1/admin/tenants/{id}/keys/{key_id}",
            axum::routing::delete(admin::revoke_key),
        )
        .route(
            "/v1/admin/providers",
            post(admin::create_provider).get(admin::list_providers),
        )
        .route(
            "/v1/admin/providers/{id}",
            get(admin::get_provider)
                .patch(admin::update_provider)
                .delete(admin::delete_provider),
        )
        .route("/v1/admin/providers/{id}/score", get(admin::provider_score))
        .route(
            "/v1/admin/dead-letters/replay",
            post(admin::replay_dead_letters),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        // Bodies are read and limited by `extract::JsonBody`, which answers
        // 413 in the API's error shape.
        .layer(DefaultBodyLimit::disable())
        .with_state(state);
    api.merge(herald_runtime::ops_router(ready))
}
