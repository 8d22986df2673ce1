//! Every Herald metric's help text, registered with the recorder when it
//! is installed, so that each service's `/metrics` carries `# HELP` for
//! every family (Prometheus' `promtool check metrics` asks for it). The
//! worker's pacing and the store's decoding metrics describe themselves
//! next to their code.

/// A metric's kind, name and help.
pub enum Metric {
    Counter(&'static str, &'static str),
    Gauge(&'static str, &'static str),
    /// Seconds, with the latency buckets.
    Seconds(&'static str, &'static str),
    /// A count of items per event (jobs per message, requests per group),
    /// with power-of-two buckets.
    Count(&'static str, &'static str),
}

use Metric::*;

/// Latency buckets, seconds: 1 ms to 60 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Items per event: 1 to 1,024.
pub const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

pub const METRICS: &[Metric] = &[
    // every service
    Counter("herald_restarts_total", "Times a supervised task of this service failed and was started again (after a back-off)."),
    Counter("herald_broker_publishes_total", "Publishes to RabbitMQ by outcome: confirmed (ack), nacked, returned, blocked (the broker blocked the connection), timeout (no confirm in time)."),
    Counter("herald_broker_reconnects_total", "Times this service's RabbitMQ connection was made again after it was lost."),
    Counter("herald_capacity_restored_total", "Providers whose day and hour windows were counted back into Redis from their PostgreSQL checkpoint after Redis lost them."),
    // producer
    Counter("herald_producer_accepted_total", "Messages accepted (recorded, published and confirmed) by this producer."),
    Counter("herald_producer_refused_total", "Messages refused by the tenant's limits, by code: rate_limited or quota_exceeded (429), invalid_field (a batch larger than the rate limit admits at once)."),
    Counter("herald_producer_confirms_recorded_total", "Confirmed jobs whose outbox rows were deleted."),
    Counter("herald_producer_confirms_unrecorded_total", "Confirmed jobs whose outbox rows could not be deleted (the reconciler republishes them; the worker's claim drops the copy)."),
    Counter("herald_producer_callbacks_total", "Provider callbacks at the producer by source (generic, wework) and outcome: queued (published and confirmed), verified (a WeWork URL verification answered), not_tracked (a WeWork event about no message, answered and dropped), refused (bad signature, outside the replay window, unknown provider, malformed), unavailable (the broker did not confirm)."),
    Counter("herald_producer_bounce_reports_total", "Reports at the return path's SMTP listener by outcome: bounced and complained (queued as events), not_a_bounce (a delayed or delivered notice), not_a_report (refused 550), unknown_recipient (a RCPT that is no valid return path, 550), unavailable (the broker did not confirm: 451, the MTA retries)."),
    Counter("herald_producer_tracking_total", "Hits on tracked email's links by kind (open, click) and outcome: queued (a read or clicked event), bot (kept, moves nothing: a HEAD request, no User-Agent, or a scanner's), unavailable (the broker did not confirm; answered anyway)."),
    Count("herald_producer_callback_batch", "Provider callback events published together (one message, one confirm)."),
    Counter("herald_producer_suppressed_total", "Messages accepted for an address on the tenant's suppression list: recorded suppressed, never sent."),
    Counter("herald_producer_unsubscribes_total", "One-click unsubscribes taken (POST /u/{token}): the recipient is on the tenant's suppression list."),
    Counter("herald_producer_replays_republished_total", "Jobs published again for an idempotent repeat whose first publish was never confirmed."),
    Counter("herald_dead_letters_replayed_total", "Dead letters sent back to the scheduler through the admin API."),
    Count("herald_producer_group_requests", "Requests committed together in one group (one transaction, one batched publish)."),
    Seconds("herald_producer_commit_seconds", "Seconds a group's commit took, by step: record (the transaction) or publish (publishes and their confirms)."),
    // scheduler
    Gauge("herald_scheduler_leader", "1 while this scheduler holds the leader lock (reconciler, releases, checkpoints), else 0."),
    Counter("herald_scheduler_placed_total", "Jobs placed on a provider and published to a central queue."),
    Counter("herald_scheduler_express_jobs_total", "Jobs placed through the express queue (a lane that was idle), by channel."),
    Counter("herald_scheduler_reservations_total", "Provider capacity reservations by outcome: granted, denied (a window or the throttle is full) or recipient_cap (a WeWork member's cap)."),
    Counter("herald_scheduler_delays_total", "Jobs sent to a delay tier to be placed again later (a send window closed, a retry's back-off)."),
    Counter("herald_scheduler_waits_total", "Placements that found no capacity and left the job waiting (pending) for it."),
    Counter("herald_scheduler_pauses_total", "Times a tenant's lane paused because nothing of it could be placed."),
    Counter("herald_scheduler_released_total", "Scheduled or parked jobs released to their user queue when they came due."),
    Counter("herald_scheduler_poison_total", "Jobs set aside as poison (they failed placement every time they were delivered)."),
    Counter("herald_scheduler_redeliveries_split_total", "Redelivered job batches split so that their jobs are placed one by one."),
    Counter("herald_scheduler_reconciled_total", "Outbox jobs older than the reconcile age published again by the leader."),
    Counter("herald_scheduler_checkpoints_total", "Capacity checkpoints written to PostgreSQL by the leader."),
    Counter("herald_scheduler_analyze_total", "ANALYZE runs on the hot tables to keep their statistics fresh."),
    Counter("herald_scheduler_idempotency_keys_expired_total", "Idempotency keys older than 24 hours deleted."),
    Gauge("herald_provider_score", "Each enabled provider's placement score (part=total) and its parts (quota, headroom, success, latency, recent) as the placer computes them, by provider name; set by the leader every 15 s."),
    Gauge("herald_provider_eligible", "1 while a provider can take sends (enabled, circuit closed, window open, quota left), else 0, by provider name; set by the leader every 15 s."),
    Gauge("herald_provider_window_used_ratio", "The share of each limited quota window (window=60s, 3600s, 86400s, ...) a provider has used, by provider name; set by the leader every 15 s."),
    Gauge("herald_queue_depth", "Messages ready in the deployment's queues, summed by kind (user, central, express, return, delay, dead_letter, callbacks) and channel (empty for queues of every channel), read by the leader every 15 s."),
    Gauge("herald_scheduler_central_depth", "Jobs ready in the central queue, by channel, as the gate last saw it."),
    Gauge("herald_scheduler_central_target", "Jobs the fair gate keeps ready in the central queue, by channel."),
    Gauge("herald_scheduler_express_depth", "Jobs ready in the express queue, by channel."),
    Gauge("herald_scheduler_worker_rate", "The workers' observed send rate (jobs per second), by channel."),
    Gauge("herald_scheduler_provider_admitted_rate", "Sends per second a provider is given: its admitted rate while throttled, else its configured one, by provider."),
    Gauge("herald_scheduler_unconfirmed_jobs", "Rows in the producers' outbox (jobs not yet known to be confirmed)."),
    Gauge("herald_scheduler_unconfirmed_oldest_seconds", "Age of the oldest outbox row, seconds."),
    Count("herald_scheduler_central_message_jobs", "Jobs per message published to a central or express queue."),
    // worker
    Counter("herald_worker_sends_total", "Sends by channel and outcome (sent, retry, failed, in_doubt, throttled, ...)."),
    Counter("herald_worker_in_doubt_total", "Sends cut off with no answer from the provider, by the channel's policy: hold (set aside for an operator) or resend."),
    Counter("herald_worker_duplicate_deliveries_total", "Jobs delivered twice in one claim batch; the copy was acked without a send."),
    Counter("herald_worker_lease_waits_total", "Sends that waited for a provider concurrency lease."),
    Counter("herald_worker_lease_timeouts_total", "Sends that found every concurrency slot busy for too long and went back to the scheduler."),
    Counter("herald_worker_throttled_total", "Provider answers that said too fast (rate-limit errors), which throttle the provider."),
    Counter("herald_worker_throttle_returned_total", "Jobs returned to the scheduler because they were placed before the provider was throttled."),
    Counter("herald_worker_returned_unacked_total", "Finished jobs whose delivery could not be acked (the channel closed); recorded so their redelivery is handled."),
    Counter("herald_smtp_connections_opened_total", "SMTP sessions opened, by server (host:port)."),
    Seconds("herald_worker_send_seconds", "Seconds a send took at the provider, by channel."),
    Seconds("herald_worker_enqueue_to_send_seconds", "Seconds from a message's enqueue (its producer's clock) to the provider's acceptance (this worker's clock), by channel; sent messages only."),
    Count("herald_worker_claim_jobs", "Jobs claimed together in one statement."),
    Count("herald_worker_record_jobs", "Outcomes written together in one statement."),
    Counter("herald_worker_callbacks_total", "Provider callback events by what became of them: processed (applied to their message), waiting (stored; their message is not sent yet), ignored (kept, about no message Herald can change: unknown id, another provider's message, a message that failed), duplicate (a provider's retry of an event already stored)."),
    Counter("herald_worker_callback_status_moves_total", "Messages whose status or delivery time a callback moved forward."),
    Counter("herald_worker_suppressions_added_total", "Email addresses put on their tenant's suppression list by a hard bounce or a complaint."),
    Counter("herald_worker_webhook_deliveries_total", "Tenant webhook deliveries by what an attempt came to: delivered (2xx), retry (failed, tried again later), postponed (not tried: the endpoint failed earlier in the round, or the tenant has no signing secret yet), failed (given up after 24 h, or the webhook was removed)."),
    Seconds("herald_worker_webhook_seconds", "Time of one tenant webhook request, to its answer or timeout."),
    Count("herald_worker_callback_batch", "Callback events stored together in one transaction."),
];

/// Registers every help text with the installed recorder.
pub fn describe() {
    for m in METRICS {
        match *m {
            Counter(name, help) => metrics::describe_counter!(name, help),
            Gauge(name, help) => metrics::describe_gauge!(name, help),
            Seconds(name, help) => {
                metrics::describe_histogram!(name, metrics::Unit::Seconds, help)
            }
            Count(name, help) => metrics::describe_histogram!(name, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The names the code records: the string literal after each
    /// `counter!(`, `gauge!(` and `histogram!(` in the workspace's sources.
    fn recorded_names(dir: &Path, names: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("a source folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                if !path.ends_with("target") && !path.ends_with("tests") {
                    recorded_names(&path, names);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source file");
            for macro_ in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in text.match_indices(macro_) {
                    let rest = text[at + macro_.len()..].trim_start();
                    if let Some(lit) = rest.strip_prefix('"') {
                        if let Some(end) = lit.find('"') {
                            names.push((lit[..end].to_owned(), path.display().to_string()));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_metric_the_code_records_has_its_help() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut names = Vec::new();
        for part in ["services", "shared", "loadtest/src"] {
            recorded_names(&root.join(part), &mut names);
        }
        assert!(names.len() > 40, "found only {names:?}");
        // Described next to their code.
        let elsewhere = [
            "herald_worker_pacing_wait_seconds",
            "herald_worker_pacing_returned_total",
            "herald_store_undecodable_rows_total",
            "herald_store_undecodable_providers",
        ];
        let catalog: Vec<&str> = METRICS
            .iter()
            .map(|m| match *m {
                Counter(n, _) | Gauge(n, _) | Seconds(n, _) | Count(n, _) => n,
            })
            .collect();
        for (name, file) in names {
            if name.starts_with("herald_") {
                assert!(
                    catalog.contains(&name.as_str()) || elsewhere.contains(&name.as_str()),
                    "{name} (recorded in {file}) has no help text in catalog::METRICS"
                );
            }
        }
    }

    #[test]
    fn a_rendered_histogram_has_its_help_and_buckets() {
        let handle = crate::install_metrics();
        metrics::histogram!("herald_worker_claim_jobs").record(3.0);
        metrics::histogram!("herald_producer_commit_seconds", "step" => "record").record(0.002);
        metrics::counter!("herald_worker_lease_waits_total").increment(1);
        let text = handle.render();
        for want in [
            "# HELP herald_worker_claim_jobs Jobs claimed together",
            "# TYPE herald_worker_claim_jobs histogram",
            "herald_worker_claim_jobs_bucket{le=\"4\"} 1",
            "# TYPE herald_producer_commit_seconds histogram",
            "herald_producer_commit_seconds_bucket{step=\"record\",le=\"0.0025\"} 1",
            "# HELP herald_worker_lease_waits_total Sends that waited",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{text}");
        }
    }
}
