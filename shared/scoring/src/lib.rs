//! Provider scoring. Which providers may take a (tenant, channel)'s job,
//! how good each is now, and the order the scheduler tries them in.
//!
//! A score is the weighted mean of five parts, each in 0..=1:
//!
//! | part | 1 means | from |
//! |---|---|---|
//! | `quota` | every window empty | the tightest window's remaining share |
//! | `headroom` | no send in flight | concurrency leases held / concurrency |
//! | `success` | every send succeeded | EWMA success rate (1 until observed) |
//! | `latency` | instant | `ref / (ref + EWMA latency)` |
//! | `recent` | unused lately | `1 / (1 + last-minute use / mean use)` |
//!
//! A half-open circuit multiplies the score by 0.1 (a trickle of probes);
//! an open circuit or a closed send window excludes the provider. The
//! scheduler tries first one provider drawn at random among the best (those
//! within `band` of the top score), weighted by score × provider weight, so
//! near-equal providers share the work; then the rest in score order.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use herald_capacity::health::Circuit;
use herald_capacity::{HealthPolicy, Limits, ProviderLoad};
use herald_domain::{Channel, Provider, Quota, SendWindow};
use rand::Rng;
use serde::Serialize;
use uuid::Uuid;

/// A limit that never binds: windows counted only to know recent use.
pub const UNLIMITED: u64 = 1 << 53;
/// The window every provider counts, limited or not, for `recent`.
pub const RECENT_WINDOW_MS: u64 = 60_000;

/// Score weights and the spreading band (scheduler and producer).
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize)]
pub struct ScoreWeights {
    /// Weight of the tightest quota window's remaining share.
    #[arg(
        long = "score-quota",
        env = "HERALD_SCORE_QUOTA",
        default_value_t = 0.35
    )]
    pub quota: f64,
    /// Weight of free concurrency.
    #[arg(
        long = "score-headroom",
        env = "HERALD_SCORE_HEADROOM",
        default_value_t = 0.10
    )]
    pub headroom: f64,
    /// Weight of the success rate.
    #[arg(
        long = "score-success",
        env = "HERALD_SCORE_SUCCESS",
        default_value_t = 0.30
    )]
    pub success: f64,
    /// Weight of low latency.
    #[arg(
        long = "score-latency",
        env = "HERALD_SCORE_LATENCY",
        default_value_t = 0.15
    )]
    pub latency: f64,
    /// Weight of little recent use.
    #[arg(
        long = "score-recent",
        env = "HERALD_SCORE_RECENT",
        default_value_t = 0.10
    )]
    pub recent: f64,
    /// Providers within this fraction of the best score share the work.
    #[arg(long = "score-band", env = "HERALD_SCORE_BAND", default_value_t = 0.2)]
    pub band: f64,
    /// Latency (ms) that scores one half.
    #[arg(
        long = "score-latency-ref-ms",
        env = "HERALD_SCORE_LATENCY_REF_MS",
        default_value_t = 500.0
    )]
    pub latency_ref_ms: f64,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        ScoreWeights {
            quota: 0.35,
            headroom: 0.10,
            success: 0.30,
            latency: 0.15,
            recent: 0.10,
            band: 0.2,
            latency_ref_ms: 500.0,
        }
    }
}

/// A provider as scoring sees it: parsed once per catalog change.
#[derive(Debug, Clone)]
pub struct ProviderView {
    pub id: Uuid,
    pub name: String,
    pub tenant_id: Option<Uuid>,
    pub channel: Channel,
    pub limits: Limits,
    pub window: Option<SendWindow>,
    pub weight: u32,
}

impl ProviderView {
    /// The view of an enabled provider; `None` for a disabled one. The
    /// provider was decoded once by the store: a row that does not decode
    /// never reaches scoring (it is reported and left out of the catalog).
    pub fn of(provider: &Provider) -> Option<ProviderView> {
        if !provider.enabled {
            return None;
        }
        Some(ProviderView {
            id: provider.id.as_uuid(),
            name: provider.name.clone(),
            tenant_id: provider.tenant_id.map(|t| t.as_uuid()),
            channel: provider.channel,
            limits: limits_for(&provider.quota, provider.channel),
            window: provider.send_window.clone(),
            weight: provider.weight.max(1),
        })
    }

    /// May this provider carry `tenant`'s messages on `channel`?
    pub fn serves(&self, tenant: Uuid, channel: Channel) -> bool {
        self.channel == channel && self.tenant_id.is_none_or(|t| t == tenant)
    }
}

/// The limits of a provider, with the last minute always counted (at an
/// [`UNLIMITED`] limit when none is configured) so that recent use is known.
pub fn limits_for(quota: &Quota, channel: Channel) -> Limits {
    let mut limits = Limits::new(quota, channel);
    if !limits.windows.iter().any(|w| w.0 == RECENT_WINDOW_MS) {
        limits.windows.insert(0, (RECENT_WINDOW_MS, UNLIMITED));
    }
    limits
}

/// The parts of a score, each in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Parts {
    pub quota: f64,
    pub headroom: f64,
    pub success: f64,
    pub latency: f64,
    pub recent: f64,
}

/// Whether a provider can take work now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    Ready,
    /// After failures and a cooldown: a trickle of probes.
    HalfOpen,
    /// Failing: no sends until the circuit half-opens.
    CircuitOpen {
        until_ms: i64,
    },
    /// Outside its send window.
    WindowClosed {
        opens_at: Option<DateTime<Utc>>,
    },
    /// A quota window is used up (a reservation says until when).
    Exhausted,
}

impl State {
    pub fn is_eligible(&self) -> bool {
        matches!(self, State::Ready | State::HalfOpen | State::Exhausted)
    }
}

/// A provider's score and how it came about.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    pub total: f64,
    pub parts: Parts,
    #[serde(flatten)]
    pub state: State,
}

/// Scores `view` from its `load` (none read yet: a fresh provider), given
/// the mean last-minute use of the providers it competes with.
pub fn score(
    view: &ProviderView,
    load: Option<&ProviderLoad>,
    recent_mean: f64,
    weights: &ScoreWeights,
    policy: &HealthPolicy,
    now: DateTime<Utc>,
) -> Score {
    let mut quota: f64 = 1.0;
    let mut recent_use = 0.0;
    if let Some(load) = load {
        for ((window, limit), used) in view.limits.windows.iter().zip(&load.used) {
            if *window == RECENT_WINDOW_MS {
                recent_use = *used as f64;
            }
            if *limit < UNLIMITED {
                let left = (*limit as f64 - *used as f64).max(0.0) / *limit as f64;
                quota = quota.min(left);
            }
        }
    }
    let headroom = match (view.limits.concurrency, load) {
        (Some(c), Some(load)) if c > 0 => (1.0 - load.leases as f64 / f64::from(c)).clamp(0.0, 1.0),
        _ => 1.0,
    };
    let success = load
        .and_then(|l| l.success_rate)
        .unwrap_or(1.0)
        .clamp(0.0, 1.0);
    let latency = load.and_then(|l| l.latency_ms).map_or(1.0, |ms| {
        weights.latency_ref_ms / (weights.latency_ref_ms + ms.max(0.0))
    });
    let recent = if recent_mean > 0.0 {
        1.0 / (1.0 + recent_use / recent_mean)
    } else {
        1.0
    };
    let parts = Parts {
        quota,
        headroom,
        success,
        latency,
        recent,
    };
    let sum = weights.quota + weights.headroom + weights.success + weights.latency + weights.recent;
    let mut total = if sum > 0.0 {
        (weights.quota * quota
            + weights.headroom * headroom
            + weights.success * success
            + weights.latency * latency
            + weights.recent * recent)
            / sum
    } else {
        1.0
    };
    let circuit = load.map_or(Circuit::Closed, |l| l.circuit(policy));
    let state = if let Some(w) = view.window.as_ref().filter(|w| !w.is_open(now)) {
        total = 0.0;
        State::WindowClosed {
            opens_at: w.next_open(now),
        }
    } else if let Circuit::Open { until_ms } = circuit {
        total = 0.0;
        State::CircuitOpen { until_ms }
    } else if quota <= 0.0 {
        total = 0.0;
        State::Exhausted
    } else if circuit == Circuit::HalfOpen {
        total *= 0.1;
        State::HalfOpen
    } else {
        State::Ready
    };
    Score {
        total,
        parts,
        state,
    }
}

/// The providers one (tenant, channel) may use, best first, ready to be
/// drawn from many times until the next refresh.
#[derive(Debug, Clone, Default)]
pub struct Ranking {
    /// Eligible providers by descending score.
    entries: Vec<(Arc<ProviderView>, f64)>,
    /// Cumulative draw weights (score × provider weight) of the band: the
    /// first `cumulative.len()` entries.
    cumulative: Vec<f64>,
    /// When the soonest closed send window opens, if nothing is eligible
    /// because of windows.
    pub next_open: Option<DateTime<Utc>>,
    /// When the soonest open circuit half-opens (Redis clock, ms).
    pub next_probe_ms: Option<i64>,
}

impl Ranking {
    /// Ranks scored candidates; `band` as in [`ScoreWeights::band`].
    pub fn build(scored: Vec<(Arc<ProviderView>, Score)>, band: f64) -> Ranking {
        let mut ranking = Ranking::default();
        for (view, s) in scored {
            match s.state {
                State::WindowClosed { opens_at } => {
                    if let Some(at) = opens_at {
                        ranking.next_open = Some(ranking.next_open.map_or(at, |n| n.min(at)));
                    }
                }
                State::CircuitOpen { until_ms } => {
                    ranking.next_probe_ms =
                        Some(ranking.next_probe_ms.map_or(until_ms, |n| n.min(until_ms)));
                }
                _ => ranking.entries.push((view, s.total)),
            }
        }
        ranking.entries.sort_by(|a, b| b.1.total_cmp(&a.1));
        if let Some(best) = ranking.entries.first().map(|e| e.1).filter(|b| *b > 0.0) {
            let floor = best * (1.0 - band.clamp(0.0, 1.0));
            let mut acc = 0.0;
            for (view, s) in ranking
                .entries
                .iter()
                .take_while(|e| e.1 >= floor && e.1 > 0.0)
            {
                acc += s * f64::from(view.weight);
                ranking.cumulative.push(acc);
            }
        }
        ranking
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The providers to try, in order: one drawn from the band, then the
    /// others by descending score. Lazy: a placement that succeeds at once
    /// costs one draw (a binary search), whatever the number of providers.
    pub fn attempts<'a, R: Rng>(
        &'a self,
        rng: &mut R,
    ) -> impl Iterator<Item = &'a Arc<ProviderView>> + 'a {
        let first = self.draw(rng);
        first.map(|i| &self.entries[i].0).into_iter().chain(
            self.entries
                .iter()
                .enumerate()
                .filter(move |(i, _)| Some(*i) != first)
                .map(|(_, e)| &e.0),
        )
    }

    fn draw<R: Rng>(&self, rng: &mut R) -> Option<usize> {
        let total = *self.cumulative.last()?;
        if total <= 0.0 {
            return None;
        }
        let x = rng.gen_range(0.0..total);
        Some(
            self.cumulative
                .partition_point(|c| *c <= x)
                .min(self.cumulative.len() - 1),
        )
    }
}

#[cfg(test)]
mod tests;

/// How workers' outcomes open and close a provider's circuit (scheduler,
/// worker and producer read the same variables).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct CircuitSettings {
    /// Consecutive failures that open a provider's circuit.
    #[arg(
        long = "circuit-failures",
        env = "HERALD_CIRCUIT_FAILURES",
        default_value_t = 5
    )]
    pub failures: u32,
    /// Seconds a circuit stays open first; doubled on each failed probe.
    #[arg(
        long = "circuit-open-secs",
        env = "HERALD_CIRCUIT_OPEN_SECS",
        default_value_t = 10
    )]
    pub open_secs: u64,
    /// The longest a circuit stays open.
    #[arg(
        long = "circuit-max-open-secs",
        env = "HERALD_CIRCUIT_MAX_OPEN_SECS",
        default_value_t = 300
    )]
    pub max_open_secs: u64,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        CircuitSettings {
            failures: 5,
            open_secs: 10,
            max_open_secs: 300,
        }
    }
}

impl CircuitSettings {
    pub fn policy(&self) -> HealthPolicy {
        HealthPolicy {
            failure_threshold: self.failures.max(1),
            open_for: std::time::Duration::from_secs(self.open_secs.max(1)),
            max_open: std::time::Duration::from_secs(self.max_open_secs.max(self.open_secs).max(1)),
            ..HealthPolicy::default()
        }
    }
}

/// A provider's use over the last minute, from its load.
pub fn recent_use(view: &ProviderView, load: Option<&ProviderLoad>) -> f64 {
    let Some(load) = load else { return 0.0 };
    view.limits
        .windows
        .iter()
        .zip(&load.used)
        .find(|(w, _)| w.0 == RECENT_WINDOW_MS)
        .map_or(0.0, |(_, used)| *used as f64)
}

/// The mean last-minute use of `views` (what `recent` compares against).
pub fn recent_mean<'a>(
    views: impl IntoIterator<Item = (&'a ProviderView, Option<&'a ProviderLoad>)>,
) -> f64 {
    let (sum, n) = views
        .into_iter()
        .fold((0.0, 0u32), |(s, n), (v, l)| (s + recent_use(v, l), n + 1));
    sum / f64::from(n.max(1))
}
