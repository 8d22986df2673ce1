//! The simulator's counters (`GET /sim/stats`), read before and after a run.

use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The secret herald-sim checks webhook signatures with unless it is given
/// another (`HERALD_SIM_WEBHOOK_SECRET`): `herald_sim::config::DEFAULT_WEBHOOK_SECRET`,
/// copied rather than linked so this tool does not build the simulator (a
/// test keeps the two equal).
pub const DEFAULT_WEBHOOK_SECRET: &str = "herald-sim-webhook-secret";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChannelStats {
    pub received: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

/// The webhook receiver's counters: a channel's, plus the deliveries it
/// refused (401) because `X-Herald-Signature` was missing or wrong.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookStats {
    pub received: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub rejected: u64,
    pub signature_failures: u64,
}

/// A simulator without a webhook receiver answers without `webhook`: it
/// reads as zeros.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimStats {
    pub smtp: ChannelStats,
    pub wework: ChannelStats,
    pub webhook: WebhookStats,
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

impl WebhookStats {
    /// Like [`ChannelStats::since`].
    pub fn since(&self, before: &WebhookStats) -> WebhookStats {
        WebhookStats {
            received: self.received.saturating_sub(before.received),
            unique: self.unique.saturating_sub(before.unique),
            duplicates: self.duplicates.saturating_sub(before.duplicates),
            rejected: self.rejected.saturating_sub(before.rejected),
            signature_failures: self
                .signature_failures
                .saturating_sub(before.signature_failures),
        }
    }
}

impl SimStats {
    pub fn since(&self, before: &SimStats) -> SimStats {
        SimStats {
            smtp: self.smtp.since(&before.smtp),
            wework: self.wework.since(&before.wework),
            webhook: self.webhook.since(&before.webhook),
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
                      "wework":{"received":5,"unique":5,"duplicates":0,"rejected":0,"token_requests":1,"cost":5},
                      "webhook":{"received":4,"unique":3,"duplicates":1,"rejected":2,"signature_failures":7}}"#;
        let s: SimStats = serde_json::from_str(raw).expect("parses");
        assert_eq!(s.smtp.duplicates, 1);
        assert_eq!(s.wework.received, 5);
        assert_eq!(
            s.webhook,
            WebhookStats {
                received: 4,
                unique: 3,
                duplicates: 1,
                rejected: 2,
                signature_failures: 7
            }
        );
    }

    #[test]
    fn a_simulator_without_a_webhook_receiver_reads_as_zero_webhooks() {
        let raw = r#"{"smtp":{"received":1,"unique":1,"duplicates":0,"rejected":0},
                      "wework":{"received":0,"unique":0,"duplicates":0,"rejected":0}}"#;
        let s: SimStats = serde_json::from_str(raw).expect("parses");
        assert_eq!(s.webhook, WebhookStats::default());
    }

    #[test]
    fn the_default_webhook_secret_is_the_simulators() {
        // The simulator's source, read at compile time: this crate does not
        // depend on herald-sim.
        let sim_config = include_str!("../../services/sim/src/config.rs");
        let declaration =
            format!("pub const DEFAULT_WEBHOOK_SECRET: &str = \"{DEFAULT_WEBHOOK_SECRET}\";");
        assert!(
            sim_config.contains(&declaration),
            "services/sim/src/config.rs no longer declares {declaration}"
        );
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
            webhook: WebhookStats {
                received: 5,
                unique: 5,
                duplicates: 0,
                rejected: 0,
                signature_failures: 1,
            },
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
            webhook: WebhookStats {
                received: 9,
                unique: 8,
                duplicates: 1,
                rejected: 3,
                signature_failures: 3,
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
        assert_eq!(
            d.webhook,
            WebhookStats {
                received: 4,
                unique: 3,
                duplicates: 1,
                rejected: 3,
                signature_failures: 2
            }
        );
        assert_eq!(before.since(&after).smtp.received, 0);
        assert_eq!(before.since(&after).webhook.signature_failures, 0);
    }
}
