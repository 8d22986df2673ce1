//! A TCP relay that can partition: Herald's producer reaches RabbitMQ
//! through it, and a test or the chaos run cuts the network between them
//! without either side noticing at once — no bytes move in either
//! direction, connections stay open — then drops the connections, and
//! with them whatever the partition held back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Bytes read per pass: small, so that a partition holds back whatever
/// arrives after it (a pass already read is written unless the partition
/// began meanwhile).
const CHUNK: usize = 16 * 1024;

pub struct Relay {
    port: u16,
    open: watch::Sender<bool>,
    pipes: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Listens on a free loopback port and forwards each connection to
    /// `upstream`.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("the relay cannot listen")?;
        let port = listener.local_addr()?.port();
        let (open, open_rx) = watch::channel(true);
        let pipes: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let pipes = pipes.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let mut pipes = pipes.lock().unwrap_or_else(|e| e.into_inner());
                    pipes.retain(|p| !p.is_finished());
                    pipes.push(tokio::spawn(pump(cr, sw, open_rx.clone())));
                    pipes.push(tokio::spawn(pump(sr, cw, open_rx.clone())));
                }
            }
        });
        Ok(Relay {
            port,
            open,
            pipes,
            accept,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// An AMQP URL (guest/guest) through this relay.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops forwarding in both directions; connections stay open.
    pub fn partition(&self) {
        let _ = self.open.send(false);
    }

    /// Forwards again (new connections too).
    pub fn heal(&self) {
        let _ = self.open.send(true);
    }

    /// Closes every relayed connection; bytes held back by a partition
    /// are dropped.
    pub fn drop_connections(&self) {
        let pipes = std::mem::take(&mut *self.pipes.lock().unwrap_or_else(|e| e.into_inner()));
        for pipe in pipes {
            pipe.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut open: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        if open.wait_for(|o| *o).await.is_err() {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            // A partition that begins while waiting for bytes: stop
            // reading at once, so the bytes stay unread.
            _ = open.wait_for(|o| !*o) => continue,
        };
        // Read before the partition began but not yet forwarded: held
        // back until it heals (or dropped with the connection).
        if open.wait_for(|o| *o).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
