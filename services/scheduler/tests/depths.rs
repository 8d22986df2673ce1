//! The leader exports every queue's depth as `herald_queue_depth`, summed
//! by kind and channel, and each provider's score gauges. Alone in its test
//! binary: the metrics recorder is one per process, and the series carry no
//! namespace.

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
    // A provider with a 60-a-minute quota (nothing used yet).
    let store = isolation.store(2).await;
    let provider = herald_domain::ProviderId::new();
    let name = format!("depth-{}", &provider.to_string()[..8]);
    store
        .create_provider(&herald_store::NewProvider {
            id: provider,
            tenant_id: None,
            name: name.clone(),
            channel: "email".into(),
            kind: "smtp".into(),
            config: serde_json::json!({"host": "127.0.0.1", "port": 2525, "from": "a@example.com"}),
            quota: serde_json::json!({"per_minute": 60}),
            send_window: None,
            weight: 100,
            enabled: true,
        })
        .await
        .expect("provider");
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
    let total = format!("herald_provider_score{{provider=\"{name}\",part=\"total\"}}");
    let window =
        format!("herald_provider_window_used_ratio{{provider=\"{name}\",window=\"60s\"}} 0");
    let eligible = format!("herald_provider_eligible{{provider=\"{name}\"}} 1");
    let text = wait_for_value(
        Duration::from_secs(30),
        || async { handle.render() },
        |t: &String| t.contains(&total),
    )
    .await;
    for want in [&total, &window, &eligible] {
        assert!(text.contains(want.as_str()), "{want} not in:\n{text}");
    }
    let _ = stop.send(());
    let _ = task.await;
    broker.close().await;
    store.pool().close().await;
    isolation.teardown().await;
}
