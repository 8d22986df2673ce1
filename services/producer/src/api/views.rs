//! Store records as the contract shows them: the one place a stored value
//! becomes a response body.

use std::collections::BTreeMap;

use herald_api::{MessageEvent, MessageRecord, Provider};
use herald_domain::provider_config::ProviderConfig;
use herald_store::ProviderRow;

use super::error::ApiError;

/// A provider with its config's secrets shown as `***`. A row that does not
/// decode (the store's policy: unusable until an operator fixes it) is
/// answered 503 with its reason logged.
pub fn provider(row: ProviderRow) -> Result<Provider, ApiError> {
    let p = row
        .decode()
        .map_err(|e| ApiError::internal("A stored provider does not decode", e.reason))?;
    Ok(Provider {
        id: p.id,
        tenant_id: p.tenant_id,
        name: p.name,
        channel: p.channel,
        kind: p.kind,
        config: ProviderConfig::redact(&row.config),
        quota: p.quota,
        send_window: p.send_window,
        weight: p.weight,
        enabled: p.enabled,
        created_at: p.created_at,
        updated_at: p.updated_at,
    })
}

pub fn record(m: herald_domain::MessageRecord) -> Result<MessageRecord, ApiError> {
    let metadata: BTreeMap<String, String> = serde_json::from_value(m.metadata)
        .map_err(|e| ApiError::internal("A stored message's metadata does not decode", e))?;
    Ok(MessageRecord {
        id: m.id,
        status: m.status,
        channel: m.channel,
        to: m.recipient,
        provider: m.provider_id,
        provider_name: m.provider_name,
        attempts: m.attempts,
        priority: m.priority.get(),
        batch_id: m.batch_id,
        error_code: m.error_code,
        error_message: m.error_message,
        metadata,
        scheduled_at: m.scheduled_at,
        created_at: m.created_at,
        sent_at: m.sent_at,
        delivered_at: m.delivered_at,
        events: Vec::new(),
    })
}

/// A record with its events (`GET` of one message).
pub fn record_with_events(
    m: herald_domain::MessageRecord,
    events: Vec<herald_store::StoredEvent>,
) -> Result<MessageRecord, ApiError> {
    let mut record = record(m)?;
    record.events = events
        .into_iter()
        .map(|e| MessageEvent {
            event: e.event,
            at: e.at,
            detail: match e.detail {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
        })
        .collect();
    Ok(record)
}
