//! The plain-text half of STARTTLS, spoken before lettre takes over the
//! stream.

use herald_domain::Disposition;
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::outcome::failover;

/// Longest reply line read during the plain-text half of STARTTLS.
const MAX_REPLY_LINE: u64 = 2048;

/// The plain-text half of STARTTLS: greeting, EHLO, STARTTLS. Done here
/// rather than with lettre's `starttls` so that the TLS configuration is
/// this adapter's own. STARTTLS is required: a server that does not offer it
/// fails over.
pub(super) async fn starttls_dialogue(
    tcp: &mut TcpStream,
    hello: &ClientId,
    server: &str,
) -> Result<(), Disposition> {
    let mut reader = tokio::io::BufReader::new(tcp);
    let greeting = read_reply(&mut reader, server).await?;
    greeting.expect(2, server, "greeting")?;
    write_line(&mut reader, &format!("EHLO {hello}"), server).await?;
    let ehlo = read_reply(&mut reader, server).await?;
    ehlo.expect(2, server, "EHLO")?;
    let offers_starttls = ehlo.lines.iter().skip(1).any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|keyword| keyword.eq_ignore_ascii_case("STARTTLS"))
    });
    if !offers_starttls {
        return Err(failover(
            "smtp_starttls_unavailable",
            format!("{server} does not offer STARTTLS, which this provider requires"),
        ));
    }
    write_line(&mut reader, "STARTTLS", server).await?;
    read_reply(&mut reader, server)
        .await?
        .expect(2, server, "STARTTLS")?;
    // Anything already buffered was sent in plain text before the handshake
    // and must not be read as if it came through TLS (command injection).
    if !reader.buffer().is_empty() {
        return Err(failover(
            "smtp_tls",
            format!("{server} sent data between its STARTTLS reply and the TLS handshake"),
        ));
    }
    Ok(())
}

struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// Fails over unless the reply's first digit is `class`.
    fn expect(&self, class: u16, server: &str, step: &str) -> Result<(), Disposition> {
        if self.code / 100 == class {
            return Ok(());
        }
        Err(failover(
            format!("smtp_{}", self.code),
            format!(
                "{server} answered {step} with {} {}",
                self.code,
                self.lines.join(" ")
            ),
        ))
    }
}

async fn write_line(
    reader: &mut tokio::io::BufReader<&mut TcpStream>,
    line: &str,
    server: &str,
) -> Result<(), Disposition> {
    reader
        .get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| failover("smtp_connect", format!("writing to {server} failed: {e}")))
}

async fn read_reply(
    reader: &mut tokio::io::BufReader<&mut TcpStream>,
    server: &str,
) -> Result<Reply, Disposition> {
    let broken = |what: String| failover("smtp_connect", format!("{server}: {what}"));
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let read = (&mut *reader)
            .take(MAX_REPLY_LINE)
            .read_line(&mut line)
            .await
            .map_err(|e| broken(format!("reading a reply failed: {e}")))?;
        if read == 0 {
            return Err(broken("the server closed the connection".to_owned()));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let code = line
            .get(..3)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| broken(format!("malformed reply {line:?}")))?;
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line.get(4..).unwrap_or_default().to_owned());
        if last {
            return Ok(Reply { code, lines });
        }
        if lines.len() > 100 {
            return Err(broken("the reply has too many lines".to_owned()));
        }
    }
}
