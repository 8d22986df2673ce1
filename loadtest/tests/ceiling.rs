//! The ceiling measurement carries every message over both hops of the
//! machine's RabbitMQ and cleans up its queues (a working check, not a
//! timed one: the figures belong to the benchmarks).

use herald_loadtest::ceiling::measure;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ceiling_carries_every_message_over_two_hops() {
    let namespace = format!("ceil_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let c = measure(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        &namespace,
        2_000,
        512,
    )
    .await
    .expect("the ceiling run");
    assert_eq!(c.messages, 2_000);
    assert_eq!(c.hops, 2);
    assert!(c.seconds > 0.0 && c.per_second > 0.0, "{c:?}");
}
