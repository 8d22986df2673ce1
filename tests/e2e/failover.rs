//! Failover that remembers (issue 15): with two email providers, one of
//! which refuses every other message (`421`, too seldom in a row to open
//! its circuit), every refused message is retried on the other one — a
//! retry carries the providers that refused it, and the scheduler prefers
//! the others while any is eligible.

use std::time::Duration;

use herald_api::SendMessage;
use herald_e2e::Harness;
use herald_sim::{Sim, SimChannel, SimConfig};
use herald_testing::{fixtures, unique, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_message_is_retried_on_the_other_provider_never_on_the_same() {
    let h = Harness::start(1).await.expect("herald starts");
    let refusing = Sim::build(SimConfig::ephemeral())
        .await
        .expect("second sim");
    let refusing_handle = refusing.handle();
    let mut behaviour = refusing_handle.behaviour();
    behaviour.smtp.refuse_every = 2;
    refusing_handle
        .set_behaviour(behaviour)
        .expect("refuse every other message");
    let (refusing_port, refusing_ca) = (refusing.smtp_port(), refusing.ca_file().to_path_buf());
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let refusing_task = tokio::spawn(refusing.run(async move {
        let _ = stop_rx.await;
    }));
    for (name, port, ca) in [
        (unique("refusing"), refusing_port, refusing_ca.clone()),
        (unique("accepting"), h.sim_smtp_port, h.ca_file.clone()),
    ] {
        h.app
            .admin
            .create_provider(&fixtures::sim_smtp(&name, port, &ca))
            .await
            .expect("provider");
    }
    let (_tenant, key) = h.tenant(&unique("fo")).await.expect("tenant");
    let messages: Vec<SendMessage> = (0..200)
        .map(|i| SendMessage::email(format!("fo{i}@example.com"), "failover", "text"))
        .collect();
    let ids = h.send_all(&key, &messages).await;
    let db = h.db().await.expect("db");
    let done = wait_for(Duration::from_secs(120), || {
        let (db, ids) = (db.clone(), ids.clone());
        async move { Harness::sent(&db, &ids).await == 200 }
    })
    .await;
    let attempts: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT attempts, count(*) FROM messages WHERE id = ANY($1) GROUP BY attempts ORDER BY attempts",
    )
    .bind(&ids)
    .fetch_all(&db)
    .await
    .expect("attempts");
    assert!(done, "every message is sent in the end: {attempts:?}");
    let refused = refusing_handle.stats().smtp.rejected;
    assert!(refused > 0, "the refusing provider was tried");
    // One refusal at most per message: a retry never returns to the
    // provider that refused it while the other one is eligible.
    assert!(
        attempts.iter().all(|(n, _)| *n <= 2),
        "a message was attempted more than twice: {attempts:?}"
    );
    let twice: i64 = attempts
        .iter()
        .filter(|(n, _)| *n == 2)
        .map(|(_, c)| *c)
        .sum();
    assert_eq!(
        twice as u64, refused,
        "each refused message was retried once, elsewhere"
    );
    for id in &ids {
        let id = id.to_string();
        let at_refusing = refusing_handle.count(SimChannel::Email, &id);
        let at_accepting = h.sim.count(SimChannel::Email, &id);
        assert_eq!(at_refusing + at_accepting, 1, "{id} arrived once");
    }
    db.close().await;
    let _ = stop.send(());
    let _ = refusing_task.await;
    h.stop().await.expect("clean stop");
}
