//! A private Postfix (Debian's package; `deploy/local/services.sh`
//! installs it, not started): its own configuration and queue directory, an
//! SMTP listener on a free loopback port, routes by domain. The real MTA
//! the tests send through, which bounces what it cannot deliver with real
//! RFC 3464 reports. Stopped and removed when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

pub struct PrivatePostfix {
    /// Where it takes mail (plain SMTP on 127.0.0.1).
    pub port: u16,
    dir: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Debian's master.cf with every service out of chroot (the queue is not
/// under /var/spool/postfix) and the `smtp inet` listener on `port`.
fn master_cf(stock: &str, port: u16) -> String {
    let mut out = String::new();
    for line in stock.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let service = !line.starts_with('#') && !line.starts_with([' ', '\t']) && fields.len() >= 8;
        if !service {
            out.push_str(line);
        } else if fields[0] == "smtp" && fields[1] == "inet" {
            out.push_str(&format!("127.0.0.1:{port} inet n - n - - smtpd"));
        } else {
            let mut f = fields.clone();
            f[4] = "n";
            out.push_str(&f.join(" "));
        }
        out.push('\n');
    }
    out
}

impl PrivatePostfix {
    /// Starts an instance that routes each `(domain, transport)` (Postfix
    /// transport syntax: `smtp:[127.0.0.1]:2525`, `error:5.1.1 reason`)
    /// and relays for those domains only.
    pub fn start(routes: &[(&str, String)]) -> anyhow::Result<PrivatePostfix> {
        anyhow::ensure!(
            Path::new("/usr/sbin/postfix").exists(),
            "Postfix is not installed: bash deploy/local/services.sh postfix installs it"
        );
        let dir = std::env::temp_dir().join(herald_testing::unique("postfix"));
        std::fs::create_dir_all(dir.join("queue"))?;
        std::fs::create_dir_all(dir.join("data"))?;
        let port = free_port()?;
        let d = dir.display();
        let transport: String = routes
            .iter()
            .map(|(dom, t)| format!("{dom} {t}\n"))
            .collect();
        std::fs::write(dir.join("transport"), transport)?;
        let domains: Vec<&str> = routes.iter().map(|(dom, _)| *dom).collect();
        std::fs::write(
            dir.join("main.cf"),
            format!(
                "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.herald-test.localhost
mydestination =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_reject_unlisted_recipient = no
relay_domains = {domains}
transport_maps = texthash:{d}/transport
smtp_dns_support_level = disabled
smtp_tls_security_level = none
maillog_file_prefixes = /tmp, /var
maillog_file = {d}/maillog
maximal_queue_lifetime = 0
bounce_queue_lifetime = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 1s
",
                domains = domains.join(", ")
            ),
        )?;
        let stock = std::fs::read_to_string("/etc/postfix/master.cf")
            .context("reading Debian's /etc/postfix/master.cf")?;
        std::fs::write(dir.join("master.cf"), master_cf(&stock, port))?;
        let chown = Command::new("chown")
            .arg("postfix")
            .arg(dir.join("data"))
            .status()?;
        anyhow::ensure!(chown.success(), "chown postfix {d}/data failed");
        let out = Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(&dir)
            .arg("start")
            .output()?;
        let postfix = PrivatePostfix { port, dir };
        anyhow::ensure!(
            out.status.success(),
            "postfix -c {} start failed: {}{}\n{}",
            postfix.dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            postfix.log()
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "postfix did not listen on 127.0.0.1:{port}:\n{}",
                postfix.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(postfix)
    }

    /// Its mail log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }
}

impl Drop for PrivatePostfix {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(&self.dir)
            .arg("stop")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
