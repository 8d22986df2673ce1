//! Fixtures written once: a tenant, a queued record, a provider pointing at
//! the simulator (as stored rows, and with feature `producer` as the API's
//! requests).

use herald_domain::{MessageId, MessageStatus, TenantId};
use herald_store::{NewProvider, NewRecord, NewTenant, Store};
use serde_json::json;

/// A tenant row with weight 1 and no quotas; change fields before storing.
pub fn new_tenant(code: &str) -> NewTenant {
    NewTenant {
        id: TenantId::new(),
        code: code.into(),
        name: code.to_uppercase(),
        weight: 1,
        daily_quota: None,
        rate_limit_per_sec: None,
        webhook_url: None,
        webhook_events: None,
        tracking: Default::default(),
    }
}

/// Stores a tenant (weight 1) and returns its id.
pub async fn tenant(store: &Store, code: &str) -> TenantId {
    let t = new_tenant(code);
    store.create_tenant(&t).await.expect("the tenant is stored");
    t.id
}

/// A `queued` record of priority 5 with no metadata, as the producer
/// records an accepted send.
pub fn queued(channel: &'static str, recipient: &str) -> NewRecord {
    NewRecord {
        id: MessageId::new(),
        channel,
        recipient: recipient.into(),
        status: MessageStatus::Queued,
        priority: 5,
        batch_id: None,
        idempotency_key: None,
        request_hash: vec![],
        metadata: json!({}),
        scheduled_at: None,
        envelope: None,
    }
}

/// Stores a [`queued`] record for `tenant` and returns its id.
pub async fn queued_record(
    store: &Store,
    tenant: TenantId,
    channel: &'static str,
    recipient: &str,
) -> MessageId {
    let record = queued(channel, recipient);
    let id = record.id;
    store
        .insert_messages(tenant, &[record])
        .await
        .expect("the record is stored");
    id
}

/// A shared WeWork provider row sending to the simulator's HTTP API at
/// `base_url` (`http://127.0.0.1:port`), with `quota`.
pub fn sim_wework_row(name: &str, base_url: &str, quota: serde_json::Value) -> NewProvider {
    NewProvider {
        id: herald_domain::ProviderId::new(),
        tenant_id: None,
        name: name.into(),
        channel: "wework".into(),
        kind: "wework".into(),
        config: json!({"base_url": base_url, "corp_id": "c", "corp_secret": "s", "agent_id": 1}),
        quota,
        send_window: None,
        weight: 100,
        enabled: true,
    }
}

/// `POST /v1/admin/providers` for the simulator's SMTP server on
/// `smtp_port` over STARTTLS, trusting its CA, with room for any test.
#[cfg(feature = "producer")]
pub fn sim_smtp(name: &str, smtp_port: u16, ca_file: &std::path::Path) -> herald_api::NewProvider {
    herald_api::NewProvider {
        name: name.into(),
        channel: None,
        kind: herald_domain::ProviderKind::Smtp,
        config: json!({"host": "127.0.0.1", "port": smtp_port, "tls": "starttls",
                       "ca_file": ca_file, "from": "e2e@herald.local", "pool_size": 8}),
        quota: Some(herald_domain::Quota {
            per_minute: Some(1_000_000),
            ..Default::default()
        }),
        send_window: None,
        weight: None,
        enabled: None,
        tenant_id: None,
    }
}

/// `POST /v1/admin/providers` for the simulator's WeWork API on `http_port`.
#[cfg(feature = "producer")]
pub fn sim_wework(name: &str, http_port: u16) -> herald_api::NewProvider {
    herald_api::NewProvider {
        name: name.into(),
        channel: None,
        kind: herald_domain::ProviderKind::Wework,
        config: json!({"base_url": format!("http://127.0.0.1:{http_port}"),
                       "corp_id": "corp", "corp_secret": "secret", "agent_id": 1000002}),
        quota: None,
        send_window: None,
        weight: None,
        enabled: None,
        tenant_id: None,
    }
}
