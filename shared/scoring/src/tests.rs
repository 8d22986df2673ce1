use super::*;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn view(weight: u32, quota: Quota) -> ProviderView {
    ProviderView {
        id: Uuid::new_v4(),
        name: format!("p{weight}"),
        tenant_id: None,
        channel: Channel::Email,
        limits: limits_for(&quota, Channel::Email),
        window: None,
        weight,
    }
}

fn load(used: Vec<u64>, leases: u64, ok: Option<f64>, lat: Option<f64>) -> ProviderLoad {
    ProviderLoad {
        now_ms: 1_000_000,
        used,
        leases,
        success_rate: ok,
        latency_ms: lat,
        consecutive_failures: 0,
        open_until_ms: 0,
        admitted_rate: None,
    }
}

fn per_minute(n: u64) -> Quota {
    Quota {
        per_minute: Some(n),
        concurrency: Some(10),
        ..Quota::default()
    }
}

proptest! {
    #[test]
    fn a_score_and_its_parts_stay_in_unit_range(
        used in 0u64..2_000, leases in 0u64..30, ok in prop::option::of(0.0f64..=1.0),
        lat in prop::option::of(0.0f64..100_000.0), mean in 0.0f64..1_000.0,
    ) {
        let v = view(100, per_minute(1_000));
        let s = score(&v, Some(&load(vec![used], leases, ok, lat)), mean, &ScoreWeights::default(), &HealthPolicy::default(), Utc::now());
        for p in [s.total, s.parts.quota, s.parts.headroom, s.parts.success, s.parts.latency, s.parts.recent] {
            prop_assert!((0.0..=1.0).contains(&p), "{p} out of range in {s:?}");
        }
    }

    /// More use, fewer successes or more latency never raise a score.
    #[test]
    fn worse_inputs_never_score_higher(
        used in 0u64..1_000, more in 0u64..1_000, ok in 0.0f64..=1.0, worse in 0.0f64..=1.0,
        lat in 0.0f64..10_000.0, slower in 0.0f64..10_000.0,
    ) {
        let v = view(100, per_minute(2_000));
        let w = ScoreWeights::default();
        let p = HealthPolicy::default();
        let now = Utc::now();
        let base = score(&v, Some(&load(vec![used], 0, Some(ok), Some(lat))), 100.0, &w, &p, now).total;
        let busier = score(&v, Some(&load(vec![used + more], 0, Some(ok), Some(lat))), 100.0, &w, &p, now).total;
        let flakier = score(&v, Some(&load(vec![used], 0, Some(ok * worse), Some(lat))), 100.0, &w, &p, now).total;
        let laggier = score(&v, Some(&load(vec![used], 0, Some(ok), Some(lat + slower))), 100.0, &w, &p, now).total;
        prop_assert!(busier <= base + 1e-12);
        prop_assert!(flakier <= base + 1e-12);
        prop_assert!(laggier <= base + 1e-12);
    }

    /// Every eligible provider is offered exactly once, the drawn one first.
    #[test]
    fn attempts_offer_each_eligible_provider_once(
        scores in prop::collection::vec((0.0f64..1.0, 1u32..1_000), 0..60), seed in any::<u64>(),
    ) {
        let w = ScoreWeights::default();
        let p = HealthPolicy::default();
        let now = Utc::now();
        let scored: Vec<(Arc<ProviderView>, Score)> = scores.iter().map(|(ok, weight)| {
            let v = Arc::new(view(*weight, Quota::default()));
            let s = score(&v, Some(&load(vec![0], 0, Some(*ok), None)), 0.0, &w, &p, now);
            (v, s)
        }).collect();
        let ranking = Ranking::build(scored.clone(), w.band);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut seen: Vec<Uuid> = ranking.attempts(&mut rng).map(|v| v.id).collect();
        prop_assert_eq!(seen.len(), scored.len());
        seen.sort();
        seen.dedup();
        prop_assert_eq!(seen.len(), scored.len());
    }
}

#[test]
fn closed_windows_and_open_circuits_are_excluded_and_half_open_trickles() {
    let w = ScoreWeights::default();
    let p = HealthPolicy::default();
    let now = Utc::now();
    let mut closed = view(100, Quota::default());
    closed.window = Some(SendWindow {
        tz: "UTC".into(),
        start: "00:00".into(),
        end: "23:59".into(),
        // Only tomorrow (UTC): closed now.
        days: vec![(chrono::Datelike::weekday(&now).number_from_monday() % 7 + 1) as u8],
    });
    let s = score(&closed, None, 0.0, &w, &p, now);
    assert!(matches!(s.state, State::WindowClosed { .. }), "{s:?}");

    let v = view(100, Quota::default());
    let mut failing = load(vec![0], 0, Some(0.2), Some(100.0));
    failing.consecutive_failures = 9;
    failing.open_until_ms = failing.now_ms + 5_000;
    let open = score(&v, Some(&failing), 0.0, &w, &p, now);
    assert!(matches!(open.state, State::CircuitOpen { .. }));
    failing.open_until_ms = failing.now_ms - 1;
    let half = score(&v, Some(&failing), 0.0, &w, &p, now);
    assert_eq!(half.state, State::HalfOpen);
    let healthy = score(
        &v,
        Some(&load(vec![0], 0, Some(0.2), Some(100.0))),
        0.0,
        &w,
        &p,
        now,
    );
    assert!((half.total - healthy.total * 0.1).abs() < 1e-9);

    let ranking = Ranking::build(
        vec![(Arc::new(closed), s), (Arc::new(v.clone()), open)],
        w.band,
    );
    assert!(ranking.is_empty());
    assert!(ranking.next_probe_ms.is_some());
}

#[test]
fn exhausted_providers_are_tried_last() {
    let w = ScoreWeights::default();
    let p = HealthPolicy::default();
    let now = Utc::now();
    let full = Arc::new(view(1_000, per_minute(10)));
    let fresh = Arc::new(view(1, per_minute(10)));
    let sf = score(
        &full,
        Some(&load(vec![10], 0, None, None)),
        5.0,
        &w,
        &p,
        now,
    );
    assert_eq!(sf.state, State::Exhausted);
    let sr = score(
        &fresh,
        Some(&load(vec![0], 0, None, None)),
        5.0,
        &w,
        &p,
        now,
    );
    let ranking = Ranking::build(vec![(full.clone(), sf), (fresh.clone(), sr)], w.band);
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..100 {
        let order: Vec<Uuid> = ranking.attempts(&mut rng).map(|v| v.id).collect();
        assert_eq!(order, vec![fresh.id, full.id]);
    }
}

/// Within the band, draws follow score × weight; below it, never first.
#[test]
fn draws_spread_by_weight_within_the_band() {
    let w = ScoreWeights::default();
    let p = HealthPolicy::default();
    let now = Utc::now();
    let heavy = Arc::new(view(300, Quota::default()));
    let light = Arc::new(view(100, Quota::default()));
    let poor = Arc::new(view(10_000, Quota::default()));
    let good = load(vec![0], 0, Some(1.0), Some(50.0));
    let bad = load(vec![0], 0, Some(0.1), Some(5_000.0));
    let ranking = Ranking::build(
        vec![
            (heavy.clone(), score(&heavy, Some(&good), 0.0, &w, &p, now)),
            (light.clone(), score(&light, Some(&good), 0.0, &w, &p, now)),
            (poor.clone(), score(&poor, Some(&bad), 0.0, &w, &p, now)),
        ],
        w.band,
    );
    let mut rng = StdRng::seed_from_u64(42);
    let mut firsts = std::collections::HashMap::new();
    for _ in 0..8_000 {
        let first = ranking.attempts(&mut rng).next().expect("a provider").id;
        *firsts.entry(first).or_insert(0u32) += 1;
    }
    assert_eq!(
        firsts.get(&poor.id),
        None,
        "a provider below the band is never drawn"
    );
    let share = f64::from(firsts[&heavy.id]) / 8_000.0;
    assert!(
        (share - 0.75).abs() < 0.03,
        "heavy drawn {share}, expected 0.75"
    );
}

/// A hundred and twenty equal providers share the first draws evenly: no
/// provider is starved and none takes a multiple of its share.
#[test]
fn many_equal_providers_share_the_work() {
    let w = ScoreWeights::default();
    let p = HealthPolicy::default();
    let now = Utc::now();
    let good = load(vec![0], 0, Some(1.0), Some(50.0));
    let views: Vec<Arc<ProviderView>> = (0..120)
        .map(|_| Arc::new(view(100, Quota::default())))
        .collect();
    let ranking = Ranking::build(
        views
            .iter()
            .map(|v| (v.clone(), score(v, Some(&good), 0.0, &w, &p, now)))
            .collect(),
        w.band,
    );
    let mut rng = StdRng::seed_from_u64(7);
    let mut firsts = std::collections::HashMap::new();
    let draws = 120_000;
    for _ in 0..draws {
        let first = ranking.attempts(&mut rng).next().expect("a provider").id;
        *firsts.entry(first).or_insert(0u32) += 1;
    }
    assert_eq!(firsts.len(), 120, "every provider is drawn");
    let (min, max) = (
        firsts.values().copied().min().unwrap_or(0),
        firsts.values().copied().max().unwrap_or(0),
    );
    // 1,000 draws each on average; binomial spread is about ±32.
    assert!(min > 850 && max < 1_150, "draws range {min}..{max}");
}

fn provider(enabled: bool) -> Provider {
    use herald_domain::provider_config::{ProviderConfig, WebhookConfig};
    use herald_domain::{ProviderId, ProviderKind, TenantId};
    Provider {
        id: ProviderId::new(),
        tenant_id: Some(TenantId::new()),
        name: "hooks".into(),
        kind: ProviderKind::Webhook,
        channel: Channel::Webhook,
        config: ProviderConfig::Webhook(WebhookConfig {
            signing_secret: "0123456789abcdef".into(),
            timeout_ms: None,
            allow_private_addresses: false,
            callback_secret: None,
        }),
        quota: per_minute(30),
        send_window: Some(SendWindow {
            tz: "UTC".into(),
            start: "09:00".into(),
            end: "18:00".into(),
            days: vec![],
        }),
        weight: 3,
        enabled,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

#[test]
fn the_view_of_an_enabled_provider_carries_its_decoded_fields_and_a_disabled_one_has_none() {
    let p = provider(true);
    let v = ProviderView::of(&p).expect("an enabled provider is scored");
    assert_eq!(v.id, p.id.as_uuid());
    assert_eq!(v.tenant_id, p.tenant_id.map(|t| t.as_uuid()));
    assert_eq!(v.channel, Channel::Webhook);
    assert_eq!(v.limits, limits_for(&p.quota, Channel::Webhook));
    assert_eq!(v.window, p.send_window);
    assert_eq!(v.weight, 3);
    assert!(ProviderView::of(&provider(false)).is_none());
}
