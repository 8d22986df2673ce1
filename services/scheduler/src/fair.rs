//! The fair gate between the user queues and the central queues.
//!
//! Every drain asks the gate before it places a batch. The gate grants
//! jobs by deficit round robin across the (tenant, channel) lanes that are
//! waiting, each lane earning `QUANTUM × tenant weight` per round, and only
//! as many as the central queue has room for: its target depth follows how
//! fast workers take jobs (`ahead` seconds of work), so the central queue
//! stays short and a small tenant's job enters it within one round, behind
//! at most `ahead` seconds of other work — however much a big tenant has
//! queued.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald_domain::{Channel, TenantId};
use tokio::sync::oneshot;

/// Jobs a lane of weight 1 earns per round.
pub const QUANTUM: f64 = 16.0;

/// How the target depth of a central queue is set.
#[derive(Debug, Clone, Copy)]
pub struct GateSettings {
    /// Seconds of work to keep ready in each central queue.
    pub ahead: Duration,
    /// Target depth bounds.
    pub min_depth: u64,
    pub max_depth: u64,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            ahead: Duration::from_millis(500),
            min_depth: 256,
            max_depth: 20_000,
        }
    }
}

type LaneKey = (TenantId, Channel);

struct Waiter {
    want: usize,
    tx: oneshot::Sender<usize>,
}

#[derive(Default)]
struct Lane {
    weight: f64,
    deficit: f64,
    waiting: VecDeque<Waiter>,
}

struct ChannelGate {
    /// Jobs that may still enter the central queue before the next poll.
    budget: i64,
    target: f64,
    /// Jobs workers take per second (EWMA).
    rate: f64,
    last_depth: Option<u64>,
    last_poll: Instant,
    /// Jobs charged since the last poll.
    entered: u64,
    /// Lanes waited for want of budget since the last poll.
    throttled: bool,
    /// Jobs per central queue message (EWMA): the queue's depth counts
    /// messages, each a batch of jobs.
    packing: f64,
    ring: VecDeque<LaneKey>,
    lanes: HashMap<LaneKey, Lane>,
}

impl ChannelGate {
    fn new(settings: &GateSettings) -> ChannelGate {
        ChannelGate {
            budget: settings.min_depth as i64,
            target: settings.min_depth as f64,
            rate: 0.0,
            last_depth: None,
            last_poll: Instant::now(),
            entered: 0,
            throttled: false,
            packing: 1.0,
            ring: VecDeque::new(),
            lanes: HashMap::new(),
        }
    }

    /// Serves waiting lanes in deficit round robin while there is budget.
    fn dispatch(&mut self) {
        let mut idle_visits = 0;
        while self.budget > 0 && !self.ring.is_empty() && idle_visits <= self.ring.len() {
            let Some(key) = self.ring.pop_front() else {
                break;
            };
            let Some(lane) = self.lanes.get_mut(&key) else {
                continue;
            };
            lane.waiting.retain(|w| !w.tx.is_closed());
            if lane.waiting.is_empty() {
                lane.deficit = 0.0;
                continue;
            }
            lane.deficit += QUANTUM * lane.weight;
            let mut granted_any = false;
            while let Some(w) = lane.waiting.front() {
                let grant = (lane.deficit.floor() as i64)
                    .min(w.want as i64)
                    .min(self.budget);
                if grant < 1 {
                    break;
                }
                let Some(w) = lane.waiting.pop_front() else {
                    break;
                };
                if w.tx.send(grant as usize).is_ok() {
                    lane.deficit -= grant as f64;
                    self.budget -= grant;
                    self.entered += grant as u64;
                    granted_any = true;
                }
            }
            if lane.waiting.is_empty() {
                // An empty lane keeps no credit (standard DRR).
                lane.deficit = 0.0;
            } else {
                self.ring.push_back(key);
            }
            idle_visits = if granted_any { 0 } else { idle_visits + 1 };
        }
        if self.budget <= 0 && !self.ring.is_empty() {
            self.throttled = true;
        }
    }
}

/// The gate every drain of one scheduler shares.
pub struct Gate {
    settings: GateSettings,
    channels: Mutex<HashMap<Channel, ChannelGate>>,
}

impl Gate {
    pub fn new(settings: GateSettings) -> Gate {
        Gate {
            settings,
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, channel: Channel, f: impl FnOnce(&mut ChannelGate) -> T) -> T {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let gate = channels
            .entry(channel)
            .or_insert_with(|| ChannelGate::new(&self.settings));
        f(gate)
    }

    /// Waits for this lane's turn and room in the central queue; returns
    /// how many of `want` jobs may enter now (at least one).
    pub async fn admit(
        &self,
        tenant: TenantId,
        channel: Channel,
        weight: u32,
        want: usize,
    ) -> usize {
        if want == 0 {
            return 0;
        }
        let rx = self.with(channel, |g| {
            let (tx, rx) = oneshot::channel();
            let key = (tenant, channel);
            let lane = g.lanes.entry(key).or_default();
            lane.weight = f64::from(weight.max(1));
            let fresh = lane.waiting.is_empty();
            lane.waiting.push_back(Waiter { want, tx });
            if fresh && !g.ring.contains(&key) {
                g.ring.push_back(key);
            }
            g.dispatch();
            rx
        });
        rx.await.unwrap_or(want)
    }

    /// Gives back granted room a batch did not use (its jobs wait for
    /// provider capacity instead).
    pub fn unused(&self, channel: Channel, n: usize) {
        if n == 0 {
            return;
        }
        self.with(channel, |g| {
            g.budget += n as i64;
            g.entered = g.entered.saturating_sub(n as u64);
            g.dispatch();
        });
    }

    /// Charges jobs that enter without waiting (retries from the return
    /// queue, held jobs placed at last).
    pub fn charge(&self, channel: Channel, n: usize) {
        self.with(channel, |g| {
            g.budget -= n as i64;
            g.entered += n as u64;
        });
    }

    /// Feeds a fresh reading of the central queue's ready depth: learns the
    /// workers' rate, adapts the target and refills the budget.
    pub fn observe_depth(&self, channel: Channel, messages: u64) {
        let settings = self.settings;
        let depth = self.with(channel, |g| {
            // In jobs: messages times the jobs each carried lately.
            let depth = (messages as f64 * g.packing).round() as u64;
            let now = Instant::now();
            let dt = now.duration_since(g.last_poll).as_secs_f64().max(1e-3);
            // Workers emptied the queue while the gate held lanes back: the
            // target is too small. (An empty queue while the scheduler
            // itself lags behind is no reason to grow it.)
            let starving = depth == 0 && g.throttled;
            if let Some(last) = g.last_depth {
                let taken = (last + g.entered).saturating_sub(depth) as f64;
                let rate = taken / dt;
                g.rate = if g.rate == 0.0 {
                    rate
                } else {
                    0.8 * g.rate + 0.2 * rate
                };
            }
            let desired = (g.rate * settings.ahead.as_secs_f64()).max(settings.min_depth as f64);
            g.target = if starving {
                (g.target * 1.25).max(desired)
            } else {
                (g.target * 0.9).max(desired)
            }
            .min(settings.max_depth as f64);
            g.throttled = false;
            g.budget = g.target as i64 - depth as i64;
            g.last_depth = Some(depth);
            g.last_poll = now;
            g.entered = 0;
            g.dispatch();
            depth
        });
        metrics::gauge!("herald_scheduler_central_depth", "channel" => channel.as_str())
            .set(depth as f64);
        let (target, rate) = self.target(channel);
        metrics::gauge!("herald_scheduler_central_target", "channel" => channel.as_str())
            .set(target);
        metrics::gauge!("herald_scheduler_worker_rate", "channel" => channel.as_str()).set(rate);
    }

    /// Notes that `jobs` jobs went to `channel`'s central queue in
    /// `messages` messages, so that depths read in messages convert to jobs.
    pub fn packed(&self, channel: Channel, jobs: usize, messages: usize) {
        if messages == 0 {
            return;
        }
        self.with(channel, |g| {
            let per = jobs as f64 / messages as f64;
            g.packing = 0.9 * g.packing + 0.1 * per;
        });
    }

    /// The current target depth and learned rate (metrics, tests).
    pub fn target(&self, channel: Channel) -> (f64, f64) {
        self.with(channel, |g| (g.target, g.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use uuid::Uuid;

    fn tenant() -> TenantId {
        TenantId(Uuid::new_v4())
    }

    #[test]
    fn grants_follow_tenant_weights_when_room_is_scarce() {
        let mut g = ChannelGate::new(&GateSettings::default());
        g.budget = 0;
        let (a, b) = (tenant(), tenant());
        let mut receivers: Vec<(TenantId, oneshot::Receiver<usize>)> = Vec::new();
        for (t, w) in [(a, 1.0), (b, 3.0)] {
            let lane = g.lanes.entry((t, Channel::Email)).or_default();
            lane.weight = w;
            for _ in 0..100 {
                let (tx, rx) = oneshot::channel();
                lane.waiting.push_back(Waiter { want: 64, tx });
                receivers.push((t, rx));
            }
            g.ring.push_back((t, Channel::Email));
        }
        g.budget = 1_280;
        g.dispatch();
        let mut got: HashMap<TenantId, usize> = HashMap::new();
        for (t, mut rx) in receivers {
            if let Ok(n) = rx.try_recv() {
                *got.entry(t).or_default() += n;
            }
        }
        assert_eq!(got[&a] + got[&b], 1_280, "{got:?}");
        let share = got[&b] as f64 / 1_280.0;
        assert!((share - 0.75).abs() < 0.03, "weight 3 of 4 got {share}");
    }

    #[test]
    fn a_central_depth_in_messages_is_read_as_jobs() {
        // Batches of 16: 20 messages are 320 jobs, over the 256 target.
        let batched = Gate::new(GateSettings::default());
        for _ in 0..100 {
            batched.packed(Channel::Email, 16, 1);
        }
        batched.observe_depth(Channel::Email, 20);
        let budget = batched.with(Channel::Email, |g| g.budget);
        assert!((-70..=-60).contains(&budget), "budget {budget}");
        // Single jobs: 20 messages are 20 jobs.
        let single = Gate::new(GateSettings::default());
        single.packed(Channel::Email, 5, 5);
        single.observe_depth(Channel::Email, 20);
        assert_eq!(single.with(Channel::Email, |g| g.budget), 236);
        // Another channel keeps its own packing.
        batched.observe_depth(Channel::Wework, 20);
        assert_eq!(batched.with(Channel::Wework, |g| g.budget), 236);
    }

    #[tokio::test]
    async fn a_small_lane_is_served_in_the_next_round() {
        let gate = Arc::new(Gate::new(GateSettings {
            min_depth: 1,
            ..GateSettings::default()
        }));
        gate.observe_depth(Channel::Email, 1);
        let big = tenant();
        let small = tenant();
        // The big lane queues many requests first.
        let mut bigs = Vec::new();
        for _ in 0..50 {
            let gate = gate.clone();
            bigs.push(tokio::spawn(async move {
                gate.admit(big, Channel::Email, 1, 64).await
            }));
        }
        tokio::task::yield_now().await;
        let g2 = gate.clone();
        let small_task = tokio::spawn(async move { g2.admit(small, Channel::Email, 1, 3).await });
        tokio::task::yield_now().await;
        // Two quanta of room: the big lane takes one, the small lane the next.
        gate.unused(Channel::Email, 2 * QUANTUM as usize);
        let granted = tokio::time::timeout(Duration::from_secs(1), small_task)
            .await
            .expect("the small lane waited behind the big backlog")
            .expect("task");
        assert_eq!(granted, 3);
        for b in bigs {
            b.abort();
        }
    }

    #[test]
    fn the_target_follows_the_workers_rate() {
        let gate = Gate::new(GateSettings {
            ahead: Duration::from_secs(1),
            min_depth: 10,
            max_depth: 100_000,
        });
        gate.observe_depth(Channel::Email, 5_000);
        std::thread::sleep(Duration::from_millis(100));
        // 1,000 taken in 0.1 s: 10,000 a second.
        gate.observe_depth(Channel::Email, 4_000);
        let (target, rate) = gate.target(Channel::Email);
        assert!(rate > 5_000.0 && rate < 11_000.0, "rate {rate}");
        assert!(target >= rate * 0.9, "target {target} for rate {rate}");
    }

    #[test]
    fn an_empty_queue_grows_the_target_only_when_the_gate_held_lanes_back() {
        let settings = GateSettings {
            ahead: Duration::from_millis(1),
            min_depth: 100,
            max_depth: 10_000,
        };
        let gate = Gate::new(settings);
        // The scheduler lags (nothing waits at the gate): no growth.
        for _ in 0..10 {
            gate.observe_depth(Channel::Email, 0);
        }
        assert_eq!(gate.target(Channel::Email).0, 100.0);
        // Lanes wait for budget and workers empty the queue: it grows.
        gate.with(Channel::Email, |g| {
            let key = (tenant(), Channel::Email);
            let (tx, _rx) = oneshot::channel();
            g.lanes
                .entry(key)
                .or_default()
                .waiting
                .push_back(Waiter { want: 1_000, tx });
            g.ring.push_back(key);
            g.budget = 0;
            g.dispatch();
            assert!(g.throttled);
        });
        gate.observe_depth(Channel::Email, 0);
        assert!(gate.target(Channel::Email).0 > 100.0);
    }
}
