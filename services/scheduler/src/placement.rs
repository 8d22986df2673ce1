//! Placing a job on a provider: which providers are eligible, in which order
//! they are tried (the scoring seam), and the reservation that makes a
//! placement real.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use herald_capacity::{Capacity, CapacityError, Limits, Reservation};
use herald_domain::{Channel, Quota, SendWindow};
use herald_proto::v1;
use herald_store::catalog::ProviderCatalog;
use rand::Rng;
use uuid::Uuid;

/// A provider as the scheduler uses it: parsed once per catalog refresh.
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
    fn from_row(row: &herald_store::ProviderRow) -> Option<ProviderView> {
        if !row.enabled {
            return None;
        }
        let channel: Channel = row.channel.parse().ok()?;
        let quota: Quota = serde_json::from_value(row.quota.clone()).unwrap_or_default();
        let window = row
            .send_window
            .as_ref()
            .and_then(|w| serde_json::from_value(w.clone()).ok());
        Some(ProviderView {
            id: row.id,
            name: row.name.clone(),
            tenant_id: row.tenant_id,
            channel,
            limits: Limits {
                windows: quota.windows().collect(),
            },
            window,
            weight: row.weight.max(1) as u32,
        })
    }
}

/// What became of a placement attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    /// Capacity reserved on this provider.
    Placed(v1::Assignment),
    /// Nothing eligible has room now; try again after this long.
    Wait {
        retry_after: Duration,
        reason: String,
    },
    /// No provider could ever take it (it costs more than any window holds).
    Impossible { reason: String },
}

/// Chooses providers and reserves their capacity.
pub struct Placer {
    capacity: Capacity,
    catalog: ProviderCatalog,
    views: RwLock<(u64, Arc<Vec<ProviderView>>)>,
}

impl Placer {
    pub fn new(capacity: Capacity, catalog: ProviderCatalog) -> Placer {
        let views = build_views(&catalog);
        Placer {
            capacity,
            catalog,
            views: RwLock::new((u64::MAX, views)),
        }
    }

    fn views(&self) -> Arc<Vec<ProviderView>> {
        let version = *self.catalog.subscribe().borrow();
        if let Ok(guard) = self.views.read() {
            if guard.0 == version {
                return guard.1.clone();
            }
        }
        let fresh = build_views(&self.catalog);
        if let Ok(mut guard) = self.views.write() {
            *guard = (version, fresh.clone());
        }
        fresh
    }

    /// Providers that may send this tenant's message on this channel now:
    /// enabled, the tenant's own or shared, inside their send window.
    pub fn eligible(&self, tenant: Uuid, channel: Channel) -> Vec<ProviderView> {
        let now = Utc::now();
        self.views()
            .iter()
            .filter(|p| p.channel == channel)
            .filter(|p| p.tenant_id.is_none_or(|t| t == tenant))
            .filter(|p| p.window.as_ref().is_none_or(|w| w.is_open(now)))
            .cloned()
            .collect()
    }

    /// Reserves capacity for `job` on the first provider, in [`rank`] order,
    /// that has room.
    pub async fn place(&self, job: &v1::Job) -> Result<Placement, CapacityError> {
        let tenant: Uuid = job.tenant_id.parse().unwrap_or_default();
        let Some(channel) = Channel::from_proto(job.channel) else {
            return Ok(Placement::Impossible {
                reason: format!("unknown channel {}", job.channel),
            });
        };
        let candidates = rank(self.eligible(tenant, channel));
        if candidates.is_empty() {
            return Ok(Placement::Wait {
                retry_after: Duration::from_secs(5),
                reason: format!("no enabled {channel} provider is open for this tenant"),
            });
        }
        let cost = job_cost(job);
        let mut soonest: Option<Duration> = None;
        let mut too_large = 0;
        for p in &candidates {
            match self.capacity.reserve(p.id, &p.limits, cost).await? {
                Reservation::Granted { at_ms } => {
                    metrics::counter!("herald_scheduler_reservations_total", "outcome" => "granted").increment(1);
                    return Ok(Placement::Placed(v1::Assignment {
                        provider_id: p.id.to_string(),
                        reserved_at_ms: at_ms,
                        cost,
                    }));
                }
                Reservation::Denied { retry_after, .. } => {
                    metrics::counter!("herald_scheduler_reservations_total", "outcome" => "denied")
                        .increment(1);
                    soonest = Some(soonest.map_or(retry_after, |s| s.min(retry_after)));
                }
                Reservation::TooLarge { .. } => too_large += 1,
            }
        }
        if too_large == candidates.len() {
            return Ok(Placement::Impossible {
                reason: format!(
                    "costs {cost} units, more than any eligible provider's quota window holds"
                ),
            });
        }
        Ok(Placement::Wait {
            retry_after: soonest.unwrap_or(Duration::from_secs(5)),
            reason: "every eligible provider's quota is used up for now".into(),
        })
    }
}

fn build_views(catalog: &ProviderCatalog) -> Arc<Vec<ProviderView>> {
    Arc::new(
        catalog
            .snapshot()
            .iter()
            .filter_map(ProviderView::from_row)
            .collect(),
    )
}

/// Units of provider quota a job costs: one per WeWork recipient, else one.
pub fn job_cost(job: &v1::Job) -> u32 {
    if job.channel == v1::Channel::Wework as i32 {
        job.recipients.len().max(1) as u32
    } else {
        1
    }
}

/// The order in which candidates are tried. For now: a weighted random
/// shuffle by provider weight, so equal providers share the load. Scoring
/// on quota share, success rate and latency plugs in here.
pub fn rank(mut candidates: Vec<ProviderView>) -> Vec<ProviderView> {
    let mut rng = rand::thread_rng();
    // Efraimidis–Spirakis: sort by u^(1/w) descending.
    let mut keyed: Vec<(f64, ProviderView)> = candidates
        .drain(..)
        .map(|p| {
            let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
            (u.powf(1.0 / f64::from(p.weight)), p)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
    keyed.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(weight: u32) -> ProviderView {
        ProviderView {
            id: Uuid::new_v4(),
            name: format!("p{weight}"),
            tenant_id: None,
            channel: Channel::Email,
            limits: Limits::default(),
            window: None,
            weight,
        }
    }

    #[test]
    fn heavier_providers_come_first_more_often() {
        let heavy = view(900);
        let light = view(100);
        let firsts = (0..2000)
            .filter(|_| rank(vec![light.clone(), heavy.clone()])[0].id == heavy.id)
            .count();
        // Expected share 0.9; allow generous noise.
        assert!(
            firsts > 1600 && firsts < 1950,
            "heavy first {firsts} of 2000"
        );
    }

    #[test]
    fn a_wework_job_costs_one_per_recipient() {
        let job = v1::Job {
            channel: v1::Channel::Wework as i32,
            recipients: vec!["a".into(), "b".into(), "c".into()],
            ..Default::default()
        };
        assert_eq!(job_cost(&job), 3);
    }
}
