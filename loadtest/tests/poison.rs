//! Poison jobs in the scheduler (issue 15). A job the broker took on the
//! user queue but refuses from the scheduler — its placed form is over the
//! node's `max_message_size` — makes every placement of it fail: the
//! channel is closed, the drain restarts, the job comes back redelivered.
//! Classic queues count no deliveries, so without a bound it would come
//! back forever. The scheduler counts it and, past
//! `HERALD_SCHEDULER_MAX_DELIVERIES`, dead-letters it as delivered with
//! code `poison`; the tenant's other messages are sent.

use std::time::{Duration, Instant};

use herald_api::SendMessage;
use herald_broker::lapin::options::BasicGetOptions;
use herald_broker::lapin::types::AMQPValue;
use herald_broker::{connect, Publisher, Topology};
use herald_domain::{Channel, Priority, TenantId};
use herald_loadtest::stack::{Stack, StackOptions};
use herald_proto::v1;
use herald_proto::Message as _;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_fails_every_placement_is_dead_lettered_and_the_rest_go_on() {
    let tenant_probe = Uuid::nil();
    // The job as the test publishes it: about 200 KB of text.
    let mut job = v1::Job {
        message_id: Uuid::now_v7().to_string(),
        tenant_id: tenant_probe.to_string(),
        channel: v1::Channel::Email as i32,
        recipients: vec!["poison@example.com".into()],
        content: Some(v1::Content {
            subject: "poison".into(),
            text: "x".repeat(200_000),
            ..Default::default()
        }),
        priority: 5,
        ..Default::default()
    };
    // Room for the job as published, not for the assignment the scheduler
    // adds before it publishes to the central queue.
    let limit = job.encoded_len() + 40 + 8;
    let stack = Stack::start(StackOptions {
        scheduler_env: vec![("HERALD_SCHEDULER_MAX_DELIVERIES".into(), "3".into())],
        rabbit_config: vec![format!("max_message_size = {limit}")],
        ..StackOptions::new("poison", 1)
    })
    .await
    .expect("the private stack starts");
    let tenant: Uuid = stack.tenant_id.parse().expect("tenant id");
    job.tenant_id = tenant.to_string();
    assert!(job.encoded_len() + 8 < limit, "the job fits as published");

    let topology = Topology::new(&stack.namespace);
    let broker = connect(&stack.rabbit.url(), "poison-test", Duration::from_secs(10))
        .await
        .expect("broker");
    let publisher = Publisher::new(&broker).await.expect("publisher");
    publisher
        .publish(&topology.to_user(
            TenantId(tenant),
            Channel::Email,
            job.encode_to_vec(),
            Priority::default(),
        ))
        .await
        .expect("the job is on the user queue");
    // A neighbour in the same queue, sent through the API.
    let neighbour = stack
        .client
        .send(&SendMessage::email(
            "neighbour@example.com",
            "hello",
            "text",
        ))
        .await
        .expect("accepted");

    let channel = broker.channel().await.expect("channel");
    let deadline = Instant::now() + Duration::from_secs(90);
    let dead = loop {
        let got = channel
            .basic_get(
                topology.dead_letter_queue().as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .expect("basic.get");
        if let Some(message) = got {
            break message;
        }
        assert!(
            Instant::now() < deadline,
            "the poison job was never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let headers = dead
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    let code = match headers.inner().get("x-herald-code") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => format!("{other:?}"),
    };
    assert_eq!(code, "poison", "dead-lettered as poison");
    let back = v1::Job::decode(dead.delivery.data.as_slice()).expect("the job as delivered");
    assert_eq!(back.message_id, job.message_id);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let record = stack
            .client
            .message(neighbour.id)
            .await
            .expect("the neighbour's record");
        if record.status == herald_domain::MessageStatus::Sent {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the neighbour was not sent: {:?}",
            record.status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    broker.close().await;
    stack.stop(false).await;
}
