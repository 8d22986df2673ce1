//! The worker against the real RabbitMQ, Redis and PostgreSQL and the
//! provider simulator: it sends what it claims exactly once, records it, and
//! sends a redelivered duplicate of a sent message never again.

use std::time::Duration;

use herald_broker::{Publisher, Topology};
use herald_domain::{Channel, MessageId, MessageStatus, Priority, ProviderId, TenantId};
use herald_proto::v1;
use herald_proto::Message as _;
use herald_sim::{Sim, SimChannel, SimConfig};
use herald_store::{NewProvider, NewRecord, NewTenant, Store};
use serde_json::json;

async fn status_of(store: &Store, tenant: TenantId, id: MessageId) -> String {
    store
        .message(tenant, id)
        .await
        .ok()
        .flatten()
        .map(|m| m.status)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_job_is_sent_once_and_a_duplicate_delivery_is_never_sent_again() {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let namespace = format!("wrk_{}", &suffix[..12]);
    let database = format!("herald_{namespace}");
    let settings = herald_worker::Settings::for_tests(&namespace, &database);

    let sim = Sim::build(SimConfig::ephemeral()).await.expect("sim");
    let (sim_handle, sim_port) = (sim.handle(), sim.http_port());
    let (sim_stop, sim_rx) = tokio::sync::oneshot::channel::<()>();
    let sim_task = tokio::spawn(sim.run(async move {
        let _ = sim_rx.await;
    }));

    let store = Store::connect(&settings.common.database_url, 2)
        .await
        .expect("store");
    let tenant = TenantId::new();
    store
        .create_tenant(&NewTenant {
            id: tenant,
            code: "w".into(),
            name: "W".into(),
            weight: 1,
            daily_quota: None,
            rate_limit_per_sec: None,
            webhook_url: None,
        })
        .await
        .expect("tenant");
    let provider = ProviderId::new();
    store
        .create_provider(&NewProvider {
            id: provider,
            tenant_id: None,
            name: "sim".into(),
            channel: "wework".into(),
            kind: "wework".into(),
            config: json!({"base_url": format!("http://127.0.0.1:{sim_port}"), "corp_id": "c", "corp_secret": "s", "agent_id": 1}),
            quota: json!({}),
            send_window: None,
            weight: 100,
            enabled: true,
        })
        .await
        .expect("provider");

    let app = herald_worker::App::build(settings.clone())
        .await
        .expect("worker builds");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));

    let id = MessageId::new();
    store
        .insert_messages(
            tenant,
            &[NewRecord {
                id,
                channel: "wework",
                recipient: "u1".into(),
                status: MessageStatus::Queued,
                priority: 5,
                batch_id: None,
                idempotency_key: None,
                request_hash: vec![],
                metadata: json!({}),
                scheduled_at: None,
                parked_envelope: None,
            }],
        )
        .await
        .expect("record");
    let job = v1::Job {
        message_id: id.to_string(),
        tenant_id: tenant.to_string(),
        channel: v1::Channel::Wework as i32,
        recipients: vec!["u1".into()],
        content: Some(v1::Content {
            text: "hi".into(),
            ..Default::default()
        }),
        priority: 5,
        assignment: Some(v1::Assignment {
            provider_id: provider.to_string(),
            reserved_at_ms: 0,
            cost: 1,
        }),
        ..Default::default()
    };
    let broker = herald_broker::connect(
        &settings.common.amqp_url,
        "worker-test",
        Duration::from_secs(5),
    )
    .await
    .expect("broker");
    let topology = Topology::new(&namespace);
    let publisher = Publisher::new(&broker).await.expect("publisher");
    let out = topology.to_central(Channel::Wework, job.encode_to_vec(), Priority::DEFAULT);
    publisher.publish(&out).await.expect("publish");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while status_of(&store, tenant, id).await != "sent" && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status_of(&store, tenant, id).await, "sent");
    assert_eq!(sim_handle.count(SimChannel::Wework, &id.to_string()), 1);

    // The broker delivers the same job again (a lost ack, a republish).
    publisher.publish(&out).await.expect("publish again");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sim_handle.count(SimChannel::Wework, &id.to_string()),
        1,
        "a duplicate delivery was sent"
    );
    assert_eq!(status_of(&store, tenant, id).await, "sent");

    let _ = stop.send(());
    task.await.expect("joined").expect("worker stops cleanly");
    let _ = sim_stop.send(());
    let _ = sim_task.await;
    if let Ok(ch) = broker.channel().await {
        let _ = topology.delete_all(&ch, &[]).await;
    }
    broker.close().await;
    store.pool().close().await;
    if let Ok(admin) = sqlx::PgPool::connect("postgres://postgres@127.0.0.1:5432/postgres").await {
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .execute(&admin)
        .await;
    }
}
