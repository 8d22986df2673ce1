use tokio::sync::watch;

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("Shutdown signal received; stopping.");
}

/// A shutdown that many tasks can watch: cheap to clone, handed to every
/// task, and selected on beside each loop's work with [`Shutdown::wait`].
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The side that fires a [`Shutdown`]: held by `supervise`, by a service's
/// `run` for its own tasks, and by tests.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

impl Trigger {
    /// Fires the shutdown; every waiting task wakes. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Another handle on the shutdown this trigger fires.
    pub fn shutdown(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

impl Shutdown {
    /// A trigger and the shutdown it fires.
    pub fn new() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Trigger { tx }, Shutdown { rx })
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown was triggered (at once if it already was).
    /// Cancel-safe, so it can sit in a `tokio::select!` loop.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// The underlying watch, for crates below this one (the store's catalog)
    /// that take a `watch::Receiver<bool>`.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_triggered_shutdown_wakes_every_clone_and_stays_triggered() {
        let (trigger, shutdown) = Shutdown::new();
        let other = trigger.shutdown();
        assert!(!shutdown.is_triggered());
        let waiting = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.wait().await }
        });
        trigger.trigger();
        waiting.await.expect("the waiting task");
        other.wait().await;
        assert!(shutdown.is_triggered() && other.is_triggered());
    }
}
