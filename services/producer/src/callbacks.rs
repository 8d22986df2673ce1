//! Provider callbacks leave the producer in batches: the events of
//! requests that arrive while earlier publishes are waiting for their
//! confirms travel together, as one `CallbackBatch` with one confirm, and
//! each request is answered when its batch is confirmed (decision 0027).
//! A callback alone costs one publish, as before; a burst costs one per
//! batch.

use std::sync::Arc;

use herald_broker::{Outbound, Publisher, Topology};
use herald_proto::v1;
use herald_proto::Message as _;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Events in one batch at most.
const MAX_BATCH: usize = 256;
/// Publishes waiting for their confirms at once; while all wait, new
/// events gather into the next batch.
const IN_FLIGHT: usize = 4;

type Reply = oneshot::Sender<Result<(), String>>;

/// The handle request handlers queue their events through.
#[derive(Clone)]
pub struct CallbackPublisher {
    tx: mpsc::Sender<(v1::CallbackEvent, Reply)>,
}

impl CallbackPublisher {
    pub fn start(publisher: Publisher, topology: Topology) -> CallbackPublisher {
        let (tx, rx) = mpsc::channel(MAX_BATCH * IN_FLIGHT * 4);
        tokio::spawn(run(rx, publisher, topology.callbacks_queue()));
        CallbackPublisher { tx }
    }

    /// Queues `event` and waits until the broker confirmed its batch;
    /// `Err` says why it was not (the caller answers 503).
    pub async fn publish(&self, event: v1::CallbackEvent) -> Result<(), String> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((event, reply))
            .await
            .map_err(|_| "the callback publisher stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the callback publisher stopped".to_owned())?
    }
}

async fn run(
    mut rx: mpsc::Receiver<(v1::CallbackEvent, Reply)>,
    publisher: Publisher,
    queue: String,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // Take a slot first: while every slot waits for a confirm, events
        // gather in the channel and leave together.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        metrics::histogram!("herald_producer_callback_batch").record(batch.len() as f64);
        let (events, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let body = v1::CallbackBatch { events }.encode_to_vec();
        let msg = Outbound {
            exchange: String::new(),
            routing_key: queue.clone(),
            body,
            priority: 0,
            headers: None,
        };
        let publisher = publisher.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let result = publisher.publish(&msg).await.map_err(|e| e.to_string());
            for reply in replies {
                let _ = reply.send(result.clone());
            }
        });
    }
}
