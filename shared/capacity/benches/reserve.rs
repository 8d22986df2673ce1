//! Reservations per second from one process against the real Redis: many
//! reservations in flight on the one multiplexed connection (the way a
//! scheduler places a batch), so Redis sees them pipelined.
//!
//! `cargo bench -p herald-capacity --bench reserve` (Redis at
//! HERALD_REDIS_URL, default 127.0.0.1:6379). Figures: README, "Benchmarks".

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herald_capacity::{Capacity, Limits};
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
                        let calls = (0..n).map(|i| {
                            cap.reserve(providers[i % providers.len()], limits, 1, &[])
                        });
                        for r in futures::future::join_all(calls).await {
                            r.expect("reserve");
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
