//! The adapter against the scripted server: one test per way a send ends.

use std::collections::HashMap;
use std::time::Duration;

use herald_domain::provider_config::{SmtpConfig, TlsMode};
use herald_domain::{Disposition, MessageId};
use herald_proto::v1;
use lettre::transport::smtp::response::Response;
use tokio::net::TcpListener;

use super::outcome::provider_message_id;
use super::test_server::{tls_acceptor, FakeSmtp, Script, ServerTls};
use super::SmtpAdapter;
use crate::classify::SMTP_RETRY_AFTER as TRANSIENT_RETRY_AFTER;
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
            recipients: vec!["alice@example.com".to_owned()],
            content: v1::Content {
                subject: "Hello".to_owned(),
                text: "plain body".to_owned(),
                html: "<p>html body</p>".to_owned(),
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

fn adapter(config: SmtpConfig) -> SmtpAdapter {
    SmtpAdapter::new(config).expect("adapter")
}

#[tokio::test]
async fn an_accepted_message_is_sent_with_the_servers_queue_id_and_herald_headers() {
    let server = FakeSmtp::start(Script::default()).await;
    let smtp = adapter(server.config());
    let job = Job::new();

    let outcome = smtp.send(job.out()).await;

    assert_eq!(
        outcome,
        Disposition::Sent {
            provider_message_id: Some("4F2Xy1".to_owned())
        }
    );
    let commands = server.commands();
    assert!(
        commands.contains(&"MAIL FROM:<news@shop.example>".to_owned()),
        "{commands:?}"
    );
    assert!(
        commands.contains(&"RCPT TO:<alice@example.com>".to_owned()),
        "{commands:?}"
    );
    let message = &server.messages()[0];
    let lower = message.to_ascii_lowercase();
    assert!(
        lower.contains(&format!("message-id: <{}@herald.local>", job.id)),
        "{message}"
    );
    assert!(
        lower.contains(&format!("x-herald-message-id: {}", job.id)),
        "{message}"
    );
    assert!(lower.contains("multipart/alternative"), "{message}");
    assert!(message.contains("Subject: Hello"), "{message}");
}

#[tokio::test]
async fn the_configured_domain_names_the_message_id() {
    let server = FakeSmtp::start(Script::default()).await;
    let smtp = adapter(SmtpConfig {
        message_id_domain: Some("mail.shop.example".to_owned()),
        ..server.config()
    });
    let job = Job::new();

    assert!(smtp.send(job.out()).await.is_sent());
    let message = server.messages()[0].to_ascii_lowercase();
    assert!(message.contains(&format!("message-id: <{}@mail.shop.example>", job.id)));
}

#[tokio::test]
async fn a_4xx_reply_to_rcpt_retries_later_with_the_servers_text() {
    let server = FakeSmtp::start(Script {
        rcpt: "451 4.7.1 Try again later",
        ..Script::default()
    })
    .await;
    let smtp = adapter(server.config());

    let outcome = smtp.send(Job::new().out()).await;

    let Disposition::RetryAfter {
        after,
        code,
        reason,
    } = outcome
    else {
        panic!("expected RetryAfter, got {outcome:?}");
    };
    assert_eq!(after, TRANSIENT_RETRY_AFTER);
    assert_eq!(code, "smtp_451");
    assert!(reason.contains("Try again later"), "{reason}");
}

#[tokio::test]
async fn a_5xx_reply_to_mail_dead_letters() {
    let server = FakeSmtp::start(Script {
        mail: "550 5.7.1 Sender rejected",
        ..Script::default()
    })
    .await;
    let smtp = adapter(server.config());

    let outcome = smtp.send(Job::new().out()).await;

    assert_eq!(outcome.code(), Some("smtp_550"), "{outcome:?}");
    assert!(
        matches!(outcome, Disposition::DeadLetter { .. }),
        "{outcome:?}"
    );
    assert!(outcome
        .reason()
        .is_some_and(|r| r.contains("Sender rejected")));
}

#[tokio::test]
async fn a_5xx_reply_that_says_frequency_limited_retries_later() {
    let server = FakeSmtp::start(Script {
        rcpt: "550 5.7.1 frequency limited",
        ..Script::default()
    })
    .await;
    let smtp = adapter(server.config());

    let outcome = smtp.send(Job::new().out()).await;

    assert_eq!(
        outcome,
        Disposition::RetryAfter {
            after: Duration::from_secs(60),
            code: "smtp_550".to_owned(),
            reason: "5.7.1 frequency limited".to_owned(),
        }
    );
}

#[tokio::test]
async fn a_connection_closed_after_the_final_dot_leaves_the_message_in_doubt() {
    let server = FakeSmtp::start(Script {
        after_body: None,
        ..Script::default()
    })
    .await;
    let smtp = adapter(server.config());

    let outcome = smtp.send(Job::new().out()).await;

    assert!(
        matches!(outcome, Disposition::InDoubt { .. }),
        "{outcome:?}"
    );
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn no_reply_after_the_final_dot_within_the_timeout_leaves_the_message_in_doubt() {
    let server = FakeSmtp::start(Script {
        delay_after_body: Duration::from_secs(3),
        ..Script::default()
    })
    .await;
    let smtp = adapter(SmtpConfig {
        timeout_secs: Some(1),
        ..server.config()
    });

    let outcome = smtp.send(Job::new().out()).await;

    assert!(
        matches!(outcome, Disposition::InDoubt { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn consecutive_sends_reuse_one_session_without_noop() {
    let server = FakeSmtp::start(Script::default()).await;
    let smtp = adapter(server.config());

    for _ in 0..3 {
        assert!(smtp.send(Job::new().out()).await.is_sent());
    }

    assert_eq!(server.connections(), 1);
    assert_eq!(server.messages().len(), 3);
    assert!(!server
        .commands()
        .iter()
        .any(|c| c.eq_ignore_ascii_case("NOOP")));
}

#[tokio::test]
async fn a_session_the_server_closed_while_idle_is_replaced_and_the_message_sent() {
    let server = FakeSmtp::start(Script {
        close_after_message: true,
        ..Script::default()
    })
    .await;
    let smtp = adapter(server.config());
    assert!(smtp.send(Job::new().out()).await.is_sent());
    // Let the server's close reach the idle session.
    tokio::time::sleep(Duration::from_millis(50)).await;

    let outcome = smtp.send(Job::new().out()).await;

    assert!(outcome.is_sent(), "{outcome:?}");
    assert_eq!(server.connections(), 2);
    assert_eq!(server.messages().len(), 2);
}

#[tokio::test]
async fn concurrent_sends_open_no_more_sessions_than_the_pool_size() {
    let server = FakeSmtp::start(Script::default()).await;
    let smtp = adapter(SmtpConfig {
        pool_size: Some(2),
        ..server.config()
    });
    let jobs: Vec<Job> = (0..10).map(|_| Job::new()).collect();

    let outcomes = futures::future::join_all(jobs.iter().map(|j| smtp.send(j.out()))).await;

    assert!(outcomes.iter().all(Disposition::is_sent), "{outcomes:?}");
    assert!(
        server.connections() <= 2,
        "{} sessions",
        server.connections()
    );
    assert_eq!(server.messages().len(), 10);
}

#[tokio::test]
async fn credentials_authenticate_the_session() {
    let server = FakeSmtp::start(Script::default()).await;
    let smtp = adapter(SmtpConfig {
        username: Some("herald".to_owned()),
        password: Some("secret".to_owned()),
        ..server.config()
    });

    assert!(smtp.send(Job::new().out()).await.is_sent());
    assert!(server
        .commands()
        .iter()
        .any(|c| c.starts_with("AUTH PLAIN")));
}

#[tokio::test]
async fn starttls_upgrades_the_session_trusting_the_configured_ca_file() {
    let (acceptor, pem) = tls_acceptor();
    let server = FakeSmtp::start(Script {
        tls: ServerTls::Starttls(acceptor),
        ..Script::default()
    })
    .await;
    let ca_file = std::env::temp_dir().join(format!("herald-smtp-ca-{}.pem", MessageId::new()));
    std::fs::write(&ca_file, pem).expect("write CA file");
    let smtp = adapter(SmtpConfig {
        tls: TlsMode::Starttls,
        ca_file: Some(ca_file.to_string_lossy().into_owned()),
        ..server.config()
    });
    let _ = std::fs::remove_file(&ca_file);

    let outcome = smtp.send(Job::new().out()).await;

    assert!(outcome.is_sent(), "{outcome:?}");
    let commands = server.commands();
    assert!(commands.contains(&"STARTTLS".to_owned()), "{commands:?}");
    // EHLO before the upgrade; after it lettre's, and the one whose
    // keywords say whether the server pipelines.
    assert_eq!(commands.iter().filter(|c| c.starts_with("EHLO")).count(), 3);
    assert_eq!(commands.iter().position(|c| c == "STARTTLS"), Some(1));
}

#[tokio::test]
async fn starttls_that_the_server_does_not_offer_fails_over() {
    let server = FakeSmtp::start(Script::default()).await;
    let smtp = adapter(SmtpConfig {
        tls: TlsMode::Starttls,
        accept_invalid_certs: true,
        ..server.config()
    });

    let outcome = smtp.send(Job::new().out()).await;

    assert!(
        matches!(outcome, Disposition::Failover { .. }),
        "{outcome:?}"
    );
    assert_eq!(outcome.code(), Some("smtp_starttls_unavailable"));
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn implicit_tls_sends_to_a_test_server_when_invalid_certificates_are_accepted() {
    let (acceptor, _) = tls_acceptor();
    let server = FakeSmtp::start(Script {
        tls: ServerTls::Implicit(acceptor),
        ..Script::default()
    })
    .await;
    let smtp = adapter(SmtpConfig {
        tls: TlsMode::Tls,
        accept_invalid_certs: true,
        ..server.config()
    });

    let outcome = smtp.send(Job::new().out()).await;

    assert!(outcome.is_sent(), "{outcome:?}");
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_fails_over() {
    let (acceptor, _) = tls_acceptor();
    let server = FakeSmtp::start(Script {
        tls: ServerTls::Implicit(acceptor),
        ..Script::default()
    })
    .await;
    let smtp = adapter(SmtpConfig {
        tls: TlsMode::Tls,
        ..server.config()
    });

    let outcome = smtp.send(Job::new().out()).await;

    assert_eq!(outcome.code(), Some("smtp_tls"), "{outcome:?}");
    assert!(matches!(outcome, Disposition::Failover { .. }));
}

#[tokio::test]
async fn an_unreachable_server_fails_over() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    let smtp = adapter(SmtpConfig {
        port,
        ..FakeSmtp::start(Script::default()).await.config()
    });

    let outcome = smtp.send(Job::new().out()).await;

    assert_eq!(outcome.code(), Some("smtp_connect"), "{outcome:?}");
    assert!(matches!(outcome, Disposition::Failover { .. }));
}

#[tokio::test]
async fn a_message_without_a_sender_is_dead_lettered() {
    let server = FakeSmtp::start(Script::default()).await;
    let smtp = adapter(SmtpConfig {
        from: None,
        ..server.config()
    });

    let outcome = smtp.send(Job::new().out()).await;

    assert_eq!(outcome.code(), Some("no_sender"), "{outcome:?}");
    assert!(matches!(outcome, Disposition::DeadLetter { .. }));
    assert_eq!(server.connections(), 0);
}

#[test]
fn the_queue_id_is_taken_from_the_reply_text() {
    use lettre::transport::smtp::response::{Category, Code, Detail, Severity};
    let code = Code::new(
        Severity::PositiveCompletion,
        Category::MailSystem,
        Detail::Zero,
    );
    let reply = |text: &str| Response::new(code, vec![text.to_owned()]);
    assert_eq!(
        provider_message_id(&reply("2.0.0 Ok: queued as ABC123")).as_deref(),
        Some("ABC123")
    );
    assert_eq!(
        provider_message_id(&reply("2.0.0 <id-7> accepted")).as_deref(),
        Some("2.0.0 <id-7> accepted")
    );
    assert_eq!(provider_message_id(&reply("")), None);
}

#[tokio::test]
async fn a_server_that_pipelines_gets_mail_rcpt_and_data_in_one_group() {
    // The server answers MAIL and RCPT only once DATA has arrived: a client
    // waiting for each reply would time out here.
    let server = FakeSmtp::start(Script {
        pipelining: true,
        ..Script::default()
    })
    .await;
    let smtp = adapter(server.config());
    let mut job = Job::new();
    job.recipients.push("bob@example.com".to_owned());

    for _ in 0..2 {
        let outcome = smtp.send(job.out()).await;
        assert_eq!(
            outcome,
            Disposition::Sent {
                provider_message_id: Some("4F2Xy1".to_owned())
            }
        );
    }
    assert_eq!(server.connections(), 1, "the session is reused");
    assert_eq!(server.messages().len(), 2);
    let transaction: Vec<String> = server
        .commands()
        .into_iter()
        .skip_while(|c| !c.starts_with("MAIL"))
        .take(4)
        .collect();
    assert_eq!(
        transaction,
        vec![
            "MAIL FROM:<news@shop.example>",
            "RCPT TO:<alice@example.com>",
            "RCPT TO:<bob@example.com>",
            "DATA"
        ]
    );
}

#[tokio::test]
async fn a_refused_recipient_in_a_pipelined_group_ends_as_without_pipelining() {
    for pipelining in [false, true] {
        let server = FakeSmtp::start(Script {
            rcpt: "550 5.1.1 No such user",
            pipelining,
            ..Script::default()
        })
        .await;
        let smtp = adapter(server.config());

        let outcome = smtp.send(Job::new().out()).await;
        assert_eq!(
            outcome.code(),
            Some("smtp_550"),
            "pipelining {pipelining}: {outcome:?}"
        );
        assert!(
            matches!(outcome, Disposition::DeadLetter { .. }),
            "{outcome:?}"
        );
        assert!(server.messages().is_empty(), "no body was sent");
        // The session whose replies were left unread is not reused.
        let _ = smtp.send(Job::new().out()).await;
        assert_eq!(server.connections(), 2, "pipelining {pipelining}");
    }
}

#[test]
fn the_data_section_is_dot_stuffed_and_terminated() {
    use super::compose::data_section;
    assert_eq!(
        data_section(b"a\r\n.b\r\n..c\r\nd.e").as_deref(),
        Some("a\r\n..b\r\n...c\r\nd.e\r\n.\r\n")
    );
    assert_eq!(data_section(b".first").as_deref(), Some("..first\r\n.\r\n"));
    // Only CRLF ends a line, as in lettre's codec.
    assert_eq!(data_section(b"a\n.b").as_deref(), Some("a\n.b\r\n.\r\n"));
    assert_eq!(data_section(&[0xff, b'a']), None);
}
