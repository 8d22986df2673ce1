//! The simulator's settings: where it listens ([`SimConfig`]) and how it
//! misbehaves ([`SimBehaviour`]), the latter changeable while it runs.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The longest latency the simulator accepts (ten minutes): beyond that a
/// client's timeout, not the simulator, decides what a test observes.
pub const MAX_LATENCY_MS: u64 = 600_000;

/// Everything [`crate::Sim::build`] needs. Port 0 picks a free port.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// WeWork-compatible API, `/sim/*` control API and ops endpoints.
    pub http_addr: SocketAddr,
    /// SMTP with optional STARTTLS.
    pub smtp_addr: SocketAddr,
    /// SMTP over implicit TLS (SMTPS).
    pub smtps_addr: SocketAddr,
    /// Where `ca.pem` is written; `None` uses a fresh temporary directory
    /// that is removed when the simulator stops.
    pub cert_dir: Option<PathBuf>,
    pub smtp: SmtpBehaviour,
    pub wework: WeworkBehaviour,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            http_addr: loopback(8090),
            smtp_addr: loopback(2525),
            smtps_addr: loopback(4650),
            cert_dir: None,
            smtp: SmtpBehaviour::default(),
            wework: WeworkBehaviour::default(),
        }
    }
}

impl SimConfig {
    /// Every listener on `127.0.0.1:0`: what tests want.
    pub fn ephemeral() -> Self {
        SimConfig {
            http_addr: loopback(0),
            smtp_addr: loopback(0),
            smtps_addr: loopback(0),
            ..SimConfig::default()
        }
    }

    pub fn behaviour(&self) -> SimBehaviour {
        SimBehaviour { smtp: self.smtp, wework: self.wework }
    }
}

/// Fault injection for SMTP, applied when a message's DATA ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpBehaviour {
    /// Delay before answering the end of DATA.
    #[serde(default)]
    pub latency_ms: u64,
    /// Share of messages answered `451 4.3.0` (retry later).
    #[serde(default)]
    pub fail_rate: f64,
    /// Share of messages answered `550 5.1.1` (permanent).
    #[serde(default)]
    pub reject_rate: f64,
}

/// Fault injection for WeWork `message/send`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeworkBehaviour {
    /// Delay before answering a send.
    #[serde(default)]
    pub latency_ms: u64,
    /// Share of sends answered errcode -1 "system busy".
    #[serde(default)]
    pub fail_rate: f64,
    /// Share of sends answered errcode 45009 (frequency limit).
    #[serde(default)]
    pub rate_limit_rate: f64,
}

/// The live injection settings, as read and written at `/sim/config`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SimBehaviour {
    pub smtp: SmtpBehaviour,
    pub wework: WeworkBehaviour,
}

/// A partial update of [`SimBehaviour`]: absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BehaviourPatch {
    pub smtp: Option<SmtpPatch>,
    pub wework: Option<WeworkPatch>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SmtpPatch {
    pub latency_ms: Option<u64>,
    pub fail_rate: Option<f64>,
    pub reject_rate: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeworkPatch {
    pub latency_ms: Option<u64>,
    pub fail_rate: Option<f64>,
    pub rate_limit_rate: Option<f64>,
}

impl BehaviourPatch {
    /// `current` with this patch's fields replaced.
    pub fn apply(&self, current: SimBehaviour) -> SimBehaviour {
        let mut next = current;
        if let Some(smtp) = &self.smtp {
            next.smtp.latency_ms = smtp.latency_ms.unwrap_or(next.smtp.latency_ms);
            next.smtp.fail_rate = smtp.fail_rate.unwrap_or(next.smtp.fail_rate);
            next.smtp.reject_rate = smtp.reject_rate.unwrap_or(next.smtp.reject_rate);
        }
        if let Some(wework) = &self.wework {
            next.wework.latency_ms = wework.latency_ms.unwrap_or(next.wework.latency_ms);
            next.wework.fail_rate = wework.fail_rate.unwrap_or(next.wework.fail_rate);
            next.wework.rate_limit_rate =
                wework.rate_limit_rate.unwrap_or(next.wework.rate_limit_rate);
        }
        next
    }
}

/// A setting outside its range, naming the field as `smtp.fail_rate`.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidSetting {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidSetting {}

fn check_rate(field: &'static str, value: f64) -> Result<(), InvalidSetting> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(InvalidSetting {
            field,
            message: format!("{field} must be a number from 0 to 1, got {value}"),
        })
    }
}

fn check_latency(field: &'static str, value: u64) -> Result<(), InvalidSetting> {
    if value <= MAX_LATENCY_MS {
        Ok(())
    } else {
        Err(InvalidSetting {
            field,
            message: format!("{field} must be at most {MAX_LATENCY_MS} ms, got {value}"),
        })
    }
}

impl SimBehaviour {
    /// Rates lie in `0..=1` and latencies up to [`MAX_LATENCY_MS`].
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        check_latency("smtp.latency_ms", self.smtp.latency_ms)?;
        check_rate("smtp.fail_rate", self.smtp.fail_rate)?;
        check_rate("smtp.reject_rate", self.smtp.reject_rate)?;
        check_latency("wework.latency_ms", self.wework.latency_ms)?;
        check_rate("wework.fail_rate", self.wework.fail_rate)?;
        check_rate("wework.rate_limit_rate", self.wework.rate_limit_rate)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_behaviour_is_valid_and_faultless() {
        let behaviour = SimConfig::default().behaviour();
        assert_eq!(behaviour, SimBehaviour::default());
        assert!(behaviour.validate().is_ok());
    }

    #[test]
    fn a_rate_above_one_names_its_field() {
        let mut behaviour = SimBehaviour::default();
        behaviour.wework.rate_limit_rate = 1.5;
        let error = behaviour.validate().err();
        assert_eq!(error.map(|e| e.field), Some("wework.rate_limit_rate"));
    }

    #[test]
    fn a_nan_rate_is_invalid() {
        let mut behaviour = SimBehaviour::default();
        behaviour.smtp.fail_rate = f64::NAN;
        assert!(behaviour.validate().is_err());
    }

    #[test]
    fn a_patch_changes_only_the_fields_it_names() {
        let mut current = SimBehaviour::default();
        current.smtp.latency_ms = 20;
        let patch: BehaviourPatch =
            serde_json::from_str(r#"{"smtp": {"fail_rate": 0.5}}"#).expect("valid patch");
        let next = patch.apply(current);
        assert_eq!(next.smtp.latency_ms, 20);
        assert_eq!(next.smtp.fail_rate, 0.5);
        assert_eq!(next.wework, current.wework);
    }
}
