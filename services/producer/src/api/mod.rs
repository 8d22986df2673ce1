//! The HTTP API (docs/API.md): routes, shared state, and the error shape.

pub mod admin;
pub mod auth;
pub mod callbacks;
pub mod error;
pub mod extract;
pub mod messages;
pub mod openapi;
pub mod refusals;
pub mod suppressions;
pub mod templates;
pub mod tracking;
pub mod unsubscribe;
pub mod views;
pub mod webhooks;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};
use herald_broker::{Publisher, Topology};
use herald_runtime::Secret;
use herald_store::Store;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::auth::KeyCache;
use self::error::ApiError;

/// What every handler shares. Cloned for every request (axum clones the
/// handler's state), so it is one `Arc`: cloning the fields themselves,
/// strings among them, was 8.7 % of the producer's CPU with single-message
/// requests (`perf record --call-graph dwarf`).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The producer's connections and settings, behind [`AppState`].
pub struct Shared {
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
    /// Where confirmed jobs are noted, to leave the outbox.
    pub confirms: crate::confirms::Confirms,
    /// Where sends are committed, in groups (`crate::group`).
    pub committer: crate::group::Committer,
    /// Compiled template versions, for pinning at enqueue.
    pub templates: crate::templates::Templates,
    /// The providers, live: callbacks are checked against their secrets.
    pub catalog: herald_store::catalog::ProviderCatalog,
    /// Checks the unsubscribe links of emails.
    pub links: herald_callbacks::links::Links,
    /// Where checked callbacks go, in batches.
    pub callbacks: crate::callbacks::CallbackPublisher,
}

/// The API's routes. Each handler is registered with its OpenAPI
/// description (`#[utoipa::path]`), so `/openapi.json` lists exactly what is
/// served.
pub fn router(state: AppState) -> Router {
    let ready_state = state.clone();
    let ready: herald_runtime::Readiness = Arc::new(move || ready_state.publisher.is_open());
    let (api, document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(messages::send, messages::list))
        .routes(routes!(messages::send_batch))
        .routes(routes!(messages::get))
        .routes(routes!(messages::cancel))
        .routes(routes!(
            suppressions::list_suppressions,
            suppressions::add_suppression
        ))
        .routes(routes!(suppressions::remove_suppression))
        .routes(routes!(
            unsubscribe::unsubscribe_page,
            unsubscribe::unsubscribe
        ))
        .routes(routes!(webhooks::get_webhook))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::get_delivery))
        .routes(routes!(webhooks::resend_delivery))
        .routes(routes!(tracking::open))
        .routes(routes!(tracking::click))
        .routes(routes!(callbacks::generic))
        .routes(routes!(callbacks::wework_verify, callbacks::wework_event))
        .routes(routes!(
            templates::create_template,
            templates::list_templates
        ))
        .routes(routes!(
            templates::get_template,
            templates::put_template,
            templates::delete_template
        ))
        .routes(routes!(
            admin::tenants::create_tenant,
            admin::tenants::list_tenants
        ))
        .routes(routes!(
            admin::tenants::get_tenant,
            admin::tenants::update_tenant
        ))
        .routes(routes!(admin::tenants::disable_tenant))
        .routes(routes!(admin::tenants::enable_tenant))
        .routes(routes!(admin::tenants::admin_rotate_webhook_secret))
        .routes(routes!(admin::keys::create_key))
        .routes(routes!(
            admin::suppressions::admin_list_suppressions,
            admin::suppressions::admin_add_suppression
        ))
        .routes(routes!(admin::suppressions::admin_remove_suppression))
        .routes(routes!(admin::keys::revoke_key))
        .routes(routes!(
            admin::providers::create_provider,
            admin::providers::list_providers
        ))
        .routes(routes!(
            admin::providers::get_provider,
            admin::providers::update_provider,
            admin::providers::delete_provider
        ))
        .routes(routes!(admin::score::provider_score))
        .routes(routes!(admin::messages::get_message))
        .routes(routes!(admin::queues::list_queues))
        .routes(routes!(admin::dead_letters::replay_dead_letters))
        .split_for_parts();
    let document = Arc::new(openapi::complete(document));
    let api = api
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move { Json(document) }
            }),
        )
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        // Bodies are read and limited by `extract::JsonBody`, which answers
        // 413 in the API's error shape.
        .layer(DefaultBodyLimit::disable())
        .with_state(state);
    api.merge(herald_runtime::ops_router(ready))
}
