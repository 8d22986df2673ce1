//! From validated messages to confirmed jobs: idempotency, one batched
//! insert of the records, then publishes that wait for broker confirms.
//!
//! Requests do not run this alone: the [`Committer`](crate::group::Committer)
//! hands it a *group*, the requests of one tenant that arrived while earlier
//! groups were in flight, so they share one lookup, one transaction and one
//! set of batched publishes. Each request keeps its own answer: a request
//! whose idempotency key conflicts fails alone, and one whose jobs the broker
//! did not confirm gets 503 while the others of its group get 202.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use herald_api::{Accepted, SendMessage};
use herald_broker::{Outbound, Publisher, Topology};
use herald_capacity::{Admission, Capacity, TenantLimits};
use herald_domain::{
    Channel, FieldError, MessageId, MessageStatus, NewMessage, Priority, TenantId,
};
use herald_proto::Message as _;
use herald_store::{IdempotentHit, NewRecord, Store, StoreError};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::confirms::Confirms;

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

/// One request's answer: its messages in request order, or why not.
pub type Answer = Result<Vec<Accepted>, ApiError>;

/// One request waiting in a group.
pub struct Request {
    pub items: Vec<Item>,
    /// The trace context of the request, carried in its jobs.
    pub trace: BTreeMap<String, String>,
    /// The tenant's limits as its key's lookup found them.
    pub limits: TenantLimits,
    /// The tenant's open and click tracking, stamped on its email jobs.
    pub tracking: herald_domain::Tracking,
}

impl Request {
    fn keys(&self) -> impl Iterator<Item = &String> {
        self.items
            .iter()
            .filter_map(|i| i.message.idempotency_key.as_ref())
    }
}

/// What the enqueue path needs of the producer: records, publishes and
/// confirms.
#[derive(Clone)]
pub struct Pipeline {
    pub store: Store,
    pub publisher: Publisher,
    pub topology: Topology,
    pub confirms: Confirms,
    /// Where the tenants' limits are counted (Redis).
    pub capacity: Capacity,
}

/// Records and publishes `items` for `tenant`, all or nothing as far as
/// validation goes. Answers only after every new job was confirmed.
///
/// The work runs in the committer's task, so it finishes even when the
/// caller goes away (an HTTP client disconnects, a gRPC call is cancelled or
/// times out): once records are inserted, their jobs are either confirmed or
/// marked unpublished, never left queued with nothing on the broker.
pub async fn enqueue(state: &AppState, caller: Caller, mut items: Vec<Item>) -> Answer {
    state
        .templates
        .pin(&state.store, caller.tenant, &mut items)
        .await?;
    let mut seen = HashSet::new();
    for (index, item) in items.iter().enumerate() {
        if let Some(key) = &item.message.idempotency_key {
            if !seen.insert(key) {
                return Err(ApiError::invalid_field(FieldError::new(
                    "idempotency_key",
                    format!("{key:?} appears more than once in this request"),
                ))
                .at(index));
            }
        }
    }
    let trace = herald_telemetry::propagation::inject_current()
        .into_iter()
        .collect();
    let request = Request {
        items,
        trace,
        limits: caller.limits,
        tracking: caller.tracking,
    };
    state.committer.commit(caller.tenant, request).await
}

/// Commits `group` (requests of `tenant`) and answers each request, in
/// order. Requests that reuse a key of an earlier request in the group, and
/// every request of a group that lost a race for a key, are committed again
/// on their own.
pub async fn commit_group(p: &Pipeline, tenant: TenantId, group: Vec<Request>) -> Vec<Answer> {
    // A key used by two requests of the group: the later one goes after the
    // group, alone, and finds the earlier one's record.
    let mut seen: HashSet<&String> = HashSet::new();
    let (mut first, mut later) = (Vec::new(), Vec::new());
    for (index, request) in group.iter().enumerate() {
        if request.keys().any(|k| seen.contains(k)) {
            later.push(index);
        } else {
            seen.extend(request.keys());
            first.push(index);
        }
    }
    let mut answers: Vec<Option<Answer>> = (0..group.len()).map(|_| None).collect();

    let refs: Vec<&Request> = first.iter().map(|&i| &group[i]).collect();
    match attempt(p, tenant, &refs).await {
        Ok(Some(done)) => {
            for (&index, answer) in first.iter().zip(done) {
                answers[index] = Some(answer);
            }
        }
        // A concurrent request claimed one of the keys: each request again
        // on its own, so the race costs only the requests it touches.
        Ok(None) => later = (0..group.len()).collect(),
        Err(e) => {
            for &index in &first {
                answers[index] = Some(Err(e.clone()));
            }
        }
    }
    for index in later {
        answers[index] = Some(commit_alone(p, tenant, &group[index]).await);
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(ApiError::internal("A request was not answered", "bug"))))
        .collect()
}

/// One request: a lost race for a key is looked up and tried again.
async fn commit_alone(p: &Pipeline, tenant: TenantId, request: &Request) -> Answer {
    for _ in 0..3 {
        match attempt(p, tenant, &[request]).await {
            Ok(Some(mut done)) => {
                return done
                    .pop()
                    .unwrap_or_else(|| Err(ApiError::internal("Enqueue returned nothing", "bug")))
            }
            Ok(None) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        "the idempotency keys of this request are being used by a concurrent request; retry",
    ))
}

/// A request's part of a group: what is already answered and what is new.
struct Plan {
    results: Vec<Option<Accepted>>,
    /// Indexes of its items to record and publish.
    fresh: Vec<usize>,
}

/// Looks the requests' keys up, records the new messages of the requests
/// that do not conflict in one transaction, publishes, waits for every
/// confirm. `Ok(None)`: a concurrent request claimed a key between the
/// lookup and the insert (nothing was recorded). `Err`: the database failed,
/// for every request alike.
async fn attempt(
    p: &Pipeline,
    tenant: TenantId,
    requests: &[&Request],
) -> Result<Option<Vec<Answer>>, ApiError> {
    let keys: Vec<String> = requests.iter().flat_map(|r| r.keys().cloned()).collect();
    let hits: HashMap<String, IdempotentHit> = p
        .store
        .idempotent_hits(tenant, &keys)
        .await?
        .into_iter()
        .map(|h| (h.key.clone(), h))
        .collect();

    let mut answers: Vec<Option<Answer>> = requests.iter().map(|_| None).collect();
    let mut plans: Vec<Option<Plan>> = Vec::with_capacity(requests.len());
    // Jobs of earlier requests under the same keys whose confirm was never
    // recorded: published again before this answer.
    let mut replays: Vec<(MessageId, Channel, Priority, Vec<u8>)> = Vec::new();
    let mut owner: HashMap<MessageId, usize> = HashMap::new();
    for (slot, request) in requests.iter().enumerate() {
        match plan(request, &hits) {
            Ok((plan, replayed)) => {
                for r in replayed {
                    owner.insert(r.0, slot);
                    replays.push(r);
                }
                plans.push(Some(plan));
            }
            Err(e) => {
                answers[slot] = Some(Err(e));
                plans.push(None);
            }
        }
    }

    // The tenant's limits, for the new messages only (a repeat of an
    // accepted request is answered as before, whatever the limits say).
    let limits = requests.last().map(|r| r.limits).unwrap_or_default();
    let charge = admit(p, tenant, limits, requests, &mut plans, &mut answers).await?;

    let now = Utc::now();
    let mut records = Vec::new();
    let mut due = Vec::new();
    for (slot, (request, plan)) in requests.iter().zip(&plans).enumerate() {
        let Some(plan) = plan else { continue };
        for &index in &plan.fresh {
            let item = &request.items[index];
            let m = &item.message;
            let mut job = m.to_job(tenant, now, request.trace.clone());
            if m.channel == herald_domain::Channel::Email {
                job.track_opens = request.tracking.opens;
                job.track_clicks = request.tracking.clicks;
            }
            let body = job.encode_to_vec();
            if m.scheduled_at.is_none() {
                due.push((m.id, m.channel, m.priority, body.clone()));
            }
            owner.insert(m.id, slot);
            records.push(NewRecord {
                id: m.id,
                channel: m.channel.as_str(),
                recipient: m.to.display(),
                status: m.initial_status(),
                priority: i16::from(m.priority.get()),
                batch_id: m.batch_id.map(|b| b.as_uuid()),
                idempotency_key: m.idempotency_key.clone(),
                request_hash: item.hash.clone(),
                metadata: serde_json::to_value(&m.metadata).unwrap_or(Value::Null),
                scheduled_at: m.scheduled_at,
                envelope: Some(body),
            });
        }
    }
    let replay_out = p.topology.to_user_batched(tenant, replays);
    let began = std::time::Instant::now();
    let suppressed = match p.store.insert_messages(tenant, &records).await {
        Ok(suppressed) => suppressed,
        Err(e) => {
            // Nothing was recorded: what was charged is given back (a lost
            // race is charged again when its requests are tried again).
            charge.give_back(p, tenant, records.len() as u64).await;
            return match e {
                StoreError::Conflict(_) => Ok(None),
                e => Err(e.into()),
            };
        }
    };
    // Emails to suppressed addresses were recorded `suppressed`, with no
    // job: nothing of them is published.
    if !suppressed.is_empty() {
        due.retain(|(id, ..)| !suppressed.contains(&id.as_uuid()));
        for r in records.iter_mut() {
            if suppressed.contains(&r.id.as_uuid()) {
                r.status = MessageStatus::Suppressed;
            }
        }
        metrics::counter!("herald_producer_suppressed_total").increment(suppressed.len() as u64);
    }
    let fresh_out = p.topology.to_user_batched(tenant, due);
    let recorded = std::time::Instant::now();
    metrics::histogram!("herald_producer_commit_seconds", "step" => "record")
        .record(recorded.duration_since(began).as_secs_f64());

    let refused = publish_confirmed(p, &fresh_out, &replay_out).await;
    metrics::histogram!("herald_producer_commit_seconds", "step" => "publish")
        .record(recorded.elapsed().as_secs_f64());
    let mut failed_slots: HashSet<usize> = HashSet::new();
    let mut confirmed: Vec<uuid::Uuid> = Vec::new();
    for (ids, _) in fresh_out.iter().chain(&replay_out) {
        for id in ids {
            if refused.ids.contains(id) {
                failed_slots.extend(owner.get(id));
            } else {
                confirmed.push(id.as_uuid());
            }
        }
    }
    p.confirms.confirmed(confirmed);
    let replayed: usize = replay_out.iter().map(|(ids, _)| ids.len()).sum();
    if replayed > 0 {
        metrics::counter!("herald_producer_replays_republished_total").increment(replayed as u64);
    }

    // New messages the broker did not confirm were marked failed, not
    // accepted: they do not count against the limits.
    let unconfirmed = fresh_out
        .iter()
        .flat_map(|(ids, _)| ids)
        .filter(|id| refused.ids.contains(id))
        .count();
    charge.give_back(p, tenant, unconfirmed as u64).await;

    let mut records = records.into_iter();
    for (slot, (request, plan)) in requests.iter().zip(plans).enumerate() {
        let Some(mut plan) = plan else { continue };
        for &index in &plan.fresh {
            let record = records.next().expect("one record per fresh item");
            plan.results[index] = Some(Accepted {
                id: request.items[index].message.id,
                status: record.status,
            });
        }
        answers[slot] = Some(if failed_slots.contains(&slot) {
            Err(refused.error(request.items.len()))
        } else {
            metrics::counter!("herald_producer_accepted_total").increment(plan.fresh.len() as u64);
            Ok(plan.results.into_iter().flatten().collect())
        });
    }
    Ok(Some(
        answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| Err(ApiError::internal("A request was not answered", "bug")))
            })
            .collect(),
    ))
}

type Replay = (MessageId, Channel, Priority, Vec<u8>);

/// What [`admit`] charged, to give back what was not accepted after all.
struct Charge {
    limits: TenantLimits,
    day: i64,
}

impl Charge {
    async fn give_back(&self, p: &Pipeline, tenant: TenantId, messages: u64) {
        if messages == 0 || self.limits.is_unlimited() {
            return;
        }
        if let Err(e) = p
            .capacity
            .unadmit(tenant.as_uuid(), self.limits, messages, self.day)
            .await
        {
            // Errs on the side of fewer: the tenant may send that many
            // fewer today.
            tracing::warn!(tenant_id = %tenant, messages, error = %e, "Failed to give back a tenant-limit charge.");
        }
    }
}

/// Charges each planned request's new messages against the tenant's
/// limits, all or nothing per request, in one Redis call for the group. A
/// request over a limit is answered 429 (422 when it is larger than the
/// rate limit admits at once) and dropped from the group. Redis
/// unreachable refuses the whole group with 503: a limit is never left
/// unchecked.
async fn admit(
    p: &Pipeline,
    tenant: TenantId,
    limits: TenantLimits,
    requests: &[&Request],
    plans: &mut [Option<Plan>],
    answers: &mut [Option<Answer>],
) -> Result<Charge, ApiError> {
    let charge = Charge { limits, day: 0 };
    if limits.is_unlimited() {
        return Ok(charge);
    }
    let slots: Vec<usize> = (0..plans.len())
        .filter(|&slot| {
            plans[slot]
                .as_ref()
                .is_some_and(|plan| !plan.fresh.is_empty())
        })
        .collect();
    let sizes: Vec<u64> = slots
        .iter()
        .filter_map(|&slot| plans[slot].as_ref().map(|plan| plan.fresh.len() as u64))
        .collect();
    if sizes.is_empty() {
        return Ok(charge);
    }
    let store = p.store.clone();
    let admitted = p
        .capacity
        .admit(tenant.as_uuid(), limits, &sizes, move |since_ms| async move {
            store
                .messages_since(tenant, herald_capacity::tenant::first_id_at(since_ms))
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| {
            tracing::warn!(tenant_id = %tenant, error = %e, "Cannot check a tenant's limits; refusing its requests.");
            ApiError::unavailable(
                "the tenant's rate limit and daily quota cannot be checked at the moment; retry",
                1,
            )
        })?;
    for ((&slot, &size), answer) in slots.iter().zip(&sizes).zip(admitted.answers) {
        let refusal = match answer {
            Admission::Admitted => continue,
            other => refusal(other, limits, size, requests[slot].items.len() > 1),
        };
        metrics::counter!("herald_producer_refused_total", "code" => refusal.code).increment(size);
        answers[slot] = Some(Err(refusal));
        plans[slot] = None;
    }
    Ok(Charge {
        limits,
        day: admitted.day,
    })
}

/// The answer to a request over a limit; `size` is its new messages.
fn refusal(answer: Admission, limits: TenantLimits, size: u64, batch: bool) -> ApiError {
    let rate = limits.rate_per_sec.unwrap_or(0);
    let quota = limits.daily_quota.unwrap_or(0);
    let has = if batch {
        format!("; this request has {size} new messages")
    } else {
        String::new()
    };
    match answer {
        Admission::RateLimited { retry_after } => ApiError::too_many(
            "rate_limited",
            format!(
                "over this tenant's rate limit of {rate} messages per second{has}; retry after {} ms",
                retry_after.as_millis()
            ),
            retry_after.as_secs_f64().ceil() as u64,
        ),
        Admission::QuotaExceeded {
            remaining,
            retry_after,
        } => ApiError::too_many(
            "quota_exceeded",
            format!(
                "over this tenant's daily quota of {quota} messages: {remaining} remain today{has}; the quota renews at 00:00 UTC"
            ),
            retry_after.as_secs_f64().ceil() as u64,
        ),
        Admission::OverBurst { burst } => ApiError::invalid_field(FieldError::new(
            "messages",
            format!(
                "this request has {size} new messages, more than this tenant's rate limit of {burst} per second admits at once; send at most {burst} per request"
            ),
        )),
        Admission::Admitted => ApiError::internal("An admitted request was refused", "bug"),
    }
}

/// Sorts one request's items into answered by an earlier request (a key
/// hit, replayed when its confirm was never recorded) and new; a key reused
/// with a different request is the request's error.
fn plan(
    request: &Request,
    hits: &HashMap<String, IdempotentHit>,
) -> Result<(Plan, Vec<Replay>), ApiError> {
    let mut results = Vec::with_capacity(request.items.len());
    let mut fresh = Vec::new();
    let mut replays = Vec::new();
    for (index, item) in request.items.iter().enumerate() {
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
                if request.items.len() > 1 {
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
                }));
            }
            None => {
                results.push(None);
                fresh.push(index);
            }
        }
    }
    Ok((Plan { results, fresh }, replays))
}

/// The jobs the broker did not confirm, and why.
#[derive(Default)]
struct Refused {
    ids: HashSet<MessageId>,
    reason: String,
}

impl Refused {
    fn error(&self, messages: usize) -> ApiError {
        ApiError::unavailable(
            format!(
                "the broker could not confirm this request's {messages} message(s) ({}); retry with idempotency keys",
                self.reason
            ),
            5,
        )
    }
}

/// Publishes and waits for every confirm. New messages the broker did not
/// confirm are marked failed (`unavailable`) so that nothing the caller was
/// refused goes out later; replayed ones stay in the outbox for the
/// reconciler (an earlier answer may have accepted them). The requests they
/// belong to get 503 and retry.
async fn publish_confirmed(
    p: &Pipeline,
    fresh: &[(Vec<MessageId>, Outbound)],
    replays: &[(Vec<MessageId>, Outbound)],
) -> Refused {
    let mut refused = Refused::default();
    if fresh.is_empty() && replays.is_empty() {
        return refused;
    }
    let all: Vec<&(Vec<MessageId>, Outbound)> = fresh.iter().chain(replays).collect();
    let results = futures::future::join_all(all.iter().map(|(_, o)| p.publisher.publish(o))).await;
    let mut failed: Vec<uuid::Uuid> = Vec::new();
    for (slot, ((ids, _), result)) in all.iter().zip(results).enumerate() {
        if let Err(e) = result {
            if refused.ids.is_empty() {
                refused.reason = e.to_string();
            }
            refused.ids.extend(ids.iter().copied());
            if slot < fresh.len() {
                failed.extend(ids.iter().map(|id| id.as_uuid()));
            }
        }
    }
    if refused.ids.is_empty() {
        return refused;
    }
    if !failed.is_empty() {
        if let Err(e) = p
            .store
            .mark_unpublished(
                &failed,
                &format!("the broker did not confirm the publish: {}", refused.reason),
            )
            .await
        {
            tracing::error!(error = %e, count = failed.len(), "Failed to mark unconfirmed messages; the reconciler will publish them.");
        }
    }
    tracing::warn!(error = %refused.reason, count = refused.ids.len(), "The broker did not confirm publishes; answering 503.");
    refused
}
