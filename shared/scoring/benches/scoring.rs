//! Scoring decisions per second in memory: building a (tenant, channel)'s
//! ranking from the providers' loads, and drawing a placement order from it
//! (what every placement does between refreshes).
//!
//! `cargo bench -p herald-scoring`

use std::sync::Arc;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herald_capacity::{HealthPolicy, ProviderLoad};
use herald_domain::{Channel, Quota};
use herald_scoring::{limits_for, score, ProviderView, Ranking, ScoreWeights};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

fn providers(n: usize) -> Vec<(Arc<ProviderView>, ProviderLoad)> {
    let mut rng = StdRng::seed_from_u64(1);
    (0..n)
        .map(|i| {
            let quota = Quota {
                per_minute: Some(rng.gen_range(100..10_000)),
                per_day: Some(1_000_000),
                concurrency: Some(20),
                ..Quota::default()
            };
            let view = ProviderView {
                id: Uuid::new_v4(),
                name: format!("p{i}"),
                tenant_id: None,
                channel: Channel::Email,
                limits: limits_for(&quota, Channel::Email),
                window: None,
                weight: rng.gen_range(50..150),
            };
            let load = ProviderLoad {
                now_ms: 0,
                used: vec![rng.gen_range(0..100), rng.gen_range(0..10_000)],
                leases: rng.gen_range(0..20),
                success_rate: Some(rng.gen_range(0.9..1.0)),
                latency_ms: Some(rng.gen_range(20.0..400.0)),
                consecutive_failures: 0,
                open_until_ms: 0,
                admitted_rate: None,
            };
            (Arc::new(view), load)
        })
        .collect()
}

fn rank(all: &[(Arc<ProviderView>, ProviderLoad)], weights: &ScoreWeights) -> Ranking {
    let policy = HealthPolicy::default();
    let now = Utc::now();
    let mean = all.iter().map(|(_, l)| l.used[0] as f64).sum::<f64>() / all.len() as f64;
    let scored = all
        .iter()
        .map(|(v, l)| (v.clone(), score(v, Some(l), mean, weights, &policy, now)))
        .collect();
    Ranking::build(scored, weights.band)
}

fn bench(c: &mut Criterion) {
    let weights = ScoreWeights::default();
    let mut decide = c.benchmark_group("decision");
    for n in [10, 100, 1_000] {
        let all = providers(n);
        let ranking = rank(&all, &weights);
        let mut rng = StdRng::seed_from_u64(2);
        decide.throughput(Throughput::Elements(1));
        decide.bench_with_input(BenchmarkId::from_parameter(n), &ranking, |b, r| {
            b.iter(|| r.attempts(&mut rng).next().map(|v| v.id))
        });
    }
    decide.finish();
    let mut build = c.benchmark_group("rank_rebuild");
    for n in [10, 100, 1_000] {
        let all = providers(n);
        build.throughput(Throughput::Elements(n as u64));
        build.bench_with_input(BenchmarkId::from_parameter(n), &all, |b, all| {
            b.iter(|| rank(all, &weights).len())
        });
    }
    build.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
