//! Scheduled sends: jobs parked in PostgreSQL until their time, released to
//! their tenant's user queue within about a second of it. Several
//! schedulers release side by side (`FOR UPDATE SKIP LOCKED`).

use std::time::Duration;

use herald_broker::{Outbound, Publisher, Topology};
use herald_domain::{Priority, TenantId};
use herald_proto::v1;
use herald_proto::Message as _;
use herald_runtime::Shutdown;
use herald_store::Store;

const BATCH: i64 = 500;
const TICK: Duration = Duration::from_millis(500);

/// Releases due jobs until `shutdown` fires. A job is deleted from
/// PostgreSQL only in the transaction that follows its confirmed publish.
pub async fn release_due(
    store: Store,
    publisher: Publisher,
    topology: Topology,
    shutdown: Shutdown,
) {
    loop {
        let released = match release_once(&store, &publisher, &topology).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "Failed to release scheduled jobs; retrying.");
                0
            }
        };
        if released as i64 == BATCH {
            continue;
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// One round: lock what is due, publish it with confirms, delete it.
pub async fn release_once(
    store: &Store,
    publisher: &Publisher,
    topology: &Topology,
) -> anyhow::Result<usize> {
    let due = store.due_jobs(BATCH).await?;
    if due.jobs.is_empty() {
        return Ok(0);
    }
    let outbound: Vec<Outbound> = due
        .jobs
        .iter()
        .map(|j| {
            let priority = v1::Job::decode(j.envelope.as_slice())
                .ok()
                .and_then(|job| Priority::parse(i64::from(job.priority)).ok())
                .unwrap_or_default();
            topology.to_user(
                TenantId(j.tenant_id),
                j.channel,
                j.envelope.clone(),
                priority,
            )
        })
        .collect();
    publisher.publish_all(&outbound).await?;
    let n = due.jobs.len();
    due.released().await?;
    metrics::counter!("herald_scheduler_released_total").increment(n as u64);
    tracing::debug!(count = n, "Released scheduled jobs.");
    Ok(n)
}
