//! Messages per second over ONE pooled SMTP connection, against a running
//! herald-sim (plain SMTP on 127.0.0.1:2525 by default):
//!
//!     cargo run --release -p herald-worker --example smtp_per_connection -- [count] [port]
//!
//! It measures the adapter as the worker uses it (own socket with
//! TCP_NODELAY, no NOOP before reuse), one message after another.

use std::collections::HashMap;
use std::time::Instant;

use herald_domain::provider_config::{SmtpConfig, TlsMode};
use herald_domain::{Disposition, MessageId};
use herald_proto::v1;
use herald_worker::provider::{Outgoing, SmtpAdapter};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let port: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2525);
    let adapter = SmtpAdapter::new(SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::None,
        ca_file: None,
        accept_invalid_certs: false,
        username: None,
        password: None,
        from: Some("bench@herald.local".into()),
        pool_size: Some(1),
        message_id_domain: None,
        timeout_secs: None,
        callback_secret: None,
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let content = v1::Content {
        subject: "bench".into(),
        text: "hello".into(),
        ..Default::default()
    };
    let metadata = HashMap::new();
    let recipients = vec!["bench@example.com".to_owned()];
    let started = Instant::now();
    for _ in 0..count {
        let out = Outgoing {
            message_id: MessageId::new(),
            recipients: &recipients,
            content: &content,
            metadata: &metadata,
            attempt: 1,
            unsubscribe: None,
            return_path: None,
        };
        match adapter.send(out).await {
            Disposition::Sent { .. } => {}
            other => anyhow::bail!("a send failed: {other:?}"),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{count} messages over one SMTP connection in {secs:.2} s: {:.0} messages/s",
        count as f64 / secs
    );
    Ok(())
}
