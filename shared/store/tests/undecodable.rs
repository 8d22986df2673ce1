//! The one policy for a stored row that does not decode, against a fresh
//! database on the local PostgreSQL: the row is logged with its id,
//! counted, left out of what the services read (the catalog) until an
//! operator fixes it, and still shown as stored to operators.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use herald_domain::ProviderId;
use herald_store::catalog::ProviderCatalog;
use herald_store::metrics::{UNDECODABLE_PROVIDERS, UNDECODABLE_ROWS};
use herald_store::{NewProvider, Store, StoreError, PROVIDERS_CHANNEL};
use herald_testing::{fixtures, wait_for_value, Isolation};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use serde_json::json;

/// Every counter and gauge value by `name{label=value,...}`.
#[derive(Default, Clone)]
struct Values(Arc<Mutex<HashMap<String, f64>>>);

impl Values {
    fn get(&self, key: &str) -> f64 {
        self.0
            .lock()
            .map(|m| m.get(key).copied().unwrap_or(0.0))
            .unwrap_or(0.0)
    }
}

struct Cell {
    key: String,
    values: Values,
}

impl Cell {
    fn update(&self, f: impl FnOnce(f64) -> f64) {
        if let Ok(mut m) = self.values.0.lock() {
            let v = m.entry(self.key.clone()).or_default();
            *v = f(*v);
        }
    }
}

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.update(|v| v + value as f64);
    }
    fn absolute(&self, value: u64) {
        self.update(|_| value as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }
    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

struct TestRecorder(Values);

impl TestRecorder {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        Arc::new(Cell {
            key: format!("{}{{{}}}", key.name(), labels.join(",")),
            values: self.0.clone(),
        })
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// What the process logged.
#[derive(Default, Clone)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// The process-wide recorder and log sink, installed once.
fn telemetry() -> &'static (Values, Logs) {
    static ONCE: OnceLock<(Values, Logs)> = OnceLock::new();
    ONCE.get_or_init(|| {
        let values = Values::default();
        let logs = Logs::default();
        let _ = metrics::set_global_recorder(TestRecorder(values.clone()));
        let writer = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        (values, logs)
    })
}

async fn fresh_store() -> (Store, Isolation) {
    let isolation = Isolation::new("rows");
    (isolation.store(2).await, isolation)
}

fn wework(name: &str) -> NewProvider {
    NewProvider {
        id: ProviderId::new(),
        tenant_id: None,
        name: name.into(),
        channel: "wework".into(),
        kind: "wework".into(),
        config: json!({"corp_id": "c", "corp_secret": "s", "agent_id": 1}),
        quota: json!({"per_minute": 10}),
        send_window: None,
        weight: 100,
        enabled: true,
    }
}

/// Waits until the catalog holds exactly `ids`.
async fn wait_catalog(catalog: &ProviderCatalog, ids: &[ProviderId]) -> Vec<ProviderId> {
    let mut want = ids.to_vec();
    want.sort();
    wait_for_value(
        Duration::from_secs(10),
        || async {
            let mut got: Vec<ProviderId> = catalog.snapshot().iter().map(|p| p.id).collect();
            got.sort();
            got
        },
        |got| *got == want,
    )
    .await
}

#[tokio::test]
async fn a_provider_row_that_does_not_decode_is_logged_counted_and_left_out_until_fixed() {
    let (values, logs) = telemetry();
    let (store, isolation) = fresh_store().await;
    let good = store.create_provider(&wework("good")).await.expect("good");
    let good = ProviderId(good.id);
    // A row no API would write: a WeWork config without its secret.
    let broken = ProviderId::new();
    sqlx::query(
        "INSERT INTO providers (id, name, channel, kind, config, quota)
         VALUES ($1, 'broken', 'wework', 'wework', '{\"corp_id\": \"c\", \"agent_id\": 1}', '{}')",
    )
    .bind(broken.as_uuid())
    .execute(store.pool())
    .await
    .expect("insert the broken row");
    let counted_before = values.get(&format!("{UNDECODABLE_ROWS}{{table=providers}}"));

    // The services' read has the good provider only.
    let providers = store.all_providers().await.expect("providers");
    assert_eq!(
        providers.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![good]
    );
    assert!(
        values.get(&format!("{UNDECODABLE_ROWS}{{table=providers}}")) > counted_before,
        "the undecodable row must be counted"
    );
    assert_eq!(values.get(&format!("{UNDECODABLE_PROVIDERS}{{}}")), 1.0);
    let logged = logs.text();
    let line = logged
        .lines()
        .find(|l| l.contains(&broken.to_string()))
        .unwrap_or_default();
    assert!(
        line.contains("WARN") && line.contains("does not decode") && line.contains("corp_secret"),
        "the row must be logged at WARN with its id and the field: {logged}"
    );

    // The catalog every service shares leaves it out too.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let catalog = ProviderCatalog::start(store.clone(), Duration::from_secs(60), stop)
        .await
        .expect("catalog");
    assert_eq!(wait_catalog(&catalog, &[good]).await, vec![good]);

    // Operators still see it as stored, and why it is unusable.
    let listed = store.list_providers(None, 10).await.expect("list");
    let row = listed
        .iter()
        .find(|r| r.id == broken.as_uuid())
        .expect("the broken row is listed for operators");
    let error = row.decode().expect_err("the broken row does not decode");
    assert!(error.reason.contains("config.corp_secret"), "{error}");

    // Fixed by an operator: usable again at the next refresh.
    sqlx::query(
        "UPDATE providers SET config = config || '{\"corp_secret\": \"s\"}', updated_at = now()
         WHERE id = $1",
    )
    .bind(broken.as_uuid())
    .execute(store.pool())
    .await
    .expect("fix the row");
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(PROVIDERS_CHANNEL)
        .bind(broken.to_string())
        .execute(store.pool())
        .await
        .expect("notify");
    let mut both = vec![good, broken];
    both.sort();
    assert_eq!(wait_catalog(&catalog, &both).await, both);
    assert_eq!(values.get(&format!("{UNDECODABLE_PROVIDERS}{{}}")), 0.0);

    let _ = stop_tx.send(true);
    store.pool().close().await;
    isolation.teardown().await;
}

#[tokio::test]
async fn a_single_read_of_an_undecodable_message_is_an_error_and_a_list_leaves_it_out() {
    let _ = telemetry();
    let (store, isolation) = fresh_store().await;
    let tenant = fixtures::tenant(&store, "rows").await;
    let good = herald_domain::MessageId::new();
    let bad = herald_domain::MessageId::new();
    for (id, channel) in [(good, "email"), (bad, "carrier-pigeon")] {
        sqlx::query(
            "INSERT INTO messages (id, tenant_id, channel, recipient, status, priority, metadata)
             VALUES ($1, $2, $3, 'a@example.com', 'queued', 5, '{}')",
        )
        .bind(id.as_uuid())
        .bind(tenant.as_uuid())
        .bind(channel)
        .execute(store.pool())
        .await
        .expect("insert");
    }
    match store.message(tenant, bad).await {
        Err(StoreError::Undecodable(e)) => {
            assert_eq!((e.table, e.id), ("messages", bad.as_uuid()));
            assert!(e.reason.contains("carrier-pigeon"), "{e}");
        }
        other => panic!("an undecodable record must be an error, not {other:?}"),
    }
    let page = store
        .list_messages(
            tenant,
            &herald_store::MessageFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), vec![good]);
    assert_eq!(page[0].channel, herald_domain::Channel::Email);
    assert_eq!(page[0].status, herald_domain::MessageStatus::Queued);

    store.pool().close().await;
    isolation.teardown().await;
}

#[tokio::test]
async fn a_parked_job_whose_channel_does_not_decode_stays_parked_and_the_others_are_released() {
    let _ = telemetry();
    let (store, isolation) = fresh_store().await;
    let tenant = fixtures::tenant(&store, "parked").await;
    let good = uuid::Uuid::now_v7();
    let bad = uuid::Uuid::now_v7();
    for (id, channel) in [(good, "email"), (bad, "carrier-pigeon")] {
        sqlx::query(
            "INSERT INTO parked_jobs (message_id, tenant_id, channel, due_at, envelope)
             VALUES ($1, $2, $3, now() - interval '1 minute', '\\x00')",
        )
        .bind(id)
        .bind(tenant.as_uuid())
        .bind(channel)
        .execute(store.pool())
        .await
        .expect("park");
    }
    let due = store.due_jobs(10).await.expect("due");
    assert_eq!(
        due.jobs
            .iter()
            .map(|j| (j.message_id, j.channel))
            .collect::<Vec<_>>(),
        vec![(good, herald_domain::Channel::Email)]
    );
    due.released().await.expect("released");
    let left: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT message_id FROM parked_jobs")
        .fetch_all(store.pool())
        .await
        .expect("left");
    assert_eq!(left, vec![bad], "the undecodable job waits for an operator");

    store.pool().close().await;
    isolation.teardown().await;
}
