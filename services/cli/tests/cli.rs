//! `herald` against a running producer (in process, on the machine's
//! RabbitMQ, Redis and PostgreSQL, a fresh database and namespace).
//!
//! Table output is compared with `tests/golden/*.txt` after ids and the
//! namespace are replaced by fixed stand-ins of the same length, so columns
//! stay aligned. `HERALD_UPDATE_GOLDEN=1` rewrites the golden files.

use std::time::Duration;

use clap::Parser;
use herald_api::SendMessage;
use herald_cli::Cli;
use herald_domain::Channel;
use herald_testing::TestApp;
use serde_json::{json, Value};

const TOKEN: &str = "cli-admin-token";

/// A producer in namespace `cli_{12 hex}` (the golden files' stand-in has
/// the same length).
async fn spawn_producer() -> TestApp {
    TestApp::spawn("cli", TOKEN).await
}

/// `herald` against a [`TestApp`].
trait Herald {
    /// Runs `herald --producer-url <this> --admin-token <token> args…`.
    async fn herald(&self, args: &[&str]) -> Result<String, String>;

    /// Like [`Herald::herald`], for a command that must succeed.
    async fn ok(&self, args: &[&str]) -> String;

    async fn json(&self, args: &[&str]) -> Value;

    /// `POST /v1/messages` with a tenant key; the new message's id.
    async fn send(&self, key: &str, to: &str) -> String;
}

impl Herald for TestApp {
    async fn herald(&self, args: &[&str]) -> Result<String, String> {
        let mut argv = vec!["--producer-url", &self.url, "--admin-token", TOKEN];
        argv.extend_from_slice(args);
        herald(&argv).await
    }

    async fn ok(&self, args: &[&str]) -> String {
        match self.herald(args).await {
            Ok(out) => out,
            Err(e) => panic!("herald {args:?} failed: {e}"),
        }
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut argv = vec!["--json"];
        argv.extend_from_slice(args);
        let out = self.ok(&argv).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    async fn send(&self, key: &str, to: &str) -> String {
        let mut message = SendMessage::new(Channel::Email, to, "Hi");
        message.subject = Some("Hello".into());
        let accepted = self.client(key).send(&message).await.expect("send");
        accepted.id.to_string()
    }
}

/// Runs `herald args…` in process and returns what it printed, or its error.
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

/// `text` with each distinct UUID replaced, in order of appearance, by
/// `00000000-0000-0000-0000-00000000000N` and the namespace by a fixed one.
fn normalise(text: &str, namespace: &str) -> String {
    let uuid = regex::Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
        .expect("regex");
    let mut seen: Vec<String> = Vec::new();
    let text = uuid.replace_all(text, |c: &regex::Captures<'_>| {
        let id = c[0].to_owned();
        let n = match seen.iter().position(|s| *s == id) {
            Some(i) => i + 1,
            None => {
                seen.push(id);
                seen.len()
            }
        };
        format!("00000000-0000-0000-0000-{n:012}")
    });
    text.replace(namespace, "cli_000000000000")
}

/// Compares `actual` (normalised) with `tests/golden/<name>.txt`.
fn golden(name: &str, actual: &str, namespace: &str) {
    let actual = normalise(actual, namespace);
    let path = format!("{}/tests/golden/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("HERALD_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).expect("write golden");
    }
    let expected = std::fs::read_to_string(&path).expect("golden file");
    assert_eq!(actual, expected, "{name} differs from {path}");
}

/// The value of `KEY` in a `KEY  value` listing.
fn field<'a>(listing: &'a str, key: &str) -> &'a str {
    listing
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .filter(|rest| rest.starts_with(' '))
                .map(str::trim)
        })
        .unwrap_or_else(|| panic!("no {key} in:\n{listing}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_print_as_an_aligned_table_or_the_apis_json() {
    let p = spawn_producer().await;

    let created = p
        .ok(&[
            "tenants",
            "create",
            "--code",
            "shop",
            "--name",
            "Shop & Co",
            "--weight",
            "3",
            "--daily-quota",
            "20000",
            "--rate-limit-per-sec",
            "50",
            "--webhook-url",
            "https://hooks.example.com/herald",
        ])
        .await;
    assert!(created.starts_with("ID "), "{created}");
    assert!(created.contains("shop"), "{created}");
    let bank = p
        .json(&["tenants", "create", "--code", "bank", "--name", "Bank"])
        .await;
    let bank_id = bank["id"].as_str().expect("id").to_owned();
    assert_eq!(bank["status"], "active");

    let disabled = p.ok(&["tenants", "disable", &bank_id]).await;
    assert!(
        disabled.starts_with(&format!("Tenant bank ({bank_id}) is disabled.")),
        "{disabled}"
    );

    golden(
        "tenants_list",
        &p.ok(&["tenants", "list"]).await,
        &p.isolation.namespace,
    );

    let list = p.json(&["tenants", "list"]).await;
    assert_eq!(list["next_cursor"], Value::Null);
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["code"], "shop");
    assert_eq!(items[0]["weight"], 3);
    assert_eq!(items[0]["daily_quota"], 20000);
    assert_eq!(items[0]["rate_limit_per_sec"], 50);
    assert_eq!(items[1]["status"], "disabled");

    let shop_id = items[0]["id"].as_str().expect("id").to_owned();
    let updated = p
        .json(&[
            "tenants",
            "update",
            &shop_id,
            "--daily-quota",
            "500",
            "--no-rate-limit",
            "--weight",
            "7",
        ])
        .await;
    assert_eq!(updated["daily_quota"], 500);
    assert_eq!(updated["rate_limit_per_sec"], Value::Null);
    assert_eq!(updated["weight"], 7);
    assert_eq!(updated["webhook_url"], "https://hooks.example.com/herald");
    let bad = p
        .herald(&["tenants", "update", &shop_id, "--daily-quota", "0"])
        .await
        .expect_err("a quota of 0");
    assert!(
        bad.contains("invalid_field") && bad.contains("field `daily_quota`"),
        "{bad}"
    );

    let enabled = p.ok(&["tenants", "enable", &bank_id]).await;
    assert_eq!(enabled, format!("Tenant bank ({bank_id}) is active.\n"));

    let taken = p
        .herald(&["tenants", "create", "--code", "shop", "--name", "Again"])
        .await
        .expect_err("the code is taken");
    assert!(taken.contains("409 conflict"), "{taken}");
    let bad_code = p
        .herald(&["tenants", "create", "--code", "Not OK", "--name", "x"])
        .await
        .expect_err("a bad code");
    assert!(
        bad_code.contains("invalid_field") && bad_code.contains("field `code`"),
        "{bad_code}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_print_as_a_table_with_secrets_hidden_and_show_their_score() {
    let p = spawn_producer().await;
    let shop = p
        .json(&["tenants", "create", "--code", "shop", "--name", "Shop"])
        .await;
    let shop_id = shop["id"].as_str().expect("id").to_owned();

    let smtp = p
        .ok(&[
            "providers",
            "add",
            "--name",
            "smtp-eu-1",
            "--channel",
            "email",
            "--kind",
            "smtp",
            "--config",
            r#"{"host": "smtp.example.com", "port": 587, "tls": "starttls", "username": "u", "password": "hunter2-smtp"}"#,
            "--quota",
            r#"{"per_minute": 600, "per_day": 20000, "concurrency": 8}"#,
            "--send-window",
            r#"{"tz": "Asia/Shanghai", "start": "08:00", "end": "22:00", "days": [1, 2, 3, 4, 5]}"#,
            "--weight",
            "150",
        ])
        .await;
    assert!(
        smtp.contains("smtp-eu-1") && smtp.starts_with("ID "),
        "{smtp}"
    );
    assert!(!smtp.contains("hunter2"), "{smtp}");

    let config_file = std::env::temp_dir().join(format!("{}-wework.json", p.isolation.namespace));
    std::fs::write(
        &config_file,
        r#"{"corp_id": "ww123", "corp_secret": "hunter2-wework", "agent_id": 1000002}"#,
    )
    .expect("config file");
    let wework = p
        .json(&[
            "providers",
            "add",
            "--name",
            "wework-shop",
            "--channel",
            "wework",
            "--kind",
            "wework",
            "--config",
            &format!("@{}", config_file.display()),
            "--tenant",
            &shop_id,
            "--disabled",
        ])
        .await;
    let _ = std::fs::remove_file(&config_file);
    assert_eq!(wework["config"]["corp_secret"], "***");
    assert_eq!(wework["enabled"], false);
    assert_eq!(wework["tenant_id"], shop_id.as_str());
    let wework_id = wework["id"].as_str().expect("id").to_owned();

    let table = p.ok(&["providers", "list"]).await;
    assert!(!table.contains("hunter2"), "{table}");
    golden("providers_list", &table, &p.isolation.namespace);

    let list = p.json(&["providers", "list"]).await;
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["name"], "smtp-eu-1");
    assert_eq!(items[0]["config"]["password"], "***");
    assert_eq!(items[0]["quota"]["per_minute"], 600);
    assert!(!list.to_string().contains("hunter2"));
    let smtp_id = items[0]["id"].as_str().expect("id").to_owned();

    let show = p.ok(&["providers", "show", &smtp_id]).await;
    assert_eq!(field(&show, "NAME"), "smtp-eu-1");
    assert_eq!(field(&show, "QUOTA"), "600/min 20000/day 8 at once");
    assert_eq!(
        field(&show, "WINDOW"),
        "08:00-22:00 Asia/Shanghai days 1,2,3,4,5"
    );
    assert!(field(&show, "SCORE").parse::<f64>().is_ok(), "{show}");
    assert_eq!(field(&show, "IN_FLIGHT"), "0/8");
    assert!(!show.contains("hunter2"), "{show}");
    let shown = p.json(&["providers", "show", &wework_id]).await;
    assert_eq!(shown["name"], "wework-shop");
    assert_eq!(shown["score"]["state"], "disabled");
    assert_eq!(shown["score"]["eligible"], false);

    let enabled = p.ok(&["providers", "enable", &wework_id]).await;
    assert_eq!(
        enabled,
        format!("Provider wework-shop ({wework_id}) is enabled.\n")
    );
    p.ok(&["providers", "disable", &smtp_id]).await;
    let list = p.json(&["providers", "list"]).await;
    assert_eq!(list["items"][0]["enabled"], false);
    assert_eq!(list["items"][1]["enabled"], true);
    let shown = p.json(&["providers", "show", &wework_id]).await;
    assert!(shown["score"]["total"].is_number(), "{shown}");
    assert_ne!(shown["score"]["state"], "disabled");

    let bad = p
        .herald(&[
            "providers",
            "add",
            "--name",
            "broken",
            "--kind",
            "smtp",
            "--config",
            r#"{"host": "smtp.example.com", "port": 0}"#,
        ])
        .await
        .expect_err("port 0 is refused");
    assert!(
        bad.contains("422 invalid_field") && bad.contains("field `config.port`"),
        "{bad}"
    );
    let not_json = p
        .herald(&[
            "providers",
            "add",
            "--name",
            "broken",
            "--kind",
            "smtp",
            "--config",
            "{host",
        ])
        .await
        .expect_err("not JSON");
    assert!(
        not_json.contains("--config is not valid JSON"),
        "{not_json}"
    );
    let missing = p
        .herald(&["providers", "show", &uuid::Uuid::new_v4().to_string()])
        .await
        .expect_err("no such provider");
    assert!(
        missing.contains("404 not_found") && missing.contains("no such provider"),
        "{missing}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_key_sends_until_revoked_and_any_tenants_message_has_a_status() {
    let p = spawn_producer().await;
    let tenant = p
        .json(&["tenants", "create", "--code", "shop", "--name", "Shop"])
        .await;
    let tenant_id = tenant["id"].as_str().expect("id").to_owned();

    let created = p.ok(&["keys", "create", "--tenant", &tenant_id]).await;
    let lines: Vec<&str> = created.lines().collect();
    assert_eq!(lines.len(), 3, "{created}");
    assert!(lines[0].starts_with("Created key "), "{created}");
    assert!(lines[1].contains("shown only this once"), "{created}");
    let key = lines[2];
    assert!(key.starts_with("hk_"), "{created}");
    let key_id = lines[0]
        .trim_start_matches("Created key ")
        .split(' ')
        .next()
        .expect("key id")
        .to_owned();

    let id = p.send(key, "alice@example.com").await;
    let status = p.ok(&["messages", "status", &id]).await;
    assert_eq!(field(&status, "ID"), id);
    assert_eq!(field(&status, "TENANT"), tenant_id);
    assert_eq!(field(&status, "STATUS"), "queued");
    assert_eq!(field(&status, "TO"), "alice@example.com");
    assert_eq!(field(&status, "CHANNEL"), "email");
    assert_eq!(field(&status, "PROVIDER"), "-");
    let record = p.json(&["messages", "status", &id]).await;
    assert_eq!(record["id"], id.as_str());
    assert_eq!(record["tenant_id"], tenant_id.as_str());
    assert_eq!(record["status"], "queued");
    assert_eq!(record["to"], "alice@example.com");
    assert_eq!(record["attempts"], 0);
    let missing = p
        .herald(&["messages", "status", &uuid::Uuid::new_v4().to_string()])
        .await
        .expect_err("no such message");
    assert!(missing.contains("404 not_found"), "{missing}");

    let revoked = p
        .ok(&["keys", "revoke", "--tenant", &tenant_id, &key_id])
        .await;
    assert!(
        revoked.starts_with(&format!("Revoked key {key_id}")),
        "{revoked}"
    );
    // The producer that revoked it refuses it at once (others within 10 s).
    let http = reqwest::Client::new();
    let url = format!("{}/v1/messages", p.url);
    let status = http
        .get(&url)
        .bearer_auth(key)
        .send()
        .await
        .expect("request")
        .status();
    assert_eq!(status, 401, "the revoked key still works");
    let again = p
        .herald(&["keys", "revoke", "--tenant", &tenant_id, &key_id])
        .await
        .expect_err("revoked already");
    assert!(again.contains("404 not_found"), "{again}");

    let fresh = p.json(&["keys", "create", "--tenant", &tenant_id]).await;
    let fresh_key = fresh["key"].as_str().expect("key");
    let r = http
        .get(&url)
        .bearer_auth(fresh_key)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_shows_every_queue_with_its_depth_and_missing_ones_as_absent() {
    let p = spawn_producer().await;
    let (_, key) = p
        .tenant_with_key("shop")
        .await
        .expect("a tenant and its key");
    p.send(&key, "alice@example.com").await;
    p.send(&key, "bob@example.com").await;
    p.ok(&["tenants", "create", "--code", "bank", "--name", "Bank"])
        .await;
    // Two missing queues in a row: each passive declare closes its channel.
    let amqp = p.isolation.settings().amqp_url;
    let broker = herald_broker::connect(&amqp, "cli-test", Duration::from_secs(5))
        .await
        .expect("broker");
    let ch = broker.channel().await.expect("channel");
    let topology = p.isolation.topology();
    for q in [topology.dead_letter_queue(), topology.callbacks_queue()] {
        ch.queue_delete(q.as_str().into(), Default::default())
            .await
            .expect("delete");
    }
    broker.close().await;

    golden("queues", &p.ok(&["queues"]).await, &p.isolation.namespace);

    let list = p.json(&["queues"]).await;
    assert_eq!(list["next_cursor"], Value::Null);
    let items = list["items"].as_array().expect("items");
    let by_kind = |kind: &str| items.iter().filter(|q| q["kind"] == kind).count();
    assert_eq!(by_kind("user"), 6);
    assert_eq!(by_kind("central"), 3);
    assert_eq!(by_kind("express"), 3);
    assert_eq!(by_kind("delay"), herald_broker::DELAY_TIERS.len());
    assert_eq!(by_kind("return"), 1);
    let shop_email = &items[0];
    assert_eq!(shop_email["channel"], "email");
    assert_eq!(shop_email["messages"], 2);
    assert_eq!(shop_email["consumers"], 0);
    assert_eq!(shop_email["exists"], true);
    let dead = items
        .iter()
        .find(|q| q["kind"] == "dead_letter")
        .expect("dead letters");
    assert_eq!(dead["exists"], false);
    assert_eq!(dead["messages"], Value::Null);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_replay_prints_a_summary_or_json_and_names_what_is_wrong() {
    let p = spawn_producer().await;
    let url = p.url.clone();

    let summary = p
        .ok(&["dead-letters", "replay", "--reason", "smtp_550"])
        .await;
    assert_eq!(summary, "Read 0 dead letter(s): replayed 0, kept 0.\n");

    let report = p.json(&["dead-letters", "replay"]).await;
    assert_eq!(report, json!({"scanned": 0, "replayed": 0, "kept": 0}));

    let refused = herald(&[
        "--producer-url",
        &url,
        "--admin-token",
        "wrong",
        "dead-letters",
        "replay",
    ])
    .await
    .expect_err("a wrong token fails");
    assert!(
        refused.contains("refused the admin token") && refused.contains("HERALD_ADMIN_TOKEN"),
        "{refused}"
    );

    let bad = p
        .herald(&["dead-letters", "replay", "--limit", "0"])
        .await
        .expect_err("a limit of 0 is refused by the API");
    assert!(
        bad.contains("invalid_field") && bad.contains("field `limit`"),
        "{bad}"
    );

    let not_an_id = p
        .herald(&["dead-letters", "replay", "--tenant", "x"])
        .await
        .expect_err("a tenant that is not an id");
    assert!(not_an_id.contains("--tenant"), "{not_an_id}");
    p.stop().await;

    let down = herald(&[
        "--producer-url",
        &url,
        "--admin-token",
        TOKEN,
        "tenants",
        "list",
    ])
    .await
    .expect_err("the producer is down");
    assert_eq!(
        down,
        format!(
            "cannot reach the producer at {url}: connection refused — is it running? set --producer-url or HERALD_PRODUCER_URL"
        )
    );

    let no_token = herald(&["--producer-url", &url, "queues"]).await;
    if std::env::var("HERALD_ADMIN_TOKEN").is_err() {
        let e = no_token.expect_err("no token");
        assert!(
            e.contains("no admin token") && e.contains("HERALD_ADMIN_TOKEN"),
            "{e}"
        );
    }

    // The binary says the same on stderr and exits non-zero.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["--producer-url", &url, "--admin-token", TOKEN, "queues"])
        .output()
        .await
        .expect("run herald");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("herald: cannot reach the producer at"),
        "{stderr}"
    );
}

#[tokio::test]
async fn templates_are_managed_with_the_tenants_key_and_files_are_read_with_at() {
    let p = spawn_producer().await;
    let (_, key) = p
        .tenant_with_key(&herald_testing::unique("tplcli"))
        .await
        .expect("tenant");
    let dir = std::env::temp_dir().join(herald_testing::unique("tplcli"));
    std::fs::create_dir_all(&dir).expect("dir");
    let html = dir.join("welcome.html");
    std::fs::write(&html, "<p>Hello {{ first_name }}</p>\n").expect("file");
    let html_arg = format!("@{}", html.display());
    let run = |args: Vec<&str>| {
        let mut argv = vec!["--producer-url", p.url.as_str(), "--api-key", key.as_str()];
        argv.extend(args);
        let argv: Vec<String> = argv.into_iter().map(str::to_owned).collect();
        async move {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            herald(&argv).await
        }
    };

    let created = run(vec![
        "templates",
        "create",
        "--name",
        "welcome",
        "--channel",
        "email",
        "--subject",
        "Hi {{ first_name }}",
        "--html",
        &html_arg,
    ])
    .await
    .expect("created");
    assert_eq!(field(&created, "VERSION"), "1 of 1");
    assert_eq!(field(&created, "VARIABLES"), "first_name");
    assert_eq!(field(&created, "HTML"), "<p>Hello {{ first_name }}</p>");
    let id = field(&created, "ID").to_owned();

    let updated = run(vec![
        "templates",
        "update",
        &id,
        "--subject",
        "Welcome {{ first_name }}",
        "--text",
        "Hello {{ first_name }} {{ last_name }}",
    ])
    .await
    .expect("updated");
    assert_eq!(field(&updated, "VERSION"), "2 of 2");
    assert_eq!(field(&updated, "VARIABLES"), "first_name last_name");
    let v1 = run(vec!["--json", "templates", "show", &id, "--version", "1"])
        .await
        .expect("v1");
    let v1: Value = serde_json::from_str(&v1).expect("json");
    assert_eq!(v1["subject"], "Hi {{ first_name }}");
    let list = run(vec!["templates", "list"]).await.expect("list");
    assert!(list.starts_with("ID"), "{list}");
    assert!(list.contains("welcome") && list.contains("email"), "{list}");

    let bad = run(vec![
        "templates",
        "create",
        "--name",
        "bad",
        "--channel",
        "email",
        "--subject",
        "s",
        "--text",
        "{% if x %}",
    ])
    .await
    .expect_err("a syntax error");
    assert!(
        bad.contains("422") && bad.contains("field `text`") && bad.contains("line 1"),
        "{bad}"
    );
    let no_key = herald(&["--producer-url", &p.url, "templates", "list"]).await;
    if std::env::var_os("HERALD_API_KEY").is_none() {
        let e = no_key.expect_err("no key");
        assert!(e.contains("HERALD_API_KEY"), "{e}");
    }
    let wrong = herald(&[
        "--producer-url",
        &p.url,
        "--api-key",
        "hk_wrong",
        "templates",
        "list",
    ])
    .await
    .expect_err("a wrong key");
    assert!(wrong.contains("--api-key"), "{wrong}");

    let deleted = run(vec!["templates", "delete", &id])
        .await
        .expect("deleted");
    assert!(deleted.starts_with("Deleted template"), "{deleted}");
    let gone = run(vec!["templates", "show", &id]).await.expect_err("gone");
    assert!(gone.contains("404"), "{gone}");
    let _ = std::fs::remove_dir_all(&dir);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_webhook_is_shown_its_secret_made_and_its_deliveries_listed_and_resent() {
    let p = spawn_producer().await;
    let (tenant, key) = p
        .tenant_with_key(&herald_testing::unique("hookcli"))
        .await
        .expect("tenant");
    let tenant_id = tenant.id.to_string();
    let updated = p
        .json(&[
            "tenants",
            "update",
            &tenant_id,
            "--webhook-url",
            "https://hooks.example.com/herald",
            "--webhook-events",
            "cancelled,sent",
        ])
        .await;
    assert_eq!(
        updated["webhook_events"],
        serde_json::json!(["sent", "cancelled"])
    );
    let run = |args: Vec<&str>| {
        let mut argv = vec!["--producer-url", p.url.as_str(), "--api-key", key.as_str()];
        argv.extend(args);
        let argv: Vec<String> = argv.into_iter().map(str::to_owned).collect();
        async move {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            herald(&argv).await
        }
    };
    let shown = run(vec!["webhooks", "show"]).await.expect("show");
    assert_eq!(field(&shown, "URL"), "https://hooks.example.com/herald");
    assert_eq!(field(&shown, "EVENTS"), "sent,cancelled");
    assert!(field(&shown, "SECRET").starts_with("none yet"), "{shown}");
    let secret = run(vec!["webhooks", "secret"]).await.expect("secret");
    assert!(secret.trim().starts_with("whsec_"), "{secret}");
    let shown = run(vec!["webhooks", "show"]).await.expect("show");
    assert!(field(&shown, "SECRET").starts_with("made "), "{shown}");

    // No scheduler runs here: a message waits `queued`, and its cancel is
    // an event the webhook takes.
    let id = p.send(&key, "ada@example.com").await;
    p.client(&key).cancel(&id).await.expect("cancelled");
    let listed = run(vec!["webhooks", "deliveries", "--event", "cancelled"])
        .await
        .expect("deliveries");
    let row = listed
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("a row in:\n{listed}"));
    assert!(row.contains("cancelled") && row.contains(&id), "{listed}");
    let delivery = row.split_whitespace().next().expect("id").to_owned();
    let resent = run(vec!["webhooks", "resend", &delivery])
        .await
        .expect("resend");
    assert!(resent.contains("is due again now"), "{resent}");
    let err = run(vec!["webhooks", "deliveries", "--state", "lost"])
        .await
        .expect_err("a bad state");
    assert!(err.contains("state"), "{err}");
}
