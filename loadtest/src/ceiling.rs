//! The bare broker's ceiling: what RabbitMQ alone carries over the hops a
//! Herald send takes, so that Herald's throughput can be read as a ratio of
//! it, measured in the same run on the same machine.
//!
//! A Herald send crosses two queues: the producer publishes to a user queue,
//! the scheduler consumes it and publishes to a central queue, a worker
//! consumes that. The ceiling does the same with nothing else: `messages`
//! persistent messages of `size` bytes published with confirms to queue A, a
//! relay that consumes A and publishes each to queue B with confirms before
//! acking it, and a sink that consumes B with acks. Both queues are durable
//! classic queues, like Herald's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use herald_broker::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use herald_broker::lapin::types::FieldTable;
use herald_broker::{Outbound, Publisher};
use serde::Serialize;

/// Deliveries the relay and the sink hold unacked (as Herald's scheduler
/// and worker prefetch).
const PREFETCH: u16 = 512;
/// Publishes in flight at once.
const IN_FLIGHT: usize = 256;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ceiling {
    pub messages: u64,
    pub size: usize,
    pub hops: u32,
    pub seconds: f64,
    pub per_second: f64,
}

/// Measures the two-hop ceiling against `amqp_url`; the queues are made
/// and deleted under `<namespace>.ceiling.<random>`.
pub async fn measure(
    amqp_url: &str,
    namespace: &str,
    messages: u64,
    size: usize,
) -> anyhow::Result<Ceiling> {
    let broker =
        herald_broker::connect(amqp_url, "herald-loadtest-ceiling", Duration::from_secs(10))
            .await
            .context("Failed to connect to RabbitMQ for the ceiling")?;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let queue_a = format!("{namespace}.ceiling.{}.a", &suffix[..8]);
    let queue_b = format!("{namespace}.ceiling.{}.b", &suffix[..8]);
    let ch = broker.channel().await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    for q in [&queue_a, &queue_b] {
        ch.queue_declare(q.as_str().into(), durable, FieldTable::default())
            .await?;
    }
    let body = vec![b'x'; size.max(1)];
    let publisher = Publisher::new(&broker).await?;
    let relay_publisher = Publisher::new(&broker).await?;
    let delivered = Arc::new(AtomicU64::new(0));

    // The sink: consume B, ack, count.
    let sink_ch = broker.channel().await?;
    sink_ch
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let mut sink = sink_ch
        .basic_consume(
            queue_b.as_str().into(),
            "sink".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let sink_count = delivered.clone();
    let sink_task = tokio::spawn(async move {
        while let Some(Ok(d)) = sink.next().await {
            let _ = d.acker.ack(BasicAckOptions::default()).await;
            if sink_count.fetch_add(1, Ordering::Relaxed) + 1 >= messages {
                break;
            }
        }
    });

    // The relay: consume A, publish to B with a confirm, then ack A.
    let relay_ch = broker.channel().await?;
    relay_ch
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let relay = relay_ch
        .basic_consume(
            queue_a.as_str().into(),
            "relay".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let to_b = queue_b.clone();
    let relay_task = tokio::spawn(async move {
        relay
            .take(messages as usize)
            .for_each_concurrent(IN_FLIGHT, |d| {
                let publisher = relay_publisher.clone();
                let to_b = to_b.clone();
                async move {
                    let Ok(d) = d else { return };
                    let out = Outbound {
                        exchange: String::new(),
                        routing_key: to_b,
                        body: d.data.clone(),
                        priority: 0,
                        headers: None,
                    };
                    if publisher.publish(&out).await.is_ok() {
                        let _ = d.acker.ack(BasicAckOptions::default()).await;
                    }
                }
            })
            .await;
    });

    // The publisher: `messages` to A with confirms, IN_FLIGHT at a time.
    let began = Instant::now();
    futures::stream::iter(0..messages)
        .for_each_concurrent(IN_FLIGHT, |_| {
            let out = Outbound {
                exchange: String::new(),
                routing_key: queue_a.clone(),
                body: body.clone(),
                priority: 0,
                headers: None,
            };
            let publisher = &publisher;
            async move {
                let mut wait = Duration::from_millis(50);
                while publisher.publish(&out).await.is_err() {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
            }
        })
        .await;
    let deadline = Duration::from_secs(600);
    tokio::time::timeout(deadline, sink_task)
        .await
        .context("the ceiling's sink did not receive every message in 10 minutes")??;
    let seconds = began.elapsed().as_secs_f64();
    relay_task.abort();
    for q in [&queue_a, &queue_b] {
        let _ = ch
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    broker.close().await;
    Ok(Ceiling {
        messages,
        size,
        hops: 2,
        seconds,
        per_second: messages as f64 / seconds.max(f64::EPSILON),
    })
}
