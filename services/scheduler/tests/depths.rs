//! The leader exports every queue's depth as `herald_queue_depth`, summed
//! by kind and channel. Alone in its test binary: the metrics recorder is
//! one per process, and the series carry no namespace.

use std::time::Duration;

use herald_broker::{Publisher, Topology};
use herald_testing::{wait_for_value, Isolation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_exports_queue_depths_by_kind() {
    let handle = herald_telemetry::install_metrics();
    let isolation = Isolation::new("depth");
    let settings = herald_scheduler::Settings::for_tests(&isolation.namespace, &isolation.database);
    let app = herald_scheduler::App::build(settings.clone())
        .await
        .expect("scheduler builds");
    // Three dead letters before the leader's first read.
    let broker = herald_broker::connect(
        &settings.common.amqp_url,
        "depth-test",
        Duration::from_secs(5),
    )
    .await
    .expect("broker");
    let publisher = Publisher::new(&broker).await.expect("publisher");
    let topology: Topology = isolation.topology();
    for _ in 0..3 {
        publisher
            .publish(&topology.dead_letter(b"not a job".to_vec(), "test", "a test's dead letter"))
            .await
            .expect("publish");
    }
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    let want = "herald_queue_depth{kind=\"dead_letter\",channel=\"\"} 3";
    let text = wait_for_value(
        Duration::from_secs(30),
        || async { handle.render() },
        |t: &String| t.contains(want),
    )
    .await;
    assert!(text.contains(want), "{want} not in:\n{text}");
    assert!(
        text.contains("herald_queue_depth{kind=\"central\",channel=\"email\"} 0"),
        "{text}"
    );
    let _ = stop.send(());
    let _ = task.await;
    broker.close().await;
    isolation.teardown().await;
}
