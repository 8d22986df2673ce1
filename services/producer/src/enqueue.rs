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
        // Jobs of earlier requests under the same keys whose confirm was
        // never recorded: published again before this answer.
        let mut replays: Vec<(MessageId, Channel, Priority, Vec<u8>)> = Vec::new();
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
                Some(hit) => {
                    if let Some(envelope) = &hit.unconfirmed {
                        replays.push((
                            MessageId(hit.message_id),
                            item.message.channel,
                            item.message.priority,
                            herald_proto::jobs::as_copy(envelope),
                        ));
                    }
                    results.push(Some(Accepted {
                        id: MessageId(hit.message_id),
                        status: hit.status.parse::<MessageStatus>().map_err(|e| {
                            ApiError::internal("A stored idempotency key does not decode", e)
                        })?,
                    }))
                }
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
        let mut due = Vec::with_capacity(fresh.len());
        for &index in &fresh {
            let m = &items[index].message;
            let job = m.to_job(tenant, now, trace.clone());
            let body = job.encode_to_vec();
            let scheduled = m.scheduled_at.is_some();
            if !scheduled {
                due.push((m.id, m.channel, m.priority, body.clone()));
            }
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
                envelope: Some(body),
            });
        }
        let fresh_out = state.topology.to_user_batched(tenant, due);
        let replay_out = state.topology.to_user_batched(tenant, replays);
        match state.store.insert_messages(tenant, &records).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }

        publish_confirmed(state, &fresh_out, &replay_out).await?;
        state.confirms.confirmed(
            fresh_out
                .iter()
                .chain(&replay_out)
                .flat_map(|(ids, _)| ids.iter().map(|id| id.as_uuid()))
                .collect(),
        );
        if !replay_out.is_empty() {
            let n: usize = replay_out.iter().map(|(ids, _)| ids.len()).sum();
            metrics::counter!("herald_producer_replays_republished_total").increment(n as u64);
        }

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

/// Publishes and waits for every confirm. New messages the broker did not
/// confirm are marked failed (`unavailable`) so that nothing the caller was
/// refused goes out later; replayed ones stay in the outbox for the
/// reconciler (an earlier answer may have accepted them). The caller gets
/// 503 and retries.
async fn publish_confirmed(
    state: &AppState,
    fresh: &[(Vec<MessageId>, Outbound)],
    replays: &[(Vec<MessageId>, Outbound)],
) -> Result<(), ApiError> {
    if fresh.is_empty() && replays.is_empty() {
        return Ok(());
    }
    let all: Vec<&(Vec<MessageId>, Outbound)> = fresh.iter().chain(replays).collect();
    let results =
        futures::future::join_all(all.iter().map(|(_, o)| state.publisher.publish(o))).await;
    let mut reason = None;
    let mut refused = 0;
    let mut failed: Vec<uuid::Uuid> = Vec::new();
    for (slot, ((ids, _), result)) in all.iter().zip(results).enumerate() {
        if let Err(e) = result {
            reason.get_or_insert_with(|| e.to_string());
            refused += ids.len();
            if slot < fresh.len() {
                failed.extend(ids.iter().map(|id| id.as_uuid()));
            }
        }
    }
    let Some(reason) = reason else {
        return Ok(());
    };
    if !failed.is_empty() {
        if let Err(e) = state
            .store
            .mark_unpublished(
                &failed,
                &format!("the broker did not confirm the publish: {reason}"),
            )
            .await
        {
            tracing::error!(error = %e, count = failed.len(), "Failed to mark unconfirmed messages; the reconciler will publish them.");
        }
    }
    tracing::warn!(error = %reason, count = refused, "The broker did not confirm publishes; answering 503.");
    Err(ApiError::unavailable(
        format!("the broker could not confirm {refused} message(s); retry with idempotency keys"),
        5,
    ))
}
