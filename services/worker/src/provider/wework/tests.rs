//! The adapter against the stand-in API: tokens, errcodes, back-off and
//! transport failures.

use std::collections::HashMap;
use std::time::Duration;

use herald_domain::provider_config::WeworkConfig;
use herald_domain::{Disposition, MessageId};
use herald_proto::v1;
use serde_json::json;

use super::test_server::FakeWework;
use super::token::token_lifetime;
use super::WeworkAdapter;
use crate::classify::Classifier;
use crate::provider::Outgoing;

struct Job {
    id: MessageId,
    recipients: Vec<String>,
    content: v1::Content,
    metadata: HashMap<String, String>,
}

impl Job {
    fn new() -> Job {
        Job {
            id: MessageId::new(),
            recipients: vec!["zhangsan|lisi".to_owned()],
            content: v1::Content {
                text: "Your order shipped".to_owned(),
                ..Default::default()
            },
            metadata: HashMap::new(),
        }
    }

    fn out(&self) -> Outgoing<'_> {
        Outgoing {
            message_id: self.id,
            recipients: &self.recipients,
            content: &self.content,
            metadata: &self.metadata,
            attempt: 1,
            unsubscribe: None,
            return_path: None,
        }
    }
}

#[tokio::test]
async fn fifty_concurrent_sends_share_one_token_fetch() {
    let (fake, wework) = FakeWework::default().start().await;
    let jobs: Vec<Job> = (0..50).map(|_| Job::new()).collect();

    let outcomes = futures::future::join_all(jobs.iter().map(|j| wework.send(j.out()))).await;

    assert!(outcomes.iter().all(Disposition::is_sent), "{outcomes:?}");
    assert_eq!(fake.token_calls(), 1);
    assert_eq!(fake.sends().len(), 50);
    assert!(fake.sends().iter().all(|s| s.token == "token-1"));
}

#[tokio::test]
async fn a_send_carries_the_herald_message_id_header_and_the_real_apis_fields() {
    let (fake, wework) = FakeWework::default().start().await;
    let job = Job::new();

    let outcome = wework.send(job.out()).await;

    assert_eq!(
        outcome,
        Disposition::Sent {
            provider_message_id: Some("msg-1".to_owned())
        }
    );
    let sends = fake.sends();
    assert_eq!(sends[0].herald_message_id, Some(job.id.to_string()));
    assert_eq!(
        sends[0].body,
        json!({
            "touser": "zhangsan|lisi",
            "msgtype": "text",
            "agentid": 1000002,
            "text": {"content": "Your order shipped"},
            "enable_duplicate_check": 1,
            "duplicate_check_interval": 1800,
        })
    );
}

#[tokio::test]
async fn html_only_content_is_sent_as_markdown() {
    let (fake, wework) = FakeWework::default().start().await;
    let mut job = Job::new();
    job.content.text.clear();
    job.content.html = "**shipped**".to_owned();

    assert!(wework.send(job.out()).await.is_sent());
    let sends = fake.sends();
    assert_eq!(sends[0].body["msgtype"], "markdown");
    assert_eq!(sends[0].body["markdown"]["content"], "**shipped**");
}

#[tokio::test]
async fn an_invalid_token_is_refreshed_and_the_message_resent_once() {
    let (fake, wework) =
        FakeWework::replying(&[json!({"errcode": 40014, "errmsg": "invalid access_token"})])
            .start()
            .await;

    let outcome = wework.send(Job::new().out()).await;

    assert!(outcome.is_sent(), "{outcome:?}");
    assert_eq!(fake.token_calls(), 2);
    let tokens: Vec<String> = fake.sends().iter().map(|s| s.token.clone()).collect();
    assert_eq!(tokens, ["token-1", "token-2"]);
}

#[tokio::test]
async fn a_second_token_error_in_a_row_retries_later() {
    let (fake, wework) = FakeWework::replying(&[
        json!({"errcode": 40014, "errmsg": "invalid access_token"}),
        json!({"errcode": 42001, "errmsg": "access_token expired"}),
    ])
    .start()
    .await;

    let outcome = wework.send(Job::new().out()).await;

    assert!(
        matches!(outcome, Disposition::RetryAfter { .. }),
        "{outcome:?}"
    );
    assert_eq!(outcome.code(), Some("wework_42001"));
    assert_eq!(fake.sends().len(), 2);
}

#[tokio::test]
async fn the_api_frequency_limit_throttles_the_app() {
    let (_fake, wework) =
        FakeWework::replying(&[json!({"errcode": 45009, "errmsg": "api freq out of limit"})])
            .start()
            .await;

    let outcome = wework.send(Job::new().out()).await;

    assert_eq!(
        outcome,
        Disposition::Throttled {
            hold: None,
            code: "wework_45009".to_owned(),
            reason: "api freq out of limit".to_owned(),
        }
    );
}

#[tokio::test]
async fn a_user_rule_overrides_the_delay_of_the_api_frequency_limit() {
    let classifier = Classifier::from_json(
        r#"{"wework": [{"errcode": 45009, "action": "retry", "after_s": 120}]}"#,
    )
    .expect("rules");
    let (_fake, wework) =
        FakeWework::replying(&[json!({"errcode": 45009, "errmsg": "api freq out of limit"})])
            .start_classified(classifier)
            .await;

    let outcome = wework.send(Job::new().out()).await;

    assert_eq!(
        outcome,
        Disposition::RetryAfter {
            after: Duration::from_secs(120),
            code: "wework_45009".to_owned(),
            reason: "api freq out of limit".to_owned(),
        }
    );
}

#[tokio::test]
async fn later_attempts_back_off_longer() {
    let (_fake, wework) = FakeWework::replying(&[json!({"errcode": -1, "errmsg": "system busy"})])
        .start()
        .await;
    let job = Job::new();

    let outcome = wework
        .send(Outgoing {
            attempt: 3,
            unsubscribe: None,
            return_path: None,
            ..job.out()
        })
        .await;

    assert!(
        matches!(outcome, Disposition::RetryAfter { after, .. } if after == Duration::from_secs(20)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn an_unknown_errcode_dead_letters_with_its_errmsg() {
    let (_fake, wework) = FakeWework::replying(&[
        json!({"errcode": 60020, "errmsg": "not allow to access from your ip"}),
    ])
    .start()
    .await;

    let outcome = wework.send(Job::new().out()).await;

    assert_eq!(
        outcome,
        Disposition::DeadLetter {
            code: "wework_60020".to_owned(),
            reason: "not allow to access from your ip".to_owned(),
        }
    );
}

#[tokio::test]
async fn invalid_users_do_not_stop_a_send_to_the_valid_ones() {
    let (_fake, wework) = FakeWework::replying(&[json!({
        "errcode": 0, "errmsg": "ok", "invaliduser": "lisi", "msgid": "msg-9"
    })])
    .start()
    .await;

    let outcome = wework.send(Job::new().out()).await;

    assert_eq!(
        outcome,
        Disposition::Sent {
            provider_message_id: Some("msg-9".to_owned())
        }
    );
}

#[tokio::test]
async fn a_rejected_corp_secret_fails_over_once_for_all_waiting_sends() {
    let (fake, wework) = FakeWework {
        token_errcode: Some(40001),
        ..FakeWework::default()
    }
    .start()
    .await;
    let jobs: Vec<Job> = (0..10).map(|_| Job::new()).collect();

    let outcomes = futures::future::join_all(jobs.iter().map(|j| wework.send(j.out()))).await;

    for outcome in &outcomes {
        assert!(
            matches!(outcome, Disposition::Failover { .. }),
            "{outcome:?}"
        );
        assert_eq!(outcome.code(), Some("wework_token_40001"));
    }
    assert_eq!(fake.token_calls(), 1);
    assert!(fake.sends().is_empty());
}

#[tokio::test]
async fn an_unreachable_api_fails_over_without_revealing_the_secret() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    let wework = WeworkAdapter::new(WeworkConfig {
        base_url: format!("http://{addr}"),
        corp_id: "corp".to_owned(),
        corp_secret: "very-secret".to_owned(),
        agent_id: 1,
        token: None,
        encoding_aes_key: None,
        duplicate_check_interval: None,
        timeout_ms: Some(2000),
        callback_secret: None,
    })
    .expect("adapter");

    let outcome = wework.send(Job::new().out()).await;

    assert!(
        matches!(outcome, Disposition::Failover { .. }),
        "{outcome:?}"
    );
    assert_eq!(outcome.code(), Some("wework_token_unreachable"));
    let reason = outcome.reason().unwrap_or_default();
    assert!(reason.contains("connect"), "{reason}");
    assert!(!reason.contains("very-secret"), "{reason}");
}

#[tokio::test]
async fn a_text_card_is_sent_as_one() {
    let (fake, wework) = FakeWework::default().start().await;
    let mut job = Job::new();
    job.content.text.clear();
    job.content.textcard = Some(herald_proto::v1::Textcard {
        title: "Order 7 shipped".into(),
        description: "Arrives Friday".into(),
        url: "https://shop.example/o/7".into(),
        btntxt: String::new(),
    });

    assert!(wework.send(job.out()).await.is_sent());
    let sends = fake.sends();
    assert_eq!(sends[0].body["msgtype"], "textcard");
    assert_eq!(sends[0].body["textcard"]["title"], "Order 7 shipped");
    assert_eq!(sends[0].body["textcard"]["url"], "https://shop.example/o/7");
    assert!(sends[0].body["textcard"].get("btntxt").is_none());
}

#[test]
fn tokens_are_refreshed_five_minutes_early_but_kept_at_least_a_minute() {
    assert_eq!(token_lifetime(7200), Duration::from_secs(6900));
    assert_eq!(token_lifetime(100), Duration::from_secs(60));
}
