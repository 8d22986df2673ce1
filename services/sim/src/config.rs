//! The simulator's settings: where it listens ([`SimConfig`]) and how it
//! misbehaves ([`SimBehaviour`]), the latter changeable while it runs.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

/// The longest latency the simulator accepts (ten minutes): beyond that a
/// client's timeout, not the simulator, decides what a test observes.
pub const MAX_LATENCY_MS: u64 = 600_000;

pub use herald_api::sim::{
    BehaviourPatch, SimBehaviour, SmtpBehaviour, SmtpPatch, WebhookBehaviour, WebhookPatch,
    WeworkBehaviour, WeworkPatch, DEFAULT_WEBHOOK_SECRET,
};

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

/// Reads a `PUT /sim/config` body in one pass: a field of the wrong type
/// or name is refused naming it (`smtp.fail_rate`), as Herald's API does.
pub fn parse_patch(body: &[u8]) -> Result<BehaviourPatch, herald_api::ParseError> {
    herald_api::parse_body::<BehaviourPatch>(body)
}

impl From<herald_api::FieldError> for InvalidSetting {
    fn from(e: herald_api::FieldError) -> Self {
        InvalidSetting {
            message: format!("{}: {}", e.field, e.message),
            field: e.field,
        }
    }
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

/// Whether the simulator can take `behaviour`: rates lie in `0..=1` and
/// latencies up to [`MAX_LATENCY_MS`]. (A function, not a method: the type
/// is the shared contract's, the limits are the simulator's.)
pub fn validate(b: &SimBehaviour) -> Result<(), InvalidSetting> {
    check_latency("smtp.latency_ms", b.smtp.latency_ms)?;
    check_rate("smtp.fail_rate", b.smtp.fail_rate)?;
    check_rate("smtp.reject_rate", b.smtp.reject_rate)?;
    check_latency("wework.latency_ms", b.wework.latency_ms)?;
    check_rate("wework.fail_rate", b.wework.fail_rate)?;
    check_rate("wework.rate_limit_rate", b.wework.rate_limit_rate)?;
    check_latency("webhook.latency_ms", b.webhook.latency_ms)?;
    check_rate("webhook.fail_rate", b.webhook.fail_rate)?;
    check_rate("webhook.rate_limit_rate", b.webhook.rate_limit_rate)?;
    let max_retry_after_s = MAX_LATENCY_MS / 1000;
    if b.webhook.retry_after_s > max_retry_after_s {
        return Err(InvalidSetting::new(
            "webhook.retry_after_s",
            format!(
                "webhook.retry_after_s must be at most {max_retry_after_s} s, got {}",
                b.webhook.retry_after_s
            ),
        ));
    }
    Ok(())
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
                refuse_every: 0,
            },
            wework: WeworkBehaviour {
                latency_ms: self.wework_latency_ms,
                fail_rate: self.wework_fail_rate,
                rate_limit_rate: self.wework_rate_limit_rate,
                rate_limit_per_sec: 0,
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

    fn patch(body: serde_json::Value) -> Result<BehaviourPatch, InvalidSetting> {
        match parse_patch(body.to_string().as_bytes()) {
            Ok(patch) => Ok(patch),
            Err(herald_api::ParseError::Field(e)) => Err(e.into()),
            Err(e) => panic!("the test's body is JSON: {e}"),
        }
    }

    #[test]
    fn the_default_behaviour_is_valid_and_faultless() {
        let behaviour = SimConfig::default().behaviour();
        assert_eq!(behaviour, SimBehaviour::default());
        assert!(validate(&behaviour).is_ok());
    }

    #[test]
    fn a_rate_above_one_names_its_field() {
        let mut behaviour = SimBehaviour::default();
        behaviour.wework.rate_limit_rate = 1.5;
        let error = validate(&behaviour).err();
        assert_eq!(
            error.map(|e| e.field),
            Some("wework.rate_limit_rate".to_owned())
        );
    }

    #[test]
    fn a_patch_of_the_wrong_type_names_its_field() {
        let error = patch(serde_json::json!({"wework": {"latency_ms": "x"}}));
        assert_eq!(
            error.err().map(|e| e.field),
            Some("wework.latency_ms".to_owned())
        );
        let error = patch(serde_json::json!({"sms": {}}));
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
        let parsed = patch(serde_json::json!({"webhook": {"fail_rate": 1, "retry_after_s": 7}}))
            .expect("valid patch");
        let next = parsed.apply(SimBehaviour::default());
        assert_eq!(next.webhook.fail_rate, 1.0);
        assert_eq!(next.webhook.retry_after_s, 7);
        assert_eq!(next.webhook.latency_ms, 0);
        let error = patch(serde_json::json!({"webhook": {"retry_after_s": -1}}));
        assert_eq!(
            error.err().map(|e| e.field),
            Some("webhook.retry_after_s".to_owned())
        );
        let mut behaviour = SimBehaviour::default();
        behaviour.webhook.rate_limit_rate = 2.0;
        assert_eq!(
            validate(&behaviour).err().map(|e| e.field),
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
        assert!(validate(&behaviour).is_err());
    }

    #[test]
    fn a_patch_changes_only_the_fields_it_names() {
        let mut current = SimBehaviour::default();
        current.smtp.latency_ms = 20;
        let patch = patch(serde_json::json!({"smtp": {"fail_rate": 0.5}})).expect("valid patch");
        let next = patch.apply(current);
        assert_eq!(next.smtp.latency_ms, 20);
        assert_eq!(next.smtp.fail_rate, 0.5);
        assert_eq!(next.wework, current.wework);
    }
}
