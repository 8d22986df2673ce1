//! The chaos scenario (issue 4's proof) in the test suite: 20,000 messages
//! (HERALD_CHAOS_MESSAGES to change it) while every part is killed or
//! restarted, on private RabbitMQ, Redis and PostgreSQL instances.

use herald_loadtest::chaos::{run, ChaosArgs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_accepted_is_lost_when_every_part_is_killed_or_restarted() {
    let messages = std::env::var("HERALD_CHAOS_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let report = run(ChaosArgs::new(messages)).await.expect("the chaos run");
    report.print();
    assert_eq!(
        report.accepted, messages as u64,
        "every message is accepted in the end"
    );
    assert_eq!(report.lost, 0, "nothing accepted is lost");
    assert_eq!(
        report.unexplained_duplicates, 0,
        "a duplicate only for a message recorded in doubt"
    );
    assert!(
        report
            .faults
            .iter()
            .filter(|f| !f.what.contains("by itself"))
            .count()
            >= 8,
        "every kind of fault happened during the run: {:?}",
        report.faults
    );
}

/// A rolling restart (SIGTERM, then start again, one process at a time)
/// loses nothing, leaves nothing in doubt and sends nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_nothing_and_sends_nothing_twice() {
    let mut args = ChaosArgs::new(8_000);
    args.graceful = true;
    args.rounds = 1;
    let report = run(args).await.expect("the rolling restart");
    report.print();
    assert_eq!(report.accepted, 8_000);
    assert_eq!(report.lost, 0, "nothing accepted is lost");
    assert_eq!(
        report.in_doubt + report.in_doubt_resends,
        0,
        "nothing left in doubt"
    );
    assert_eq!(report.duplicates, 0, "nothing sent twice");
    assert!(
        report.graceful_stop_ms.is_some_and(|ms| ms < 30_000),
        "a worker stops within 30 s: {:?}",
        report.graceful_stop_ms
    );
    assert_eq!(
        report.faults.len(),
        4,
        "every process restarted: {:?}",
        report.faults
    );
}
