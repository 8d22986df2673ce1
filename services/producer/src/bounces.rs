//! The return path's inbound SMTP listener (`HERALD_BOUNCE_SMTP_ADDR`,
//! issue 17 part 3): the MX of `HERALD_BOUNCE_DOMAIN`. Every email's
//! envelope sender is `bounce+<token>@<bounce domain>` (VERP), so a
//! delivery status notification (RFC 3464) or an ARF complaint sent back to
//! it names its message. Each recipient's token is checked at `RCPT`
//! (anything else is 550); the report is read (`herald_callbacks::reports`)
//! and queued as `bounced` (hard or soft, the status and the diagnostic) or
//! `complained` events on the callbacks queue, and the transaction is
//! answered 250 only after the broker confirmed — else 451, and the
//! reporting MTA tries again. A message that is not a report is 550.
//! Plain SMTP without TLS or AUTH: the listener takes reports for its own
//! domain only, as an MX does.

use std::time::Duration;

use chrono::Utc;
use herald_callbacks::reports::{self, Report};
use herald_domain::TRACKING_PROVIDER;
use herald_proto::v1;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

use crate::api::AppState;

/// The largest report taken (a DSN may carry the whole original message).
pub const MAX_SIZE: usize = 4 << 20;
/// Recipients per transaction at most.
const MAX_RECIPIENTS: usize = 100;
/// How long a client may stay silent.
const IDLE: Duration = Duration::from_secs(300);

/// Accepts connections until the task is aborted.
pub async fn serve(listener: TcpListener, state: AppState) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "The bounce listener could not accept a connection.");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = session(stream, &state).await {
                tracing::debug!(peer = %peer, error = %e, "A bounce session ended with an error.");
            }
        });
    }
}

fn count(outcome: &'static str) {
    metrics::counter!("herald_producer_bounce_reports_total", "outcome" => outcome).increment(1);
}

/// The address inside `MAIL FROM:<…>` / `RCPT TO:<…>` (parameters after it
/// are ignored).
fn path(arg: &str) -> Option<&str> {
    let start = arg.find('<')?;
    let end = arg[start..].find('>')? + start;
    Some(&arg[start + 1..end])
}

async fn session(stream: TcpStream, state: &AppState) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write
        .write_all(b"220 herald bounce listener ESMTP\r\n")
        .await?;
    let mut messages: Vec<Uuid> = Vec::new();
    let mut mail = false;
    let mut line = String::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(IDLE, read.read_line(&mut line))
            .await
            .map_err(|_| std::io::Error::other("idle"))??;
        if n == 0 {
            return Ok(());
        }
        if line.len() > 1000 {
            write.write_all(b"500 5.5.2 line too long\r\n").await?;
            continue;
        }
        let command = line.trim_end();
        let (verb, arg) = command.split_once(' ').unwrap_or((command, ""));
        let reply: &[u8] = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                let hello = format!(
                    "250-herald\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE {MAX_SIZE}\r\n"
                );
                write.write_all(hello.as_bytes()).await?;
                continue;
            }
            "HELO" => b"250 herald\r\n",
            "NOOP" => b"250 2.0.0 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            "RSET" => {
                (mail, messages) = (false, Vec::new());
                b"250 2.0.0 OK\r\n"
            }
            "MAIL" => {
                (mail, messages) = (true, Vec::new());
                b"250 2.1.0 OK\r\n"
            }
            "RCPT" if !mail => b"503 5.5.1 MAIL first\r\n",
            "RCPT" if messages.len() >= MAX_RECIPIENTS => b"452 4.5.3 too many recipients\r\n",
            "RCPT" => match path(arg).and_then(|a| state.links.verify_return_path(a)) {
                Some(message) => {
                    messages.push(message);
                    b"250 2.1.5 OK\r\n"
                }
                None => {
                    count("unknown_recipient");
                    b"550 5.1.1 no such return path\r\n"
                }
            },
            "DATA" if messages.is_empty() => b"503 5.5.1 RCPT first\r\n",
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let body = match data(&mut read).await? {
                    Some(body) => body,
                    None => {
                        write.write_all(b"552 5.3.4 message too big\r\n").await?;
                        (mail, messages) = (false, Vec::new());
                        continue;
                    }
                };
                let answer = take(state, &messages, &body).await;
                (mail, messages) = (false, Vec::new());
                write.write_all(answer.as_bytes()).await?;
                continue;
            }
            _ => b"502 5.5.2 command not recognised\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// The DATA section, dot-unstuffed, up to `<CRLF>.<CRLF>`; `None` when it
/// is over [`MAX_SIZE`] (read to its end all the same).
async fn data(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    let mut too_big = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(IDLE, read.read_until(b'\n', &mut line))
            .await
            .map_err(|_| std::io::Error::other("idle"))??;
        if n == 0 {
            return Err(std::io::Error::other("the connection closed in DATA"));
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok((!too_big).then_some(body));
        }
        let content = line.strip_prefix(b".").unwrap_or(&line);
        if body.len() + content.len() > MAX_SIZE {
            too_big = true;
        } else {
            body.extend_from_slice(content);
        }
    }
}

/// Queues what `body` reports about each of `messages`: the SMTP answer.
async fn take(state: &AppState, messages: &[Uuid], body: &[u8]) -> String {
    let reports = match reports::parse(body) {
        Ok(r) => r,
        Err(why) => {
            count("not_a_report");
            tracing::info!(reason = %why, "Refused a message at the return path that is not a report.");
            return format!("550 5.6.0 not a delivery status or feedback report: {why}\r\n");
        }
    };
    let now = Utc::now();
    let body_hash = Sha256::digest(body);
    for &message in messages {
        for (i, report) in reports.iter().enumerate() {
            let (kind, detail) = match report {
                Report::NotABounce { .. } => {
                    count("not_a_bounce");
                    continue;
                }
                Report::Bounce {
                    recipient,
                    status,
                    diagnostic,
                    reporting_mta,
                } => (
                    v1::EventKind::Bounced,
                    serde_json::json!({
                        "source": "dsn",
                        "type": if report.is_hard() { "hard" } else { "soft" },
                        "status": status,
                        "diagnostic": diagnostic,
                        "recipient": recipient,
                        "reporting_mta": reporting_mta,
                    }),
                ),
                Report::Complaint {
                    feedback_type,
                    user_agent,
                } => (
                    v1::EventKind::Complained,
                    serde_json::json!({
                        "source": "arf",
                        "feedback_type": feedback_type,
                        "user_agent": user_agent,
                    }),
                ),
            };
            // The reporting MTA's retry of the same report is one event.
            let mut key = Sha256::new();
            key.update(message.as_bytes());
            key.update(body_hash);
            key.update((i as u32).to_le_bytes());
            let event = v1::CallbackEvent {
                event_id: Uuid::now_v7().to_string(),
                provider_id: TRACKING_PROVIDER.to_string(),
                message_id: message.to_string(),
                kind: kind as i32,
                at_ms: now.timestamp_millis(),
                detail: detail.to_string(),
                raw: body.iter().copied().take(64 << 10).collect(),
                recipient: String::new(),
                dedupe_key: key.finalize().to_vec(),
                received_at_ms: now.timestamp_millis(),
            };
            if let Err(e) = state.callbacks.publish(event).await {
                count("unavailable");
                tracing::warn!(error = %e, "A bounce report could not be queued; the MTA will retry.");
                return "451 4.3.0 try again later\r\n".into();
            }
            count(if kind == v1::EventKind::Bounced {
                "bounced"
            } else {
                "complained"
            });
        }
    }
    "250 2.0.0 report taken\r\n".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_from_their_brackets() {
        assert_eq!(
            path("TO:<bounce+ab@b.example> NOTIFY=NEVER"),
            Some("bounce+ab@b.example")
        );
        assert_eq!(path("FROM:<>"), Some(""));
        assert_eq!(path("TO:nobody"), None);
    }
}
