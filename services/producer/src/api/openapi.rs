//! `/openapi.json`: the OpenAPI 3.1 document of the HTTP API.
//!
//! Each handler carries its `#[utoipa::path]` (method, path, parameters,
//! bodies from the contract crate `herald_api`, responses), and the router registers the
//! handlers through `utoipa_axum`, so a route cannot be served without
//! being documented. The ops routes come from `herald_runtime` and are
//! added here.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Herald's sending API (tenant API keys) and admin API \
                       (HERALD_ADMIN_TOKEN). The same operations are served over gRPC: \
                       proto/herald/v1/enqueue.proto.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(herald_api::ErrorBody, herald_api::ErrorDetail)),
    modifiers(&BearerSchemes),
    tags(
        (name = "messages", description = "Sending, reading and cancelling messages (tenant API key)"),
        (name = "templates", description = "A tenant's versioned message templates (tenant API key)"),
        (name = "suppressions", description = "Addresses a tenant never sends to again (tenant API key)"),
        (name = "webhooks", description = "The tenant's webhook: signing secret, delivery log, resend (tenant API key)"),
        (name = "unsubscribe", description = "The one-click unsubscribe link in every email (signed token; no API key)"),
        (name = "tracking", description = "The open pixel and click redirects of tracked email (signed token; no API key)"),
        (name = "callbacks", description = "Providers report what happened after a send (signed per provider; no API key)"),
        (name = "admin", description = "Tenants, keys, providers, queues and dead letters (admin token)"),
        (name = "ops", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, what) in [
            ("api_key", "A tenant's API key"),
            ("admin_token", "The producer's HERALD_ADMIN_TOKEN"),
        ] {
            let mut scheme = Http::new(HttpAuthScheme::Bearer);
            scheme.description = Some(what.to_owned());
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

fn plain_get(id: &str, summary: &str, content_type: &str, ok: &str) -> PathItem {
    let operation = OperationBuilder::new()
        .operation_id(Some(id))
        .summary(Some(summary))
        .tag("ops")
        .response(
            "200",
            ResponseBuilder::new()
                .description(ok)
                .content(
                    content_type,
                    Content::new(None::<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>>),
                )
                .build(),
        )
        .build();
    PathItem::new(HttpMethod::Get, operation)
}

/// Completes the document the router collected with the ops routes and the
/// rules the derived schemas cannot say (`herald_api::schema`).
pub fn complete(doc: Document) -> serde_json::Value {
    let mut doc = serde_json::to_value(with_ops(doc)).unwrap_or_default();
    herald_api::schema::refine(&mut doc);
    doc
}

fn with_ops(mut doc: Document) -> Document {
    let ops = [
        (
            "/healthz",
            plain_get(
                "healthz",
                "Liveness: the process answers",
                "text/plain",
                "alive",
            ),
        ),
        (
            "/readyz",
            plain_get(
                "readyz",
                "Readiness: the broker connection is open (503 otherwise)",
                "text/plain",
                "ready",
            ),
        ),
        (
            "/metrics",
            plain_get(
                "metrics",
                "Prometheus metrics",
                "text/plain; version=0.0.4",
                "the metrics in the Prometheus text format",
            ),
        ),
        (
            "/openapi.json",
            plain_get(
                "openapi",
                "This document",
                "application/json",
                "the OpenAPI 3.1 document",
            ),
        ),
    ];
    for (path, item) in ops {
        doc.paths.paths.insert(path.to_owned(), item);
    }
    doc
}
