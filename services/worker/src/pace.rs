//! Per-provider pacing inside one worker (decision 0013).
//!
//! The capacity windows (decision 0002) count a minute in 10-second buckets,
//! so a whole minute's quota may legally leave in its first second; WeWork
//! drops such a burst's excess silently and SMTP relays throttle it. A
//! [`Pacer`] smooths a provider's sends to its per-minute rate per second
//! with a burst of a few seconds' worth, using a `governor` direct rate
//! limiter on tokio's clock (so `tokio::time::pause` drives it in tests).
//!
//! Pacing only delays what the scheduler already reserved: it never lets
//! more through than the Redis windows allow. Each worker paces on its own,
//! so N workers together may send up to N times the per-second pace for a
//! moment, but never more than the windows.

use std::num::NonZeroU32;
use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::RateLimiter;
use herald_domain::Quota;
use herald_runtime::Shutdown;

/// The burst a pacer lets through at once, in seconds of its rate (at
/// least one send).
pub const BURST_SECONDS: u64 = 3;

/// An instant of tokio's clock, as `governor` measures time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokioInstant(tokio::time::Instant);

impl Add<Nanos> for TokioInstant {
    type Output = TokioInstant;

    fn add(self, other: Nanos) -> TokioInstant {
        TokioInstant(self.0 + Duration::from(other))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        TokioInstant(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

/// tokio's clock: paused and advanced by `tokio::time::pause` in tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;

    fn now(&self) -> TokioInstant {
        TokioInstant(tokio::time::Instant::now())
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;

/// How a paced send's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paced {
    /// The send may go now, after waiting this long.
    Ready(Duration),
    /// The send would have to wait longer than allowed: it goes back to
    /// the scheduler.
    TooLong,
    /// The worker is shutting down: the send goes back to the scheduler.
    Stopped,
}

/// One provider's pace: a direct rate limiter built from its quota.
pub struct Pacer {
    limiter: Limiter,
    /// The quota it was built from: a catalog change to another quota
    /// rebuilds it.
    quota: Quota,
    burst: NonZeroU32,
    period: Duration,
}

impl Pacer {
    /// The pacer for `quota`, `None` when it has no per-minute limit (not
    /// paced; see decision 0013 for why the hour and day are not).
    pub fn for_quota(quota: &Quota) -> Option<Pacer> {
        let per_minute = quota.per_minute.filter(|&n| n > 0)?;
        // One send every 60 s / per_minute; a whole minute at most, never zero.
        let period = Duration::from_nanos((60_000_000_000 / per_minute).max(1));
        let burst = NonZeroU32::new(
            u32::try_from((per_minute * BURST_SECONDS / 60).max(1)).unwrap_or(u32::MAX),
        )?;
        let rate = governor::Quota::with_period(period)?.allow_burst(burst);
        Some(Pacer {
            limiter: RateLimiter::direct_with_clock(rate, TokioClock),
            quota: *quota,
            burst,
            period,
        })
    }

    /// Whether this pacer was built from `quota`.
    pub fn paces(&self, quota: &Quota) -> bool {
        self.quota == *quota
    }

    /// The time between two sends at this pace.
    pub fn period(&self) -> Duration {
        self.period
    }

    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// Waits until a send costing `cost` units may go, at most `max_wait`,
    /// and no longer once `stop` fires. A send costing more than the burst
    /// waits for a full burst. Dropping the future takes nothing from the
    /// pace.
    pub async fn wait(&self, cost: u32, max_wait: Duration, stop: &Shutdown) -> Paced {
        let n = NonZeroU32::new(cost.clamp(1, self.burst.get())).unwrap_or(self.burst);
        let start = tokio::time::Instant::now();
        let deadline = start + max_wait;
        loop {
            let not_until = match self.limiter.check_n(n) {
                Ok(Ok(())) => return Paced::Ready(start.elapsed()),
                Ok(Err(not_until)) => not_until,
                // Cannot happen: `n` is at most the burst.
                Err(_) => return Paced::Ready(start.elapsed()),
            };
            let now = tokio::time::Instant::now();
            let at = now + not_until.wait_time_from(TokioInstant(now));
            if at > deadline {
                return Paced::TooLong;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = stop.wait() => return Paced::Stopped,
            }
        }
    }
}

/// The pacer a provider's new catalog entry gets: the old one while the
/// quota is unchanged (a PATCH of the config keeps the pace), a new one
/// when it changed, none without a per-minute limit.
pub fn carry_over(
    old: Option<&std::sync::Arc<Pacer>>,
    quota: &Quota,
) -> Option<std::sync::Arc<Pacer>> {
    match old {
        Some(p) if p.paces(quota) => Some(p.clone()),
        _ => Pacer::for_quota(quota).map(std::sync::Arc::new),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    fn per_minute(n: u64) -> Quota {
        Quota {
            per_minute: Some(n),
            ..Quota::default()
        }
    }

    fn never_stops() -> (herald_runtime::Trigger, Shutdown) {
        Shutdown::new()
    }

    /// Seconds (from the first send) at which each of `sends` sends of
    /// `cost` went.
    async fn send_times(pacer: &Pacer, sends: usize, cost: u32) -> Vec<u64> {
        let (_t, stop) = never_stops();
        let start = tokio::time::Instant::now();
        let mut at = Vec::new();
        for _ in 0..sends {
            assert!(matches!(
                pacer.wait(cost, LONG, &stop).await,
                Paced::Ready(_)
            ));
            at.push(start.elapsed().as_millis() as u64 / 100);
        }
        at
    }

    #[tokio::test(start_paused = true)]
    async fn sixty_a_minute_sends_one_a_second_after_its_burst() {
        let pacer = Pacer::for_quota(&per_minute(60)).expect("paced");
        assert_eq!(pacer.burst(), 3);
        assert_eq!(pacer.period(), Duration::from_secs(1));
        // In tenths of a second: the burst of 3 at once, then one a second.
        assert_eq!(
            send_times(&pacer, 7, 1).await,
            vec![0, 0, 0, 10, 20, 30, 40]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wework_send_to_five_costs_five() {
        // 300 a minute: 5 a second, a burst of 15.
        let pacer = Pacer::for_quota(&per_minute(300)).expect("paced");
        assert_eq!(pacer.burst(), 15);
        // Three sends of five use the burst; each next one waits a second
        // (five units at five a second).
        assert_eq!(send_times(&pacer, 5, 5).await, vec![0, 0, 0, 10, 20]);
        // Single sends meanwhile wait a fifth of a second each.
        assert_eq!(send_times(&pacer, 2, 1).await, vec![2, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_costing_more_than_the_burst_waits_for_a_full_burst() {
        let pacer = Pacer::for_quota(&per_minute(60)).expect("paced");
        assert_eq!(send_times(&pacer, 3, 10).await, vec![0, 30, 60]);
    }

    #[test]
    fn a_provider_without_a_minute_limit_is_not_paced() {
        assert!(Pacer::for_quota(&Quota::default()).is_none());
        let hour_and_day = Quota {
            per_hour: Some(10),
            per_day: Some(100),
            concurrency: Some(1),
            ..Quota::default()
        };
        assert!(Pacer::for_quota(&hour_and_day).is_none());
        assert!(carry_over(None, &hour_and_day).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unpaced_provider_is_not_delayed() {
        // The send path waits only when the entry has a pacer: with none,
        // a thousand sends take no time at all.
        let entry_pacer = carry_over(None, &Quota::default());
        let start = tokio::time::Instant::now();
        let (_t, stop) = never_stops();
        for _ in 0..1000 {
            if let Some(p) = &entry_pacer {
                p.wait(1, LONG, &stop).await;
            }
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        // A fast pace (6,000 a minute: 100 a second, a burst of 300) does
        // not delay its burst either.
        let fast = Pacer::for_quota(&per_minute(6_000)).expect("paced");
        assert_eq!(send_times(&fast, 300, 1).await, vec![0; 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_quota_takes_effect_and_an_unchanged_one_keeps_its_pace() {
        let slow = carry_over(None, &per_minute(6)).expect("paced");
        assert_eq!(slow.period(), Duration::from_secs(10));
        // The same quota (a config PATCH): the same limiter, burst used.
        let kept = carry_over(Some(&slow), &per_minute(6)).expect("paced");
        assert!(Arc::ptr_eq(&slow, &kept));
        assert_eq!(send_times(&kept, 2, 1).await, vec![0, 100]);
        // A new quota: a new limiter at the new pace.
        let fast = carry_over(Some(&kept), &per_minute(120)).expect("paced");
        assert!(!Arc::ptr_eq(&kept, &fast));
        assert_eq!(fast.period(), Duration::from_millis(500));
        assert_eq!(send_times(&fast, 8, 1).await, vec![0, 0, 0, 0, 0, 0, 5, 10]);
        // The minute limit removed: no pacer.
        assert!(carry_over(Some(&fast), &Quota::default()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_longer_than_allowed_gives_up_without_taking_a_turn() {
        let pacer = Pacer::for_quota(&per_minute(1)).expect("paced");
        let (_t, stop) = never_stops();
        assert!(matches!(pacer.wait(1, LONG, &stop).await, Paced::Ready(_)));
        let start = tokio::time::Instant::now();
        assert_eq!(
            pacer.wait(1, Duration::from_secs(20), &stop).await,
            Paced::TooLong
        );
        assert_eq!(start.elapsed(), Duration::ZERO, "gave up at once");
        // The turn it did not take is the next send's, a minute after the first.
        assert_eq!(
            pacer.wait(1, LONG, &stop).await,
            Paced::Ready(Duration::from_secs(60))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_ends_a_wait() {
        let pacer = Arc::new(Pacer::for_quota(&per_minute(1)).expect("paced"));
        let (trigger, stop) = Shutdown::new();
        assert!(matches!(pacer.wait(1, LONG, &stop).await, Paced::Ready(_)));
        let waiting = tokio::spawn({
            let pacer = pacer.clone();
            async move { pacer.wait(1, LONG, &stop).await }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        trigger.trigger();
        assert_eq!(waiting.await.expect("the wait"), Paced::Stopped);
    }
}
