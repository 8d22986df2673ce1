//! Reservations per second from one process against the real Redis: many
//! reservations in flight on the one multiplexed connection, so Redis sees
//! them pipelined; and batched, several placements per script call (what
//! the scheduler does with the jobs of a batch that drew the same provider).
//!
//! `cargo bench -p herald-capacity --bench reserve` (Redis at
//! HERALD_REDIS_URL, default 127.0.0.1:6379). Figures: README, "Benchmarks".

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herald_capacity::{Ask, Capacity, Limits};
use uuid::Uuid;

fn redis_url() -> String {
    std::env::var("HERALD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn reservations(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let ns = format!("bench{}", Uuid::new_v4().simple());
    let cap = rt
        .block_on(Capacity::connect(&redis_url(), &ns))
        .expect("Redis must be running for this benchmark");
    // A provider with minute, hour and day windows large enough never to
    // fill during the run: every call is a full check and charge.
    let limits = Limits {
        windows: vec![
            (60_000, u64::MAX >> 12),
            (3_600_000, u64::MAX >> 12),
            (86_400_000, u64::MAX >> 12),
        ],
        recipient_windows: Vec::new(),
        concurrency: None,
    };
    let providers: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
    let mut group = c.benchmark_group("reserve");
    for in_flight in [1usize, 64, 512] {
        group.throughput(Throughput::Elements(in_flight as u64));
        group.bench_with_input(
            BenchmarkId::new("three_windows_in_flight", in_flight),
            &in_flight,
            |b, &n| {
                b.to_async(&rt).iter(|| {
                    let cap = &cap;
                    let limits = &limits;
                    let providers = &providers;
                    async move {
                        let calls = (0..n)
                            .map(|i| cap.reserve(providers[i % providers.len()], limits, 1, &[]));
                        for r in futures::future::join_all(calls).await {
                            r.expect("reserve");
                        }
                    }
                })
            },
        );
    }
    // What a scheduler does with a batch: the jobs that drew the same
    // provider are reserved in one script call (64 jobs over 8 providers:
    // 8 calls of 8, in flight together).
    for per_call in [8usize, 64] {
        let calls = 512 / per_call;
        group.throughput(Throughput::Elements((calls * per_call) as u64));
        group.bench_with_input(
            BenchmarkId::new("three_windows_batched_per_call", per_call),
            &per_call,
            |b, &per_call| {
                b.to_async(&rt).iter(|| {
                    let cap = &cap;
                    let limits = &limits;
                    let providers = &providers;
                    async move {
                        let asks = vec![
                            Ask {
                                cost: 1,
                                recipients: &[]
                            };
                            per_call
                        ];
                        let asks = &asks;
                        let calls = (0..calls).map(|i| {
                            cap.reserve_many(providers[i % providers.len()], limits, asks)
                        });
                        for r in futures::future::join_all(calls).await {
                            r.expect("reserve_many");
                        }
                    }
                })
            },
        );
    }
    group.finish();
    rt.block_on(async {
        let mut conn = cap.connection();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{ns}:*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
        }
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = reservations
}
criterion_main!(benches);
