//! From validated messages to confirmed jobs: idempotency, one batched
//! insert of the records, then publishes that wait for broker confirms.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use herald_api::{Accepted, SendMessage};
use herald_broker::Outbound;
use herald_domain::{
    Channel, FieldError, MessageId, MessageStatus, NewMessage, Priority, TenantId,
};
use herald_proto::Message as _;
use herald_store::{NewRecord, StoreError};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::error::ApiError;
use crate::api::AppState;

/// A validated message, with the hash of the request it came from when it
/// has an idempotency key (a repeat must be the same request).
pub struct Item {
    pub message: NewMessage,
    hash: Vec<u8>,
}

impl Item {
    /// Validates `request` (see [`SendMessage::into_message`]).
    pub fn new(request: SendMessage, now: DateTime<Utc>) -> Result<Item, FieldError> {
        // The request's fields serialize in one fixed order and its maps
        // are sorted, so equal requests hash equal.
        let hash = match &request.idempotency_key {
            Some(_) => Sha256::digest(serde_json::to_vec(&request).unwrap_or_default()).to_vec(),
            None => Vec::new(),
        };
        Ok(Item {
            message: request.into_message(now)?,
            hash,
        })
    }
}

/// The due jobs of one user queue and priority band, in request order,
/// with their encoded bodies.
struct Due {
    priority: Priority,
    jobs: Vec<(MessageId, Vec<u8>)>,
}

/// Records and publishes `items` for `tenant`, all or nothing as far as
/// validation goes. Answers only after every new job was confirmed.
///
/// The work runs in its own task, so it finishes even when the caller goes
/// away (an HTTP client disconnects, a gRPC call is cancelled or times out):
/// once records are inserted, their jobs are either confirmed or marked
/// unpublished, never left queued with nothing on the broker.
pub async fn enqueue(
    state: &AppState,
    tenant: TenantId,
    items: Vec<Item>,
) -> Result<Vec<Accepted>, ApiError> {
    let state = state.clone();
    tokio::spawn(async move { enqueue_now(&state, tenant, items).await })
        .await
        .unwrap_or_else(|e| Err(ApiError::internal("The enqueue task failed", e)))
}

async fn enqueue_now(
    state: &AppState,
    tenant: TenantId,
    items: Vec<Item>,
) -> Result<Vec<Accepted>, ApiError> {
    let mut seen = HashSet::new();
    for (index, item) in items.iter().enumerate() {
        if let Some(key) = &item.message.idempotency_key {
            if !seen.insert(key.clone()) {
                return Err(ApiError::invalid_field(FieldError::new(
                    "idempotency_key",
                    format!("{key:?} appears more than once in this request"),
                ))
                .at(index));
            }
        }
    }
    let keys: Vec<String> = items
        .iter()
        .filter_map(|i| i.message.idempotency_key.clone())
        .collect();

    // A concurrent request may claim one of our keys between the lookup and
    // the insert; then the insert refuses and we look again.
    for _ in 0..3 {
        let hits: HashMap<String, herald_store::IdempotentHit> = state
            .store
            .idempotent_hits(tenant, &keys)
            .await?
            .into_iter()
            .map(|h| (h.key.clone(), h))
            .collect();
        let mut results: Vec<Option<Accepted>> = Vec::with_capacity(items.len());
        let mut fresh: Vec<usize> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match item
                .message
                .idempotency_key
                .as_ref()
                .and_then(|k| hits.get(k))
            {
                Some(hit) if hit.request_hash != item.hash => {
                    let mut e = ApiError::new(
                        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                        "idempotency_conflict",
                        "this idempotency key was used in the last 24 hours with a different request",
                    );
                    e.field = Some("idempotency_key".into());
                    if items.len() > 1 {
                        e.index = Some(index);
                    }
                    return Err(e);
                }
                Some(hit) => results.push(Some(Accepted {
                    id: MessageId(hit.message_id),
                    status: hit.status.parse::<MessageStatus>().map_err(|e| {
                        ApiError::internal("A stored idempotency key does not decode", e)
                    })?,
                })),
                None => {
                    results.push(None);
                    fresh.push(index);
                }
            }
        }

        let now = Utc::now();
        let trace = herald_telemetry::propagation::inject_current();
        let trace: BTreeMap<String, String> = trace.into_iter().collect();
        let mut records = Vec::with_capacity(fresh.len());
        let mut due: BTreeMap<(Channel, u8), Due> = BTreeMap::new();
        for &index in &fresh {
            let m = &items[index].message;
            let job = m.to_job(tenant, now, trace.clone());
            let body = job.encode_to_vec();
            let scheduled = m.scheduled_at.is_some();
            records.push(NewRecord {
                id: m.id,
                channel: m.channel.as_str(),
                recipient: m.to.display(),
                status: m.initial_status(),
                priority: i16::from(m.priority.get()),
                batch_id: m.batch_id.map(|b| b.as_uuid()),
                idempotency_key: m.idempotency_key.clone(),
                request_hash: items[index].hash.clone(),
                metadata: serde_json::to_value(&m.metadata).unwrap_or(Value::Null),
                scheduled_at: m.scheduled_at,
                parked_envelope: scheduled.then(|| body.clone()),
            });
            if !scheduled {
                due.entry((m.channel, m.priority.band()))
                    .or_insert_with(|| Due {
                        priority: m.priority,
                        jobs: Vec::new(),
                    })
                    .jobs
                    .push((m.id, body));
            }
        }
        // Several jobs per broker message: the broker's work is per message.
        let mut outbound: Vec<(Vec<MessageId>, Outbound)> = Vec::new();
        for ((channel, _), Due { priority, jobs }) in due {
            for run in herald_proto::jobs::split(jobs, herald_proto::jobs::MAX_JOBS, |(_, body)| {
                body.len()
            }) {
                let (ids, bodies): (Vec<MessageId>, Vec<Vec<u8>>) = run.into_iter().unzip();
                let body = herald_proto::jobs::pack(&bodies);
                outbound.push((ids, state.topology.to_user(tenant, channel, body, priority)));
            }
        }
        match state.store.insert_messages(tenant, &records).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }

        publish_confirmed(state, &outbound).await?;

        for (slot, &index) in fresh.iter().enumerate() {
            results[index] = Some(Accepted {
                id: items[index].message.id,
                status: records[slot].status,
            });
        }
        metrics::counter!("herald_producer_accepted_total").increment(fresh.len() as u64);
        return Ok(results.into_iter().flatten().collect());
    }
    Err(ApiError::conflict(
        "the idempotency keys of this request are being used by a concurrent request; retry",
    ))
}

/// Publishes and waits for every confirm. Messages the broker did not
/// confirm are marked failed (`unavailable`) so that nothing the caller was
/// refused goes out later; the caller gets 503 and retries.
async fn publish_confirmed(
    state: &AppState,
    outbound: &[(Vec<MessageId>, Outbound)],
) -> Result<(), ApiError> {
    if outbound.is_empty() {
        return Ok(());
    }
    let results =
        futures::future::join_all(outbound.iter().map(|(_, o)| state.publisher.publish(o))).await;
    let failed: Vec<(MessageId, String)> = outbound
        .iter()
        .zip(results)
        .filter_map(|((ids, _), r)| r.err().map(|e| (ids, e.to_string())))
        .flat_map(|(ids, e)| ids.iter().map(move |id| (*id, e.clone())))
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    let reason = failed[0].1.clone();
    let ids: Vec<uuid::Uuid> = failed.iter().map(|(id, _)| id.as_uuid()).collect();
    if let Err(e) = state
        .store
        .mark_unpublished(
            &ids,
            &format!("the broker did not confirm the publish: {reason}"),
        )
        .await
    {
        tracing::error!(error = %e, count = ids.len(), "Failed to mark unconfirmed messages; the reconciler will find them queued.");
    }
    tracing::warn!(error = %reason, count = ids.len(), "The broker did not confirm publishes; answering 503.");
    Err(ApiError::unavailable(
        format!(
            "the broker could not confirm {} message(s); retry with idempotency keys",
            ids.len()
        ),
        5,
    ))
}
