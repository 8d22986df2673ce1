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
    assert_eq!(report.accepted, messages as u64, "every message is accepted in the end");
    assert_eq!(report.lost, 0, "nothing accepted is lost");
    assert_eq!(
        report.unexplained_duplicates, 0,
        "a duplicate only for a message recorded in doubt"
    );
    assert!(
        report.faults.iter().filter(|f| !f.what.contains("by itself")).count() >= 8,
        "every kind of fault happened during the run: {:?}",
        report.faults
    );
}
