//! The scheduler against the real RabbitMQ, Redis and PostgreSQL: it picks
//! up a tenant created while it runs, and never places more than a
//! provider's quota.

use std::time::Duration;

use futures::StreamExt;
use herald_broker::lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions};
use herald_broker::lapin::types::FieldTable;
use herald_broker::{Publisher, Topology};
use herald_domain::{Channel, MessageId, Priority, ProviderId, TenantId};
use herald_proto::v1;
use herald_proto::Message as _;
use herald_store::{NewProvider, NewTenant, Store};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tenant_is_drained_without_a_restart_and_a_quota_is_never_exceeded() {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let namespace = format!("sch_{}", &suffix[..12]);
    let database = format!("herald_{namespace}");
    let settings = herald_scheduler::Settings::for_tests(&namespace, &database);
    let app = herald_scheduler::App::build(settings.clone())
        .await
        .expect("scheduler builds");
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));

    // Created after the scheduler started: it must learn of both.
    let store = Store::connect(&settings.common.database_url, 2)
        .await
        .expect("store");
    let tenant = TenantId::new();
    let broker = herald_broker::connect(
        &settings.common.amqp_url,
        "scheduler-test",
        Duration::from_secs(5),
    )
    .await
    .expect("broker");
    let topology = Topology::new(&namespace);
    let ch = broker.channel().await.expect("channel");
    topology.declare_tenant(&ch, tenant).await.expect("declare");
    store
        .create_tenant(&NewTenant {
            id: tenant,
            code: "t".into(),
            name: "T".into(),
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
            name: "limited".into(),
            channel: "wework".into(),
            kind: "wework".into(),
            config: json!({"corp_id": "c", "corp_secret": "s", "agent_id": 1}),
            quota: json!({"per_minute": 5}),
            send_window: None,
            weight: 100,
            enabled: true,
        })
        .await
        .expect("provider");

    let publisher = Publisher::new(&broker).await.expect("publisher");
    let jobs: Vec<_> = (0..8)
        .map(|i| {
            let job = v1::Job {
                message_id: MessageId::new().to_string(),
                tenant_id: tenant.to_string(),
                channel: v1::Channel::Wework as i32,
                recipients: vec![format!("u{i}")],
                priority: 5,
                ..Default::default()
            };
            topology.to_user(
                tenant,
                Channel::Wework,
                job.encode_to_vec(),
                Priority::DEFAULT,
            )
        })
        .collect();
    publisher.publish_all(&jobs).await.expect("publish");

    // Count what reaches the central queue within a few seconds.
    let central = topology.central_queue(Channel::Wework);
    ch.queue_declare(
        &central,
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("central exists");
    let mut consumer = ch
        .basic_consume(
            &central,
            "",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut placed = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while let Ok(Some(Ok(d))) = tokio::time::timeout_at(deadline, consumer.next()).await {
        let job = v1::Job::decode(d.data.as_slice()).expect("a job");
        let _ = d.acker.ack(BasicAckOptions::default()).await;
        placed.push(job);
    }
    assert_eq!(
        placed.len(),
        5,
        "a per_minute quota of 5 must place exactly 5 of 8 in a minute"
    );
    for job in &placed {
        let a = job.assignment.as_ref().expect("assigned");
        assert_eq!(a.provider_id, provider.to_string());
        assert_eq!(a.cost, 1);
    }

    let _ = stop.send(());
    let _ = task.await;
    let _ = topology.delete_all(&ch, &[tenant]).await;
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
