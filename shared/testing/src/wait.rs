//! Waiting for state instead of sleeping: poll a condition every
//! [`POLL`] until it holds or the timeout passes.

use std::future::Future;
use std::time::Duration;

/// How often a condition is polled: short, so a test ends soon after the
/// state it waits for is reached.
pub const POLL: Duration = Duration::from_millis(25);

/// Polls `condition` until it is true (`true`) or `timeout` passes
/// (`false`). The condition is checked once more at the deadline.
pub async fn wait_for<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `probe` until `done` holds for what it returns or `timeout`
/// passes, and returns the last value read, so the caller asserts on (and
/// prints) the state it saw rather than a bare `false`.
pub async fn wait_for_value<T, F, Fut>(
    timeout: Duration,
    mut probe: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let value = probe().await;
        if done(&value) || tokio::time::Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A condition that did not hold in time, naming what was waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedOut {
    pub what: String,
    pub timeout: Duration,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for {}",
            self.timeout, self.what
        )
    }
}

impl std::error::Error for TimedOut {}

/// [`wait_for`] as a `Result` whose error says what was waited for:
/// `wait_until("the batch to be acked", secs(10), || …).await?`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, condition: F) -> Result<(), TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    if wait_for(timeout, condition).await {
        Ok(())
    } else {
        Err(TimedOut {
            what: what.to_owned(),
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_condition_that_comes_true_ends_the_wait() {
        let n = AtomicU32::new(0);
        let ok = wait_for(Duration::from_secs(5), || async {
            n.fetch_add(1, Ordering::SeqCst) >= 3
        })
        .await;
        assert!(ok);
        assert_eq!(n.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_condition_that_never_holds_times_out_naming_what_was_awaited() {
        let e = wait_until("the moon", Duration::from_millis(60), || async { false })
            .await
            .expect_err("never");
        assert_eq!(e.to_string(), "timed out after 60ms waiting for the moon");
        let last = wait_for_value(Duration::from_millis(60), || async { 7 }, |v| *v == 8).await;
        assert_eq!(last, 7, "the last value read is returned");
    }
}
