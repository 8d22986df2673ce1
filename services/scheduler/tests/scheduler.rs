//! The scheduler against the real RabbitMQ, Redis and PostgreSQL, each
//! test in its own namespace and database: tenant discovery, quotas under
//! two schedulers, fairness against a big backlog, send windows (waiting,
//! pausing, parking, release when the window opens), and priorities.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use herald_broker::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
};
use herald_broker::lapin::types::FieldTable;
use herald_broker::{Broker, Outbound, Publisher, Topology};
use herald_domain::{Channel, MessageId, Priority, ProviderId, TenantId};
use herald_proto::v1;
use herald_proto::Message as _;
use herald_store::{NewProvider, NewTenant, ProviderPatch, Store};
use herald_testing::{fixtures, wait_for, wait_for_value, Isolation};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// One namespace: schedulers, a store, a broker connection.
struct Harness {
    isolation: Isolation,
    settings: herald_scheduler::Settings,
    store: Store,
    broker: Broker,
    ch: herald_broker::lapin::Channel,
    publisher: Publisher,
    topology: Topology,
    tenants: Vec<TenantId>,
    schedulers: Vec<(
        tokio::sync::oneshot::Sender<()>,
        JoinHandle<anyhow::Result<()>>,
    )>,
}

impl Harness {
    /// Without the express lane, so that every placed job is on the
    /// central queue these tests read.
    async fn new() -> Harness {
        Harness::with(|s| s.express_depth = 0).await
    }

    async fn with(adjust: impl FnOnce(&mut herald_scheduler::Settings)) -> Harness {
        let isolation = Isolation::new("sch");
        let mut settings =
            herald_scheduler::Settings::for_tests(&isolation.namespace, &isolation.database);
        adjust(&mut settings);
        // Build one scheduler first: it creates and migrates the database.
        let first = herald_scheduler::App::build(settings.clone())
            .await
            .expect("scheduler builds");
        let store = isolation.store(4).await;
        let broker = herald_broker::connect(
            &settings.common.amqp_url,
            "scheduler-test",
            Duration::from_secs(5),
        )
        .await
        .expect("broker");
        let ch = broker.channel().await.expect("channel");
        let publisher = Publisher::new(&broker).await.expect("publisher");
        let topology = isolation.topology();
        let mut h = Harness {
            isolation,
            settings,
            store,
            broker,
            ch,
            publisher,
            topology,
            tenants: Vec::new(),
            schedulers: Vec::new(),
        };
        h.run(first);
        h
    }

    fn run(&mut self, app: herald_scheduler::App) {
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        self.schedulers.push((stop, task));
    }

    async fn another_scheduler(&mut self) {
        let app = herald_scheduler::App::build(self.settings.clone())
            .await
            .expect("scheduler builds");
        self.run(app);
    }

    async fn tenant(&mut self, weight: i32) -> TenantId {
        let tenant = TenantId::new();
        self.topology
            .declare_tenant(&self.broker, tenant)
            .await
            .expect("declare");
        self.store
            .create_tenant(&NewTenant {
                id: tenant,
                weight,
                ..fixtures::new_tenant(&format!("t{}", self.tenants.len()))
            })
            .await
            .expect("tenant");
        self.tenants.push(tenant);
        tenant
    }

    async fn provider(&self, channel: &str, quota: Value, window: Option<Value>) -> ProviderId {
        let id = ProviderId::new();
        let config = match channel {
            "wework" => json!({"corp_id": "c", "corp_secret": "s", "agent_id": 1}),
            _ => json!({"host": "127.0.0.1", "port": 2525, "from": "a@example.com"}),
        };
        self.store
            .create_provider(&NewProvider {
                id,
                tenant_id: None,
                name: format!("p-{}", &id.to_string()[..8]),
                channel: channel.into(),
                kind: if channel == "wework" {
                    "wework"
                } else {
                    "smtp"
                }
                .into(),
                config,
                quota,
                send_window: window,
                weight: 100,
                enabled: true,
            })
            .await
            .expect("provider");
        id
    }

    fn job(tenant: TenantId, channel: Channel, recipient: &str, priority: u32) -> v1::Job {
        v1::Job {
            message_id: MessageId::new().to_string(),
            tenant_id: tenant.to_string(),
            channel: channel.to_proto() as i32,
            recipients: vec![recipient.into()],
            priority,
            ..Default::default()
        }
    }

    async fn enqueue(&self, tenant: TenantId, channel: Channel, jobs: &[v1::Job]) {
        let out: Vec<Outbound> = jobs
            .iter()
            .map(|j| {
                self.topology.to_user(
                    tenant,
                    channel,
                    j.encode_to_vec(),
                    Priority::parse(i64::from(j.priority)).unwrap_or_default(),
                )
            })
            .collect();
        for chunk in out.chunks(2_000) {
            self.publisher.publish_all(chunk).await.expect("publish");
        }
    }

    /// Publishes `jobs` as one message, as the producer packs a request.
    async fn enqueue_packed(&self, tenant: TenantId, channel: Channel, jobs: &[v1::Job]) {
        let bodies: Vec<Vec<u8>> = jobs.iter().map(|j| j.encode_to_vec()).collect();
        let out = self.topology.to_user(
            tenant,
            channel,
            herald_proto::jobs::pack(&bodies),
            Priority::default(),
        );
        self.publisher.publish(&out).await.expect("publish");
    }

    async fn inspect(&self, queue: &str) -> herald_broker::lapin::Queue {
        self.ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue exists")
    }

    async fn depth(&self, queue: &str) -> u32 {
        self.inspect(queue).await.message_count()
    }

    async fn consumers(&self, queue: &str) -> u32 {
        self.inspect(queue).await.consumer_count()
    }

    /// The queue's depth once it holds `at_least` (or when `timeout` passes).
    async fn wait_depth(&self, queue: &str, at_least: u32, timeout: Duration) -> u32 {
        wait_for_value(timeout, || self.depth(queue), |d| *d >= at_least).await
    }

    /// Takes every job that reaches `queue` within `timeout`.
    async fn take(&self, queue: &str, max: usize, timeout: Duration) -> Vec<v1::Job> {
        let ch = self.broker.channel().await.expect("channel");
        let mut consumer = ch
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while got.len() < max {
            match tokio::time::timeout_at(deadline, consumer.next()).await {
                Ok(Some(Ok(d))) => {
                    got.extend(herald_proto::jobs::decode(&d.data).expect("jobs"));
                    let _ = d.acker.ack(BasicAckOptions::default()).await;
                }
                _ => break,
            }
        }
        let _ = ch.close(200, "taken".into()).await;
        got
    }

    async fn teardown(self) {
        for (stop, task) in self.schedulers {
            let _ = stop.send(());
            let _ = task.await;
        }
        self.broker.close().await;
        self.store.pool().close().await;
        self.isolation.teardown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_learn_of_a_new_tenant_and_never_exceed_a_quota() {
    let mut h = Harness::new().await;
    h.another_scheduler().await;
    // Created after the schedulers started: they must learn of both.
    let tenant = h.tenant(1).await;
    let provider = h.provider("wework", json!({"per_minute": 5}), None).await;
    let jobs: Vec<v1::Job> = (0..8)
        .map(|i| Harness::job(tenant, Channel::Wework, &format!("u{i}"), 5))
        .collect();
    h.enqueue(tenant, Channel::Wework, &jobs).await;

    let central = h.topology.central_queue(Channel::Wework);
    let placed = h.take(&central, 100, Duration::from_secs(6)).await;
    assert_eq!(
        placed.len(),
        5,
        "a per_minute quota of 5 must place exactly 5 of 8 in a minute, whatever the number of schedulers"
    );
    for job in &placed {
        let a = job.assignment.as_ref().expect("assigned");
        assert_eq!(a.provider_id, provider.to_string());
        assert_eq!(a.cost, 1);
    }
    // The other three wait in their user queue: never failed, never lost.
    let user = h.topology.user_queue(tenant, Channel::Wework);
    let dead = h.depth(&h.topology.dead_letter_queue()).await;
    assert_eq!(dead, 0, "nothing is dead-lettered for lack of capacity");
    h.teardown().await;
    let _ = user;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_a_job_is_dead_lettered_and_acked() {
    let mut h = Harness::new().await;
    let tenant = h.tenant(1).await;
    h.provider("email", json!({}), None).await;
    // 0xFA starts a batch; what follows is not one.
    let junk = h.topology.to_user(
        tenant,
        Channel::Email,
        vec![0xFA, 0x7F, 0x09, 0x01],
        Priority::default(),
    );
    h.publisher.publish(&junk).await.expect("publish");
    let dead = h.topology.dead_letter_queue();
    assert_eq!(h.wait_depth(&dead, 1, Duration::from_secs(10)).await, 1);
    // Once the schedulers stop, an unacked delivery would be ready again.
    for (stop, task) in h.schedulers.drain(..) {
        let _ = stop.send(());
        let _ = task.await;
    }
    let user = h.topology.user_queue(tenant, Channel::Email);
    assert_eq!(
        h.depth(&user).await,
        0,
        "the junk must be acked once dead-lettered"
    );
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_partly_placed_puts_only_its_waiting_rest_back() {
    let mut h = Harness::new().await;
    let tenant = h.tenant(1).await;
    // Five a day: three of the eight wait for hours, so the drain pauses.
    h.provider("wework", json!({"per_day": 5}), None).await;
    let jobs: Vec<v1::Job> = (0..8)
        .map(|i| Harness::job(tenant, Channel::Wework, &format!("u{i}"), 5))
        .collect();
    h.enqueue_packed(tenant, Channel::Wework, &jobs).await;

    let central = h.topology.central_queue(Channel::Wework);
    let placed = h.take(&central, 100, Duration::from_secs(6)).await;
    let user = h.topology.user_queue(tenant, Channel::Wework);
    assert_eq!(
        h.wait_depth(&user, 1, Duration::from_secs(10)).await,
        1,
        "the waiting rest goes back to the user queue as one message"
    );
    let back = h.take(&user, 100, Duration::from_secs(2)).await;
    let placed_ids: Vec<&str> = placed.iter().map(|j| j.message_id.as_str()).collect();
    let back_ids: Vec<&str> = back.iter().map(|j| j.message_id.as_str()).collect();
    assert_eq!(placed.len(), 5, "five placed: {placed_ids:?}");
    assert_eq!(back.len(), 3, "three put back: {back_ids:?}");
    let mut all: Vec<&str> = placed_ids.iter().chain(&back_ids).copied().collect();
    all.sort_unstable();
    let mut want: Vec<&str> = jobs.iter().map(|j| j.message_id.as_str()).collect();
    want.sort_unstable();
    assert_eq!(all, want, "each job once: placed or put back, never both");
    assert!(back.iter().all(|j| j.assignment.is_none()));
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_tenant_is_served_while_a_big_backlog_drains() {
    let mut h = Harness::new().await;
    let big = h.tenant(1).await;
    let small = h.tenant(1).await;
    h.provider("email", json!({}), None).await;
    let central = h.topology.central_queue(Channel::Email);

    let backlog: Vec<v1::Job> = (0..20_000)
        .map(|i| Harness::job(big, Channel::Email, &format!("b{i}@example.com"), 5))
        .collect();
    h.enqueue(big, Channel::Email, &backlog).await;
    // The gate keeps the central queue short: nobody consumes it yet.
    h.wait_depth(&central, 200, Duration::from_secs(10)).await;
    // Deliberately lets half a second pass with the gate open: a gate that
    // leaked would fill the queue meanwhile.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = h.depth(&central).await;
    assert!(
        held < 2_000,
        "the central queue holds {held} jobs with no worker: the gate must keep it short"
    );

    // A worker at about 2,000 jobs a second, and the small tenant's ten.
    let worker = {
        let ch = h.broker.channel().await.expect("channel");
        ch.basic_qos(50, BasicQosOptions::default())
            .await
            .expect("qos");
        let central = central.clone();
        tokio::spawn(async move {
            let mut consumer = ch
                .basic_consume(
                    central.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("consume");
            let mut seen: Vec<(tokio::time::Instant, v1::Job)> = Vec::new();
            while let Some(Ok(d)) = consumer.next().await {
                for job in herald_proto::jobs::decode(&d.data).expect("jobs") {
                    seen.push((tokio::time::Instant::now(), job));
                    if seen.len().is_multiple_of(20) {
                        // The worker's pace, not a wait for state.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                let _ = d.acker.ack(BasicAckOptions::default()).await;
                if seen
                    .iter()
                    .filter(|(_, j)| j.recipients[0].starts_with('s'))
                    .count()
                    == 10
                {
                    break;
                }
            }
            seen
        })
    };
    // Deliberately lets the backlog drain for a second, so the small
    // tenant arrives in the middle of it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent_at = tokio::time::Instant::now();
    let few: Vec<v1::Job> = (0..10)
        .map(|i| Harness::job(small, Channel::Email, &format!("s{i}@example.com"), 5))
        .collect();
    h.enqueue(small, Channel::Email, &few).await;
    let seen = tokio::time::timeout(Duration::from_secs(20), worker)
        .await
        .expect("the small tenant's jobs must all arrive")
        .expect("worker");
    let last_small = seen
        .iter()
        .filter(|(_, j)| j.recipients[0].starts_with('s'))
        .map(|(t, _)| *t)
        .max()
        .expect("small jobs");
    let waited = last_small - sent_at;
    let big_left = h.depth(&h.topology.user_queue(big, Channel::Email)).await;
    eprintln!("central held {held} with no worker; the small tenant waited {waited:?}; {big_left} of the backlog left");
    assert!(
        waited < Duration::from_secs(3),
        "the small tenant waited {waited:?} behind the backlog"
    );
    assert!(
        big_left > 5_000,
        "the backlog ({big_left} left) should still be draining when the small tenant is done"
    );
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_tenant_overtakes_a_full_central_queue_by_the_express_queue() {
    // The default express lane: 256 jobs deep, 32 a second per tenant with
    // a burst of 64.
    let mut h = Harness::with(|_| {}).await;
    let big = h.tenant(1).await;
    let small = h.tenant(1).await;
    h.provider("email", json!({}), None).await;
    let central = h.topology.central_queue(Channel::Email);
    let express = h.topology.express_queue(Channel::Email);

    let backlog: Vec<v1::Job> = (0..20_000)
        .map(|i| Harness::job(big, Channel::Email, &format!("b{i}@example.com"), 5))
        .collect();
    h.enqueue(big, Channel::Email, &backlog).await;
    // Nobody consumes: the gate fills the central queue to its target and
    // holds the rest of the backlog back.
    h.wait_depth(&central, 1, Duration::from_secs(10)).await;
    let few: Vec<v1::Job> = (0..10)
        .map(|i| Harness::job(small, Channel::Email, &format!("s{i}@example.com"), 5))
        .collect();
    h.enqueue(small, Channel::Email, &few).await;
    let jobs = h.take(&express, 200, Duration::from_secs(5)).await;
    let smalls = jobs
        .iter()
        .filter(|j| j.recipients[0].starts_with('s'))
        .count();
    let bigs = jobs.len() - smalls;
    assert_eq!(
        smalls, 10,
        "each of the quiet tenant's jobs goes express while the central queue is full"
    );
    assert!(
        jobs.iter().all(|j| j.assignment.is_some()),
        "express jobs are placed like any other"
    );
    // The big tenant's lane was idle once too, so its first burst (64) may
    // have gone express, with what its bucket refilled (32 a second) until
    // the round first served it; after that it is busy and waits its turn.
    assert!(
        bigs <= 128,
        "{bigs} of the busy tenant's 20,000 jobs went express: a busy lane must wait its turn"
    );
    let held = h.depth(&central).await;
    assert!(
        held > 0,
        "the backlog is on the central queue, behind which the quiet jobs did not wait"
    );
    h.teardown().await;
}

/// A window that opened `hours_ago` and closes in `closes_in_min`
/// minutes (UTC, every day), or one that opens later.
fn window(start: chrono::DateTime<Utc>, end: chrono::DateTime<Utc>) -> Value {
    json!({"tz": "UTC", "start": start.format("%H:%M").to_string(), "end": end.format("%H:%M").to_string(), "days": []})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waits_for_a_closed_window_and_is_placed_when_it_opens() {
    let mut h = Harness::new().await;
    let tenant = h.tenant(1).await;
    let now = Utc::now();
    // Opens in two hours: nothing may be placed now.
    let closed = window(
        now + chrono::Duration::hours(2),
        now + chrono::Duration::hours(3),
    );
    let provider = h.provider("email", json!({}), Some(closed)).await;
    let jobs: Vec<v1::Job> = (0..3)
        .map(|i| Harness::job(tenant, Channel::Email, &format!("w{i}@example.com"), 5))
        .collect();
    let user = h.topology.user_queue(tenant, Channel::Email);
    // The tenant's drain consumes before the jobs arrive, so that it can
    // only stop consuming by pausing.
    let draining = wait_for(Duration::from_secs(15), || async {
        h.consumers(&user).await == 1
    })
    .await;
    assert!(
        draining,
        "the scheduler did not start the new tenant's drain"
    );
    h.enqueue(tenant, Channel::Email, &jobs).await;
    // Once the paused drain has handed its jobs back, the scheduler knows
    // the provider's window (before that, a job would only wait 30 s for a
    // provider it has not heard of yet).
    // Until the drain has handed them back and paused: all three ready
    // and nobody consuming (a paused drain closes its channel).
    let paused = wait_for(Duration::from_secs(20), || async {
        h.depth(&user).await == 3 && h.consumers(&user).await == 0
    })
    .await;
    assert!(paused, "the drain did not pause with the jobs handed back");
    // A retry coming back while the window is closed is parked in PostgreSQL.
    let retry = Harness::job(tenant, Channel::Email, "retry@example.com", 5);
    h.publisher
        .publish(&h.topology.to_return(retry.encode_to_vec()))
        .await
        .expect("publish");

    let central = h.topology.central_queue(Channel::Email);
    // Deliberately lets three seconds pass: nothing may happen meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        h.depth(&central).await,
        0,
        "nothing is placed while the window is closed"
    );
    assert_eq!(
        h.depth(&user).await,
        3,
        "the paused drain hands its jobs back to the user queue"
    );
    // Under a loaded machine the return drain may take longer than 3 s.
    let parked: Vec<(uuid::Uuid, chrono::DateTime<Utc>)> = wait_for_value(
        Duration::from_secs(15),
        || async {
            sqlx::query_as("SELECT message_id, due_at FROM parked_jobs")
                .fetch_all(h.store.pool())
                .await
                .expect("parked")
        },
        |parked: &Vec<_>| !parked.is_empty(),
    )
    .await;
    assert_eq!(parked.len(), 1, "the returned job is parked: {parked:?}");
    assert_eq!(parked[0].0.to_string(), retry.message_id);
    let due = parked[0].1;
    assert!(
        due > now + chrono::Duration::minutes(100) && due < now + chrono::Duration::minutes(135),
        "parked until about the window's opening, not a fixed delay: {due}"
    );

    // The window opens (an operator widens it): the paused drain wakes.
    let open = window(
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1),
    );
    h.store
        .update_provider(
            provider,
            &ProviderPatch {
                send_window: Some(Some(open)),
                ..Default::default()
            },
        )
        .await
        .expect("patch")
        .expect("provider exists");
    let placed = h.take(&central, 3, Duration::from_secs(10)).await;
    let ids: HashSet<String> = placed.iter().map(|j| j.message_id.clone()).collect();
    let want: HashSet<String> = jobs.iter().map(|j| j.message_id.clone()).collect();
    assert_eq!(
        ids, want,
        "every waiting job is placed once the window opens"
    );
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priorities_reach_the_central_queue_first() {
    let mut h = Harness::new().await;
    let tenant = h.tenant(1).await;
    // Nothing can be placed until the provider exists: the jobs queue up.
    let mixed: Vec<v1::Job> = (0..200)
        .map(|i| {
            let priority = if i % 2 == 0 { 1 } else { 10 };
            Harness::job(
                tenant,
                Channel::Email,
                &format!("p{i}@example.com"),
                priority,
            )
        })
        .collect();
    h.enqueue(tenant, Channel::Email, &mixed).await;
    // Deliberately lets the scheduler see the backlog before any provider
    // exists (there is no state to wait for: nothing can happen).
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.provider("email", json!({}), None).await;
    let central = h.topology.central_queue(Channel::Email);
    // Every job placed before any is taken (the central queue counts
    // messages, each a batch of jobs of one priority band).
    let user = h.topology.user_queue(tenant, Channel::Email);
    let placed = wait_for(Duration::from_secs(15), || async {
        h.depth(&user).await == 0 && h.depth(&central).await > 0
    })
    .await;
    assert!(placed, "the jobs were not placed");
    // The last batch's publish is confirmed before its delivery is acked,
    // but a queue's depth counts only ready messages: a short grace for
    // that last publish, which nothing short of consuming can observe.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let taken = h.take(&central, 200, Duration::from_secs(5)).await;
    assert_eq!(taken.len(), 200);
    let first_half: Vec<u32> = taken[..100].iter().map(|j| j.priority).collect();
    assert!(
        first_half.iter().all(|p| *p == 10),
        "the hundred priority-10 jobs come out first: {first_half:?}"
    );
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wework_member_at_its_cap_waits_in_a_delay_tier_while_others_go_on() {
    let mut h = Harness::new().await;
    let tenant = h.tenant(1).await;
    // No provider quota: only WeWork's own cap of 30 a minute per member.
    h.provider("wework", json!({}), None).await;
    let mut jobs: Vec<v1::Job> = (0..35)
        .map(|_| Harness::job(tenant, Channel::Wework, "busy-member", 5))
        .collect();
    jobs.extend((0..5).map(|i| Harness::job(tenant, Channel::Wework, &format!("m{i}"), 5)));
    h.enqueue(tenant, Channel::Wework, &jobs).await;

    let central = h.topology.central_queue(Channel::Wework);
    let placed = h.take(&central, 100, Duration::from_secs(6)).await;
    let busy = placed
        .iter()
        .filter(|j| j.recipients[0] == "busy-member")
        .count();
    let others = placed.len() - busy;
    assert_eq!(busy, 30, "a member gets at most 30 a minute from one app");
    assert_eq!(others, 5, "other members are not held up by a busy one");
    // The five over the cap wait in a delay tier (at most a minute away),
    // never dead-lettered.
    let mut delayed = 0;
    for tier in herald_broker::DELAY_TIERS.into_iter().filter(|t| *t <= 60) {
        delayed += h.depth(&h.topology.delay_queue(tier)).await;
    }
    assert_eq!(delayed, 5, "the capped jobs wait in delay tiers");
    assert_eq!(h.depth(&h.topology.dead_letter_queue()).await, 0);
    assert_eq!(
        h.depth(&h.topology.user_queue(tenant, Channel::Wework))
            .await,
        0
    );
    h.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_whose_row_does_not_decode_is_never_scored_and_the_others_take_the_work() {
    let mut h = Harness::new().await;
    let tenant = h.tenant(1).await;
    // The heaviest provider of the pool, with a config no API would write
    // (a WeWork app without its secret), put there by hand.
    let broken = ProviderId::new();
    sqlx::query(
        "INSERT INTO providers (id, name, channel, kind, config, quota, weight)
         VALUES ($1, 'broken', 'wework', 'wework', '{\"corp_id\": \"c\", \"agent_id\": 1}', '{}', 10000)",
    )
    .bind(broken.as_uuid())
    .execute(h.store.pool())
    .await
    .expect("insert the broken row");
    // Announced together with the good one.
    let good = h.provider("wework", json!({}), None).await;
    let jobs: Vec<v1::Job> = (0..20)
        .map(|i| Harness::job(tenant, Channel::Wework, &format!("u{i}"), 5))
        .collect();
    h.enqueue(tenant, Channel::Wework, &jobs).await;

    let central = h.topology.central_queue(Channel::Wework);
    let placed = h.take(&central, 20, Duration::from_secs(10)).await;
    assert_eq!(
        placed.len(),
        20,
        "every job is placed on the usable provider"
    );
    for job in &placed {
        let a = job.assignment.as_ref().expect("assigned");
        assert_eq!(a.provider_id, good.to_string());
    }
    h.teardown().await;
}
