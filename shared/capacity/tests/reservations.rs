//! Reservations against the real Redis: any number of schedulers together
//! never exceed a provider's windows, a recipient's caps or a provider's
//! concurrency, and never deny what would have fitted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_capacity::{Ask, Capacity, Full, HealthPolicy, Lease, Limits, Observation, Reservation};
use herald_testing::{wait_for, Isolation};
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

#[derive(Debug, Clone)]
struct Job {
    provider: usize,
    cost: u32,
    recipients: Vec<String>,
}

fn jobs(providers: usize) -> impl Strategy<Value = Vec<Job>> {
    prop::collection::vec(
        (0..providers, 1u32..6, prop::collection::vec(0u8..6, 1..4)).prop_map(
            |(provider, cost, r)| Job {
                provider,
                cost,
                recipients: r.into_iter().map(|u| format!("u{u}")).collect(),
            },
        ),
        1..160,
    )
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        1u64..60,
        prop::option::of(1u64..200),
        prop::bool::ANY,
        prop::option::of(1u32..8),
    )
        .prop_map(|(minute, hour, wework, concurrency)| {
            let mut windows = vec![(60_000, minute)];
            if let Some(h) = hour {
                windows.push((3_600_000, h));
            }
            Limits {
                windows,
                recipient_windows: if wework {
                    vec![(60_000, 4), (3_600_000, 1_000)]
                } else {
                    Vec::new()
                },
                concurrency,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// K schedulers × M providers × random jobs: the sum granted on a
    /// provider never exceeds its smallest window, no recipient exceeds
    /// its cap, a job is denied only when it would not have fitted, and
    /// Redis counts exactly what was granted.
    #[test]
    fn schedulers_together_never_overbook(
        schedulers in 1usize..5,
        all_limits in prop::collection::vec(limits(), 1..5),
        jobs in jobs(4),
    ) {
        let rt = runtime();
        rt.block_on(async move {
            let ns = Isolation::new("cap");
            let providers: Vec<(Uuid, Limits)> =
                all_limits.iter().map(|l| (Uuid::new_v4(), l.clone())).collect();
            let jobs: Vec<Job> = jobs
                .into_iter()
                .filter(|j| j.provider < providers.len())
                .collect();
            let mut caps = Vec::new();
            for _ in 0..schedulers {
                caps.push(Capacity::connect(&redis_url(), &ns.namespace).await.expect("redis"));
            }
            // Deal the jobs to the schedulers; each places its share
            // concurrently with the others.
            let mut tasks = Vec::new();
            for (k, cap) in caps.iter().enumerate() {
                let mine: Vec<Job> = jobs.iter().skip(k).step_by(schedulers).cloned().collect();
                let cap = cap.clone();
                let providers = providers.clone();
                let batched = k % 2 == 1;
                tasks.push(tokio::spawn(async move {
                    if batched {
                        // Odd schedulers reserve in batches of up to eight
                        // jobs per provider (one script call each).
                        let mut by_provider: HashMap<usize, Vec<Job>> = HashMap::new();
                        for job in mine {
                            by_provider.entry(job.provider).or_default().push(job);
                        }
                        let calls = by_provider.into_iter().flat_map(|(p, jobs)| {
                            let chunks: Vec<Vec<Job>> = jobs.chunks(8).map(<[Job]>::to_vec).collect();
                            let providers = providers.clone();
                            let cap = cap.clone();
                            chunks.into_iter().map(move |chunk| {
                                let cap = cap.clone();
                                let (id, limits) = providers[p].clone();
                                async move {
                                    let asks: Vec<Ask> = chunk.iter().map(|j| Ask { cost: j.cost, recipients: &j.recipients }).collect();
                                    let rs = cap.reserve_many(id, &limits, &asks).await.expect("reserve_many");
                                    drop(asks);
                                    chunk.into_iter().zip(rs).collect::<Vec<_>>()
                                }
                            })
                        });
                        futures::future::join_all(calls).await.into_iter().flatten().collect::<Vec<_>>()
                    } else {
                        let calls = mine.into_iter().map(|job| {
                            let cap = cap.clone();
                            let (id, limits) = providers[job.provider].clone();
                            async move {
                                let r = cap.reserve(id, &limits, job.cost, &job.recipients).await.expect("reserve");
                                (job, r)
                            }
                        });
                        futures::future::join_all(calls).await
                    }
                }));
            }
            let mut results = Vec::new();
            for t in tasks {
                results.extend(t.await.expect("task"));
            }
            for (index, (id, limits)) in providers.iter().enumerate() {
                let mine: Vec<&(Job, Reservation)> =
                    results.iter().filter(|(j, _)| j.provider == index).collect();
                let granted: u64 = mine
                    .iter()
                    .filter(|(_, r)| matches!(r, Reservation::Granted { .. }))
                    .map(|(j, _)| u64::from(j.cost))
                    .sum();
                let tightest = limits.windows.iter().map(|w| w.1).min().expect("a window");
                assert!(granted <= tightest, "granted {granted} > limit {tightest}");
                let mut per_recipient: HashMap<&str, u64> = HashMap::new();
                for (job, r) in &mine {
                    if matches!(r, Reservation::Granted { .. }) && !limits.recipient_windows.is_empty() {
                        let mut distinct: Vec<&str> = job.recipients.iter().map(String::as_str).collect();
                        distinct.sort_unstable();
                        distinct.dedup();
                        for u in distinct {
                            *per_recipient.entry(u).or_default() += 1;
                        }
                    }
                }
                for (u, n) in &per_recipient {
                    assert!(*n <= 4, "recipient {u} got {n} > 4 a minute");
                    let counted = caps[0].recipient_used(*id, u, 60_000).await.expect("used");
                    assert_eq!(counted, *n, "Redis counts recipient {u}");
                }
                for (job, r) in &mine {
                    match r {
                        Reservation::Granted { .. } => {}
                        Reservation::TooLarge { .. } => assert!(u64::from(job.cost) > tightest),
                        Reservation::Denied { full: Full::Provider { .. }, retry_after } => {
                            assert!(granted + u64::from(job.cost) > tightest,
                                "denied a job of {} with {granted} of {tightest} used", job.cost);
                            // At most the longest window plus one bucket
                            // (the current bucket counts until it leaves).
                            assert!(*retry_after <= Duration::from_secs(3_600 * 7 / 6));
                        }
                        Reservation::Denied { full: Full::Recipient { .. }, .. } => {
                            assert!(job.recipients.iter().any(|u| per_recipient.get(u.as_str()).copied().unwrap_or(0) + 1 > 4),
                                "denied for a recipient cap no recipient had reached");
                        }
                        Reservation::Denied { full: Full::Throttled, .. } => {
                            panic!("no provider here answered too fast, yet one was throttled");
                        }
                    }
                }
                assert_eq!(caps[0].used(*id, 60_000).await.expect("used"), granted);
            }
            ns.delete_keys().await;
        });
    }

    /// Refunds give back exactly what was charged.
    #[test]
    fn refunds_give_back_what_was_charged(costs in prop::collection::vec(1u32..5, 1..40), refund_every in 1usize..4) {
        let rt = runtime();
        rt.block_on(async move {
            let ns = Isolation::new("cap");
            let cap = Capacity::connect(&redis_url(), &ns.namespace).await.expect("redis");
            let id = Uuid::new_v4();
            let limits = Limits { windows: vec![(60_000, 1_000), (86_400_000, 10_000)], ..Limits::default() };
            let mut kept = 0u64;
            for (i, cost) in costs.iter().enumerate() {
                let Reservation::Granted { at_ms } = cap.reserve(id, &limits, *cost, &[]).await.expect("reserve") else {
                    panic!("a roomy window denied");
                };
                if i % refund_every == 0 {
                    cap.refund(id, &limits, *cost, at_ms, &[]).await.expect("refund");
                } else {
                    kept += u64::from(*cost);
                }
            }
            assert_eq!(cap.used(id, 60_000).await.expect("used"), kept);
            assert_eq!(cap.used(id, 86_400_000).await.expect("used"), kept);
            ns.delete_keys().await;
        });
    }

    /// Concurrency leases: never more holders than the limit at once, from
    /// any number of workers.
    #[test]
    fn leases_never_exceed_concurrency(limit in 1u32..6, workers in 1usize..4, sends in 5usize..40) {
        let rt = runtime();
        rt.block_on(async move {
            let ns = Isolation::new("cap");
            let id = Uuid::new_v4();
            let held = Arc::new(AtomicI64::new(0));
            let peak = Arc::new(AtomicI64::new(0));
            let mut tasks = Vec::new();
            for w in 0..workers {
                let cap = Capacity::connect(&redis_url(), &ns.namespace).await.expect("redis");
                let held = held.clone();
                let peak = peak.clone();
                tasks.push(tokio::spawn(async move {
                    let sends = (0..sends).map(|s| {
                        let cap = cap.clone();
                        let held = held.clone();
                        let peak = peak.clone();
                        async move {
                            let holder = format!("{w}-{s}");
                            loop {
                                match cap.acquire_lease(id, limit, &holder, Duration::from_secs(30)).await.expect("lease") {
                                    Lease::Granted => break,
                                    // Busy: retry shortly (the contention under test).
                                    Lease::Busy { .. } => tokio::time::sleep(Duration::from_millis(2)).await,
                                }
                            }
                            let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            // Holds the lease as a send would: time passes on purpose.
                            tokio::time::sleep(Duration::from_millis(3)).await;
                            held.fetch_sub(1, Ordering::SeqCst);
                            cap.release_lease(id, &holder).await.expect("release");
                        }
                    });
                    futures::future::join_all(sends).await;
                }));
            }
            for t in tasks {
                t.await.expect("task");
            }
            let peak = peak.load(Ordering::SeqCst);
            assert!(peak <= i64::from(limit), "{peak} held at once, limit {limit}");
            assert!(peak >= 1);
        });
    }
}

/// A worker that dies holding a lease gives its slot back when the lease
/// expires.
#[tokio::test]
async fn expired_leases_return_capacity() {
    let ns = Isolation::new("cap");
    let cap = Capacity::connect(&redis_url(), &ns.namespace)
        .await
        .expect("redis");
    let id = Uuid::new_v4();
    let ttl = Duration::from_millis(300);
    for h in ["a", "b"] {
        assert_eq!(
            cap.acquire_lease(id, 2, h, ttl).await.expect("lease"),
            Lease::Granted
        );
    }
    let Lease::Busy { expires_in } = cap.acquire_lease(id, 2, "c", ttl).await.expect("lease")
    else {
        panic!("a third lease over a limit of two");
    };
    assert!(expires_in <= ttl);
    // The same holder renews rather than taking a second slot.
    assert_eq!(
        cap.acquire_lease(id, 2, "a", ttl).await.expect("lease"),
        Lease::Granted
    );
    wait_for(ttl + Duration::from_secs(2), || async {
        cap.leases(id).await.expect("leases") == 0
    })
    .await;
    assert_eq!(cap.leases(id).await.expect("leases"), 0);
    assert_eq!(
        cap.acquire_lease(id, 2, "c", ttl).await.expect("lease"),
        Lease::Granted
    );
    ns.delete_keys().await;
}

/// Consecutive failures open the circuit; after the cooldown it is
/// half-open; a failed probe opens it for longer; a success closes it.
#[tokio::test]
async fn the_circuit_opens_probes_and_closes() {
    let ns = Isolation::new("cap");
    let cap = Capacity::connect(&redis_url(), &ns.namespace)
        .await
        .expect("redis");
    let id = Uuid::new_v4();
    let limits = Limits::default();
    let policy = HealthPolicy {
        alpha: 0.5,
        failure_threshold: 3,
        open_for: Duration::from_millis(300),
        max_open: Duration::from_secs(5),
    };
    let fail = Observation {
        failures: 1,
        latency_ms_sum: 100,
        latency_count: 1,
        ..Observation::default()
    };
    let limits = &limits;
    let load =
        |cap: Capacity| async move { cap.load(&[(id, limits)]).await.expect("load").remove(0) };
    assert_eq!(load(cap.clone()).await.success_rate, None);
    for _ in 0..2 {
        cap.observe(id, &fail, &policy).await.expect("observe");
    }
    let l = load(cap.clone()).await;
    assert_eq!(l.circuit(&policy), herald_capacity::health::Circuit::Closed);
    assert!(l.success_rate.expect("observed") < 0.3);
    cap.observe(id, &fail, &policy).await.expect("observe");
    let l = load(cap.clone()).await;
    assert!(matches!(
        l.circuit(&policy),
        herald_capacity::health::Circuit::Open { .. }
    ));
    wait_for(Duration::from_secs(3), || async {
        load(cap.clone()).await.circuit(&policy) == herald_capacity::health::Circuit::HalfOpen
    })
    .await;
    let l = load(cap.clone()).await;
    assert_eq!(
        l.circuit(&policy),
        herald_capacity::health::Circuit::HalfOpen
    );
    // A failed probe: open again, for twice as long.
    cap.observe(id, &fail, &policy).await.expect("observe");
    let l = load(cap.clone()).await;
    let herald_capacity::health::Circuit::Open { until_ms } = l.circuit(&policy) else {
        panic!("a failed probe must reopen the circuit");
    };
    assert!(until_ms - l.now_ms > 400, "the second open period doubles");
    let ok = Observation {
        successes: 1,
        latency_ms_sum: 20,
        latency_count: 1,
        ..Observation::default()
    };
    cap.observe(id, &ok, &policy).await.expect("observe");
    let l = load(cap.clone()).await;
    assert_eq!(l.circuit(&policy), herald_capacity::health::Circuit::Closed);
    assert!(l.latency_ms.expect("latency") < 100.0);
    ns.delete_keys().await;
}

/// The reservation script's counters for a WeWork send: five recipients
/// cost five units on the provider and one on each recipient.
#[tokio::test]
async fn a_wework_send_charges_the_provider_and_each_recipient() {
    let ns = Isolation::new("cap");
    let cap = Capacity::connect(&redis_url(), &ns.namespace)
        .await
        .expect("redis");
    let id = Uuid::new_v4();
    let limits = Limits::new(
        &herald_domain::Quota {
            per_minute: Some(100),
            ..Default::default()
        },
        herald_domain::Channel::Wework,
    );
    let to: Vec<String> = (0..5).map(|i| format!("user{i}")).collect();
    assert!(matches!(
        cap.reserve(id, &limits, 5, &to).await.expect("reserve"),
        Reservation::Granted { .. }
    ));
    assert_eq!(cap.used(id, 60_000).await.expect("used"), 5);
    assert_eq!(
        cap.recipient_used(id, "user3", 60_000).await.expect("used"),
        1
    );
    // Thirty a minute per member: the 31st to user0 waits.
    for _ in 0..29 {
        assert!(matches!(
            cap.reserve(id, &limits, 1, &to[..1])
                .await
                .expect("reserve"),
            Reservation::Granted { .. }
        ));
    }
    let r = cap
        .reserve(id, &limits, 1, &to[..1])
        .await
        .expect("reserve");
    assert!(
        matches!(
            r,
            Reservation::Denied {
                full: Full::Recipient { window_ms: 60_000 },
                ..
            }
        ),
        "{r:?}"
    );
    ns.delete_keys().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, ..ProptestConfig::default() })]

    /// Across bucket boundaries (a 600 ms window in 100 ms buckets): the
    /// scripts' running sum always equals the sum of the buckets still in
    /// the span, refunds included, and no span of the window ever holds
    /// more than the limit.
    #[test]
    fn running_sums_follow_the_buckets_over_time(
        ops in prop::collection::vec((0u64..250, 1u32..4, prop::bool::weighted(0.2)), 10..30),
    ) {
        let rt = runtime();
        rt.block_on(async move {
            let ns = Isolation::new("cap");
            let cap = Capacity::connect(&redis_url(), &ns.namespace).await.expect("redis");
            let id = Uuid::new_v4();
            let limit = 7;
            let limits = Limits { windows: vec![(600, limit)], ..Limits::default() };
            let mut grants: Vec<(i64, u64)> = Vec::new();
            for (pause, cost, refund) in ops {
                // Time passes on purpose: the property is about buckets over time.
                tokio::time::sleep(Duration::from_millis(pause)).await;
                if let Reservation::Granted { at_ms } = cap.reserve(id, &limits, cost, &[]).await.expect("reserve") {
                    if refund {
                        cap.refund(id, &limits, cost, at_ms, &[]).await.expect("refund");
                    } else {
                        grants.push((at_ms, u64::from(cost)));
                    }
                }
                let load = cap.load(&[(id, &limits)]).await.expect("load").remove(0);
                let buckets = cap.used(id, 600).await.expect("used");
                // The two reads are not atomic: allow a bucket boundary between them.
                if load.used[0] != buckets {
                    let again = cap.load(&[(id, &limits)]).await.expect("load").remove(0);
                    let buckets = cap.used(id, 600).await.expect("used");
                    assert_eq!(again.used[0], buckets, "running sum vs buckets");
                }
            }
            // With no reservation since, the read corrects the sum itself
            // as buckets leave the span.
            for pause in [150, 150, 150, 400] {
                // Time passes on purpose: buckets leave the span.
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let load = cap.load(&[(id, &limits)]).await.expect("load").remove(0);
                let buckets = cap.used(id, 600).await.expect("used");
                if load.used[0] != buckets {
                    let again = cap.load(&[(id, &limits)]).await.expect("load").remove(0);
                    let buckets = cap.used(id, 600).await.expect("used");
                    assert_eq!(again.used[0], buckets, "running sum vs buckets while idle");
                }
            }
            for (t, _) in &grants {
                let in_window: u64 = grants.iter().filter(|(u, _)| u <= t && *u > t - 600).map(|(_, c)| c).sum();
                assert!(in_window <= limit, "{in_window} units within 600 ms before {t}");
            }
            ns.delete_keys().await;
        });
    }
}
