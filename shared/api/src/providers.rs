//! `/v1/admin/providers`: send services, their limits and their scores.

use chrono::{DateTime, Utc};
use herald_domain::provider_config::{ProviderConfig, SECRET_FIELDS};
use herald_domain::{
    display_name, Channel, FieldError, ProviderId, ProviderKind, Quota, SendWindow, TenantId,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::tenants::in_range;

/// `POST /v1/admin/providers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProvider {
    #[schema(min_length = 1, max_length = 128, pattern = "^[^\\x00]*$")]
    pub name: String,
    /// Implied by `kind` when absent; must match it when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    pub kind: ProviderKind,
    /// SMTP `{host, port, tls, ca_file?, accept_invalid_certs?, username?,
    /// password?, from?, pool_size?}`; WeWork `{base_url?, corp_id,
    /// corp_secret, agent_id, token?, encoding_aes_key?}`; webhook
    /// `{signing_secret, timeout_ms?, allow_private_addresses?}`. Any may
    /// carry `callback_secret`.
    #[schema(value_type = Object)]
    pub config: Value,
    /// Rolling windows; absent or `{}` is unlimited.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::object::opt"
    )]
    pub quota: Option<Quota>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::object::opt"
    )]
    pub send_window: Option<SendWindow>,
    /// Its share among providers of equal score; 100 when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "herald_domain::json_int::opt"
    )]
    #[schema(minimum = 1, maximum = 10000)]
    pub weight: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// A provider with a tenant serves only that tenant; without, it is shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub tenant_id: Option<String>,
}

/// A [`NewProvider`] that passed every check but the tenant's existence.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderDraft {
    pub name: String,
    pub kind: ProviderKind,
    pub config: ProviderConfig,
    /// The config as given, which is what is stored.
    pub raw_config: Value,
    pub quota: Quota,
    pub send_window: Option<SendWindow>,
    pub weight: u32,
    pub enabled: bool,
    pub tenant_id: Option<TenantId>,
}

impl TryFrom<NewProvider> for ProviderDraft {
    type Error = FieldError;

    fn try_from(p: NewProvider) -> Result<Self, FieldError> {
        let name = display_name("name", &p.name, 128)?;
        if let Some(channel) = p.channel {
            if channel != p.kind.channel() {
                return Err(FieldError::new(
                    "channel",
                    format!(
                        "a {} provider serves the {} channel",
                        p.kind,
                        p.kind.channel()
                    ),
                ));
            }
        }
        let config = ProviderConfig::parse(p.kind, &p.config)?;
        let quota = p.quota.unwrap_or_default();
        quota.validate()?;
        if let Some(window) = &p.send_window {
            window.validate()?;
        }
        let tenant_id = p
            .tenant_id
            .map(|raw| {
                crate::page::parse_id::<TenantId>(&raw)
                    .ok_or_else(|| FieldError::new("tenant_id", "is not a tenant id"))
            })
            .transpose()?;
        Ok(ProviderDraft {
            name,
            kind: p.kind,
            config,
            raw_config: p.config,
            quota,
            send_window: p.send_window,
            weight: match p.weight {
                Some(w) => in_range("weight", w, 1, 10_000)? as u32,
                None => 100,
            },
            enabled: p.enabled.unwrap_or(true),
            tenant_id,
        })
    }
}

/// `PATCH /v1/admin/providers/{id}`: any subset of the fields; a secret
/// sent back as `***` (as a GET shows it) keeps its stored value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128, pattern = "^[^\\x00]*$")]
    pub name: Option<String>,
    /// The whole new config (see `NewProvider.config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Map<String, Value>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::object::opt"
    )]
    pub quota: Option<Quota>,
    /// `null` removes the window.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::object::present"
    )]
    #[schema(value_type = Option<SendWindow>)]
    pub send_window: Option<Option<SendWindow>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "herald_domain::json_int::opt"
    )]
    #[schema(minimum = 1, maximum = 10000)]
    pub weight: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// A [`ProviderPatch`] that passed every check, against the provider's
/// current kind and config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProviderChange {
    pub name: Option<String>,
    pub config: Option<Value>,
    pub quota: Option<Quota>,
    pub send_window: Option<Option<SendWindow>>,
    pub weight: Option<u32>,
    pub enabled: Option<bool>,
}

impl ProviderPatch {
    /// Checks the patch for a provider of `kind` whose stored config is
    /// `current`; secrets sent back as `***` keep their stored values.
    pub fn validate(
        self,
        kind: ProviderKind,
        current: &Value,
    ) -> Result<ProviderChange, FieldError> {
        let name = self
            .name
            .map(|n| display_name("name", &n, 128))
            .transpose()?;
        let config = match self.config {
            None => None,
            Some(mut merged) => {
                for field in SECRET_FIELDS {
                    if merged.get(*field).and_then(Value::as_str) == Some("***") {
                        match current.get(*field) {
                            Some(old) => merged.insert((*field).to_owned(), old.clone()),
                            None => merged.remove(*field),
                        };
                    }
                }
                let merged = Value::Object(merged);
                ProviderConfig::parse(kind, &merged)?;
                Some(merged)
            }
        };
        if let Some(quota) = &self.quota {
            quota.validate()?;
        }
        if let Some(Some(window)) = &self.send_window {
            window.validate()?;
        }
        Ok(ProviderChange {
            name,
            config,
            quota: self.quota,
            send_window: self.send_window,
            weight: self
                .weight
                .map(|w| in_range("weight", w, 1, 10_000).map(|w| w as u32))
                .transpose()?,
            enabled: self.enabled,
        })
    }
}

/// A provider; secrets in `config` are shown as `***`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Provider {
    pub id: ProviderId,
    pub tenant_id: Option<TenantId>,
    pub name: String,
    pub channel: Channel,
    pub kind: ProviderKind,
    #[schema(value_type = Object)]
    pub config: Value,
    pub quota: Quota,
    pub send_window: Option<SendWindow>,
    pub weight: u32,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The parts of a score, each in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoreParts {
    pub quota: f64,
    pub headroom: f64,
    pub success: f64,
    pub latency: f64,
    pub recent: f64,
}

/// The scoring weights in force (HERALD_SCORE_*).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScoreWeights {
    pub quota: f64,
    pub headroom: f64,
    pub success: f64,
    pub latency: f64,
    pub recent: f64,
    /// Providers within this fraction of the best share the work.
    pub band: f64,
    pub latency_ref_ms: f64,
}

/// One quota window's use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WindowUse {
    pub window_secs: u64,
    /// Null: unlimited.
    pub limit: Option<u64>,
    pub used: u64,
}

/// What Redis holds about a provider now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProviderLoad {
    pub windows: Vec<WindowUse>,
    /// Sends in flight.
    pub leases: u64,
    /// The concurrency limit; null: unlimited.
    pub concurrency: Option<u64>,
    pub success_rate: Option<f64>,
    pub latency_ms: Option<f64>,
    pub consecutive_failures: u64,
    /// Its last minute's sends against the mean of its channel.
    pub recent_use: f64,
    pub recent_mean: f64,
    /// Units per second the provider is admitted at after a rate-limit
    /// answer (lowered, then recovering to its configured rate); absent
    /// when it is not throttled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admitted_rate: Option<f64>,
}

/// `GET /v1/admin/providers/{id}/score`: the score the schedulers compute
/// now, with its parts, its usage per window and its circuit. A disabled
/// provider has only the identifying fields, `state: disabled` and total 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProviderScore {
    pub provider_id: ProviderId,
    pub name: String,
    pub channel: Channel,
    pub eligible: bool,
    /// ready, half_open, circuit_open, window_closed, exhausted, disabled,
    /// undecodable (its stored row is broken: no sends until fixed).
    pub state: String,
    /// When an open circuit half-opens (Unix ms).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "herald_domain::json_int::opt"
    )]
    pub until_ms: Option<i64>,
    /// When a closed send window opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
    pub total: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<ScoreParts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<ScoreWeights>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<ProviderLoad>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::parse::{parse_body, ParseError};

    fn field_of<T: serde::de::DeserializeOwned + std::fmt::Debug>(body: Value) -> String {
        match parse_body::<T>(body.to_string().as_bytes()) {
            Err(ParseError::Field(e)) => e.field,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_provider_names_each_bad_field() {
        let wework = json!({"corp_id": "c", "corp_secret": "s", "agent_id": 1});
        let ok: NewProvider = parse_body(
            json!({"name": "w", "kind": "wework", "config": wework})
                .to_string()
                .as_bytes(),
        )
        .expect("parses");
        let draft = ProviderDraft::try_from(ok).expect("valid");
        assert_eq!((draft.weight, draft.enabled), (100, true));
        assert_eq!(
            field_of::<NewProvider>(json!({"name": "w", "kind": "fax", "config": {}})),
            "kind"
        );
        assert_eq!(
            field_of::<NewProvider>(
                json!({"name": "w", "kind": "wework", "config": wework, "quota": {"per_minute": "x"}})
            ),
            "quota.per_minute"
        );
        assert_eq!(
            field_of::<NewProvider>(
                json!({"name": "w", "kind": "wework", "config": wework, "quota": {"per_week": 1}})
            ),
            "quota.per_week"
        );
        assert_eq!(
            field_of::<NewProvider>(json!({"name": "w", "kind": "wework"})),
            "config"
        );
        let mismatch: NewProvider = parse_body(
            json!({"name": "w", "kind": "wework", "channel": "email", "config": wework})
                .to_string()
                .as_bytes(),
        )
        .expect("parses");
        assert_eq!(
            ProviderDraft::try_from(mismatch)
                .expect_err("channel")
                .field,
            "channel"
        );
    }

    #[test]
    fn a_patch_keeps_secrets_sent_back_masked_and_null_removes_the_window() {
        let patch: ProviderPatch = parse_body(
            br#"{"config": {"corp_id": "c2", "corp_secret": "***", "agent_id": 2}, "send_window": null}"#,
        )
        .expect("parses");
        let current = json!({"corp_id": "c", "corp_secret": "real", "agent_id": 1});
        let change = patch
            .validate(ProviderKind::Wework, &current)
            .expect("valid");
        assert_eq!(
            change.config,
            Some(json!({"corp_id": "c2", "corp_secret": "real", "agent_id": 2}))
        );
        assert_eq!(change.send_window, Some(None));
        let untouched: ProviderPatch = parse_body(br#"{"weight": 5}"#).expect("parses");
        assert_eq!(untouched.send_window, None);
    }
}
