//! Group commit: the requests of a tenant that arrive while earlier groups
//! are in flight are committed together (one key lookup, one transaction,
//! one batched publish per channel and band, one wait for confirms).
//!
//! No timer holds a request back. At most `in_flight` groups run at once;
//! a request that finds a free slot starts at once, alone, and requests
//! that arrive while every slot is busy wait for the next free one and go
//! together. The window is therefore as long as a commit takes and adapts
//! to the load: one request per group when the producer is idle, dozens
//! when hundreds of clients send one message each (decision 0020).
//! Tenants take turns: the tenant whose oldest request waited longest goes
//! next, so a flood of one tenant's requests does not delay another's.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use herald_domain::TenantId;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::api::error::ApiError;
use crate::enqueue::{commit_group, Answer, Pipeline, Request};

/// How requests are grouped.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct GroupSettings {
    /// Groups committed at once (each holds a database connection while it
    /// commits); requests arriving while all are busy join the next group.
    /// Fewer make larger groups (less CPU per send); two keep one large
    /// batch from holding every other request back (decision 0020).
    #[arg(long, env = "HERALD_PRODUCER_COMMITS_IN_FLIGHT", default_value_t = 2)]
    pub commits_in_flight: usize,
    /// Messages per group at most; a larger request goes alone. 1 commits
    /// every request on its own (no grouping).
    #[arg(long, env = "HERALD_PRODUCER_GROUP_MAX", default_value_t = 1000)]
    pub group_max: usize,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            commits_in_flight: 2,
            group_max: 1000,
        }
    }
}

struct Waiting {
    tenant: TenantId,
    request: Request,
    reply: oneshot::Sender<Answer>,
}

/// The handle requests submit to; cheap to clone.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::UnboundedSender<Waiting>,
}

impl Committer {
    /// Starts the committer over `pipeline`. It stops when every handle is
    /// dropped and the groups in flight are done.
    pub fn start(pipeline: Pipeline, settings: GroupSettings) -> Committer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pipeline, settings, rx));
        Committer { tx }
    }

    /// Commits `request` in the next group of `tenant`'s requests and
    /// waits for its own answer.
    pub async fn commit(&self, tenant: TenantId, request: Request) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Waiting {
                tenant,
                request,
                reply,
            })
            .map_err(|_| ApiError::unavailable("the producer is stopping; retry", 1))?;
        answer
            .await
            .unwrap_or_else(|e| Err(ApiError::internal("The enqueue task failed", e)))
    }
}

/// Requests waiting for a slot, per tenant, tenants in the order their
/// oldest request arrived.
#[derive(Default)]
struct Queue {
    order: VecDeque<TenantId>,
    by_tenant: HashMap<TenantId, VecDeque<Waiting>>,
}

impl Queue {
    fn push(&mut self, w: Waiting) {
        let lane = self.by_tenant.entry(w.tenant).or_default();
        if lane.is_empty() {
            self.order.push_back(w.tenant);
        }
        lane.push_back(w);
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The next tenant's group: its oldest request, and those after it
    /// while the group stays within `max` messages.
    fn next_group(&mut self, max: usize) -> Option<(TenantId, Vec<Waiting>)> {
        let tenant = self.order.pop_front()?;
        let lane = self.by_tenant.get_mut(&tenant)?;
        let mut group = Vec::new();
        let mut messages = 0;
        while let Some(w) = lane.front() {
            let n = w.request.items.len();
            if !group.is_empty() && messages + n > max {
                break;
            }
            messages += n;
            group.extend(lane.pop_front());
        }
        if lane.is_empty() {
            self.by_tenant.remove(&tenant);
        } else {
            // The rest waits its turn behind the other tenants.
            self.order.push_back(tenant);
        }
        Some((tenant, group))
    }
}

async fn run(
    pipeline: Pipeline,
    settings: GroupSettings,
    mut rx: mpsc::UnboundedReceiver<Waiting>,
) {
    let slots = Arc::new(Semaphore::new(settings.commits_in_flight.max(1)));
    let mut queue = Queue::default();
    let mut open = true;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if queue.is_empty() {
            if !open {
                return;
            }
            match rx.recv().await {
                Some(w) => queue.push(w),
                None => return,
            }
        }
        // Everything that arrived meanwhile joins the queue before the
        // next group is cut.
        loop {
            match rx.try_recv() {
                Ok(w) => queue.push(w),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let Some((tenant, group)) = queue.next_group(settings.group_max.max(1)) else {
            continue;
        };
        let pipeline = pipeline.clone();
        tokio::spawn(async move {
            let _slot = slot;
            metrics::histogram!("herald_producer_group_requests").record(group.len() as f64);
            let (requests, replies): (Vec<Request>, Vec<oneshot::Sender<Answer>>) =
                group.into_iter().map(|w| (w.request, w.reply)).unzip();
            let answers = commit_group(&pipeline, tenant, requests).await;
            for (reply, answer) in replies.into_iter().zip(answers) {
                // A caller that went away no longer listens; its jobs are
                // committed all the same.
                let _ = reply.send(answer);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(tenant: TenantId, messages: usize) -> (Waiting, oneshot::Receiver<Answer>) {
        let (reply, rx) = oneshot::channel();
        let items = (0..messages)
            .map(|n| {
                crate::enqueue::Item::new(
                    herald_api::SendMessage::email(format!("u{n}@example.com"), "s", "b"),
                    chrono::Utc::now(),
                )
                .expect("a valid message")
            })
            .collect();
        (
            Waiting {
                tenant,
                request: Request {
                    items,
                    trace: Default::default(),
                    limits: Default::default(),
                    tracking: Default::default(),
                },
                reply,
            },
            rx,
        )
    }

    fn sizes(group: &[Waiting]) -> Vec<usize> {
        group.iter().map(|w| w.request.items.len()).collect()
    }

    #[test]
    fn a_group_is_one_tenants_requests_within_the_limit_and_tenants_take_turns() {
        let (a, b) = (TenantId::new(), TenantId::new());
        let mut q = Queue::default();
        let mut keep = Vec::new();
        for (t, n) in [(a, 1), (a, 1), (b, 10), (a, 998), (a, 5), (b, 1)] {
            let (w, rx) = waiting(t, n);
            keep.push(rx);
            q.push(w);
        }
        let (t, g) = q.next_group(1000).expect("a group");
        assert_eq!((t, sizes(&g)), (a, vec![1, 1, 998]));
        let (t, g) = q.next_group(1000).expect("a group");
        assert_eq!((t, sizes(&g)), (b, vec![10, 1]));
        let (t, g) = q.next_group(1000).expect("a group");
        assert_eq!((t, sizes(&g)), (a, vec![5]));
        assert!(q.next_group(1000).is_none() && q.is_empty());
    }

    #[test]
    fn a_request_over_the_limit_goes_alone_and_a_limit_of_one_never_groups() {
        let a = TenantId::new();
        let mut q = Queue::default();
        let mut keep = Vec::new();
        for n in [1200, 1, 1] {
            let (w, rx) = waiting(a, n);
            keep.push(rx);
            q.push(w);
        }
        assert_eq!(sizes(&q.next_group(1000).expect("a group").1), vec![1200]);
        assert_eq!(sizes(&q.next_group(1).expect("a group").1), vec![1]);
        assert_eq!(sizes(&q.next_group(1).expect("a group").1), vec![1]);
    }
}
