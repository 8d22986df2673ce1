//! The failure classifier: ordered rule tables, one per kind of answer (SMTP
//! replies, WeWork errcodes, HTTP statuses), that say what happens after a
//! provider refused a message. Rules from `--classifier-file` are tried
//! before the built-in defaults; the first match wins. See
//! `docs/classifier.md` for the file format.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use herald_domain::Disposition;
use regex::{Regex, RegexBuilder};
use serde::Deserialize;

/// A retry waits at most this long, however many attempts came before.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(15 * 60);
/// The wait after a transient SMTP reply (4xx) that no rule names.
pub const SMTP_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The wait after an HTTP 5xx or 429 that no rule names.
pub const HTTP_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The wait when a WeWork token is refused again right after a refresh.
pub const REFRESH_TOKEN_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Wording some providers put in a 5xx reply that is really a rate limit
/// ("550 … frequency limited").
const RATE_LIMIT_WORDING: &str =
    r"frequency limited|rate[- ]?limit|too many (messages|connections)|try again later|temporarily";
/// Refuses patterns that would compile to a huge automaton.
const MAX_PATTERN_SIZE: usize = 1 << 20;
const ACTIONS: &str = "retry, failover, throttle, dead_letter, in_doubt, refresh_token, sent";
/// Wording of a 4xx SMTP reply that says the sender goes too fast (not a
/// greylisting "try again later"): the provider is throttled.
const SLOW_DOWN_WORDING: &str = r"rate[- ]?limit|too many (messages|connections|requests|mails)|throttl|slow down|sending rate|at a rate|frequency|exceeded";

/// What a rule says to do with a refused message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The provider took the message after all.
    Sent,
    /// Transient: try again after `after`, doubled for each attempt after the
    /// first (see [`retry_delay`]).
    Retry { after: Duration },
    /// This provider cannot take it now: try another.
    Failover,
    /// The provider says "too fast": lower its admitted rate (held for
    /// `hold` when the rule or the answer says how long) and try the
    /// message again, no attempt spent (decision 0018).
    Throttle { hold: Option<Duration> },
    /// Permanent: dead-letter with the provider's reason.
    DeadLetter,
    /// The provider may have taken it: never resent silently.
    InDoubt,
    /// WeWork only: the access token is stale. The adapter refreshes it and
    /// resends once; refused again, it retries after `then_after`.
    RefreshToken { then_after: Duration },
}

impl Action {
    /// The disposition for this action on attempt `attempt` (1 for the
    /// first). A [`Action::RefreshToken`] reaching here has already had its
    /// refresh, so it is a retry.
    pub fn disposition(
        self,
        attempt: u32,
        code: impl Into<String>,
        reason: impl Into<String>,
    ) -> Disposition {
        let (code, reason) = (code.into(), reason.into());
        match self {
            Action::Sent => Disposition::Sent {
                provider_message_id: None,
            },
            Action::Retry { after } | Action::RefreshToken { then_after: after } => {
                Disposition::RetryAfter {
                    after: retry_delay(after, attempt),
                    code,
                    reason,
                }
            }
            Action::Failover => Disposition::Failover { code, reason },
            Action::Throttle { hold } => Disposition::Throttled { hold, code, reason },
            Action::DeadLetter => Disposition::DeadLetter { code, reason },
            Action::InDoubt => Disposition::InDoubt { reason },
        }
    }
}

/// `base`, doubled for each attempt after the first, up to
/// [`MAX_RETRY_DELAY`].
pub fn retry_delay(base: Duration, attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(10);
    base.saturating_mul(1 << doublings).min(MAX_RETRY_DELAY)
}

/// The rule tables of every provider kind, user rules first. Built once at
/// startup and shared by every adapter.
#[derive(Debug)]
pub struct Classifier {
    smtp: Vec<SmtpRule>,
    wework: Vec<WeworkRule>,
    http: Vec<HttpRule>,
}

impl Default for Classifier {
    /// The built-in defaults only.
    fn default() -> Self {
        Classifier {
            smtp: default_smtp_rules(),
            wework: default_wework_rules(),
            http: Vec::new(),
        }
    }
}

impl Classifier {
    /// The rules of the JSON file at `path` followed by the defaults; the
    /// defaults alone when `path` is `None`.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Classifier> {
        let Some(path) = path else {
            return Ok(Classifier::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("Failed to read {}", path.display()))?;
        let classifier = Classifier::from_json(&text)
            .with_context(|| format!("{} is not a valid classifier file", path.display()))?;
        tracing::info!(
            path = %path.display(),
            smtp_rules = classifier.smtp.len(),
            wework_rules = classifier.wework.len(),
            http_rules = classifier.http.len(),
            "Loaded the failure classifier."
        );
        Ok(classifier)
    }

    /// The rules of a classifier file followed by the defaults.
    pub fn from_json(text: &str) -> Result<Classifier, RuleError> {
        let file: RulesFile =
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text))
                .map_err(|e| RuleError {
                    path: e.path().to_string(),
                    message: e.into_inner().to_string(),
                })?;
        let mut classifier = Classifier {
            smtp: Vec::new(),
            wework: Vec::new(),
            http: Vec::new(),
        };
        for (index, spec) in file.smtp.into_iter().enumerate() {
            if spec.code.is_none() && spec.enhanced.is_none() && spec.text.is_none() {
                return Err(RuleError::at(
                    format!("smtp[{index}]"),
                    "a rule needs at least one of code, enhanced, text",
                ));
            }
            classifier.smtp.push(SmtpRule {
                code: spec.code,
                enhanced: spec.enhanced,
                text: spec.text.map(|t| t.0),
                action: spec.action.compile("smtp", index, spec.after_s)?,
            });
        }
        for (index, spec) in file.wework.into_iter().enumerate() {
            classifier.wework.push(WeworkRule {
                errcode: spec.errcode,
                action: spec.action.compile("wework", index, spec.after_s)?,
            });
        }
        for (index, spec) in file.http.into_iter().enumerate() {
            classifier.http.push(HttpRule {
                status: spec.status,
                action: spec.action.compile("http", index, spec.after_s)?,
            });
        }
        let defaults = Classifier::default();
        classifier.smtp.extend(defaults.smtp);
        classifier.wework.extend(defaults.wework);
        classifier.http.extend(defaults.http);
        Ok(classifier)
    }

    /// A negative SMTP reply: its code (4xx, 5xx) and its text, which may
    /// start with an enhanced status code ("5.7.1 …"). Unmatched: 4xx retries
    /// after [`SMTP_RETRY_AFTER`], anything else dead-letters.
    pub fn smtp(&self, code: u16, text: &str) -> Action {
        let enhanced = EnhancedCode::parse(text);
        self.smtp
            .iter()
            .find(|rule| rule.matches(code, enhanced, text))
            .map_or_else(
                || {
                    if code / 100 == 4 {
                        Action::Retry {
                            after: SMTP_RETRY_AFTER,
                        }
                    } else {
                        Action::DeadLetter
                    }
                },
                |rule| rule.action,
            )
    }

    /// A WeWork errcode other than 0 (which is always sent). Unmatched:
    /// dead-letters.
    pub fn wework(&self, errcode: i64) -> Action {
        self.wework
            .iter()
            .find(|rule| rule.errcode == errcode)
            .map_or(Action::DeadLetter, |rule| rule.action)
    }

    /// A non-2xx HTTP status. Unmatched: 429 throttles the provider (its
    /// `Retry-After` holds it), 5xx retries after [`HTTP_RETRY_AFTER`],
    /// anything else dead-letters.
    pub fn http(&self, status: u16) -> Action {
        self.http
            .iter()
            .find(|rule| rule.status.matches(status))
            .map_or_else(
                || {
                    if status == 429 {
                        Action::Throttle { hold: None }
                    } else if status / 100 == 5 {
                        Action::Retry {
                            after: HTTP_RETRY_AFTER,
                        }
                    } else {
                        Action::DeadLetter
                    }
                },
                |rule| rule.action,
            )
    }
}

/// Why a classifier file was refused, with the rule and field at fault
/// (`smtp[2].action: unknown action "retyr"; …`).
#[derive(Debug, thiserror::Error)]
pub struct RuleError {
    path: String,
    message: String,
}

impl RuleError {
    fn at(path: String, message: impl Into<String>) -> RuleError {
        RuleError {
            path,
            message: message.into(),
        }
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // serde_path_to_error names the document itself ".".
        if self.path.is_empty() || self.path == "." {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug)]
struct SmtpRule {
    code: Option<CodePattern>,
    enhanced: Option<EnhancedPattern>,
    text: Option<Regex>,
    action: Action,
}

impl SmtpRule {
    /// Every matcher the rule has must match.
    fn matches(&self, code: u16, enhanced: Option<EnhancedCode>, text: &str) -> bool {
        self.code.as_ref().is_none_or(|p| p.matches(code))
            && self
                .enhanced
                .as_ref()
                .is_none_or(|p| enhanced.is_some_and(|e| p.matches(e)))
            && self.text.as_ref().is_none_or(|p| p.is_match(text))
    }
}

#[derive(Debug)]
struct WeworkRule {
    errcode: i64,
    action: Action,
}

#[derive(Debug)]
struct HttpRule {
    status: CodePattern,
    action: Action,
}

/// The built-in SMTP rules. Replies they do not name fall back to 4xx retry,
/// 5xx dead letter.
fn default_smtp_rules() -> Vec<SmtpRule> {
    let retry = Action::Retry {
        after: SMTP_RETRY_AFTER,
    };
    vec![
        SmtpRule {
            code: Some(CodePattern([Some(5), None, None])),
            enhanced: None,
            // A constant, compiled by every test run: this cannot panic.
            text: Some(
                text_pattern(RATE_LIMIT_WORDING).expect("the rate-limit pattern is a valid regex"),
            ),
            action: retry,
        },
        // A 4xx that says "too fast" (421 or 451 with rate wording):
        // throttle the provider, whatever else the reply says.
        SmtpRule {
            code: Some(CodePattern([Some(4), None, None])),
            enhanced: None,
            // A constant, compiled by every test run: this cannot panic.
            text: Some(
                text_pattern(SLOW_DOWN_WORDING).expect("the slow-down pattern is a valid regex"),
            ),
            action: Action::Throttle { hold: None },
        },
        // The server is closing the channel (often shutting down): the
        // message was not taken and another provider can take it now.
        SmtpRule {
            code: Some(CodePattern([Some(4), Some(2), Some(1)])),
            enhanced: None,
            text: None,
            action: Action::Failover,
        },
        // An enhanced status of 4.x.x is transient whatever the reply code.
        SmtpRule {
            code: None,
            enhanced: Some(EnhancedPattern([Some(4), None, None])),
            text: None,
            action: retry,
        },
    ]
}

/// The built-in WeWork rules. Errcodes they do not name dead-letter.
fn default_wework_rules() -> Vec<WeworkRule> {
    let retry = |secs| Action::Retry {
        after: Duration::from_secs(secs),
    };
    let refresh = Action::RefreshToken {
        then_after: REFRESH_TOKEN_RETRY_AFTER,
    };
    vec![
        // System busy.
        WeworkRule {
            errcode: -1,
            action: retry(5),
        },
        // API frequency limit: the app goes too fast.
        WeworkRule {
            errcode: 45009,
            action: Action::Throttle { hold: None },
        },
        // Too many concurrent requests.
        WeworkRule {
            errcode: 45033,
            action: Action::Throttle { hold: None },
        },
        // Invalid and expired access token.
        WeworkRule {
            errcode: 40014,
            action: refresh,
        },
        WeworkRule {
            errcode: 42001,
            action: refresh,
        },
    ]
}

fn text_pattern(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(MAX_PATTERN_SIZE)
        .build()
}

/// A reply code or HTTP status, exact ("550") or with `x` for any digit
/// ("55x", "4xx").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CodePattern([Option<u8>; 3]);

impl CodePattern {
    fn matches(&self, code: u16) -> bool {
        let digits = [code / 100, code / 10 % 10, code % 10];
        code < 1000
            && self
                .0
                .iter()
                .zip(digits)
                .all(|(want, got)| want.is_none_or(|w| u16::from(w) == got))
    }
}

impl TryFrom<serde_json::Value> for CodePattern {
    type Error = String;

    /// JSON may write a code as a string ("550", "5xx") or a number (550).
    fn try_from(raw: serde_json::Value) -> Result<Self, Self::Error> {
        let text = match raw {
            serde_json::Value::String(text) => text,
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(format!(
                    "{other} is not a code: expected a string like \"550\" or \"4xx\""
                ))
            }
        };
        let invalid = || {
            format!("{text:?} is not a code: expected three digits or x, like \"550\", \"55x\" or \"4xx\", starting with 1 to 5")
        };
        let chars: Vec<char> = text.chars().collect();
        if chars.len() != 3 || !matches!(chars[0], '1'..='5') {
            return Err(invalid());
        }
        let mut digits = [None; 3];
        for (slot, c) in digits.iter_mut().zip(chars) {
            *slot = match c {
                'x' | 'X' => None,
                // A char digit is below 10: the cast keeps it.
                c => Some(c.to_digit(10).ok_or_else(invalid)? as u8),
            };
        }
        Ok(CodePattern(digits))
    }
}

impl<'de> Deserialize<'de> for CodePattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        CodePattern::try_from(serde_json::Value::deserialize(deserializer)?)
            .map_err(serde::de::Error::custom)
    }
}

/// An enhanced status code (RFC 3463) at the start of a reply's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EnhancedCode([u16; 3]);

impl EnhancedCode {
    /// `5.7.1` from "5.7.1 Sender rejected"; `None` when the text does not
    /// start with one.
    fn parse(text: &str) -> Option<EnhancedCode> {
        let first = text.split_whitespace().next()?;
        let mut parts = first.split('.');
        let mut code = [0u16; 3];
        for slot in &mut code {
            let part = parts.next()?;
            if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = part.parse().ok()?;
        }
        (parts.next().is_none() && matches!(code[0], 2 | 4 | 5)).then_some(EnhancedCode(code))
    }
}

/// A prefix of an enhanced status code, by parts: "5.7.1" matches 5.7.1
/// only, "5.7" any 5.7.x, "4." any 4.x.x; `x` stands for any part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EnhancedPattern([Option<u16>; 3]);

impl EnhancedPattern {
    fn matches(&self, code: EnhancedCode) -> bool {
        self.0
            .iter()
            .zip(code.0)
            .all(|(want, got)| want.is_none_or(|w| w == got))
    }
}

impl TryFrom<String> for EnhancedPattern {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let invalid = || {
            format!("{text:?} is not an enhanced status code prefix: expected like \"5.7.1\", \"5.7\" or \"4.\"")
        };
        let parts: Vec<&str> = text.strip_suffix('.').unwrap_or(&text).split('.').collect();
        if parts.len() > 3 {
            return Err(invalid());
        }
        let mut pattern = [None; 3];
        for (slot, part) in pattern.iter_mut().zip(&parts) {
            *slot = match *part {
                "x" | "X" => None,
                part if (1..=3).contains(&part.len())
                    && part.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    Some(part.parse().map_err(|_| invalid())?)
                }
                _ => return Err(invalid()),
            };
        }
        if !matches!(pattern[0], Some(2 | 4 | 5)) {
            return Err(invalid());
        }
        Ok(EnhancedPattern(pattern))
    }
}

impl<'de> Deserialize<'de> for EnhancedPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        EnhancedPattern::try_from(String::deserialize(deserializer)?)
            .map_err(serde::de::Error::custom)
    }
}

/// A case-insensitive regular expression searched for in a reply's text.
struct TextPattern(Regex);

impl<'de> Deserialize<'de> for TextPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text_pattern(&text).map(TextPattern).map_err(|e| {
            serde::de::Error::custom(format!("{text:?} is not a valid regular expression: {e}"))
        })
    }
}

/// An action as a file names it, before its `after_s` is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActionName {
    Retry,
    Failover,
    Throttle,
    DeadLetter,
    InDoubt,
    RefreshToken,
    Sent,
}

impl ActionName {
    /// The action of rule `index` of table `table`.
    fn compile(self, table: &str, index: usize, after_s: Option<u64>) -> Result<Action, RuleError> {
        let at = |field: &str| format!("{table}[{index}].{field}");
        let after = match after_s {
            Some(0) => return Err(RuleError::at(at("after_s"), "must be at least 1")),
            Some(secs) => Some(Duration::from_secs(secs)),
            None => None,
        };
        match (self, after) {
            (ActionName::Retry, Some(after)) => Ok(Action::Retry { after }),
            (ActionName::Retry, None) => Err(RuleError::at(
                at("after_s"),
                "is required with action \"retry\"",
            )),
            (ActionName::RefreshToken, _) if table != "wework" => Err(RuleError::at(
                at("action"),
                "refresh_token applies to wework rules only",
            )),
            (ActionName::RefreshToken, after) => Ok(Action::RefreshToken {
                then_after: after.unwrap_or(REFRESH_TOKEN_RETRY_AFTER),
            }),
            // after_s: how long to hold the provider when its answer does
            // not say (an HTTP Retry-After overrides it).
            (ActionName::Throttle, hold) => Ok(Action::Throttle { hold }),
            (_, Some(_)) => Err(RuleError::at(
                at("after_s"),
                "is used only with actions retry, throttle and refresh_token",
            )),
            (ActionName::Failover, None) => Ok(Action::Failover),
            (ActionName::DeadLetter, None) => Ok(Action::DeadLetter),
            (ActionName::InDoubt, None) => Ok(Action::InDoubt),
            (ActionName::Sent, None) => Ok(Action::Sent),
        }
    }
}

impl TryFrom<String> for ActionName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Ok(match name.as_str() {
            "retry" => ActionName::Retry,
            "failover" => ActionName::Failover,
            "throttle" => ActionName::Throttle,
            "dead_letter" => ActionName::DeadLetter,
            "in_doubt" => ActionName::InDoubt,
            "refresh_token" => ActionName::RefreshToken,
            "sent" => ActionName::Sent,
            _ => {
                return Err(format!(
                    "unknown action {name:?}; expected one of {ACTIONS}"
                ))
            }
        })
    }
}

impl<'de> Deserialize<'de> for ActionName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ActionName::try_from(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// A classifier file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    smtp: Vec<SmtpRuleSpec>,
    #[serde(default)]
    wework: Vec<WeworkRuleSpec>,
    #[serde(default)]
    http: Vec<HttpRuleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpRuleSpec {
    #[serde(default)]
    code: Option<CodePattern>,
    #[serde(default)]
    enhanced: Option<EnhancedPattern>,
    #[serde(default)]
    text: Option<TextPattern>,
    action: ActionName,
    #[serde(default)]
    after_s: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeworkRuleSpec {
    errcode: i64,
    action: ActionName,
    #[serde(default)]
    after_s: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpRuleSpec {
    status: CodePattern,
    action: ActionName,
    #[serde(default)]
    after_s: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{
        "smtp": [
            {"code": "550", "text": "frequency limited", "action": "retry", "after_s": 120},
            {"code": "55x", "enhanced": "5.7.1", "action": "failover"},
            {"text": "message may have been delivered", "action": "in_doubt"}
        ],
        "wework": [
            {"errcode": 45009, "action": "retry", "after_s": 120},
            {"errcode": 81013, "action": "dead_letter"}
        ],
        "http": [
            {"status": "429", "action": "retry", "after_s": 30},
            {"status": 503, "action": "failover"}
        ]
    }"#;

    fn secs(secs: u64) -> Action {
        Action::Retry {
            after: Duration::from_secs(secs),
        }
    }

    fn refused(text: &str) -> String {
        match Classifier::from_json(text) {
            Ok(_) => panic!("{text} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    // Built-in SMTP rules and fallback.

    #[test]
    fn a_5xx_reply_with_rate_limit_wording_retries_after_a_minute() {
        let classifier = Classifier::default();
        for text in [
            "5.7.1 Frequency limited, please slow down",
            "5.7.1 Rate limit exceeded",
            "5.4.5 Too many messages from your IP",
            "Too many connections",
            "Please try again later",
            "5.7.1 Temporarily rejected",
        ] {
            assert_eq!(classifier.smtp(550, text), secs(60), "{text}");
        }
    }

    #[test]
    fn a_421_reply_fails_over() {
        assert_eq!(
            Classifier::default().smtp(421, "4.3.2 Service shutting down"),
            Action::Failover
        );
    }

    #[test]
    fn an_enhanced_4_x_x_status_retries_even_in_a_5xx_reply() {
        assert_eq!(
            Classifier::default().smtp(552, "4.2.2 Mailbox full"),
            secs(60)
        );
    }

    #[test]
    fn a_4xx_reply_no_rule_names_retries_after_a_minute() {
        assert_eq!(Classifier::default().smtp(450, "Mailbox busy"), secs(60));
    }

    #[test]
    fn a_5xx_reply_no_rule_names_dead_letters() {
        assert_eq!(
            Classifier::default().smtp(550, "5.7.1 Sender rejected"),
            Action::DeadLetter
        );
        assert_eq!(
            Classifier::default().smtp(550, "5.1.1 No such user"),
            Action::DeadLetter
        );
    }

    // Built-in WeWork rules and fallback.

    #[test]
    fn wework_system_busy_retries_after_five_seconds() {
        assert_eq!(Classifier::default().wework(-1), secs(5));
    }

    #[test]
    fn the_wework_api_frequency_limit_throttles_the_app() {
        assert_eq!(
            Classifier::default().wework(45009),
            Action::Throttle { hold: None }
        );
    }

    #[test]
    fn too_many_concurrent_wework_requests_throttle_the_app() {
        assert_eq!(
            Classifier::default().wework(45033),
            Action::Throttle { hold: None }
        );
    }

    #[test]
    fn a_4xx_that_says_too_fast_throttles_but_greylisting_does_not() {
        let classifier = Classifier::default();
        let throttle = Action::Throttle { hold: None };
        for (code, text) in [
            (421, "4.7.0 Too many messages, slow down"),
            (451, "4.7.1 Rate limit exceeded for this sender"),
            (450, "4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages"),
        ] {
            assert_eq!(classifier.smtp(code, text), throttle, "{code} {text}");
        }
        assert_eq!(
            classifier.smtp(451, "4.7.1 Greylisted, please try again later"),
            secs(60)
        );
        assert_eq!(
            classifier.smtp(421, "4.3.2 Service shutting down"),
            Action::Failover
        );
    }

    #[test]
    fn a_throttle_rule_takes_an_optional_hold() {
        let classifier = Classifier::from_json(
            r#"{"http": [{"status": "503", "action": "throttle", "after_s": 20}],
                "wework": [{"errcode": 45009, "action": "throttle"}]}"#,
        )
        .expect("rules");
        assert_eq!(
            classifier.http(503),
            Action::Throttle {
                hold: Some(Duration::from_secs(20))
            }
        );
        assert_eq!(classifier.wework(45009), Action::Throttle { hold: None });
    }

    #[test]
    fn an_invalid_or_expired_wework_token_is_refreshed() {
        let refresh = Action::RefreshToken {
            then_after: Duration::from_secs(30),
        };
        assert_eq!(Classifier::default().wework(40014), refresh);
        assert_eq!(Classifier::default().wework(42001), refresh);
    }

    #[test]
    fn any_other_wework_errcode_dead_letters() {
        assert_eq!(Classifier::default().wework(60020), Action::DeadLetter);
        assert_eq!(Classifier::default().wework(81013), Action::DeadLetter);
    }

    // HTTP fallback.

    #[test]
    fn an_http_5xx_retries_after_thirty_seconds_and_a_429_throttles() {
        let classifier = Classifier::default();
        for status in [500, 502, 503] {
            assert_eq!(classifier.http(status), secs(30), "{status}");
        }
        assert_eq!(classifier.http(429), Action::Throttle { hold: None });
    }

    #[test]
    fn another_http_status_dead_letters() {
        let classifier = Classifier::default();
        for status in [400, 401, 404, 301] {
            assert_eq!(classifier.http(status), Action::DeadLetter, "{status}");
        }
    }

    // Each disposition.

    #[test]
    fn a_sent_action_is_sent() {
        assert_eq!(
            Action::Sent.disposition(1, "smtp_550", "already delivered"),
            Disposition::Sent {
                provider_message_id: None
            }
        );
    }

    #[test]
    fn a_retry_doubles_per_attempt_up_to_fifteen_minutes() {
        let delay = |attempt| match secs(60).disposition(attempt, "smtp_451", "busy") {
            Disposition::RetryAfter {
                after,
                code,
                reason,
            } => {
                assert_eq!((code.as_str(), reason.as_str()), ("smtp_451", "busy"));
                after.as_secs()
            }
            other => panic!("expected RetryAfter, got {other:?}"),
        };
        assert_eq!(
            [1, 2, 3, 4, 5, 100].map(delay),
            [60, 120, 240, 480, 900, 900]
        );
        assert_eq!(
            retry_delay(Duration::from_secs(5), 0),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn a_failover_keeps_the_code_and_reason() {
        assert_eq!(
            Action::Failover.disposition(1, "smtp_421", "shutting down"),
            Disposition::Failover {
                code: "smtp_421".to_owned(),
                reason: "shutting down".to_owned(),
            }
        );
    }

    #[test]
    fn a_dead_letter_keeps_the_code_and_reason() {
        assert_eq!(
            Action::DeadLetter.disposition(1, "wework_60020", "not allow to access from your ip"),
            Disposition::DeadLetter {
                code: "wework_60020".to_owned(),
                reason: "not allow to access from your ip".to_owned(),
            }
        );
    }

    #[test]
    fn an_in_doubt_action_leaves_the_message_in_doubt_with_the_reason() {
        let outcome = Action::InDoubt.disposition(1, "smtp_554", "may have been delivered");
        assert_eq!(
            outcome,
            Disposition::InDoubt {
                reason: "may have been delivered".to_owned()
            }
        );
        assert_eq!(outcome.code(), Some("in_doubt"));
    }

    #[test]
    fn a_refresh_token_action_after_its_refresh_retries_later() {
        let refresh = Action::RefreshToken {
            then_after: Duration::from_secs(30),
        };
        assert_eq!(
            refresh.disposition(2, "wework_42001", "access_token expired"),
            Disposition::RetryAfter {
                after: Duration::from_secs(60),
                code: "wework_42001".to_owned(),
                reason: "access_token expired".to_owned(),
            }
        );
    }

    // Matching and precedence.

    #[test]
    fn user_rules_are_tried_before_the_defaults() {
        let classifier = Classifier::from_json(SAMPLE).expect("sample");
        assert_eq!(classifier.smtp(550, "5.7.1 Frequency limited"), secs(120));
        assert_eq!(classifier.wework(45009), secs(120));
        assert_eq!(classifier.http(503), Action::Failover);
        // The defaults still answer what the user rules do not name.
        assert_eq!(classifier.wework(45033), Action::Throttle { hold: None });
        assert_eq!(classifier.smtp(421, "4.3.2 Bye"), Action::Failover);
        assert_eq!(classifier.http(502), secs(30));
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let classifier = Classifier::from_json(
            r#"{"smtp": [
                {"code": "5xx", "action": "failover"},
                {"code": "550", "action": "in_doubt"}
            ]}"#,
        )
        .expect("rules");
        assert_eq!(classifier.smtp(550, "no"), Action::Failover);
    }

    #[test]
    fn every_matcher_of_a_rule_must_match() {
        let classifier = Classifier::from_json(SAMPLE).expect("sample");
        // 55x and 5.7.1: failover; 55x alone: the default dead letter.
        assert_eq!(classifier.smtp(554, "5.7.1 Blocked"), Action::Failover);
        assert_eq!(classifier.smtp(554, "5.7.10 Blocked"), Action::DeadLetter);
        assert_eq!(classifier.smtp(554, "Blocked"), Action::DeadLetter);
        assert_eq!(classifier.smtp(530, "5.7.1 Blocked"), Action::DeadLetter);
    }

    #[test]
    fn text_patterns_ignore_case() {
        let classifier = Classifier::from_json(SAMPLE).expect("sample");
        assert_eq!(
            classifier.smtp(554, "The MESSAGE May Have Been Delivered"),
            Action::InDoubt
        );
    }

    #[test]
    fn enhanced_status_prefixes_match_by_part() {
        let pattern = |p: &str| EnhancedPattern::try_from(p.to_owned()).expect(p);
        let code = |text: &str| EnhancedCode::parse(text).expect(text);
        assert!(pattern("4.").matches(code("4.7.1 Later")));
        assert!(pattern("5.7").matches(code("5.7.25 No PTR")));
        assert!(pattern("5.x.1").matches(code("5.1.1 Unknown")));
        assert!(!pattern("5.7.1").matches(code("5.7.12 Nope")));
        assert_eq!(EnhancedCode::parse("Mailbox busy"), None);
        assert_eq!(EnhancedCode::parse("1.2.3 odd"), None);
    }

    #[test]
    fn code_patterns_match_exact_codes_and_classes() {
        let pattern = |p: &str| CodePattern::try_from(serde_json::json!(p)).expect(p);
        assert!(pattern("550").matches(550));
        assert!(!pattern("550").matches(551));
        assert!(pattern("55x").matches(554));
        assert!(!pattern("55x").matches(504));
        assert!(pattern("4XX").matches(421));
        assert_eq!(
            CodePattern::try_from(serde_json::json!(429)),
            Ok(CodePattern([Some(4), Some(2), Some(9)]))
        );
    }

    // Loading a file.

    #[test]
    fn a_sample_file_parses_into_ordered_rules_before_the_defaults() {
        let classifier = Classifier::from_json(SAMPLE).expect("sample");
        let defaults = Classifier::default();
        assert_eq!(classifier.smtp.len(), 3 + defaults.smtp.len());
        assert_eq!(classifier.wework.len(), 2 + defaults.wework.len());
        assert_eq!(classifier.http.len(), 2 + defaults.http.len());
        assert_eq!(classifier.wework[1].errcode, 81013);
        assert_eq!(classifier.http[0].action, secs(30));
    }

    #[test]
    fn no_file_means_the_defaults_and_a_file_adds_its_rules() {
        let defaults = Classifier::load(None).expect("defaults");
        assert_eq!(defaults.wework.len(), Classifier::default().wework.len());

        let path =
            std::env::temp_dir().join(format!("herald-classifier-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&path, SAMPLE).expect("write sample");
        let loaded = Classifier::load(Some(&path));
        let _ = std::fs::remove_file(&path);
        assert_eq!(loaded.expect("loaded").wework(45009), secs(120));
    }

    #[test]
    fn an_unreadable_or_invalid_file_is_refused_naming_the_file() {
        let missing = std::env::temp_dir().join("herald-classifier-missing.json");
        let error = format!(
            "{:#}",
            Classifier::load(Some(&missing)).expect_err("missing")
        );
        assert!(error.contains("herald-classifier-missing.json"), "{error}");

        let path =
            std::env::temp_dir().join(format!("herald-classifier-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&path, r#"{"wework": [{"errcode": 1, "action": "retyr"}]}"#).expect("write");
        let error = Classifier::load(Some(&path)).map(|_| ());
        let _ = std::fs::remove_file(&path);
        let error = format!("{:#}", error.expect_err("invalid"));
        assert!(error.contains("is not a valid classifier file"), "{error}");
        assert!(
            error.contains("wework[0].action: unknown action"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_action_names_the_rule_and_field() {
        let error = refused(
            r#"{"smtp": [
                {"code": "550", "action": "retry", "after_s": 60},
                {"code": "551", "action": "dead_letter"},
                {"code": "552", "action": "retyr"}
            ]}"#,
        );
        assert!(
            error.starts_with(
                "smtp[2].action: unknown action \"retyr\"; expected one of retry, failover, \
                 throttle, dead_letter, in_doubt, refresh_token, sent"
            ),
            "{error}"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = refused(r#"{"smtp": [{"code": "550", "action": "failover", "colour": 1}]}"#);
        assert!(error.contains("unknown field `colour`"), "{error}");
        assert!(error.starts_with("smtp[0]"), "{error}");
        let error = refused(r#"{"email": []}"#);
        assert!(error.contains("unknown field `email`"), "{error}");
    }

    #[test]
    fn invalid_matchers_are_refused_naming_the_field() {
        for (rules, starts) in [
            (
                r#"{"smtp": [{"code": "5x", "action": "failover"}]}"#,
                "smtp[0].code: \"5x\" is not a code",
            ),
            (
                r#"{"smtp": [{"code": "650", "action": "failover"}]}"#,
                "smtp[0].code: \"650\" is not a code",
            ),
            (
                r#"{"smtp": [{"enhanced": "5.7.1.2", "action": "failover"}]}"#,
                "smtp[0].enhanced: \"5.7.1.2\" is not an enhanced",
            ),
            (
                r#"{"smtp": [{"text": "(unclosed", "action": "failover"}]}"#,
                "smtp[0].text: \"(unclosed\" is not a valid regular expression",
            ),
            (
                r#"{"http": [{"status": true, "action": "failover"}]}"#,
                "http[0].status: true is not a code",
            ),
            (
                r#"{"smtp": [{"action": "failover"}]}"#,
                "smtp[0]: a rule needs at least one of code, enhanced, text",
            ),
        ] {
            let error = refused(rules);
            assert!(error.starts_with(starts), "{error}");
        }
    }

    #[test]
    fn after_s_is_checked_against_the_action() {
        for (rules, expected) in [
            (
                r#"{"wework": [{"errcode": 1, "action": "retry"}]}"#,
                "wework[0].after_s: is required with action \"retry\"",
            ),
            (
                r#"{"wework": [{"errcode": 1, "action": "retry", "after_s": 0}]}"#,
                "wework[0].after_s: must be at least 1",
            ),
            (
                r#"{"http": [{"status": "404", "action": "dead_letter", "after_s": 5}]}"#,
                "http[0].after_s: is used only with actions retry, throttle and refresh_token",
            ),
            (
                r#"{"smtp": [{"code": "530", "action": "refresh_token"}]}"#,
                "smtp[0].action: refresh_token applies to wework rules only",
            ),
        ] {
            assert_eq!(refused(rules), expected);
        }
        let classifier = Classifier::from_json(
            r#"{"wework": [{"errcode": 40001, "action": "refresh_token", "after_s": 10}]}"#,
        )
        .expect("rules");
        assert_eq!(
            classifier.wework(40001),
            Action::RefreshToken {
                then_after: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn malformed_json_is_refused() {
        let error = refused(r#"{"smtp": [ }"#);
        assert!(error.contains("line 1"), "{error}");
    }
}
