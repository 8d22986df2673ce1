//! `/v1/admin/queues`: the deployment's queues and their depths.

use axum::extract::State;
use axum::Json;
use herald_api::{ErrorBody, Page, QueueDepth};
use herald_broker::lapin;
use herald_domain::{Channel, TenantId};

use crate::api::auth::Admin;
use crate::api::error::ApiError;
use crate::api::refusals::AdminAuthErrors;
use crate::api::AppState;

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
            let id = tenant.id;
            queues.extend(Channel::ALL.iter().map(|c| QueueRef {
                name: t.user_queue(id, *c),
                kind: "user",
                tenant_id: Some(id),
                channel: Some(*c),
            }));
        }
        match tenants.last() {
            Some(last) if tenants.len() == 1000 => after = Some(last.id.as_uuid()),
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
    queues.extend(
        Channel::ALL
            .iter()
            .map(|c| core(t.express_queue(*c), "express", Some(*c))),
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

/// `GET /v1/admin/queues` → `{items, next_cursor: null}`: `messages`
/// counts those ready for delivery (not those delivered and unacked). A
/// queue that does not exist is listed with `exists: false`. Publish and
/// deliver rates need RabbitMQ's management API, which Herald does not use,
/// so they are not reported.
#[utoipa::path(
    get, path = "/v1/admin/queues", tag = "admin", operation_id = "list_queues",
    summary = "Queue depths and consumers",
    responses(
        (status = 200, description = "Every queue of the deployment", body = Page<QueueDepth>),
        AdminAuthErrors,
        (status = 503, description = "The broker or database is unavailable; retry after `Retry-After` seconds", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn list_queues(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<Page<QueueDepth>>, ApiError> {
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
    for q in queues {
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
        items.push(QueueDepth {
            name: q.name,
            kind: q.kind.to_owned(),
            tenant_id: q.tenant_id,
            channel: q.channel,
            exists: depth.is_some(),
            messages: depth.map(|d| d.0),
            consumers: depth.map(|d| d.1),
        });
    }
    let _ = ch.close(200, "queues read".into()).await;
    Ok(Json(Page {
        items,
        next_cursor: None,
    }))
}
