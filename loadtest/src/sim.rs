//! The simulator's counters (`GET /sim/stats`), read before and after a run.

use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelStats {
    pub received: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimStats {
    pub smtp: ChannelStats,
    pub wework: ChannelStats,
}

impl ChannelStats {
    /// What happened between `before` and `self` (saturating: a simulator
    /// reset in between reads as zero, not as a wrap-around).
    pub fn since(&self, before: &ChannelStats) -> ChannelStats {
        ChannelStats {
            received: self.received.saturating_sub(before.received),
            unique: self.unique.saturating_sub(before.unique),
            duplicates: self.duplicates.saturating_sub(before.duplicates),
            rejected: self.rejected.saturating_sub(before.rejected),
        }
    }
}

impl SimStats {
    pub fn since(&self, before: &SimStats) -> SimStats {
        SimStats {
            smtp: self.smtp.since(&before.smtp),
            wework: self.wework.since(&before.wework),
        }
    }
}

pub fn stats_url(sim_url: &str) -> String {
    format!("{}/sim/stats", sim_url.trim_end_matches('/'))
}

pub async fn fetch(sim_url: &str) -> anyhow::Result<SimStats> {
    let url = stats_url(sim_url);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("Failed to build the HTTP client")?;
    let resp = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let resp = resp
        .error_for_status()
        .with_context(|| format!("GET {url}"))?;
    resp.json::<SimStats>()
        .await
        .with_context(|| format!("GET {url}: unexpected answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_simulators_shape_and_ignores_extra_fields() {
        let raw = r#"{"smtp":{"received":10,"unique":9,"duplicates":1,"rejected":0,"connections":3},
                      "wework":{"received":5,"unique":5,"duplicates":0,"rejected":0,"token_requests":1,"cost":5}}"#;
        let s: SimStats = serde_json::from_str(raw).expect("parses");
        assert_eq!(s.smtp.duplicates, 1);
        assert_eq!(s.wework.received, 5);
    }

    #[test]
    fn delta_saturates() {
        let before = SimStats {
            smtp: ChannelStats {
                received: 10,
                unique: 10,
                duplicates: 2,
                rejected: 0,
            },
            wework: ChannelStats::default(),
        };
        let after = SimStats {
            smtp: ChannelStats {
                received: 25,
                unique: 23,
                duplicates: 4,
                rejected: 1,
            },
            wework: ChannelStats {
                received: 3,
                unique: 3,
                duplicates: 0,
                rejected: 0,
            },
        };
        let d = after.since(&before);
        assert_eq!(
            d.smtp,
            ChannelStats {
                received: 15,
                unique: 13,
                duplicates: 2,
                rejected: 1
            }
        );
        assert_eq!(d.wework.received, 3);
        assert_eq!(before.since(&after).smtp.received, 0);
    }
}
