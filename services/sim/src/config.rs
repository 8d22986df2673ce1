//! The simulator's settings: where it listens ([`SimConfig`]) and how it
//! misbehaves ([`SimBehaviour`]), the latter changeable while it runs.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The longest latency the simulator accepts (ten minutes): beyond that a
/// client's timeout, not the simulator, decides what a test observes.
pub const MAX_LATENCY_MS: u64 = 600_000;

/// The secret webhook signatures are checked with unless one is given
/// (`--webhook-secret`); the deploy scripts register providers with it.
pub const DEFAULT_WEBHOOK_SECRET: &str = "herald-sim-webhook-secret";

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
    pub webhook: WebhookBehaviour,
    /// The key of the HMAC-SHA256 every webhook must be signed with.
    pub webhook_secret: String,
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
            webhook: WebhookBehaviour::default(),
            webhook_secret: DEFAULT_WEBHOOK_SECRET.to_owned(),
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
        SimBehaviour {
            smtp: self.smtp,
            wework: self.wework,
            webhook: self.webhook,
        }
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

/// Fault injection for the webhook receiver, applied after the signature
/// is checked.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookBehaviour {
    /// Delay before answering a delivery.
    #[serde(default)]
    pub latency_ms: u64,
    /// Share of deliveries answered 503.
    #[serde(default)]
    pub fail_rate: f64,
    /// Share of deliveries answered 429.
    #[serde(default)]
    pub rate_limit_rate: f64,
    /// `Retry-After` (seconds) of those 503 and 429 answers; 0 sends none.
    #[serde(default = "WebhookBehaviour::default_retry_after_s")]
    pub retry_after_s: u64,
}

impl WebhookBehaviour {
    fn default_retry_after_s() -> u64 {
        1
    }
}

impl Default for WebhookBehaviour {
    fn default() -> Self {
        WebhookBehaviour {
            latency_ms: 0,
            fail_rate: 0.0,
            rate_limit_rate: 0.0,
            retry_after_s: WebhookBehaviour::default_retry_after_s(),
        }
    }
}

/// The live injection settings, as read and written at `/sim/config`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SimBehaviour {
    pub smtp: SmtpBehaviour,
    pub wework: WeworkBehaviour,
    #[serde(default)]
    pub webhook: WebhookBehaviour,
}

/// A partial update of [`SimBehaviour`]: absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BehaviourPatch {
    pub smtp: Option<SmtpPatch>,
    pub wework: Option<WeworkPatch>,
    pub webhook: Option<WebhookPatch>,
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

#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookPatch {
    pub latency_ms: Option<u64>,
    pub fail_rate: Option<f64>,
    pub rate_limit_rate: Option<f64>,
    pub retry_after_s: Option<u64>,
}

impl BehaviourPatch {
    /// Reads a `/sim/config` body, naming the offending field on error.
    pub fn from_json(value: &serde_json::Value) -> Result<BehaviourPatch, InvalidSetting> {
        let top = value
            .as_object()
            .ok_or_else(|| InvalidSetting::new("", "the body must be a JSON object"))?;
        let mut patch = BehaviourPatch::default();
        for (key, section) in top {
            let fields = section.as_object().ok_or_else(|| {
                InvalidSetting::new(key.as_str(), format!("{key} must be a JSON object"))
            })?;
            match key.as_str() {
                "smtp" => {
                    let mut smtp = SmtpPatch::default();
                    for (name, value) in fields {
                        let field = format!("smtp.{name}");
                        match name.as_str() {
                            "latency_ms" => smtp.latency_ms = Some(milliseconds(&field, value)?),
                            "fail_rate" => smtp.fail_rate = Some(rate(&field, value)?),
                            "reject_rate" => smtp.reject_rate = Some(rate(&field, value)?),
                            _ => return Err(unknown(field)),
                        }
                    }
                    patch.smtp = Some(smtp);
                }
                "wework" => {
                    let mut wework = WeworkPatch::default();
                    for (name, value) in fields {
                        let field = format!("wework.{name}");
                        match name.as_str() {
                            "latency_ms" => wework.latency_ms = Some(milliseconds(&field, value)?),
                            "fail_rate" => wework.fail_rate = Some(rate(&field, value)?),
                            "rate_limit_rate" => {
                                wework.rate_limit_rate = Some(rate(&field, value)?)
                            }
                            _ => return Err(unknown(field)),
                        }
                    }
                    patch.wework = Some(wework);
                }
                "webhook" => {
                    let mut webhook = WebhookPatch::default();
                    for (name, value) in fields {
                        let field = format!("webhook.{name}");
                        match name.as_str() {
                            "latency_ms" => webhook.latency_ms = Some(milliseconds(&field, value)?),
                            "fail_rate" => webhook.fail_rate = Some(rate(&field, value)?),
                            "rate_limit_rate" => {
                                webhook.rate_limit_rate = Some(rate(&field, value)?)
                            }
                            "retry_after_s" => {
                                webhook.retry_after_s = Some(seconds(&field, value)?)
                            }
                            _ => return Err(unknown(field)),
                        }
                    }
                    patch.webhook = Some(webhook);
                }
                _ => return Err(unknown(key.clone())),
            }
        }
        Ok(patch)
    }

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
            next.wework.rate_limit_rate = wework
                .rate_limit_rate
                .unwrap_or(next.wework.rate_limit_rate);
        }
        if let Some(webhook) = &self.webhook {
            next.webhook.latency_ms = webhook.latency_ms.unwrap_or(next.webhook.latency_ms);
            next.webhook.fail_rate = webhook.fail_rate.unwrap_or(next.webhook.fail_rate);
            next.webhook.rate_limit_rate = webhook
                .rate_limit_rate
                .unwrap_or(next.webhook.rate_limit_rate);
            next.webhook.retry_after_s =
                webhook.retry_after_s.unwrap_or(next.webhook.retry_after_s);
        }
        next
    }
}

fn unknown(field: String) -> InvalidSetting {
    let message = format!("{field} is not a setting of the simulator");
    InvalidSetting { field, message }
}

fn milliseconds(field: &str, value: &serde_json::Value) -> Result<u64, InvalidSetting> {
    value.as_u64().ok_or_else(|| {
        InvalidSetting::new(
            field,
            format!("{field} must be a whole number of milliseconds"),
        )
    })
}

fn seconds(field: &str, value: &serde_json::Value) -> Result<u64, InvalidSetting> {
    value.as_u64().ok_or_else(|| {
        InvalidSetting::new(field, format!("{field} must be a whole number of seconds"))
    })
}

fn rate(field: &str, value: &serde_json::Value) -> Result<f64, InvalidSetting> {
    value
        .as_f64()
        .ok_or_else(|| InvalidSetting::new(field, format!("{field} must be a number from 0 to 1")))
}

/// A setting outside its range or of the wrong type, naming the field as
/// `smtp.fail_rate` (empty when the whole body is wrong).
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidSetting {
    pub field: String,
    pub message: String,
}

impl InvalidSetting {
    fn new(field: &str, message: impl Into<String>) -> Self {
        InvalidSetting {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvalidSetting {}

fn check_rate(field: &str, value: f64) -> Result<(), InvalidSetting> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(InvalidSetting::new(
            field,
            format!("{field} must be a number from 0 to 1, got {value}"),
        ))
    }
}

fn check_latency(field: &str, value: u64) -> Result<(), InvalidSetting> {
    if value <= MAX_LATENCY_MS {
        Ok(())
    } else {
        Err(InvalidSetting::new(
            field,
            format!("{field} must be at most {MAX_LATENCY_MS} ms, got {value}"),
        ))
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
        check_latency("webhook.latency_ms", self.webhook.latency_ms)?;
        check_rate("webhook.fail_rate", self.webhook.fail_rate)?;
        check_rate("webhook.rate_limit_rate", self.webhook.rate_limit_rate)?;
        let max_retry_after_s = MAX_LATENCY_MS / 1000;
        if self.webhook.retry_after_s > max_retry_after_s {
            return Err(InvalidSetting::new(
                "webhook.retry_after_s",
                format!(
                    "webhook.retry_after_s must be at most {max_retry_after_s} s, got {}",
                    self.webhook.retry_after_s
                ),
            ));
        }
        Ok(())
    }
}

/// The command line of `herald-sim`: serve (the default) or read the
/// counters of a running simulator.
#[derive(Debug, clap::Parser)]
#[command(
    name = "herald-sim",
    version,
    about = "Herald's provider simulator: an SMTP server (plain with STARTTLS, and implicit TLS), \
             a WeWork-compatible HTTP API and a webhook receiver on loopback, counting every message it receives \
             by X-Herald-Message-Id, with latency and failures injectable live through /sim/config.",
    args_conflicts_with_subcommands = true
)]
pub struct SimArgs {
    #[command(subcommand)]
    pub command: Option<SimCommand>,
    /// WeWork API, webhook receiver, /sim control API and /metrics /healthz /readyz.
    #[arg(long, env = "HERALD_HTTP_ADDR", default_value = "127.0.0.1:8090")]
    pub http_addr: SocketAddr,
    /// SMTP port offering STARTTLS.
    #[arg(long, env = "HERALD_SIM_SMTP_ADDR", default_value = "127.0.0.1:2525")]
    pub smtp_addr: SocketAddr,
    /// SMTP over implicit TLS.
    #[arg(long, env = "HERALD_SIM_SMTPS_ADDR", default_value = "127.0.0.1:4650")]
    pub smtps_addr: SocketAddr,
    /// Directory for the generated ca.pem (default: a temporary directory).
    #[arg(long, env = "HERALD_SIM_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Delay before answering the end of SMTP DATA.
    #[arg(long, env = "HERALD_SIM_SMTP_LATENCY_MS", default_value_t = 0)]
    pub smtp_latency_ms: u64,
    /// Share of emails answered 451 (0..=1).
    #[arg(long, env = "HERALD_SIM_SMTP_FAIL_RATE", default_value_t = 0.0)]
    pub smtp_fail_rate: f64,
    /// Share of emails answered 550 (0..=1).
    #[arg(long, env = "HERALD_SIM_SMTP_REJECT_RATE", default_value_t = 0.0)]
    pub smtp_reject_rate: f64,
    /// Delay before answering a WeWork send.
    #[arg(long, env = "HERALD_SIM_WEWORK_LATENCY_MS", default_value_t = 0)]
    pub wework_latency_ms: u64,
    /// Share of WeWork sends answered errcode -1 (0..=1).
    #[arg(long, env = "HERALD_SIM_WEWORK_FAIL_RATE", default_value_t = 0.0)]
    pub wework_fail_rate: f64,
    /// Share of WeWork sends answered errcode 45009 (0..=1).
    #[arg(long, env = "HERALD_SIM_WEWORK_RATE_LIMIT_RATE", default_value_t = 0.0)]
    pub wework_rate_limit_rate: f64,
    /// Key of the HMAC-SHA256 that webhooks (POST /webhook/...) must be
    /// signed with; a wrong or missing X-Herald-Signature is answered 401.
    #[arg(
        long,
        env = "HERALD_SIM_WEBHOOK_SECRET",
        default_value = DEFAULT_WEBHOOK_SECRET,
        hide_env_values = true
    )]
    pub webhook_secret: String,
    /// Delay before answering a webhook.
    #[arg(long, env = "HERALD_SIM_WEBHOOK_LATENCY_MS", default_value_t = 0)]
    pub webhook_latency_ms: u64,
    /// Share of webhooks answered 503 with Retry-After (0..=1).
    #[arg(long, env = "HERALD_SIM_WEBHOOK_FAIL_RATE", default_value_t = 0.0)]
    pub webhook_fail_rate: f64,
    /// Share of webhooks answered 429 with Retry-After (0..=1).
    #[arg(
        long,
        env = "HERALD_SIM_WEBHOOK_RATE_LIMIT_RATE",
        default_value_t = 0.0
    )]
    pub webhook_rate_limit_rate: f64,
}

#[derive(Debug, clap::Subcommand)]
pub enum SimCommand {
    /// Print the counters of a running simulator (GET /sim/stats) as JSON.
    Stats {
        /// The simulator's HTTP address.
        #[arg(long, env = "HERALD_SIM_URL", default_value = "http://127.0.0.1:8090")]
        url: String,
    },
}

impl SimArgs {
    pub fn config(&self) -> SimConfig {
        SimConfig {
            http_addr: self.http_addr,
            smtp_addr: self.smtp_addr,
            smtps_addr: self.smtps_addr,
            cert_dir: self.cert_dir.clone(),
            smtp: SmtpBehaviour {
                latency_ms: self.smtp_latency_ms,
                fail_rate: self.smtp_fail_rate,
                reject_rate: self.smtp_reject_rate,
            },
            wework: WeworkBehaviour {
                latency_ms: self.wework_latency_ms,
                fail_rate: self.wework_fail_rate,
                rate_limit_rate: self.wework_rate_limit_rate,
            },
            webhook: WebhookBehaviour {
                latency_ms: self.webhook_latency_ms,
                fail_rate: self.webhook_fail_rate,
                rate_limit_rate: self.webhook_rate_limit_rate,
                ..WebhookBehaviour::default()
            },
            webhook_secret: self.webhook_secret.clone(),
        }
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
        assert_eq!(
            error.map(|e| e.field),
            Some("wework.rate_limit_rate".to_owned())
        );
    }

    #[test]
    fn a_patch_of_the_wrong_type_names_its_field() {
        let error = BehaviourPatch::from_json(&serde_json::json!({"wework": {"latency_ms": "x"}}));
        assert_eq!(
            error.err().map(|e| e.field),
            Some("wework.latency_ms".to_owned())
        );
        let error = BehaviourPatch::from_json(&serde_json::json!({"sms": {}}));
        assert_eq!(error.err().map(|e| e.field), Some("sms".to_owned()));
    }

    #[test]
    fn the_command_line_parses_with_defaults() {
        use clap::Parser;
        let args = SimArgs::try_parse_from(["herald-sim", "--smtp-fail-rate", "0.25"])
            .expect("valid arguments");
        let config = args.config();
        assert_eq!(config.smtp.fail_rate, 0.25);
        assert_eq!(config.smtps_addr.port(), 4650);
        let args = SimArgs::try_parse_from(["herald-sim", "stats", "--url", "http://x:1"])
            .expect("valid arguments");
        assert!(matches!(args.command, Some(SimCommand::Stats { .. })));
    }

    #[test]
    fn a_webhook_patch_changes_its_fields_and_checks_them() {
        let patch = BehaviourPatch::from_json(
            &serde_json::json!({"webhook": {"fail_rate": 1, "retry_after_s": 7}}),
        )
        .expect("valid patch");
        let next = patch.apply(SimBehaviour::default());
        assert_eq!(next.webhook.fail_rate, 1.0);
        assert_eq!(next.webhook.retry_after_s, 7);
        assert_eq!(next.webhook.latency_ms, 0);
        let error =
            BehaviourPatch::from_json(&serde_json::json!({"webhook": {"retry_after_s": -1}}));
        assert_eq!(
            error.err().map(|e| e.field),
            Some("webhook.retry_after_s".to_owned())
        );
        let mut behaviour = SimBehaviour::default();
        behaviour.webhook.rate_limit_rate = 2.0;
        assert_eq!(
            behaviour.validate().err().map(|e| e.field),
            Some("webhook.rate_limit_rate".to_owned())
        );
    }

    #[test]
    fn the_webhook_secret_has_a_default_the_deploy_scripts_know() {
        use clap::Parser;
        let args = SimArgs::try_parse_from(["herald-sim"]).expect("valid arguments");
        assert_eq!(args.config().webhook_secret, DEFAULT_WEBHOOK_SECRET);
        let args = SimArgs::try_parse_from(["herald-sim", "--webhook-secret", "s3cret-s3cret-16"])
            .expect("valid arguments");
        assert_eq!(args.config().webhook_secret, "s3cret-s3cret-16");
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
        let patch = BehaviourPatch::from_json(&serde_json::json!({"smtp": {"fail_rate": 0.5}}))
            .expect("valid patch");
        let next = patch.apply(current);
        assert_eq!(next.smtp.latency_ms, 20);
        assert_eq!(next.smtp.fail_rate, 0.5);
        assert_eq!(next.wework, current.wework);
    }
}
