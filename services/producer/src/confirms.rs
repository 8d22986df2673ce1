//! Recording the broker's confirms: the outbox rows of confirmed jobs are
//! deleted in one statement for all the requests confirmed meanwhile, off
//! the request's path. A confirm that is never recorded (the producer dies
//! first, or PostgreSQL refuses) costs a second copy of the job from the
//! leader's reconciler, which the worker's claim makes harmless; a request
//! never waits for it.

use std::time::Duration;

use herald_store::Store;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Ids recorded per statement at most.
const MAX_BATCH: usize = 5_000;
/// Tries per batch before it is left to the reconciler.
const TRIES: u32 = 3;

enum Note {
    Confirmed(Vec<Uuid>),
    Flush(oneshot::Sender<()>),
}

/// The handle requests use; cheap to clone.
#[derive(Clone)]
pub struct Confirms {
    tx: mpsc::UnboundedSender<Note>,
}

impl Confirms {
    /// Starts the recorder on `store`.
    pub fn start(store: Store) -> Confirms {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(record(store, rx));
        Confirms { tx }
    }

    /// Notes that the broker confirmed these messages' jobs.
    pub fn confirmed(&self, ids: Vec<Uuid>) {
        if !ids.is_empty() {
            let _ = self.tx.send(Note::Confirmed(ids));
        }
    }

    /// Waits until every confirm noted so far was recorded (or given up):
    /// a stopping producer calls it last.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Note::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn record(store: Store, mut rx: mpsc::UnboundedReceiver<Note>) {
    while let Some(first) = rx.recv().await {
        let mut ids = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(note) = next.take() {
            match note {
                Note::Confirmed(more) => ids.extend(more),
                Note::Flush(done) => flushes.push(done),
            }
            if ids.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        write(&store, &ids).await;
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn write(store: &Store, ids: &[Uuid]) {
    if ids.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=TRIES {
        match store.confirmed(ids).await {
            Ok(_) => {
                metrics::counter!("herald_producer_confirms_recorded_total")
                    .increment(ids.len() as u64);
                return;
            }
            Err(e) if attempt < TRIES => {
                tracing::warn!(error = %e, count = ids.len(), "Failed to record confirms; retrying.");
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            Err(e) => {
                metrics::counter!("herald_producer_confirms_unrecorded_total")
                    .increment(ids.len() as u64);
                tracing::warn!(error = %e, count = ids.len(), "Failed to record confirms; the reconciler will publish these jobs again (the worker's claim sends each once).");
            }
        }
    }
}
