//! `herald` against a running producer (in process, on the machine's
//! RabbitMQ, Redis and PostgreSQL, a fresh database and namespace).

use clap::Parser;
use herald_cli::Cli;

const TOKEN: &str = "cli-admin-token";

struct Producer {
    url: String,
    database_url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn spawn_producer() -> Producer {
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let namespace = format!("cli_{suffix}");
    let settings =
        herald_producer::Settings::for_tests(&namespace, &format!("herald_{namespace}"), TOKEN);
    let database_url = settings.common.database_url.clone();
    let app = herald_producer::App::build(settings)
        .await
        .expect("producer builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    Producer {
        url,
        database_url,
        stop,
        task,
    }
}

impl Producer {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let _ = herald_store::Store::drop_database(&self.database_url).await;
    }
}

/// Runs `herald args…` and returns what it printed, or its error.
async fn herald(args: &[&str]) -> Result<String, String> {
    let mut argv = vec!["herald"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    herald_cli::run(cli, &mut out)
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(String::from_utf8(out).expect("utf-8"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replay_prints_a_summary_or_json_and_names_what_is_wrong() {
    let p = spawn_producer().await;
    let url_owned = p.url.clone();
    let url = url_owned.as_str();

    let summary = herald(&[
        "--producer-url",
        url,
        "--admin-token",
        TOKEN,
        "dead-letters",
        "replay",
        "--reason",
        "smtp_550",
    ])
    .await
    .expect("replay");
    assert_eq!(summary, "Read 0 dead letter(s): replayed 0, kept 0.\n");

    let json = herald(&[
        "--producer-url",
        url,
        "--admin-token",
        TOKEN,
        "--json",
        "dead-letters",
        "replay",
    ])
    .await
    .expect("replay --json");
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON output");
    assert_eq!(
        report,
        serde_json::json!({"scanned": 0, "replayed": 0, "kept": 0})
    );

    let refused = herald(&[
        "--producer-url",
        url,
        "--admin-token",
        "wrong",
        "dead-letters",
        "replay",
    ])
    .await
    .expect_err("a wrong token fails");
    assert!(refused.contains("refused the admin token"), "{refused}");

    let bad = herald(&[
        "--producer-url",
        url,
        "--admin-token",
        TOKEN,
        "dead-letters",
        "replay",
        "--limit",
        "0",
    ])
    .await
    .expect_err("a limit of 0 is refused by the API");
    assert!(
        bad.contains("invalid_field") && bad.contains("limit"),
        "{bad}"
    );

    let not_an_id = herald(&[
        "--producer-url",
        url,
        "--admin-token",
        TOKEN,
        "dead-letters",
        "replay",
        "--tenant",
        "x",
    ])
    .await
    .expect_err("a tenant that is not an id");
    assert!(not_an_id.contains("--tenant"), "{not_an_id}");
    p.stop().await;

    let down = herald(&[
        "--producer-url",
        url,
        "--admin-token",
        TOKEN,
        "dead-letters",
        "replay",
    ])
    .await
    .expect_err("the producer is down");
    assert!(down.contains("cannot reach the producer"), "{down}");

    let no_token = herald(&["--producer-url", url, "dead-letters", "replay"]).await;
    if std::env::var("HERALD_ADMIN_TOKEN").is_err() {
        let e = no_token.expect_err("no token");
        assert!(e.contains("no admin token"), "{e}");
    }
}
