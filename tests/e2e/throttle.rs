//! Adapting to a provider's real rate (issue 15): a WeWork app configured
//! for 100 sends a second (`per_minute: 6000`) whose API really takes 20
//! (the simulator answers errcode 45009 beyond that). Each "too fast"
//! answer halves the admitted rate, which then recovers step by step:
//! Herald settles near 20 a second with few refusals, and every message
//! arrives once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_api::SendMessage;
use herald_domain::{Channel, Quota};
use herald_e2e::Harness;
use herald_sim::SimChannel;
use herald_testing::{fixtures, unique};

const MESSAGES: usize = 400;
const REAL_RATE: u32 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_slower_than_configured_is_sent_to_at_its_real_rate_and_nothing_is_lost() {
    let h = Harness::start(1).await.expect("herald starts");
    let mut behaviour = h.sim.behaviour();
    behaviour.wework.rate_limit_per_sec = REAL_RATE;
    h.sim.set_behaviour(behaviour).expect("a real rate limit");
    let mut provider = fixtures::sim_wework(&unique("slow-app"), h.sim_http_port);
    provider.quota = Some(Quota {
        per_minute: Some(6_000),
        ..Quota::default()
    });
    let provider = h
        .app
        .admin
        .create_provider(&provider)
        .await
        .expect("provider");
    let (_tenant, key) = h.tenant(&unique("thr")).await.expect("tenant");
    let messages: Vec<SendMessage> = (0..MESSAGES)
        .map(|i| SendMessage::new(Channel::Wework, format!("m{i}"), format!("notice {i}")))
        .collect();
    let ids = h.send_all(&key, &messages).await;
    let db = h.db().await.expect("db");
    // The simulator's counts every half second: refusals of the first
    // burst (sent before the first "too fast" came back) apart from those
    // once the rate has settled.
    let began = std::time::Instant::now();
    let mut samples: Vec<(f64, u64, u64)> = Vec::new();
    let mut done = false;
    while began.elapsed() < Duration::from_secs(150) {
        let sent = Harness::sent(&db, &ids).await;
        let stats = h.sim.stats().wework;
        samples.push((
            began.elapsed().as_secs_f64(),
            stats.received,
            stats.rejected,
        ));
        if sent == MESSAGES as i64 {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("(seconds, received, refused): {samples:?}");
    let statuses: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM messages WHERE id = ANY($1) GROUP BY status")
            .bind(&ids)
            .fetch_all(&db)
            .await
            .expect("statuses");
    assert!(done, "every message is sent in the end: {statuses:?}");
    let (first, last): (DateTime<Utc>, DateTime<Utc>) =
        sqlx::query_as("SELECT min(sent_at), max(sent_at) FROM messages WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_one(&db)
            .await
            .expect("times");
    let seconds = (last - first).num_milliseconds() as f64 / 1000.0;
    let rate = (MESSAGES - 1) as f64 / seconds.max(0.001);
    let refused = h.sim.stats().wework.rejected;
    println!(
        "{MESSAGES} sent in {seconds:.1} s: {rate:.1}/s against a real limit of {REAL_RATE}/s; {refused} refusals"
    );
    for id in &ids {
        assert_eq!(
            h.sim.count(SimChannel::Wework, &id.to_string()),
            1,
            "{id} arrived once"
        );
    }
    assert!(
        rate <= f64::from(REAL_RATE) * 1.15,
        "never faster than the provider takes: {rate:.1}/s"
    );
    assert!(
        rate >= f64::from(REAL_RATE) * 0.5,
        "near the provider's real rate, not far below: {rate:.1}/s"
    );
    // Settled: from 5 s on (the first burst, up to the worker's pace burst
    // of 3 s at the configured rate, is out before the first refusal
    // returns), few refusals for what is sent.
    let at = |t: f64| {
        samples
            .iter()
            .find(|(s, _, _)| *s >= t)
            .or(samples.last())
            .map(|(_, r, x)| (*r, *x))
            .unwrap_or_default()
    };
    let (received_5s, refused_5s) = at(5.0);
    let late_refused = refused - refused_5s;
    let late_received = MESSAGES as u64 - received_5s.min(MESSAGES as u64);
    println!("after 5 s: {late_received} sent, {late_refused} refused");
    assert!(
        late_refused * 5 <= late_received.max(1),
        "few refusals once settled: {late_refused} for {late_received} sent"
    );
    let score = h
        .app
        .admin
        .provider_score(provider.id)
        .await
        .expect("score");
    let admitted = score.load.and_then(|l| l.admitted_rate);
    assert!(
        admitted.is_some_and(|r| r < 100.0),
        "the score explanation shows the lowered rate: {admitted:?}"
    );
    db.close().await;
    h.stop().await.expect("clean stop");
}
