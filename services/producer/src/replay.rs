//! Dead-letter replay: jobs in the dead-letter queue that match a filter go
//! back to the scheduler (through the return queue, attempts reset, no
//! provider assigned), their records `queued` again; the others stay.
//!
//! The scan reads as many messages as the queue held when it started, so
//! messages kept (re-appended at its tail) are not read twice. Each replayed
//! job is published with a confirm inside the transaction that requeues its
//! record, and its dead letter is acked only after the commit: a crash at
//! any point leaves the job in the dead-letter queue or in the return
//! queue, never in neither.

use herald_api::dead_letters::ReplayFilter as Filter;
use herald_api::ReplayReport as Report;
use herald_broker::lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, QueueDeclareOptions,
};
use herald_broker::lapin::types::{AMQPValue, FieldTable};
use herald_broker::{Broker, Outbound, Publisher, Topology};
use herald_proto::v1;
use herald_proto::Message as _;
use herald_store::Store;
use uuid::Uuid;

fn code_of(headers: Option<&FieldTable>) -> Option<String> {
    let value = headers?.inner().get("x-herald-code")?;
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Whether a dead letter's job and code match `filter`.
fn matches(filter: &Filter, job: &v1::Job, code: Option<&str>) -> bool {
    let tenant_ok = filter
        .tenant
        .is_none_or(|t| job.tenant_id.parse::<Uuid>().ok() == Some(t.as_uuid()));
    let provider_ok = filter.provider.is_none_or(|p| {
        job.assignment
            .as_ref()
            .and_then(|a| a.provider_id.parse::<Uuid>().ok())
            == Some(p.as_uuid())
    });
    let reason_ok = filter.reason.as_deref().is_none_or(|r| code == Some(r));
    tenant_ok && provider_ok && reason_ok
}

/// Replays the dead letters that match `filter`.
pub async fn replay(
    broker: &Broker,
    publisher: &Publisher,
    topology: &Topology,
    store: &Store,
    filter: &Filter,
) -> anyhow::Result<Report> {
    let queue = topology.dead_letter_queue();
    let ch = broker.channel().await?;
    let total = ch
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?
        .message_count();
    let mut report = Report::default();
    while report.scanned < u64::from(total) && (report.replayed as usize) < filter.limit {
        let Some(message) = ch
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        report.scanned += 1;
        let code = code_of(delivery.properties.headers().as_ref());
        let job = v1::Job::decode(delivery.data.as_slice())
            .ok()
            .filter(|job| matches(filter, job, code.as_deref()));
        let requeued = match &job {
            Some(job) => {
                let id: Uuid = job.message_id.parse().unwrap_or_default();
                Some(store.requeue_dead(&[id]).await?).filter(|r| !r.ids.is_empty())
            }
            None => None,
        };
        let (Some(mut job), Some(requeued)) = (job, requeued) else {
            // Kept: to the tail of the queue, then the head copy is acked.
            publisher
                .publish(&Outbound {
                    exchange: String::new(),
                    routing_key: queue.clone(),
                    body: delivery.data.clone(),
                    priority: 0,
                    headers: delivery.properties.headers().clone(),
                })
                .await?;
            delivery.acker.ack(BasicAckOptions::default()).await?;
            report.kept += 1;
            continue;
        };
        job.attempt = 0;
        job.assignment = None;
        let out = topology.to_return(job.encode_to_vec());
        if let Err(e) = publisher.publish(&out).await {
            // The record's transaction rolls back; the dead letter stays.
            let _ = delivery
                .acker
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await;
            return Err(e.into());
        }
        requeued.commit().await?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        report.replayed += 1;
    }
    let _ = ch.close(200, "replay done".into()).await;
    metrics::counter!("herald_dead_letters_replayed_total").increment(report.replayed);
    tracing::info!(
        scanned = report.scanned,
        replayed = report.replayed,
        kept = report.kept,
        "Replayed dead letters."
    );
    Ok(report)
}
