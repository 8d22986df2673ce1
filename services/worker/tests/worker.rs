//! The worker against the real RabbitMQ, Redis and PostgreSQL and the
//! provider simulator: it sends what it claims exactly once, records it,
//! sends a redelivered duplicate of a sent message never again, holds a
//! provider's concurrency with leases, and feeds the provider's statistics.

use std::time::Duration;

use herald_broker::{Publisher, Topology};
use herald_capacity::Capacity;
use herald_domain::{Channel, MessageId, Priority, ProviderId, TenantId};
use herald_proto::v1;
use herald_proto::Message as _;
use herald_sim::{Sim, SimChannel, SimConfig, SimHandle};
use herald_store::Store;
use herald_testing::{fixtures, wait_for_value, Isolation};
use serde_json::json;

async fn status_of(store: &Store, tenant: TenantId, id: MessageId) -> String {
    store
        .message(tenant, id)
        .await
        .ok()
        .flatten()
        .map(|m| m.status.to_string())
        .unwrap_or_default()
}

/// A worker, the simulator, one tenant and one WeWork provider.
struct Ctx {
    isolation: Isolation,
    store: Store,
    tenant: TenantId,
    provider: ProviderId,
    sim: SimHandle,
    sim_stop: tokio::sync::oneshot::Sender<()>,
    sim_task: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    broker: herald_broker::Broker,
    topology: Topology,
    publisher: Publisher,
    settings: herald_worker::Settings,
}

impl Ctx {
    async fn start(quota: serde_json::Value, sim_latency_ms: u64) -> Ctx {
        Ctx::start_with(quota, sim_latency_ms, |_| {}).await
    }

    async fn start_with(
        quota: serde_json::Value,
        sim_latency_ms: u64,
        adjust: impl FnOnce(&mut herald_worker::Settings),
    ) -> Ctx {
        let isolation = Isolation::new("wrk");
        let mut settings =
            herald_worker::Settings::for_tests(&isolation.namespace, &isolation.database);
        adjust(&mut settings);

        let mut config = SimConfig::ephemeral();
        config.wework.latency_ms = sim_latency_ms;
        let sim = Sim::build(config).await.expect("sim");
        let (sim_handle, sim_port) = (sim.handle(), sim.http_port());
        let (sim_stop, sim_rx) = tokio::sync::oneshot::channel::<()>();
        let sim_task = tokio::spawn(sim.run(async move {
            let _ = sim_rx.await;
        }));

        let store = isolation.store(2).await;
        let tenant = fixtures::tenant(&store, "w").await;
        let row = fixtures::sim_wework_row("sim", &format!("http://127.0.0.1:{sim_port}"), quota);
        let provider = row.id;
        store.create_provider(&row).await.expect("provider");

        let app = herald_worker::App::build(settings.clone())
            .await
            .expect("worker builds");
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        let broker = herald_broker::connect(
            &settings.common.amqp_url,
            "worker-test",
            Duration::from_secs(5),
        )
        .await
        .expect("broker");
        let topology = isolation.topology();
        let publisher = Publisher::new(&broker).await.expect("publisher");
        Ctx {
            isolation,
            store,
            tenant,
            provider,
            sim: sim_handle,
            sim_stop,
            sim_task,
            stop: Some(stop),
            task: Some(task),
            broker,
            topology,
            publisher,
            settings,
        }
    }

    /// Records a queued message and puts its job, assigned to the
    /// provider, on the central queue.
    async fn send(&self, recipient: &str) -> MessageId {
        let id = self.record(recipient).await;
        self.publish(id, recipient).await;
        id
    }

    /// Records a queued message.
    async fn record(&self, recipient: &str) -> MessageId {
        fixtures::queued_record(&self.store, self.tenant, "wework", recipient).await
    }

    /// Puts the message's job, assigned to the provider, on the central
    /// queue.
    async fn publish(&self, id: MessageId, recipient: &str) {
        let out = self.topology.to_central(
            Channel::Wework,
            self.job(id, recipient).encode_to_vec(),
            Priority::DEFAULT,
        );
        self.publisher.publish(&out).await.expect("publish");
    }

    /// Puts the message's job on the express queue, as the scheduler does
    /// for a tenant that was idle.
    async fn publish_express(&self, id: MessageId, recipient: &str) {
        let out = self.topology.to_express(
            Channel::Wework,
            self.job(id, recipient).encode_to_vec(),
            Priority::DEFAULT,
        );
        self.publisher.publish(&out).await.expect("publish");
    }

    /// Puts the jobs on the central queue as one batch message.
    async fn publish_batch(&self, jobs: &[(MessageId, &str)]) {
        let bodies: Vec<Vec<u8>> = jobs
            .iter()
            .map(|(id, r)| self.job(*id, r).encode_to_vec())
            .collect();
        let out = self.topology.to_central(
            Channel::Wework,
            herald_proto::jobs::pack(&bodies),
            Priority::DEFAULT,
        );
        self.publisher.publish(&out).await.expect("publish");
    }

    fn job(&self, id: MessageId, recipient: &str) -> v1::Job {
        v1::Job {
            message_id: id.to_string(),
            tenant_id: self.tenant.to_string(),
            channel: v1::Channel::Wework as i32,
            recipients: vec![recipient.into()],
            content: Some(v1::Content {
                text: "hi".into(),
                ..Default::default()
            }),
            priority: 5,
            assignment: Some(v1::Assignment {
                provider_id: self.provider.to_string(),
                reserved_at_ms: 0,
                cost: 1,
            }),
            ..Default::default()
        }
    }

    /// Leaves the record as a worker that died mid-send, ten minutes ago,
    /// would: `sending`, after `resends` earlier resends.
    async fn died_mid_send(&self, id: MessageId, resends: i32) {
        sqlx::query(
            "UPDATE messages SET status = 'sending', in_doubt_resends = $2,
                updated_at = now() - interval '10 minutes' WHERE id = $1",
        )
        .bind(uuid::Uuid::parse_str(&id.to_string()).expect("uuid"))
        .bind(resends)
        .execute(self.store.pool())
        .await
        .expect("update");
    }

    /// The record's status once it is `want` (or after 15 s).
    async fn wait_status(&self, id: MessageId, want: &str) -> String {
        wait_for_value(
            Duration::from_secs(15),
            || status_of(&self.store, self.tenant, id),
            |status| status == want,
        )
        .await
    }

    async fn wait_sent(&self, id: MessageId) -> String {
        self.wait_status(id, "sent").await
    }

    /// Stops the worker (it finishes and acks what it holds); the queues
    /// stay until [`Ctx::stop`].
    async fn stop_worker(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("joined").expect("worker stops cleanly");
        }
    }

    /// Messages ready in the central queue (with no consumer: every one
    /// not acked).
    async fn central_depth(&self) -> u32 {
        let ch = self.broker.channel().await.expect("channel");
        let q = ch
            .queue_declare(
                self.topology.central_queue(Channel::Wework).into(),
                herald_broker::lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                herald_broker::lapin::types::FieldTable::default(),
            )
            .await
            .expect("central queue");
        q.message_count()
    }

    async fn stop(mut self) {
        self.stop_worker().await;
        let _ = self.sim_stop.send(());
        let _ = self.sim_task.await;
        self.broker.close().await;
        self.store.pool().close().await;
        self.isolation.teardown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_job_is_sent_once_and_a_duplicate_delivery_is_never_sent_again() {
    let ctx = Ctx::start(json!({}), 0).await;
    let id = ctx.send("u1").await;
    assert_eq!(ctx.wait_sent(id).await, "sent");
    assert_eq!(ctx.sim.count(SimChannel::Wework, &id.to_string()), 1);

    // The broker delivers the same job again (a lost ack, a republish).
    let again = v1::Job {
        message_id: id.to_string(),
        tenant_id: ctx.tenant.to_string(),
        channel: v1::Channel::Wework as i32,
        recipients: vec!["u1".into()],
        priority: 5,
        assignment: Some(v1::Assignment {
            provider_id: ctx.provider.to_string(),
            reserved_at_ms: 0,
            cost: 1,
        }),
        ..Default::default()
    };
    let out = ctx
        .topology
        .to_central(Channel::Wework, again.encode_to_vec(), Priority::DEFAULT);
    ctx.publisher.publish(&out).await.expect("publish again");
    // Deliberately lets two seconds pass: the duplicate must not be sent
    // meanwhile (there is no state to wait for).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ctx.sim.count(SimChannel::Wework, &id.to_string()),
        1,
        "a duplicate delivery was sent"
    );
    assert_eq!(status_of(&ctx.store, ctx.tenant, id).await, "sent");
    ctx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_express_job_is_sent_while_the_central_queues_sends_hold_every_slot() {
    // One central send at a time, each taking 800 ms at the provider.
    let ctx = Ctx::start_with(json!({}), 800, |s| s.concurrency = 1).await;
    let mut central = Vec::new();
    for i in 0..4 {
        central.push(ctx.send(&format!("c{i}")).await);
    }
    let quiet = ctx.record("quiet").await;
    ctx.publish_express(quiet, "quiet").await;
    assert_eq!(ctx.wait_sent(quiet).await, "sent");
    let mut unsent = 0;
    for id in &central {
        if status_of(&ctx.store, ctx.tenant, *id).await != "sent" {
            unsent += 1;
        }
    }
    assert!(
        unsent >= 2,
        "the express job waited behind the central queue's jobs ({unsent} of 4 unsent when it was sent)"
    );
    for id in &central {
        assert_eq!(ctx.wait_sent(*id).await, "sent");
    }
    assert_eq!(ctx.sim.count(SimChannel::Wework, &quiet.to_string()), 1);
    ctx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_job_of_a_batch_is_sent_once_and_the_batch_acked_when_all_are_done() {
    let mut ctx = Ctx::start(json!({}), 0).await;
    let earlier = ctx.send("u0").await;
    assert_eq!(ctx.wait_sent(earlier).await, "sent");
    let mut fresh = Vec::new();
    for i in 1..=4 {
        fresh.push(ctx.record(&format!("u{i}")).await);
    }
    // One message: a job already sent, four new ones, and one of them twice.
    let mut batch: Vec<(MessageId, &str)> = vec![(earlier, "u0")];
    batch.extend(fresh.iter().map(|id| (*id, "u")));
    batch.push((fresh[0], "u"));
    ctx.publish_batch(&batch).await;
    for id in &fresh {
        assert_eq!(ctx.wait_sent(*id).await, "sent");
    }
    // Let the recorder ack, then stop: an unacked batch would be back. The
    // ack is not observable from outside (a queue's depth counts ready
    // messages only), so this is a short grace, not a wait for state.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ctx.stop_worker().await;
    assert_eq!(
        ctx.central_depth().await,
        0,
        "the batch must be acked once every job of it is finished"
    );
    for id in fresh.iter().chain([&earlier]) {
        assert_eq!(
            ctx.sim.count(SimChannel::Wework, &id.to_string()),
            1,
            "{id} must reach the provider exactly once"
        );
    }
    ctx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_provider_sends_its_burst_then_one_a_second_each_once() {
    // 60 a minute: a burst of 3, then one a second (decision 0013).
    let mut ctx = Ctx::start(json!({"per_minute": 60}), 0).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(ctx.record(&format!("u{i}")).await);
    }
    let batch: Vec<(MessageId, &str)> = ids.iter().map(|id| (*id, "u")).collect();
    let started = tokio::time::Instant::now();
    ctx.publish_batch(&batch).await;
    for id in &ids {
        assert_eq!(ctx.wait_sent(*id).await, "sent");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2_500),
        "six sends at 60 a minute with a burst of 3 take about 3 s, took {took:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    ctx.stop_worker().await;
    assert_eq!(ctx.central_depth().await, 0, "the batch is acked");
    for id in &ids {
        assert_eq!(
            ctx.sim.count(SimChannel::Wework, &id.to_string()),
            1,
            "{id} must reach the provider exactly once"
        );
    }
    ctx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_hold_at_most_the_providers_concurrency_and_feed_its_statistics() {
    // Each send takes 150 ms at the simulator; two at a time at most.
    let ctx = Ctx::start(json!({"concurrency": 2}), 150).await;
    let capacity = Capacity::connect(&ctx.settings.common.redis_url, &ctx.isolation.namespace)
        .await
        .expect("redis");
    let provider: uuid::Uuid = ctx.provider.to_string().parse().expect("uuid");
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(ctx.send(&format!("u{i}")).await);
    }
    let sampler = {
        let capacity = capacity.clone();
        tokio::spawn(async move {
            let mut max = 0;
            for _ in 0..150 {
                max = max.max(capacity.leases(provider).await.expect("leases"));
                // The sampling interval, not a wait for state.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            max
        })
    };
    for id in &ids {
        assert_eq!(ctx.wait_sent(*id).await, "sent");
    }
    let max = sampler.await.expect("sampler");
    assert!(max >= 1, "no lease was ever seen while sending");
    assert!(
        max <= 2,
        "{max} sends held leases at once with a concurrency of 2"
    );
    assert_eq!(
        capacity.leases(provider).await.expect("leases"),
        0,
        "every lease is released"
    );

    // The outcomes reached the provider's statistics (what scoring reads).
    let limits = herald_scoring::limits_for(
        &serde_json::from_value(json!({"concurrency": 2})).expect("quota"),
        herald_domain::Channel::Wework,
    );
    let load = wait_for_value(
        Duration::from_secs(5),
        || async {
            capacity
                .load(&[(provider, &limits)])
                .await
                .expect("load")
                .remove(0)
        },
        |load| load.success_rate.is_some(),
    )
    .await;
    assert_eq!(load.success_rate, Some(1.0), "{load:?}");
    let latency = load.latency_ms.expect("a latency");
    assert!(
        latency >= 100.0,
        "the simulator answers in 150 ms, the average says {latency}"
    );
    assert_eq!(load.consecutive_failures, 0);
    ctx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wework_message_found_mid_send_is_resent_until_the_resend_limit() {
    // WeWork's in-doubt policy is "resend" (its duplicate check drops a
    // repeat); the limit keeps a message that kills every worker from
    // looping forever.
    let ctx = Ctx::start(json!({}), 0).await;
    let resent = ctx.record("u1").await;
    ctx.died_mid_send(resent, 0).await;
    ctx.publish(resent, "u1").await;
    let limit = herald_store::MAX_IN_DOUBT_RESENDS;
    let held = ctx.record("u2").await;
    ctx.died_mid_send(held, limit).await;
    ctx.publish(held, "u2").await;

    assert_eq!(ctx.wait_sent(resent).await, "sent");
    assert_eq!(ctx.sim.count(SimChannel::Wework, &resent.to_string()), 1);
    assert_eq!(ctx.wait_status(held, "in_doubt").await, "in_doubt");
    assert_eq!(
        ctx.sim.count(SimChannel::Wework, &held.to_string()),
        0,
        "a message past the resend limit is set aside, not sent"
    );
    let resends: Vec<(String, i32)> = sqlx::query_as(
        "SELECT status, in_doubt_resends FROM messages WHERE id = ANY($1) ORDER BY recipient",
    )
    .bind(vec![
        uuid::Uuid::parse_str(&resent.to_string()).expect("uuid"),
        uuid::Uuid::parse_str(&held.to_string()).expect("uuid"),
    ])
    .fetch_all(ctx.store.pool())
    .await
    .expect("rows");
    assert_eq!(
        resends,
        vec![("sent".to_owned(), 1), ("in_doubt".to_owned(), limit)],
        "the resend is counted, so a duplicate at the receiver is explained"
    );
    ctx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_message_another_worker_just_claimed_is_not_sent_now() {
    // A second copy (a redelivery while the first worker still sends) of a
    // WeWork message claimed a moment ago: resending now could run beside
    // that send, so it waits in a delay tier instead.
    let ctx = Ctx::start(json!({}), 0).await;
    let id = ctx.record("u1").await;
    sqlx::query("UPDATE messages SET status = 'sending', updated_at = now() WHERE id = $1")
        .bind(uuid::Uuid::parse_str(&id.to_string()).expect("uuid"))
        .execute(ctx.store.pool())
        .await
        .expect("update");
    ctx.publish(id, "u1").await;
    // Deliberately lets two seconds pass: nothing may be sent meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ctx.sim.count(SimChannel::Wework, &id.to_string()), 0);
    assert_eq!(status_of(&ctx.store, ctx.tenant, id).await, "sending");
    let resends: i32 = sqlx::query_scalar("SELECT in_doubt_resends FROM messages WHERE id = $1")
        .bind(uuid::Uuid::parse_str(&id.to_string()).expect("uuid"))
        .fetch_one(ctx.store.pool())
        .await
        .expect("row");
    assert_eq!(resends, 0, "nothing was resent yet");
    ctx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_whose_row_does_not_decode_has_no_adapter_and_its_jobs_fail_over() {
    let ctx = Ctx::start(json!({}), 0).await;
    // A row no API would write (a WeWork config without its secret), put
    // there by hand and announced as the admin API announces a change.
    let broken = ProviderId::new();
    sqlx::query(
        "INSERT INTO providers (id, name, channel, kind, config, quota)
         VALUES ($1, 'broken', 'wework', 'wework', '{\"corp_id\": \"c\", \"agent_id\": 1}', '{}')",
    )
    .bind(broken.as_uuid())
    .execute(ctx.store.pool())
    .await
    .expect("insert the broken row");
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(herald_store::PROVIDERS_CHANNEL)
        .bind(broken.to_string())
        .execute(ctx.store.pool())
        .await
        .expect("notify");

    // The registry (as the worker builds it) knows the good provider only.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let catalog = herald_store::catalog::ProviderCatalog::start(
        ctx.store.clone(),
        Duration::from_secs(60),
        stop,
    )
    .await
    .expect("catalog");
    let registry = herald_worker::registry::Registry::new(
        catalog,
        std::sync::Arc::new(herald_worker::classify::Classifier::default()),
    );
    assert!(registry.get(broken.as_uuid()).is_none());
    let good = registry
        .get(ctx.provider.as_uuid())
        .expect("the good provider");
    assert!(good.adapter.is_ok(), "{:?}", good.adapter.as_ref().err());
    let _ = stop_tx.send(true);

    // A job the scheduler had assigned to it before it broke is not sent
    // through it: it fails over (back to the scheduler, `pending`).
    let stranded = ctx.record("u-broken").await;
    let mut job = ctx.job(stranded, "u-broken");
    if let Some(a) = job.assignment.as_mut() {
        a.provider_id = broken.to_string();
    }
    let out = ctx
        .topology
        .to_central(Channel::Wework, job.encode_to_vec(), Priority::DEFAULT);
    ctx.publisher.publish(&out).await.expect("publish");
    assert_eq!(ctx.wait_status(stranded, "pending").await, "pending");
    assert_eq!(ctx.sim.count(SimChannel::Wework, &stranded.to_string()), 0);

    // The others still work.
    let id = ctx.send("u-good").await;
    assert_eq!(ctx.wait_sent(id).await, "sent");
    ctx.stop().await;
}
