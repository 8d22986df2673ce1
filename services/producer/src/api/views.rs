//! Store rows as the contract shows them: the one place a row becomes a
//! response body.

use std::collections::BTreeMap;

use herald_api::{MessageRecord, Provider, Tenant};
use herald_domain::provider_config::ProviderConfig;
use herald_domain::{Channel, MessageStatus, ProviderKind, Quota, SendWindow};
use herald_store::{MessageRow, ProviderRow, TenantRow};

use super::error::ApiError;

/// A row that does not decode is our fault, not the caller's: logged with
/// its id and answered 503.
fn undecodable(what: &str, id: uuid::Uuid, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(&format!("A stored {what} ({id}) does not decode"), e)
}

pub fn tenant(t: TenantRow) -> Tenant {
    Tenant {
        id: t.id.into(),
        code: t.code,
        name: t.name,
        status: t.status,
        weight: u32::try_from(t.weight).unwrap_or(1),
        daily_quota: t.daily_quota.map(|q| q.max(0) as u64),
        rate_limit_per_sec: t.rate_limit_per_sec.map(|r| r.max(0) as u32),
        webhook_url: t.webhook_url,
        created_at: t.created_at,
        updated_at: t.updated_at,
    }
}

pub fn provider(p: ProviderRow) -> Result<Provider, ApiError> {
    let channel: Channel = p
        .channel
        .parse()
        .map_err(|e| undecodable("provider", p.id, e))?;
    let kind: ProviderKind = p
        .kind
        .parse()
        .map_err(|e| undecodable("provider", p.id, e))?;
    let quota: Quota =
        serde_json::from_value(p.quota.clone()).map_err(|e| undecodable("provider", p.id, e))?;
    let send_window: Option<SendWindow> = p
        .send_window
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| undecodable("provider", p.id, e))?;
    Ok(Provider {
        id: p.id.into(),
        tenant_id: p.tenant_id.map(Into::into),
        name: p.name,
        channel,
        kind,
        config: ProviderConfig::redact(&p.config),
        quota,
        send_window,
        weight: u32::try_from(p.weight).unwrap_or(0),
        enabled: p.enabled,
        created_at: p.created_at,
        updated_at: p.updated_at,
    })
}

pub fn record(m: MessageRow) -> Result<MessageRecord, ApiError> {
    let status: MessageStatus = m
        .status
        .parse()
        .map_err(|e| undecodable("message", m.id, e))?;
    let channel: Channel = m
        .channel
        .parse()
        .map_err(|e| undecodable("message", m.id, e))?;
    let metadata: BTreeMap<String, String> =
        serde_json::from_value(m.metadata).map_err(|e| undecodable("message", m.id, e))?;
    Ok(MessageRecord {
        id: m.id.into(),
        status,
        channel,
        to: m.recipient,
        provider: m.provider_id.map(Into::into),
        provider_name: m.provider_name,
        attempts: u32::try_from(m.attempts).unwrap_or(0),
        priority: u8::try_from(m.priority).unwrap_or(0),
        batch_id: m.batch_id.map(Into::into),
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
