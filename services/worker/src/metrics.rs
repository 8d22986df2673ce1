//! The worker's pacing metric names and help texts (decision 0013).
//! [`describe`] runs at start-up, after the service installed its recorder.

/// Time a send waited for its provider's pace, by `channel`.
pub const PACING_WAIT: &str = "herald_worker_pacing_wait_seconds";
const PACING_WAIT_HELP: &str = "Seconds a send waited for its provider's pace (the provider's \
    per-minute quota smoothed to a per-second rate with a burst of a few seconds, per worker) \
    before it went, by channel. Recorded for paced providers only; a send that did not have to \
    wait records 0. The wait comes before the worker's send slot and the concurrency \
    lease, so it holds neither.";

/// Sends that went back to the scheduler instead of waiting for their
/// pace, by `reason` (`too_long`, `stopping`).
pub const PACING_RETURNED: &str = "herald_worker_pacing_returned_total";
const PACING_RETURNED_HELP: &str = "Sends returned to the scheduler (reservation refunded, no \
    attempt spent) instead of waiting for their provider's pace, by reason: too_long (the wait \
    would exceed the worker's limit, 20 s) or stopping (the worker shut down while it waited).";

/// Registers the help texts with the installed recorder.
pub fn describe() {
    metrics::describe_histogram!(PACING_WAIT, metrics::Unit::Seconds, PACING_WAIT_HELP);
    metrics::describe_counter!(PACING_RETURNED, PACING_RETURNED_HELP);
}
