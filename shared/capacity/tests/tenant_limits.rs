//! Tenant limits against the real Redis: the rate limit and the daily
//! quota never admit more than they allow, never refuse what fits, hold
//! across concurrent producers, and a day count Redis lost starts again
//! from the caller's count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use herald_capacity::{Admission, Capacity, TenantLimits};
use herald_testing::Isolation;
use proptest::prelude::*;
use uuid::Uuid;

fn redis_url() -> String {
    std::env::var("HERALD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

async fn capacity(iso: &Isolation) -> Capacity {
    Capacity::connect(&redis_url(), &iso.namespace)
        .await
        .expect("redis")
}

const DAY_US: i64 = 86_400_000_000;

/// The limits' rules, restated: a GCRA with a burst of `rate` messages and
/// a count per UTC day.
struct Model {
    limits: TenantLimits,
    tat: f64,
    day: i64,
    used: u64,
}

impl Model {
    fn new(limits: TenantLimits) -> Model {
        Model {
            limits,
            tat: 0.0,
            day: -1,
            used: 0,
        }
    }

    fn admit(&mut self, now: i64, n: u64) -> Admission {
        let day = now.div_euclid(DAY_US);
        if day != self.day {
            (self.day, self.used) = (day, 0);
        }
        if let Some(rate) = self.limits.rate_per_sec {
            if n > u64::from(rate) {
                return Admission::OverBurst { burst: rate };
            }
        }
        if let Some(quota) = self.limits.daily_quota {
            if self.used + n > quota {
                return Admission::QuotaExceeded {
                    remaining: quota.saturating_sub(self.used),
                    retry_after: std::time::Duration::ZERO,
                };
            }
        }
        if let Some(rate) = self.limits.rate_per_sec {
            let interval = 1e6 / f64::from(rate);
            let tat = self.tat.max(now as f64);
            if tat + n as f64 * interval - f64::from(rate) * interval > now as f64 {
                return Admission::RateLimited {
                    retry_after: std::time::Duration::ZERO,
                };
            }
            self.tat = tat + n as f64 * interval;
        }
        self.used += n;
        Admission::Admitted
    }
}

/// The answer without its wait, to compare with the model.
fn kind(a: Admission) -> Admission {
    match a {
        Admission::RateLimited { .. } => Admission::RateLimited {
            retry_after: std::time::Duration::ZERO,
        },
        Admission::QuotaExceeded { remaining, .. } => Admission::QuotaExceeded {
            remaining,
            retry_after: std::time::Duration::ZERO,
        },
        other => other,
    }
}

fn limits() -> impl Strategy<Value = TenantLimits> {
    (prop::option::of(1u32..40), prop::option::of(1u64..120))
        .prop_filter("some limit", |(r, q)| r.is_some() || q.is_some())
        .prop_map(|(rate_per_sec, daily_quota)| TenantLimits {
            rate_per_sec,
            daily_quota,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Random groups of requests at random times (crossing a UTC midnight
    /// now and then): every answer is the model's, the admitted messages
    /// of a day never exceed the quota, and in any stretch of time the
    /// admitted messages never exceed one burst plus the rate's share.
    #[test]
    fn the_limits_admit_exactly_what_fits(
        limits in limits(),
        steps in prop::collection::vec(
            (0i64..400_000, prop::collection::vec(1u64..12, 1..5)),
            1..60,
        ),
        start_offset in 0i64..(2 * 60_000_000),
    ) {
        runtime().block_on(async {
            let iso = Isolation::new("tl");
            let cap = capacity(&iso).await;
            let tenant = Uuid::now_v7();
            let mut model = Model::new(limits);
            // A minute or two before a midnight, so some runs cross it.
            let mut now = 20_000 * DAY_US - start_offset;
            let mut admitted: Vec<(i64, u64)> = Vec::new();
            for (dt, sizes) in &steps {
                now += dt;
                let got = cap
                    .admit_at(tenant, limits, sizes, Some(now), |_| async { Ok(0) })
                    .await
                    .expect("admit");
                prop_assert_eq!(got.day, now.div_euclid(DAY_US));
                for (size, answer) in sizes.iter().zip(&got.answers) {
                    let want = model.admit(now, *size);
                    prop_assert_eq!(kind(*answer), want, "{} messages at {}", size, now);
                    if *answer == Admission::Admitted {
                        admitted.push((now, *size));
                    }
                }
            }
            if let Some(quota) = limits.daily_quota {
                let mut per_day = std::collections::HashMap::<i64, u64>::new();
                for (at, n) in &admitted {
                    *per_day.entry(at.div_euclid(DAY_US)).or_default() += n;
                }
                prop_assert!(per_day.values().all(|&n| n <= quota), "{:?}", per_day);
            }
            if let Some(rate) = limits.rate_per_sec {
                for (i, (from, _)) in admitted.iter().enumerate() {
                    let mut sum = 0u64;
                    for (at, n) in &admitted[i..] {
                        sum += n;
                        let allowed = f64::from(rate) * (1.0 + (at - from) as f64 / 1e6);
                        prop_assert!(sum as f64 <= allowed + 1e-6,
                            "{} admitted in {} µs at {}/s", sum, at - from, rate);
                    }
                }
            }
            iso.delete_keys().await;
            Ok(())
        })?;
    }
}

#[test]
fn producers_together_admit_exactly_the_daily_quota() {
    runtime().block_on(async {
        let iso = Isolation::new("tl");
        let tenant = Uuid::now_v7();
        let limits = TenantLimits {
            rate_per_sec: None,
            daily_quota: Some(137),
        };
        let admitted = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            // Four producers, each with its own connection.
            let cap = capacity(&iso).await;
            let admitted = admitted.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..60u64 {
                    let sizes = [1 + i % 3];
                    let got = cap
                        .admit(tenant, limits, &sizes, |_| async { Ok(0) })
                        .await
                        .expect("admit");
                    if got.answers[0] == Admission::Admitted {
                        admitted.fetch_add(sizes[0] as usize, Ordering::SeqCst);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("a producer");
        }
        // 4 × 60 requests of 1–3 messages ask for far more than 137; the
        // last ones that fit are single messages, so the quota is filled.
        assert_eq!(admitted.load(Ordering::SeqCst), 137);
        iso.delete_keys().await;
    });
}

#[test]
fn a_lost_day_count_starts_again_from_the_callers_count_and_refunds_give_back() {
    runtime().block_on(async {
        let iso = Isolation::new("tl");
        let cap = capacity(&iso).await;
        let tenant = Uuid::now_v7();
        let limits = TenantLimits {
            rate_per_sec: None,
            daily_quota: Some(20),
        };
        let now = 20_500 * DAY_US + 3_600_000_000;
        let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = asked.clone();
        // Redis knows nothing of today: the caller says 15 were accepted.
        let got = cap
            .admit_at(tenant, limits, &[3, 3], Some(now), |since| async move {
                seen.lock().expect("lock").push(since);
                Ok(15)
            })
            .await
            .expect("admit");
        assert_eq!(*asked.lock().expect("lock"), vec![20_500 * 86_400_000]);
        assert_eq!(got.answers[0], Admission::Admitted);
        match got.answers[1] {
            Admission::QuotaExceeded {
                remaining,
                retry_after,
            } => {
                assert_eq!(remaining, 2);
                // 23 hours to the next UTC day.
                assert_eq!(retry_after.as_secs(), 23 * 3600);
            }
            other => panic!("{other:?}"),
        }
        // Counted on without asking again.
        let got = cap
            .admit_at(tenant, limits, &[2], Some(now + 1), |_| async {
                Err("not asked".to_owned())
            })
            .await
            .expect("admit");
        assert_eq!(got.answers, vec![Admission::Admitted]);
        // Three of them were not accepted after all: they fit again.
        cap.unadmit_at(tenant, limits, 3, got.day, Some(now + 2))
            .await
            .expect("unadmit");
        let got = cap
            .admit_at(tenant, limits, &[3, 1], Some(now + 3), |_| async {
                Err("not asked".to_owned())
            })
            .await
            .expect("admit");
        assert_eq!(
            got.answers,
            vec![
                Admission::Admitted,
                Admission::QuotaExceeded {
                    remaining: 0,
                    retry_after: got_wait(&got.answers[1]),
                }
            ]
        );

        // A rate limit gives back too: 5 per second, all 5 taken, 2 back.
        let rated = TenantLimits {
            rate_per_sec: Some(5),
            daily_quota: None,
        };
        let other = Uuid::now_v7();
        let ok = |n| async move { Ok::<u64, String>(n) };
        let got = cap
            .admit_at(other, rated, &[5, 1], Some(now), |_| ok(0))
            .await
            .expect("admit");
        assert!(matches!(got.answers[1], Admission::RateLimited { retry_after } if retry_after.as_millis() == 200));
        cap.unadmit_at(other, rated, 2, got.day, Some(now))
            .await
            .expect("unadmit");
        let got = cap
            .admit_at(other, rated, &[2, 1, 6], Some(now), |_| ok(0))
            .await
            .expect("admit");
        assert_eq!(got.answers[0], Admission::Admitted);
        assert!(matches!(got.answers[1], Admission::RateLimited { .. }));
        assert_eq!(got.answers[2], Admission::OverBurst { burst: 5 });
        iso.delete_keys().await;
    });
}

fn got_wait(a: &Admission) -> std::time::Duration {
    match a {
        Admission::QuotaExceeded { retry_after, .. } => *retry_after,
        _ => std::time::Duration::ZERO,
    }
}
