//! The control API of `herald-sim`, the provider simulator (`/sim/*` on its
//! HTTP port): its counters, the ids it received, and its live fault
//! injection. Not Herald's API: the simulator serves these types, and the
//! load test and the test suites read and send them, so both sides are
//! written once here instead of in each.
//!
//! Errors come in Herald's shape ([`crate::ErrorBody`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The secret the simulator checks webhook signatures with unless it is
/// given another (`--webhook-secret`, `HERALD_SIM_WEBHOOK_SECRET`); the
/// deploy scripts and the load test register webhook providers with it.
pub const DEFAULT_WEBHOOK_SECRET: &str = "herald-sim-webhook-secret";

/// SMTP totals. `received` counts messages answered 250; `unique` the
/// distinct message ids among them; `duplicates` receptions beyond the first
/// per id (messages without an id count in `received` only); `rejected`
/// messages answered 4xx/5xx.
///
/// Every stats type reads a missing field as zero, so that a reader keeps
/// working against a simulator older than itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpStats {
    pub received: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// TCP connections accepted on both SMTP ports.
    pub connections: u64,
}

/// WeWork totals, counted like [`SmtpStats`] over `message/send` calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WeworkStats {
    pub received: u64,
    pub unique: u64,
    pub duplicates: u64,
    /// Sends answered with a non-zero errcode.
    pub rejected: u64,
    /// `gettoken` calls, successful or not.
    pub token_requests: u64,
    /// Users reached by accepted sends: a send to `u1|u2|u3` costs 3, the
    /// unit WeWork quotas are counted in.
    pub cost: u64,
}

/// Webhook totals, counted like [`SmtpStats`] over `POST /webhook/...`
/// deliveries whose signature verified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WebhookStats {
    pub received: u64,
    pub unique: u64,
    pub duplicates: u64,
    /// Deliveries answered 503 or 429 (injected faults) or 400 (not JSON).
    pub rejected: u64,
    /// Deliveries answered 401: `X-Herald-Signature` missing or wrong.
    pub signature_failures: u64,
}

/// `GET /sim/stats` (and the answer of `POST /sim/reset`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimStats {
    pub smtp: SmtpStats,
    pub wework: WeworkStats,
    pub webhook: WebhookStats,
}

impl SmtpStats {
    /// What happened between `before` and `self`. Saturating: a simulator
    /// reset in between reads as zero, not as a wrap-around.
    pub fn since(&self, before: &SmtpStats) -> SmtpStats {
        SmtpStats {
            received: self.received.saturating_sub(before.received),
            unique: self.unique.saturating_sub(before.unique),
            duplicates: self.duplicates.saturating_sub(before.duplicates),
            rejected: self.rejected.saturating_sub(before.rejected),
            connections: self.connections.saturating_sub(before.connections),
        }
    }
}

impl WeworkStats {
    /// Like [`SmtpStats::since`].
    pub fn since(&self, before: &WeworkStats) -> WeworkStats {
        WeworkStats {
            received: self.received.saturating_sub(before.received),
            unique: self.unique.saturating_sub(before.unique),
            duplicates: self.duplicates.saturating_sub(before.duplicates),
            rejected: self.rejected.saturating_sub(before.rejected),
            token_requests: self.token_requests.saturating_sub(before.token_requests),
            cost: self.cost.saturating_sub(before.cost),
        }
    }
}

impl WebhookStats {
    /// Like [`SmtpStats::since`].
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
    /// Every channel's [`SmtpStats::since`].
    pub fn since(&self, before: &SimStats) -> SimStats {
        SimStats {
            smtp: self.smtp.since(&before.smtp),
            wework: self.wework.since(&before.wework),
            webhook: self.webhook.since(&before.webhook),
        }
    }
}

/// `GET /sim/messages?channel=email|wework|webhook`: every message id the
/// channel received, with how many times.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimIds {
    pub ids: HashMap<String, u32>,
}

/// `GET /sim/messages/{id}`: how many times each channel received the id,
/// and the summary of its last reception (when it is among the recent ones).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimMessage {
    pub email: u32,
    pub wework: u32,
    pub webhook: u32,
    pub last: SimLast,
}

/// What each channel last received for one id. Free-form: an email's
/// headers and body, a WeWork send's JSON, a webhook's body — whatever the
/// sender sent, which is not the simulator's to type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimLast {
    pub email: Option<serde_json::Value>,
    pub wework: Option<serde_json::Value>,
    pub webhook: Option<serde_json::Value>,
}

/// `POST /sim/wework/expire-tokens`: how many access tokens it invalidated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokensExpired {
    pub expired: u64,
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
    /// Every n-th message is answered `421 4.3.2` (this server refuses it,
    /// another may take it); 0 never. Counted over all sessions, so 2
    /// refuses exactly every other message.
    #[serde(default)]
    pub refuse_every: u32,
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
    /// A real rate limit: sends beyond this many in any second are
    /// answered errcode 45009; 0 none.
    #[serde(default)]
    pub rate_limit_per_sec: u32,
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

/// The live injection settings: the answer of `GET` and `PUT /sim/config`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SimBehaviour {
    pub smtp: SmtpBehaviour,
    pub wework: WeworkBehaviour,
    #[serde(default)]
    pub webhook: WebhookBehaviour,
}

/// The body of `PUT /sim/config`: a partial update of [`SimBehaviour`];
/// absent (or null) fields keep their value, unknown ones are refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpPatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wework: Option<WeworkPatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookPatch>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse_every: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeworkPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_sec: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_rate: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

impl BehaviourPatch {
    /// `current` with this patch's fields replaced. The simulator checks
    /// the result's ranges before it takes it.
    pub fn apply(&self, current: SimBehaviour) -> SimBehaviour {
        let mut next = current;
        if let Some(smtp) = &self.smtp {
            next.smtp.latency_ms = smtp.latency_ms.unwrap_or(next.smtp.latency_ms);
            next.smtp.fail_rate = smtp.fail_rate.unwrap_or(next.smtp.fail_rate);
            next.smtp.reject_rate = smtp.reject_rate.unwrap_or(next.smtp.reject_rate);
            next.smtp.refuse_every = smtp.refuse_every.unwrap_or(next.smtp.refuse_every);
        }
        if let Some(wework) = &self.wework {
            next.wework.latency_ms = wework.latency_ms.unwrap_or(next.wework.latency_ms);
            next.wework.fail_rate = wework.fail_rate.unwrap_or(next.wework.fail_rate);
            next.wework.rate_limit_rate = wework
                .rate_limit_rate
                .unwrap_or(next.wework.rate_limit_rate);
            next.wework.rate_limit_per_sec = wework
                .rate_limit_per_sec
                .unwrap_or(next.wework.rate_limit_per_sec);
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::parse::{parse_body, ParseError};

    #[test]
    fn stats_read_extra_fields_and_missing_ones_as_zero() {
        // A newer simulator may count more; an older one may not count
        // webhooks at all.
        let raw = json!({"smtp": {"received": 10, "unique": 9, "duplicates": 1, "rejected": 0,
                                  "connections": 3, "tls_handshakes": 4},
                         "wework": {"received": 5, "unique": 5, "duplicates": 0, "rejected": 0}});
        let s: SimStats = serde_json::from_value(raw).expect("parses");
        assert_eq!((s.smtp.duplicates, s.smtp.connections), (1, 3));
        assert_eq!((s.wework.received, s.wework.cost), (5, 0));
        assert_eq!(s.webhook, WebhookStats::default());
    }

    #[test]
    fn a_delta_saturates_when_the_simulator_was_reset_in_between() {
        let before = SimStats {
            smtp: SmtpStats {
                received: 10,
                unique: 10,
                duplicates: 2,
                rejected: 0,
                connections: 4,
            },
            wework: WeworkStats::default(),
            webhook: WebhookStats {
                signature_failures: 1,
                ..WebhookStats::default()
            },
        };
        let after = SimStats {
            smtp: SmtpStats {
                received: 25,
                unique: 23,
                duplicates: 4,
                rejected: 1,
                connections: 6,
            },
            wework: WeworkStats {
                received: 3,
                cost: 3,
                ..WeworkStats::default()
            },
            webhook: WebhookStats {
                received: 9,
                signature_failures: 3,
                ..WebhookStats::default()
            },
        };
        let d = after.since(&before);
        assert_eq!(
            d.smtp,
            SmtpStats {
                received: 15,
                unique: 13,
                duplicates: 2,
                rejected: 1,
                connections: 2
            }
        );
        assert_eq!((d.wework.received, d.wework.cost), (3, 3));
        assert_eq!((d.webhook.received, d.webhook.signature_failures), (9, 2));
        assert_eq!(before.since(&after), SimStats::default());
    }

    #[test]
    fn a_patch_changes_only_the_fields_it_names() {
        let mut current = SimBehaviour::default();
        current.smtp.latency_ms = 20;
        let patch: BehaviourPatch =
            parse_body(br#"{"smtp": {"fail_rate": 0.5}, "webhook": {"retry_after_s": 7}}"#)
                .expect("parses");
        let next = patch.apply(current);
        assert_eq!((next.smtp.latency_ms, next.smtp.fail_rate), (20, 0.5));
        assert_eq!(next.wework, current.wework);
        assert_eq!(next.webhook.retry_after_s, 7);
    }

    #[test]
    fn a_patch_names_the_field_at_fault() {
        for (body, field) in [
            (r#"{"wework": {"latency_ms": "x"}}"#, "wework.latency_ms"),
            (
                r#"{"webhook": {"retry_after_s": -1}}"#,
                "webhook.retry_after_s",
            ),
            (r#"{"smtp": {"latency": 5}}"#, "smtp.latency"),
            (r#"{"sms": {}}"#, "sms"),
        ] {
            match parse_body::<BehaviourPatch>(body.as_bytes()) {
                Err(ParseError::Field(e)) => assert_eq!(e.field, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_patch_sends_only_the_fields_it_sets() {
        let patch = BehaviourPatch {
            smtp: Some(SmtpPatch {
                latency_ms: Some(200),
                ..SmtpPatch::default()
            }),
            ..BehaviourPatch::default()
        };
        assert_eq!(
            serde_json::to_value(&patch).expect("encodes"),
            json!({"smtp": {"latency_ms": 200}})
        );
    }
}

/// Where the simulator reports the provider callbacks it makes up for what
/// it accepted (`PUT /sim/callbacks`): Herald's address and, per channel,
/// the Herald provider that sends there with its callback settings. A
/// channel without a target makes no callbacks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimCallbacks {
    /// Herald's producer, `http://127.0.0.1:8080`; none turns callbacks off.
    pub herald_url: Option<String>,
    /// Generic signed callbacks for accepted emails.
    pub email: Option<GenericTarget>,
    /// Generic signed callbacks for accepted webhooks.
    pub webhook: Option<GenericTarget>,
    /// WeWork's encrypted member events for accepted WeWork messages.
    pub wework: Option<WeworkTarget>,
    pub rates: CallbackRates,
    /// Milliseconds between the acceptance and the first event.
    pub delay_ms: u64,
    /// Herald's return-path SMTP listener (`127.0.0.1:2525`): an email sent
    /// with a `bounce+…` envelope sender bounces and is complained about
    /// the way mail really is — a DSN (RFC 3464) or an ARF report sent to
    /// that return path — instead of a generic callback.
    pub return_path_smtp: Option<String>,
}

/// A Herald provider and its `callback_secret`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericTarget {
    pub provider_id: String,
    pub callback_secret: String,
}

/// A Herald WeWork provider and its callback settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeworkTarget {
    pub provider_id: String,
    pub token: String,
    pub encoding_aes_key: String,
    pub corp_id: String,
    #[serde(default)]
    pub agent_id: i64,
}

/// How often each event follows an accepted message (0 to 1 each). Email
/// and webhook: `bounced` instead of `delivered`; after `delivered`,
/// `read`, then `clicked` after a read, and `complained`. WeWork: the
/// member opens the app (`read`) and replies (`replied`), the member being
/// the first of the message's users.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackRates {
    pub delivered: f64,
    pub bounced: f64,
    /// A soft bounce (4.2.2, mailbox full) instead of delivery (email).
    pub soft_bounced: f64,
    pub read: f64,
    pub clicked: f64,
    pub replied: f64,
    pub complained: f64,
}

impl Default for CallbackRates {
    fn default() -> Self {
        CallbackRates {
            delivered: 1.0,
            bounced: 0.0,
            soft_bounced: 0.0,
            read: 0.3,
            clicked: 0.1,
            replied: 0.05,
            complained: 0.0,
        }
    }
}

impl CallbackRates {
    /// Each rate is from 0 to 1, named when it is not.
    pub fn validate(&self) -> Result<(), crate::FieldError> {
        for (name, v) in [
            ("rates.delivered", self.delivered),
            ("rates.bounced", self.bounced),
            ("rates.soft_bounced", self.soft_bounced),
            ("rates.read", self.read),
            ("rates.clicked", self.clicked),
            ("rates.replied", self.replied),
            ("rates.complained", self.complained),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(crate::FieldError::new(
                    name,
                    format!("must be a number from 0 to 1, got {v}"),
                ));
            }
        }
        Ok(())
    }
}

/// `GET /sim/callbacks`: the settings and what became of the callbacks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimCallbackReport {
    pub settings: SimCallbacks,
    /// Callbacks Herald answered 2xx.
    pub sent: u64,
    /// Callbacks Herald refused or did not answer (after 3 tries).
    pub failed: u64,
    /// Chains not started because 4,096 were already under way.
    pub dropped: u64,
}
