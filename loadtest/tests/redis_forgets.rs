//! Redis forgetting (issue 15): Redis on these machines keeps nothing on
//! disk, yet a provider's daily quota holds across a Redis restart. A
//! provider with `per_day: 100` sends 80; the leader checkpoints its day
//! window to PostgreSQL; Redis restarts with every key lost; of 100 more
//! enqueued, only the remaining 20 are sent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use herald_api::{ProviderPatch, SendMessage};
use herald_domain::{Channel, Quota};
use herald_loadtest::sim;
use herald_loadtest::stack::{Stack, StackOptions};
use uuid::Uuid;

async fn arrived(stack: &Stack, run: &str) -> usize {
    let ids: HashMap<String, u32> = sim::ids(&stack.sim_url, "email")
        .await
        .expect("sim ids")
        .ids;
    let mine: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM messages WHERE recipient LIKE $1")
        .bind(format!("{run}-%"))
        .fetch_all(&stack.db)
        .await
        .expect("ids");
    mine.iter()
        .filter(|id| ids.contains_key(&id.to_string()))
        .count()
}

async fn wait_arrived(stack: &Stack, run: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = arrived(stack, run).await;
        if got >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{got} of {n} arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn emails(run: &str, from: usize, to: usize) -> Vec<SendMessage> {
    (from..to)
        .map(|n| SendMessage::email(format!("{run}-{n}@example.com"), "quota", "text"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_quota_holds_when_redis_restarts_with_nothing_kept() {
    let mut stack = Stack::start(StackOptions {
        scheduler_env: vec![("HERALD_CAPACITY_CHECKPOINT_SECS".into(), "1".into())],
        ..StackOptions::new("quota", 1)
    })
    .await
    .expect("the private stack starts");
    let email = stack
        .admin
        .providers()
        .await
        .expect("providers")
        .into_iter()
        .find(|p| p.channel == Channel::Email)
        .expect("the stack's email provider");
    stack
        .admin
        .update_provider(
            email.id,
            &ProviderPatch {
                quota: Some(Quota {
                    per_day: Some(100),
                    ..Quota::default()
                }),
                ..ProviderPatch::default()
            },
        )
        .await
        .expect("per_day: 100");
    let run = format!("rq{}", &Uuid::new_v4().simple().to_string()[..8]);

    stack
        .client
        .send_batch(&emails(&run, 0, 80))
        .await
        .expect("80 accepted");
    wait_arrived(&stack, &run, 80).await;
    // Two checkpoints at least (one a second) after the last reservation.
    tokio::time::sleep(Duration::from_secs(3)).await;

    stack
        .redis
        .restart_empty()
        .await
        .expect("Redis restarts empty");
    stack
        .client
        .with_retries()
        .send_batch(&emails(&run, 80, 180))
        .await
        .expect("100 more accepted");
    wait_arrived(&stack, &run, 100).await;
    // Whatever else could go out would by now: the scheduler retries a
    // full provider within seconds.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let sent = arrived(&stack, &run).await;
    assert_eq!(
        sent, 100,
        "the day's 100 and no more: the restored window had 80"
    );
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE recipient LIKE $1 AND status = 'pending'",
    )
    .bind(format!("{run}-%"))
    .fetch_one(&stack.db)
    .await
    .expect("waiting");
    assert_eq!(
        waiting, 80,
        "the rest waits for tomorrow's quota, and reads pending"
    );
    stack.stop(false).await;
}
