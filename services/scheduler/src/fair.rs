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
//!
//! Beside it, an express lane (decision 0024): a lane that was idle, whose
//! request fits in its small token bucket, is granted at once into the
//! channel's express queue, which the gate keeps a few hundred jobs deep
//! and workers consume beside the central queue. A newly arrived job of a
//! quiet tenant so overtakes both the central queue's backlog and the
//! gate's round; a busy lane empties its bucket and is served by the round.

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
    pub express: ExpressSettings,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            ahead: Duration::from_millis(500),
            min_depth: 256,
            max_depth: 20_000,
            express: ExpressSettings::default(),
        }
    }
}

/// Who may use the express lane, and how much it holds.
#[derive(Debug, Clone, Copy)]
pub struct ExpressSettings {
    /// Jobs the express queue of a channel may hold (0: no express lane).
    pub depth: u64,
    /// Jobs per second a lane of weight 1 may send express.
    pub rate: f64,
    /// Seconds of `rate` a lane that was idle may send at once.
    pub burst: f64,
}

impl Default for ExpressSettings {
    fn default() -> Self {
        ExpressSettings {
            depth: 256,
            rate: 32.0,
            burst: 2.0,
        }
    }
}

/// What a lane was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Jobs that may enter (at least one).
    pub jobs: usize,
    /// Into the express queue rather than the central queue.
    pub express: bool,
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
    /// The express bucket: jobs this lane may still send express, and when
    /// it was last refilled (`None`: never used, full).
    tokens: f64,
    refilled: Option<Instant>,
    /// When the round last granted this lane jobs.
    served: Option<Instant>,
}

impl Lane {
    /// Takes `want` jobs from the express bucket if the lane was idle and
    /// they fit. A lane the round served less than a burst's time ago is
    /// busy, not idle. A request that does not fit empties the bucket (the
    /// round serves it).
    fn take_express(&mut self, want: usize, settings: &ExpressSettings, now: Instant) -> bool {
        let busy = self
            .served
            .is_some_and(|at| now.saturating_duration_since(at).as_secs_f64() < settings.burst);
        let burst = settings.rate * settings.burst * self.weight;
        self.tokens = match self.refilled {
            None => burst,
            Some(at) => {
                let refill = now.duration_since(at).as_secs_f64() * settings.rate * self.weight;
                (self.tokens + refill).min(burst)
            }
        };
        self.refilled = Some(now);
        if !busy && want as f64 <= self.tokens {
            self.tokens -= want as f64;
            true
        } else {
            self.tokens = self.tokens.min(0.0);
            false
        }
    }
}

/// A channel's express queue, seen from the gate.
struct ExpressQueue {
    /// Jobs that may still enter before the next poll.
    budget: i64,
    /// Jobs per express queue message (EWMA).
    packing: f64,
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
    express: ExpressQueue,
}

impl ChannelGate {
    fn new(settings: &GateSettings) -> ChannelGate {
        ChannelGate {
            express: ExpressQueue {
                budget: settings.express.depth as i64,
                packing: 1.0,
            },
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
                    lane.served = Some(Instant::now());
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
    /// how many of `want` jobs may enter now (at least one), and whether
    /// they go express: at once, when the lane was idle and the express
    /// queue has room for all of them.
    pub async fn admit(
        &self,
        tenant: TenantId,
        channel: Channel,
        weight: u32,
        want: usize,
    ) -> Admission {
        if want == 0 {
            return Admission {
                jobs: 0,
                express: false,
            };
        }
        let express = self.settings.express;
        let rx = self.with(channel, |g| {
            let key = (tenant, channel);
            let lane = g.lanes.entry(key).or_default();
            lane.weight = f64::from(weight.max(1));
            let fresh = lane.waiting.is_empty();
            if fresh
                && express.depth > 0
                && g.express.budget >= want as i64
                && lane.take_express(want, &express, Instant::now())
            {
                g.express.budget -= want as i64;
                return Err(want);
            }
            let (tx, rx) = oneshot::channel();
            lane.waiting.push_back(Waiter { want, tx });
            if fresh && !g.ring.contains(&key) {
                g.ring.push_back(key);
            }
            g.dispatch();
            Ok(rx)
        });
        match rx {
            Err(jobs) => {
                metrics::counter!("herald_scheduler_express_jobs_total", "channel" => channel.as_str())
                    .increment(jobs as u64);
                Admission {
                    jobs,
                    express: true,
                }
            }
            Ok(rx) => Admission {
                jobs: rx.await.unwrap_or(want),
                express: false,
            },
        }
    }

    /// Gives back granted room a batch did not use (its jobs wait for
    /// provider capacity instead).
    pub fn unused(&self, channel: Channel, n: usize, express: bool) {
        if n == 0 {
            return;
        }
        self.with(channel, |g| {
            if express {
                g.express.budget += n as i64;
                return;
            }
            g.budget += n as i64;
            g.entered = g.entered.saturating_sub(n as u64);
            g.dispatch();
        });
    }

    /// Charges jobs that enter without waiting (retries from the return
    /// queue, held jobs placed at last, a grant's overdraw).
    pub fn charge(&self, channel: Channel, n: usize, express: bool) {
        self.with(channel, |g| {
            if express {
                g.express.budget -= n as i64;
                return;
            }
            g.budget -= n as i64;
            g.entered += n as u64;
        });
    }

    /// Feeds a fresh reading of the express queue's ready depth (in
    /// messages): what it may still take before the next reading.
    pub fn observe_express_depth(&self, channel: Channel, messages: u64) {
        let depth = self.settings.express.depth as i64;
        let jobs = self.with(channel, |g| {
            let jobs = (messages as f64 * g.express.packing).round() as i64;
            g.express.budget = depth - jobs;
            jobs
        });
        metrics::gauge!("herald_scheduler_express_depth", "channel" => channel.as_str())
            .set(jobs as f64);
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

    /// Notes that `jobs` jobs went to `channel`'s central (or express)
    /// queue in `messages` messages, so that depths read in messages
    /// convert to jobs.
    pub fn packed(&self, channel: Channel, jobs: usize, messages: usize, express: bool) {
        if messages == 0 {
            return;
        }
        self.with(channel, |g| {
            let per = jobs as f64 / messages as f64;
            let packing = if express {
                &mut g.express.packing
            } else {
                &mut g.packing
            };
            *packing = 0.9 * *packing + 0.1 * per;
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
            batched.packed(Channel::Email, 16, 1, false);
        }
        batched.observe_depth(Channel::Email, 20);
        let budget = batched.with(Channel::Email, |g| g.budget);
        assert!((-70..=-60).contains(&budget), "budget {budget}");
        // Single jobs: 20 messages are 20 jobs.
        let single = Gate::new(GateSettings::default());
        single.packed(Channel::Email, 5, 5, false);
        single.observe_depth(Channel::Email, 20);
        assert_eq!(single.with(Channel::Email, |g| g.budget), 236);
        // Another channel keeps its own packing.
        batched.observe_depth(Channel::Wework, 20);
        assert_eq!(batched.with(Channel::Wework, |g| g.budget), 236);
    }

    fn no_express() -> ExpressSettings {
        ExpressSettings {
            depth: 0,
            ..ExpressSettings::default()
        }
    }

    #[tokio::test]
    async fn a_small_lane_is_served_in_the_next_round() {
        let gate = Arc::new(Gate::new(GateSettings {
            min_depth: 1,
            express: no_express(),
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
        gate.unused(Channel::Email, 2 * QUANTUM as usize, false);
        let granted = tokio::time::timeout(Duration::from_secs(1), small_task)
            .await
            .expect("the small lane waited behind the big backlog")
            .expect("task");
        assert_eq!(
            granted,
            Admission {
                jobs: 3,
                express: false
            }
        );
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
            express: no_express(),
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
            express: no_express(),
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

    /// Admits a new lane's request, failing the test if it has to wait.
    async fn admit_now(gate: &Gate, tenant: TenantId, weight: u32, want: usize) -> Admission {
        tokio::time::timeout(
            Duration::from_millis(200),
            gate.admit(tenant, Channel::Email, weight, want),
        )
        .await
        .expect("the request waited: the central queue is full and it did not go express")
    }

    /// A gate whose central queue is full: nothing enters by the round.
    fn full_gate() -> Arc<Gate> {
        let gate = Arc::new(Gate::new(GateSettings::default()));
        gate.observe_depth(Channel::Email, 100_000);
        gate
    }

    #[tokio::test]
    async fn a_quiet_lane_goes_express_while_the_central_queue_is_full() {
        let gate = full_gate();
        let small = tenant();
        let got = admit_now(&gate, small, 1, 5).await;
        assert_eq!(
            got,
            Admission {
                jobs: 5,
                express: true
            }
        );
    }

    #[tokio::test]
    async fn a_request_larger_than_the_bucket_waits_for_its_turn() {
        let gate = full_gate();
        let big = tenant();
        // 64 jobs fit the bucket of a lane of weight 1 (32/s × 2 s) ...
        let first = admit_now(&gate, big, 1, 64).await;
        assert!(first.express, "{first:?}");
        // ... the next 256 do not: they wait in the round (the queue is full).
        let waited = tokio::time::timeout(
            Duration::from_millis(50),
            gate.admit(big, Channel::Email, 1, 256),
        )
        .await;
        assert!(waited.is_err(), "a busy lane's request went express");
        // A lane of weight 8 has a bucket 8 times larger: 128 fit (and the
        // express queue has room for 192 more).
        let heavy = admit_now(&gate, tenant(), 8, 128).await;
        assert!(heavy.express, "{heavy:?}");
    }

    #[tokio::test]
    async fn a_lane_waiting_for_its_turn_earns_no_express_jobs() {
        let gate = full_gate();
        let big = tenant();
        assert!(admit_now(&gate, big, 1, 64).await.express);
        // The busy lane waits in the round for a second (the queue is full),
        // then the workers make room and the round serves it.
        let g = gate.clone();
        let waiting = tokio::spawn(async move { g.admit(big, Channel::Email, 1, 32).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        gate.observe_depth(Channel::Email, 0);
        let served = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the round served the lane")
            .expect("task");
        assert!(!served.express);
        // A second of waiting would have refilled 32, but the lane was
        // served by the round just now: it is busy.
        gate.observe_depth(Channel::Email, 100_000);
        let next = tokio::time::timeout(
            Duration::from_millis(50),
            gate.admit(big, Channel::Email, 1, 32),
        )
        .await;
        assert!(next.is_err(), "the busy lane went express after its turn");
    }

    #[tokio::test]
    async fn the_express_queue_holds_no_more_than_its_depth() {
        let gate = full_gate();
        // 256 jobs of room: eight quiet lanes of 32 fill it.
        for _ in 0..8 {
            assert!(admit_now(&gate, tenant(), 1, 32).await.express);
        }
        let ninth = tokio::time::timeout(
            Duration::from_millis(50),
            gate.admit(tenant(), Channel::Email, 1, 1),
        )
        .await;
        assert!(ninth.is_err(), "the express queue took more than its depth");
        // Workers took half of it: room again. Jobs that did not enter
        // give their room back too.
        gate.observe_express_depth(Channel::Email, 128);
        assert!(admit_now(&gate, tenant(), 1, 32).await.express);
        gate.unused(Channel::Email, 32, true);
        assert!(admit_now(&gate, tenant(), 1, 32).await.express);
    }

    #[tokio::test]
    async fn without_an_express_depth_every_lane_takes_its_turn() {
        let gate = Arc::new(Gate::new(GateSettings {
            express: no_express(),
            ..GateSettings::default()
        }));
        // (Its central queue is empty, so the round grants at once.)
        let got = admit_now(&gate, tenant(), 1, 5).await;
        assert_eq!(
            got,
            Admission {
                jobs: 5,
                express: false
            }
        );
    }

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_burst() {
        let settings = ExpressSettings::default();
        let mut lane = Lane {
            weight: 1.0,
            ..Lane::default()
        };
        let t0 = Instant::now();
        assert!(lane.take_express(64, &settings, t0));
        assert!(!lane.take_express(1, &settings, t0));
        // Half a second refills 16 jobs.
        let t1 = t0 + Duration::from_millis(500);
        assert!(!lane.take_express(17, &settings, t1));
        // A refused request empties the bucket: 16 more after another half.
        let t2 = t1 + Duration::from_millis(500);
        assert!(lane.take_express(16, &settings, t2));
        // A long idle time refills no more than the burst.
        let t3 = t2 + Duration::from_secs(3600);
        assert!(!lane.take_express(65, &settings, t3));
    }

    #[test]
    fn a_lane_the_round_served_is_busy_for_a_bursts_time() {
        let settings = ExpressSettings::default();
        let t0 = Instant::now();
        let mut lane = Lane {
            weight: 1.0,
            served: Some(t0),
            ..Lane::default()
        };
        assert!(!lane.take_express(1, &settings, t0 + Duration::from_millis(1_900)));
        assert!(lane.take_express(1, &settings, t0 + Duration::from_millis(2_100)));
    }

    proptest::proptest! {
        /// However a lane asks, what it sends express in any stretch of
        /// time is at most its burst plus its rate over that stretch.
        #[test]
        fn a_lane_never_sends_more_express_than_its_bucket_allows(
            steps in proptest::collection::vec((0u64..400, 1usize..80), 1..200),
            weight in 1u32..5,
        ) {
            let settings = ExpressSettings::default();
            let mut lane = Lane { weight: f64::from(weight), ..Lane::default() };
            let t0 = Instant::now();
            let mut now = t0;
            let mut taken: Vec<(Instant, usize)> = Vec::new();
            for (gap_ms, want) in steps {
                now += Duration::from_millis(gap_ms);
                if lane.take_express(want, &settings, now) {
                    taken.push((now, want));
                }
            }
            let w = f64::from(weight);
            let burst = settings.rate * settings.burst * w;
            for (i, (from, _)) in taken.iter().enumerate() {
                let mut sum = 0usize;
                for (at, n) in &taken[i..] {
                    sum += n;
                    let span = at.duration_since(*from).as_secs_f64();
                    proptest::prop_assert!(
                        sum as f64 <= burst + settings.rate * w * span + 1e-6,
                        "{sum} jobs in {span} s"
                    );
                }
            }
        }
    }
}
