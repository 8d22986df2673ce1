//! Provider callbacks (`callback_events`): stored first, applied to their
//! messages by rank (decision 0027). Workers call [`Store::record_callbacks`]
//! with a batch from the callbacks queue and [`Store::apply_waiting_callbacks`]
//! every second for events that arrived before their message was sent.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use herald_domain::{status_rank, EventKind, MessageId, MessageStatus, TRACKING_PROVIDER};
use serde_json::Value;
use uuid::Uuid;

use crate::webhooks::webhook_outbox;
use crate::{Result, Store};

/// An event as the producer queued it.
#[derive(Debug, Clone)]
pub struct NewCallback {
    pub id: Uuid,
    pub provider_id: Uuid,
    pub message_id: Option<Uuid>,
    /// The member the event is about, when no message is named.
    pub recipient: Option<String>,
    pub event: EventKind,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub detail: Value,
    pub raw: String,
    pub dedupe_key: Vec<u8>,
}

/// What a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Deliveries of an event already stored (a provider's retries).
    pub duplicates: u64,
    pub processed: u64,
    pub ignored: u64,
    /// Stored, waiting for their message to be sent.
    pub waiting: u64,
    /// Messages whose status moved.
    pub moved: u64,
    /// Addresses added to their tenant's suppression list (hard bounces,
    /// complaints).
    pub suppressed: u64,
}

impl std::ops::AddAssign for Applied {
    fn add_assign(&mut self, o: Applied) {
        self.duplicates += o.duplicates;
        self.processed += o.processed;
        self.ignored += o.ignored;
        self.waiting += o.waiting;
        self.moved += o.moved;
        self.suppressed += o.suppressed;
    }
}

/// One of a message's events, for its record.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub event: EventKind,
    pub at: DateTime<Utc>,
    pub detail: Value,
}

/// How long an event waits for its message to be sent before it is
/// given up (`ignored`).
pub const WAIT_LIMIT_DAYS: i32 = 7;

impl Store {
    /// Stores `events` (a delivery already stored — same provider and
    /// dedupe key — is counted as a duplicate and changes nothing) and
    /// applies the new ones, in one transaction.
    pub async fn record_callbacks(&self, events: &[NewCallback]) -> Result<Applied> {
        if events.is_empty() {
            return Ok(Applied::default());
        }
        let mut tx = self.pool.begin().await?;
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let providers: Vec<Uuid> = events.iter().map(|e| e.provider_id).collect();
        let messages: Vec<Option<Uuid>> = events.iter().map(|e| e.message_id).collect();
        let recipients: Vec<Option<&str>> = events.iter().map(|e| e.recipient.as_deref()).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        let occurred: Vec<DateTime<Utc>> = events.iter().map(|e| e.occurred_at).collect();
        let received: Vec<DateTime<Utc>> = events.iter().map(|e| e.received_at).collect();
        let details: Vec<String> = events.iter().map(|e| e.detail.to_string()).collect();
        let raws: Vec<&str> = events.iter().map(|e| e.raw.as_str()).collect();
        let keys: Vec<&[u8]> = events.iter().map(|e| e.dedupe_key.as_slice()).collect();
        // Within one batch the same delivery may come twice (a retry that
        // overtook the first's ack): DISTINCT ON keeps the first.
        let inserted: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO callback_events (id, provider_id, message_id, recipient, event, occurred_at,
                                          received_at, detail, raw, dedupe_key)
             SELECT DISTINCT ON (u.provider_id, u.key) u.id, u.provider_id, u.message_id, u.recipient,
                    u.event, u.occurred_at, u.received_at, u.detail::jsonb, u.raw, u.key
             FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                         $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[], $10::bytea[])
                  AS u(id, provider_id, message_id, recipient, event, occurred_at, received_at,
                       detail, raw, key)
             ORDER BY u.provider_id, u.key, u.received_at
             ON CONFLICT (provider_id, dedupe_key) DO NOTHING
             RETURNING id",
        )
        .bind(&ids)
        .bind(&providers)
        .bind(&messages)
        .bind(&recipients)
        .bind(&kinds)
        .bind(&occurred)
        .bind(&received)
        .bind(&details)
        .bind(&raws)
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await?;
        let mut applied = Applied {
            duplicates: (events.len() - inserted.len()) as u64,
            ..Applied::default()
        };
        applied += apply(&mut tx, &inserted).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Applies events that were waiting for their message to be sent, up to
    /// `limit` of the oldest; events waiting longer than
    /// [`WAIT_LIMIT_DAYS`] are given up. Several workers may sweep at once:
    /// each takes events the others have not locked.
    pub async fn apply_waiting_callbacks(&self, limit: i64) -> Result<Applied> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM callback_events WHERE state = 'received'
             ORDER BY received_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            return Ok(Applied::default());
        }
        let applied = apply(&mut tx, &ids).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// A message's events, oldest first.
    pub async fn message_events(&self, message: MessageId) -> Result<Vec<StoredEvent>> {
        let rows: Vec<(String, DateTime<Utc>, Value)> = sqlx::query_as(
            "SELECT event, occurred_at, detail FROM callback_events
             WHERE message_id = $1 AND state IN ('processed', 'received')
             ORDER BY occurred_at, received_at",
        )
        .bind(message.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(event, at, detail)| {
                Some(StoredEvent {
                    event: event.parse().ok()?,
                    at,
                    detail,
                })
            })
            .collect())
    }

    /// Counts of stored events by state (tests, the demo's summary).
    pub async fn callback_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT state, count(*) FROM callback_events GROUP BY state ORDER BY state",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

#[derive(sqlx::FromRow)]
struct Pending {
    id: Uuid,
    provider_id: Uuid,
    message_id: Option<Uuid>,
    recipient: Option<String>,
    event: String,
    occurred_at: DateTime<Utc>,
    detail: Value,
    too_old: bool,
}

#[derive(sqlx::FromRow)]
struct Target {
    id: Uuid,
    tenant_id: Uuid,
    provider_id: Option<Uuid>,
    channel: String,
    recipient: String,
    status: String,
    delivered_at: Option<DateTime<Utc>>,
}

/// What becomes of one event.
enum Verdict {
    Processed,
    Ignored(String),
    Waiting,
}

/// Applies the events `ids` (locked or just inserted by this transaction):
/// each either moves its message forward by rank (`processed`, also when
/// the message already ranks higher), waits for its message to be sent, or
/// is `ignored` with the reason.
async fn apply(tx: &mut sqlx::PgConnection, ids: &[Uuid]) -> Result<Applied> {
    if ids.is_empty() {
        return Ok(Applied::default());
    }
    // A member's event names no message: match it to the latest message
    // this provider sent the member (sent or later).
    sqlx::query(
        "UPDATE callback_events e SET message_id = (
             SELECT m.id FROM messages m
             WHERE m.channel = 'wework' AND string_to_array(m.recipient, '|') @> ARRAY[e.recipient]
               AND m.provider_id = e.provider_id
               AND m.status NOT IN ('queued', 'scheduled', 'pending', 'sending', 'failed', 'cancelled', 'suppressed')
             ORDER BY m.id DESC LIMIT 1)
         WHERE e.id = ANY($1) AND e.message_id IS NULL AND e.recipient IS NOT NULL",
    )
    .bind(ids)
    .execute(&mut *tx)
    .await?;
    let events: Vec<Pending> = sqlx::query_as(
        "SELECT id, provider_id, message_id, recipient, event, occurred_at, detail,
                received_at < now() - make_interval(days => $2) AS too_old
         FROM callback_events WHERE id = ANY($1) AND state = 'received'
         ORDER BY occurred_at, id",
    )
    .bind(ids)
    .bind(WAIT_LIMIT_DAYS)
    .fetch_all(&mut *tx)
    .await?;
    let mut message_ids: Vec<Uuid> = events.iter().filter_map(|e| e.message_id).collect();
    message_ids.sort_unstable();
    message_ids.dedup();
    // Locked in id order, like every other writer of messages.
    let targets: HashMap<Uuid, Target> = sqlx::query_as::<_, Target>(
        "SELECT id, tenant_id, provider_id, channel, recipient, status, delivered_at FROM messages
         WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .bind(&message_ids)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|t| (t.id, t))
    .collect();

    // Each message's new status and delivery time, from its events in
    // the order they happened.
    let mut moves: HashMap<Uuid, (MessageStatus, Option<DateTime<Utc>>)> = HashMap::new();
    let mut verdicts: Vec<(Uuid, Verdict, Option<Uuid>)> = Vec::with_capacity(events.len());
    // (tenant, address, reason, message) to suppress.
    let mut suppress: Vec<(Uuid, String, &'static str, Uuid)> = Vec::new();
    for e in &events {
        let verdict = judge(e, e.message_id.and_then(|m| targets.get(&m)), &mut moves);
        if let (Verdict::Processed, Some(t)) =
            (&verdict, e.message_id.and_then(|m| targets.get(&m)))
        {
            if let Some(reason) = suppresses(e, t) {
                suppress.push((t.tenant_id, t.recipient.to_lowercase(), reason, t.id));
            }
        }
        let tenant = e
            .message_id
            .and_then(|m| targets.get(&m))
            .map(|t| t.tenant_id);
        verdicts.push((e.id, verdict, tenant));
    }

    let mut applied = Applied::default();
    let (mut m_ids, mut m_status, mut m_delivered) = (Vec::new(), Vec::new(), Vec::new());
    for (id, (status, delivered)) in &moves {
        let t = &targets[id];
        let current: MessageStatus = t.status.parse().unwrap_or(MessageStatus::Sent);
        if status_rank(*status) > status_rank(current) || delivered != &t.delivered_at {
            m_ids.push(*id);
            m_status.push(status.as_str());
            m_delivered.push(*delivered);
        }
    }
    if !m_ids.is_empty() {
        applied.moved = sqlx::query(
            "UPDATE messages m SET status = u.status, delivered_at = u.delivered_at, updated_at = now()
             FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) AS u(id, status, delivered_at)
             WHERE m.id = u.id",
        )
        .bind(&m_ids)
        .bind(&m_status)
        .bind(&m_delivered)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }

    let (mut e_ids, mut e_states, mut e_reasons, mut e_tenants) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, verdict, tenant) in verdicts {
        let (state, reason) = match verdict {
            Verdict::Processed => {
                applied.processed += 1;
                ("processed", None)
            }
            Verdict::Ignored(reason) => {
                applied.ignored += 1;
                ("ignored", Some(reason))
            }
            Verdict::Waiting => {
                applied.waiting += 1;
                continue;
            }
        };
        e_ids.push(id);
        e_states.push(state);
        e_reasons.push(reason);
        e_tenants.push(tenant);
    }
    if !suppress.is_empty() {
        let tenants: Vec<Uuid> = suppress.iter().map(|s| s.0).collect();
        let addresses: Vec<&str> = suppress.iter().map(|s| s.1.as_str()).collect();
        let reasons: Vec<&str> = suppress.iter().map(|s| s.2).collect();
        let messages: Vec<Uuid> = suppress.iter().map(|s| s.3).collect();
        applied.suppressed = sqlx::query(
            "INSERT INTO suppressions (tenant_id, address, reason, message_id)
             SELECT DISTINCT ON (u.tenant_id, u.address) u.tenant_id, u.address, u.reason, u.message_id
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::uuid[]) AS u(tenant_id, address, reason, message_id)
             ORDER BY u.tenant_id, u.address
             ON CONFLICT (tenant_id, address) DO NOTHING",
        )
        .bind(&tenants)
        .bind(&addresses)
        .bind(&reasons)
        .bind(&messages)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    if !e_ids.is_empty() {
        sqlx::query(
            "UPDATE callback_events e SET state = u.state, reason = u.reason, tenant_id = u.tenant_id,
                 processed_at = now()
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::uuid[]) AS u(id, state, reason, tenant_id)
             WHERE e.id = u.id",
        )
        .bind(&e_ids)
        .bind(&e_states)
        .bind(&e_reasons)
        .bind(&e_tenants)
        .execute(&mut *tx)
        .await?;
        // Each processed event is reported to its tenant's webhook, with
        // the provider's detail.
        sqlx::query(webhook_outbox!(
            "SELECT tenant_id, message_id, event, occurred_at, detail, provider_id
             FROM callback_events WHERE id = ANY($1) AND state = 'processed'",
            "CASE WHEN jsonb_typeof(e.detail) = 'object' THEN e.detail
                  ELSE jsonb_build_object('detail', e.detail) END
             || jsonb_build_object('provider_id', e.provider_id)"
        ))
        .bind(&e_ids)
        .execute(&mut *tx)
        .await?;
    }
    Ok(applied)
}

/// Whether a processed event puts its email recipient on the tenant's
/// suppression list: a complaint does, and so does a bounce unless the
/// provider says it was soft (`detail.type: "soft"`, or a 4.x.x status).
fn suppresses(e: &Pending, t: &Target) -> Option<&'static str> {
    if t.channel != "email" {
        return None;
    }
    match e.event.parse::<EventKind>().ok()? {
        EventKind::Complained => Some("complaint"),
        EventKind::Bounced => {
            let soft_type = e.detail.get("type").and_then(Value::as_str) == Some("soft");
            let soft_status = e
                .detail
                .get("status")
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with('4'));
            (!soft_type && !soft_status).then_some("hard_bounce")
        }
        _ => None,
    }
}

/// Decides one event against its message (`None`: no such message), and
/// folds it into the message's move.
fn judge(
    e: &Pending,
    target: Option<&Target>,
    moves: &mut HashMap<Uuid, (MessageStatus, Option<DateTime<Utc>>)>,
) -> Verdict {
    let Ok(kind) = e.event.parse::<EventKind>() else {
        return Verdict::Ignored(format!("unknown event {:?}", e.event));
    };
    let Some(t) = target else {
        return Verdict::Ignored(match (&e.message_id, &e.recipient) {
            (Some(id), _) => format!("no message {id}"),
            (None, Some(member)) => {
                format!("this provider sent no message to {member:?} that could be matched")
            }
            (None, None) => "the event names no message".into(),
        });
    };
    if e.provider_id != TRACKING_PROVIDER && t.provider_id != Some(e.provider_id) {
        return Verdict::Ignored(
            "the message was not sent through the provider that reported it".into(),
        );
    }
    if e.provider_id == TRACKING_PROVIDER
        && e.detail.get("bot").and_then(Value::as_bool) == Some(true)
    {
        return Verdict::Ignored(
            "a scanner or prefetcher, by the tracking heuristic (docs/API.md, Tracking)".into(),
        );
    }
    let Ok(current) = t.status.parse::<MessageStatus>() else {
        return Verdict::Ignored(format!("the message's status {:?} is unknown", t.status));
    };
    if status_rank(current).is_none() {
        if current.is_cancellable() || current == MessageStatus::Sending {
            if e.too_old {
                return Verdict::Ignored(format!(
                    "the message was still not sent after {WAIT_LIMIT_DAYS} days"
                ));
            }
            return Verdict::Waiting;
        }
        return Verdict::Ignored(format!("the message ended {current}"));
    }
    let (status, delivered) = moves.entry(t.id).or_insert((current, t.delivered_at));
    if status_rank(kind.status()) > status_rank(*status) {
        *status = kind.status();
    }
    if kind.implies_delivery() && delivered.is_none_or(|d| e.occurred_at < d) {
        *delivered = Some(e.occurred_at);
    }
    Verdict::Processed
}
