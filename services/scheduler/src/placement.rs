//! Placing a job on a provider: rank the providers a (tenant, channel) may
//! use by score (refreshed from Redis twice a second), draw one among the
//! best, and make the placement real with one reservation script.
//! Providers a reservation found full are skipped locally until the time
//! the script named, so a saturated pool costs no Redis round trips.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use herald_capacity::{
    Ask, Capacity, CapacityError, Full, HealthPolicy, ProviderLoad, Reservation,
};
use herald_domain::Channel;
use herald_proto::v1;
use herald_runtime::Shutdown;
use herald_scoring::{score, ProviderView, Ranking, Score, ScoreWeights};
use herald_store::catalog::ProviderCatalog;
use uuid::Uuid;

/// Reservation attempts per placement before the job waits: the ranking
/// is best first, so more rarely helps and a saturated pool stays cheap.
const MAX_TRIES: usize = 6;
/// How often provider loads are read from Redis.
pub const REFRESH: Duration = Duration::from_millis(500);

/// What became of a placement attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// Capacity reserved on this provider.
    Placed(v1::Assignment),
    /// Nothing the (tenant, channel) may use has room: hold the user queue
    /// for about this long.
    Wait {
        retry_after: Duration,
        reason: String,
    },
    /// Providers have room but a recipient's cap is reached: this job
    /// alone waits (in a delay tier), the queue goes on.
    Delay { after: Duration, reason: String },
    /// No provider could ever take it (it costs more than any window holds).
    Impossible { reason: String },
}

/// What rankings are built from; replaced whole on every refresh.
#[derive(Default)]
struct Snapshot {
    catalog_version: u64,
    generation: u64,
    views: Arc<Vec<Arc<ProviderView>>>,
    loads: HashMap<Uuid, ProviderLoad>,
    /// Mean last-minute use per channel.
    recent_mean: HashMap<Channel, f64>,
}

type RankingKey = (Uuid, Channel);

/// Chooses providers and reserves their capacity.
pub struct Placer {
    capacity: Capacity,
    catalog: ProviderCatalog,
    weights: ScoreWeights,
    policy: HealthPolicy,
    snapshot: RwLock<Arc<Snapshot>>,
    rankings: Mutex<HashMap<RankingKey, (u64, Arc<Ranking>)>>,
    /// Providers known full, until when.
    full: Mutex<HashMap<Uuid, Instant>>,
}

impl Placer {
    pub fn new(
        capacity: Capacity,
        catalog: ProviderCatalog,
        weights: ScoreWeights,
        policy: HealthPolicy,
    ) -> Placer {
        let placer = Placer {
            capacity,
            catalog,
            weights,
            policy,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            rankings: Mutex::new(HashMap::new()),
            full: Mutex::new(HashMap::new()),
        };
        placer.install(HashMap::new(), None);
        placer
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        let current = self.snapshot.read().map(|s| s.clone()).unwrap_or_default();
        if current.catalog_version != *self.catalog.subscribe().borrow() {
            // A provider changed: rebuild the views now, keep the loads.
            self.install(current.loads.clone(), Some(&current));
            return self.snapshot.read().map(|s| s.clone()).unwrap_or_default();
        }
        current
    }

    fn install(&self, loads: HashMap<Uuid, ProviderLoad>, previous: Option<&Snapshot>) {
        let version = *self.catalog.subscribe().borrow();
        let views: Vec<Arc<ProviderView>> = self
            .catalog
            .snapshot()
            .iter()
            .filter_map(ProviderView::of)
            .map(Arc::new)
            .collect();
        let channels: std::collections::HashSet<Channel> =
            views.iter().map(|v| v.channel).collect();
        let recent_mean = channels
            .into_iter()
            .map(|c| {
                let of_channel = views
                    .iter()
                    .filter(|v| v.channel == c)
                    .map(|v| (v.as_ref(), loads.get(&v.id)));
                (c, herald_scoring::recent_mean(of_channel))
            })
            .collect();
        let snapshot = Snapshot {
            catalog_version: version,
            generation: previous.map_or(0, |p| p.generation) + 1,
            views: Arc::new(views),
            loads,
            recent_mean,
        };
        if let Ok(mut s) = self.snapshot.write() {
            *s = Arc::new(snapshot);
        }
    }

    /// Reads every provider's load from Redis and re-ranks.
    pub async fn refresh(&self) -> Result<(), CapacityError> {
        let current = self.snapshot();
        let ids: Vec<(Uuid, &herald_capacity::Limits)> =
            current.views.iter().map(|v| (v.id, &v.limits)).collect();
        let loads = self.capacity.load(&ids).await?;
        let loads: HashMap<Uuid, ProviderLoad> =
            current.views.iter().map(|v| v.id).zip(loads).collect();
        for view in current.views.iter() {
            // The admitted rate while throttled, else the configured one.
            let rate = loads.get(&view.id).and_then(|l| l.admitted_rate);
            if let Some(rate) = rate.or_else(|| view.limits.configured_rate()) {
                metrics::gauge!("herald_scheduler_provider_admitted_rate", "provider" => view.name.clone())
                    .set(rate);
            }
        }
        self.install(loads, Some(&current));
        Ok(())
    }

    /// Refreshes every [`REFRESH`] until `stop` fires.
    pub async fn run_refresh(&self, stop: Shutdown) {
        loop {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "Failed to read provider loads; scoring on the last ones.");
            }
            tokio::select! {
                _ = stop.wait() => return,
                _ = tokio::time::sleep(REFRESH) => {}
            }
        }
    }

    /// The current ranking of the providers `tenant` may use on `channel`.
    pub fn ranking(&self, tenant: Uuid, channel: Channel) -> Arc<Ranking> {
        let snapshot = self.snapshot();
        let key = (tenant, channel);
        if let Ok(cache) = self.rankings.lock() {
            if let Some((generation, r)) = cache.get(&key) {
                if *generation == snapshot.generation {
                    return r.clone();
                }
            }
        }
        let now = Utc::now();
        let mean = snapshot.recent_mean.get(&channel).copied().unwrap_or(0.0);
        let scored: Vec<(Arc<ProviderView>, Score)> = snapshot
            .views
            .iter()
            .filter(|v| v.serves(tenant, channel))
            .map(|v| {
                let s = score(
                    v,
                    snapshot.loads.get(&v.id),
                    mean,
                    &self.weights,
                    &self.policy,
                    now,
                );
                (v.clone(), s)
            })
            .collect();
        let ranking = Arc::new(Ranking::build(scored, self.weights.band));
        if let Ok(mut cache) = self.rankings.lock() {
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert(key, (snapshot.generation, ranking.clone()));
        }
        ranking
    }

    fn known_full(&self, provider: Uuid, now: Instant) -> Option<Duration> {
        let full = self.full.lock().ok()?;
        full.get(&provider)
            .filter(|until| **until > now)
            .map(|until| *until - now)
    }

    fn mark_full(&self, provider: Uuid, for_: Duration) {
        if let Ok(mut full) = self.full.lock() {
            let now = Instant::now();
            if full.len() > 10_000 {
                full.retain(|_, until| *until > now);
            }
            full.insert(provider, now + for_);
        }
    }

    /// Places a batch. Each job gets its own draw of providers (best first,
    /// near-equals shared at random); each round, the jobs whose next
    /// candidate is the same provider are reserved together in one script
    /// call, and a job denied there moves to its next candidate.
    pub async fn place_all(&self, jobs: &[v1::Job]) -> Result<Vec<Placement>, CapacityError> {
        let now = Instant::now();
        let mut plans: Vec<Plan> = Vec::with_capacity(jobs.len());
        let mut done: Vec<Option<Placement>> = vec![None; jobs.len()];
        for (i, job) in jobs.iter().enumerate() {
            let tenant: Uuid = job.tenant_id.parse().unwrap_or_default();
            let Some(channel) = Channel::from_proto(job.channel) else {
                done[i] = Some(Placement::Impossible {
                    reason: format!("unknown channel {}", job.channel),
                });
                plans.push(Plan::default());
                continue;
            };
            let ranking = self.ranking(tenant, channel);
            if ranking.is_empty() {
                done[i] = Some(nothing_eligible(&ranking, channel));
                plans.push(Plan::default());
                continue;
            }
            let mut plan = Plan {
                eligible: ranking.len(),
                ..Plan::default()
            };
            let candidates: Vec<Arc<ProviderView>> = {
                let mut rng = rand::thread_rng();
                // Providers known full are skipped, their wait noted.
                let open =
                    ranking
                        .attempts(&mut rng)
                        .filter(|v| match self.known_full(v.id, now) {
                            Some(wait) => {
                                plan.provider_wait =
                                    Some(plan.provider_wait.map_or(wait, |w| w.min(wait)));
                                false
                            }
                            None => true,
                        });
                if job.tried_providers.is_empty() {
                    open.take(MAX_TRIES).cloned().collect()
                } else {
                    prefer_untried(open.cloned().collect(), &job.tried_providers)
                }
            };
            plan.candidates = candidates;
            plans.push(plan);
        }
        let costs: Vec<u32> = jobs.iter().map(job_cost).collect();
        let snapshot = self.snapshot();
        let loads = &snapshot.loads;
        for round in 0..MAX_TRIES {
            // Jobs still open, grouped by their candidate for this round.
            let mut groups: HashMap<Uuid, (Arc<ProviderView>, Vec<usize>)> = HashMap::new();
            for (i, plan) in plans.iter().enumerate() {
                if done[i].is_some() {
                    continue;
                }
                if let Some(p) = plan.candidates.get(round) {
                    if round > 0 && self.known_full(p.id, Instant::now()).is_some() {
                        continue;
                    }
                    groups
                        .entry(p.id)
                        .or_insert_with(|| (p.clone(), Vec::new()))
                        .1
                        .push(i);
                }
            }
            if groups.is_empty() {
                break;
            }
            let calls = groups.into_values().map(|(p, members)| {
                let asks: Vec<Ask> = members
                    .iter()
                    .map(|&i| Ask {
                        cost: costs[i],
                        recipients: &jobs[i].recipients,
                    })
                    .collect();
                let throttled = loads.get(&p.id).is_some_and(|l| l.admitted_rate.is_some());
                async move {
                    let answers = self
                        .capacity
                        .reserve_many_on(p.id, &p.limits, &asks, throttled)
                        .await;
                    (p, members, answers)
                }
            });
            for (p, members, answers) in futures::future::join_all(calls).await {
                for (i, answer) in members.into_iter().zip(answers?) {
                    let plan = &mut plans[i];
                    match answer {
                        Reservation::Granted { at_ms } => {
                            metrics::counter!("herald_scheduler_reservations_total", "outcome" => "granted").increment(1);
                            done[i] = Some(Placement::Placed(v1::Assignment {
                                provider_id: p.id.to_string(),
                                reserved_at_ms: at_ms,
                                cost: costs[i],
                            }));
                        }
                        Reservation::Denied {
                            retry_after,
                            full: Full::Provider { .. } | Full::Throttled,
                        } => {
                            metrics::counter!("herald_scheduler_reservations_total", "outcome" => "denied").increment(1);
                            self.mark_full(p.id, retry_after);
                            plan.provider_wait = Some(
                                plan.provider_wait
                                    .map_or(retry_after, |w| w.min(retry_after)),
                            );
                        }
                        Reservation::Denied {
                            retry_after,
                            full: Full::Recipient { .. },
                        } => {
                            metrics::counter!("herald_scheduler_reservations_total", "outcome" => "recipient_cap").increment(1);
                            plan.recipient_wait = Some(
                                plan.recipient_wait
                                    .map_or(retry_after, |w| w.min(retry_after)),
                            );
                        }
                        Reservation::TooLarge { .. } => plan.too_large += 1,
                    }
                }
            }
        }
        Ok(done
            .into_iter()
            .zip(plans)
            .zip(costs)
            .map(|((placement, plan), cost)| placement.unwrap_or_else(|| plan.outcome(cost)))
            .collect())
    }
}

/// One job's way through a batch placement.
#[derive(Default)]
struct Plan {
    candidates: Vec<Arc<ProviderView>>,
    eligible: usize,
    provider_wait: Option<Duration>,
    recipient_wait: Option<Duration>,
    too_large: usize,
}

impl Plan {
    /// What a job no provider took waits for.
    fn outcome(self, cost: u32) -> Placement {
        if self.too_large > 0 && self.too_large == self.eligible {
            return Placement::Impossible {
                reason: format!(
                    "costs {cost} units, more than any eligible provider's quota window holds"
                ),
            };
        }
        if let Some(after) = self.recipient_wait {
            return Placement::Delay {
                after,
                reason: "a recipient reached its per-app cap (WeWork: 30 a minute, 1,000 an hour)"
                    .into(),
            };
        }
        Placement::Wait {
            retry_after: self.provider_wait.unwrap_or(Duration::from_secs(1)),
            reason: "every eligible provider's quota is used up for now".into(),
        }
    }
}

/// A retry's candidates in ranking order, but the providers that refused
/// its earlier attempts after every other: another provider takes it while
/// any is eligible, and a refusing one only when none is. At most
/// [`MAX_TRIES`].
pub fn prefer_untried(
    candidates: Vec<Arc<ProviderView>>,
    tried: &[String],
) -> Vec<Arc<ProviderView>> {
    let tried: Vec<Uuid> = tried.iter().filter_map(|t| t.parse().ok()).collect();
    let was_tried = |v: &ProviderView| tried.contains(&v.id);
    let (mut fresh, refused): (Vec<_>, Vec<_>) =
        candidates.into_iter().partition(|v| !was_tried(v));
    fresh.extend(refused);
    fresh.truncate(MAX_TRIES);
    fresh
}

/// The wait when no provider is eligible: until the soonest send window
/// opens or circuit half-opens (a catalog change wakes the drain sooner).
fn nothing_eligible(ranking: &Ranking, channel: Channel) -> Placement {
    let now = Utc::now();
    let window = ranking
        .next_open
        .map(|at| (at - now).to_std().unwrap_or_default());
    let probe = ranking
        .next_probe_ms
        .map(|ms| Duration::from_millis((ms - now.timestamp_millis()).max(0) as u64));
    let retry_after = match (window, probe) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => Duration::from_secs(30),
    }
    .max(Duration::from_millis(200));
    let reason = match (window, probe) {
        (Some(_), _) => {
            format!("every {channel} provider this tenant may use is outside its send window")
        }
        (None, Some(_)) => {
            format!("every {channel} provider this tenant may use has an open circuit")
        }
        (None, None) => format!("no enabled {channel} provider serves this tenant"),
    };
    Placement::Wait {
        retry_after,
        reason,
    }
}

/// Units of provider quota a job costs: one per WeWork recipient, else one.
pub fn job_cost(job: &v1::Job) -> u32 {
    if job.channel == v1::Channel::Wework as i32 {
        job.recipients.len().max(1) as u32
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wework_job_costs_one_per_recipient() {
        let job = v1::Job {
            channel: v1::Channel::Wework as i32,
            recipients: vec!["a".into(), "b".into(), "c".into()],
            ..Default::default()
        };
        assert_eq!(job_cost(&job), 3);
    }

    #[test]
    fn with_nothing_eligible_a_job_waits_for_the_soonest_window() {
        let now = Utc::now();
        let in_90s = now + chrono::Duration::seconds(90);
        let view = ProviderView {
            id: Uuid::new_v4(),
            name: "night".into(),
            tenant_id: None,
            channel: Channel::Email,
            limits: herald_capacity::Limits::default(),
            window: Some(herald_domain::SendWindow {
                tz: "UTC".into(),
                start: in_90s.format("%H:%M").to_string(),
                end: (in_90s + chrono::Duration::hours(1))
                    .format("%H:%M")
                    .to_string(),
                days: vec![],
            }),
            weight: 1,
        };
        let s = score(
            &view,
            None,
            0.0,
            &ScoreWeights::default(),
            &HealthPolicy::default(),
            now,
        );
        let ranking = Ranking::build(vec![(Arc::new(view), s)], 0.2);
        let Placement::Wait {
            retry_after,
            reason,
        } = nothing_eligible(&ranking, Channel::Email)
        else {
            panic!("must wait");
        };
        // The window opens on the minute: within 90 s, at least 30 s away.
        assert!(
            retry_after > Duration::from_secs(29) && retry_after <= Duration::from_secs(90),
            "{retry_after:?}"
        );
        assert!(reason.contains("send window"));
    }
}
