//! `/v1/admin/tenants`: tenants and their API keys.

use herald_domain::{
    display_name, ApiKeyId, FieldError, TenantCode, TenantId, Tracking, WebhookEvent, WebhookUrl,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/admin/tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// 1 to 64 characters of `a-z 0-9 - _`; unique.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$", example = "shop")]
    pub code: String,
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\x00]*$")]
    pub name: String,
    /// Its share of the scheduler's drain against other tenants; 1 when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "herald_domain::json_int::opt"
    )]
    #[schema(minimum = 1, maximum = 1000)]
    pub weight: Option<i64>,
    /// Messages per UTC day; absent is unlimited.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "herald_domain::json_int::opt"
    )]
    #[schema(minimum = 1)]
    pub daily_quota: Option<i64>,
    /// Messages per second; absent is unlimited.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "herald_domain::json_int::opt"
    )]
    #[schema(minimum = 1, maximum = 1000000)]
    pub rate_limit_per_sec: Option<i64>,
    /// Where the tenant's status events go (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The events posted to `webhook_url`; absent is every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<WebhookEvent>>, min_items = 1)]
    pub webhook_events: Option<Vec<String>>,
    /// Open and click tracking of its HTML email; both off when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::object::opt"
    )]
    pub tracking: Option<Tracking>,
}

/// A [`NewTenant`] that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantDraft {
    pub code: TenantCode,
    pub name: String,
    pub weight: u32,
    pub daily_quota: Option<u64>,
    pub rate_limit_per_sec: Option<u32>,
    pub webhook_url: Option<WebhookUrl>,
    pub webhook_events: Option<Vec<WebhookEvent>>,
    pub tracking: Tracking,
}

/// The events of `webhook_events`, checked: at least one, each known,
/// duplicates dropped.
fn webhook_events(raw: Vec<String>) -> Result<Vec<WebhookEvent>, FieldError> {
    if raw.is_empty() {
        return Err(FieldError::new(
            "webhook_events",
            "must name at least one event (null or absent is every event)",
        ));
    }
    let mut events = raw
        .iter()
        .enumerate()
        .map(|(i, e)| WebhookEvent::parse(&format!("webhook_events[{i}]"), e))
        .collect::<Result<Vec<_>, _>>()?;
    events.sort_unstable();
    events.dedup();
    Ok(events)
}

/// `value` within `min..=max`, or a refusal naming `field`.
pub(crate) fn in_range(field: &str, value: i64, min: i64, max: i64) -> Result<i64, FieldError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(FieldError::new(
            field,
            format!("must be an integer from {min} to {max}"),
        ))
    }
}

impl TryFrom<NewTenant> for TenantDraft {
    type Error = FieldError;

    fn try_from(t: NewTenant) -> Result<Self, FieldError> {
        let code = TenantCode::parse("code", &t.code)?;
        let name = display_name("name", &t.name, 200)?;
        let weight = match t.weight {
            Some(w) => in_range("weight", w, 1, 1000)? as u32,
            None => 1,
        };
        let daily_quota = t
            .daily_quota
            .map(|q| in_range("daily_quota", q, 1, i64::MAX).map(|q| q as u64))
            .transpose()?;
        let rate_limit_per_sec = t
            .rate_limit_per_sec
            .map(|r| in_range("rate_limit_per_sec", r, 1, 1_000_000).map(|r| r as u32))
            .transpose()?;
        let webhook_url = t
            .webhook_url
            .map(|u| {
                herald_domain::check_text("webhook_url", &u)?;
                WebhookUrl::parse("webhook_url", &u)
            })
            .transpose()?;
        Ok(TenantDraft {
            code,
            name,
            weight,
            daily_quota,
            rate_limit_per_sec,
            webhook_url,
            webhook_events: t.webhook_events.map(webhook_events).transpose()?,
            tracking: t.tracking.unwrap_or_default(),
        })
    }
}

/// `PATCH /v1/admin/tenants/{id}`: any subset of the fields; `null`
/// removes a limit (unlimited) or the webhook. Applied live: producers
/// admit by the new limits from the next request on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\x00]*$")]
    pub name: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "herald_domain::json_int::opt"
    )]
    #[schema(minimum = 1, maximum = 1000)]
    pub weight: Option<i64>,
    /// Messages per UTC day; `null` is unlimited.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "herald_domain::json_int::present"
    )]
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub daily_quota: Option<Option<i64>>,
    /// Messages per second; `null` is unlimited.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "herald_domain::json_int::present"
    )]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000)]
    pub rate_limit_per_sec: Option<Option<i64>>,
    /// `null` removes it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::object::present"
    )]
    #[schema(value_type = Option<String>)]
    pub webhook_url: Option<Option<String>>,
    /// The events posted to `webhook_url`; `null` is every event.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::object::present"
    )]
    #[schema(value_type = Option<Vec<WebhookEvent>>, min_items = 1)]
    pub webhook_events: Option<Option<Vec<String>>>,
    /// Open and click tracking of its HTML email (both fields; an absent
    /// one is off).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::object::opt"
    )]
    pub tracking: Option<Tracking>,
}

/// A [`TenantPatch`] that passed every check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantChange {
    pub name: Option<String>,
    pub weight: Option<u32>,
    pub daily_quota: Option<Option<u64>>,
    pub rate_limit_per_sec: Option<Option<u32>>,
    pub webhook_url: Option<Option<WebhookUrl>>,
    pub webhook_events: Option<Option<Vec<WebhookEvent>>>,
    pub tracking: Option<Tracking>,
}

impl TryFrom<TenantPatch> for TenantChange {
    type Error = FieldError;

    fn try_from(p: TenantPatch) -> Result<Self, FieldError> {
        Ok(TenantChange {
            name: p.name.map(|n| display_name("name", &n, 200)).transpose()?,
            weight: p
                .weight
                .map(|w| in_range("weight", w, 1, 1000).map(|w| w as u32))
                .transpose()?,
            daily_quota: p
                .daily_quota
                .map(|q| {
                    q.map(|q| in_range("daily_quota", q, 1, i64::MAX).map(|q| q as u64))
                        .transpose()
                })
                .transpose()?,
            rate_limit_per_sec: p
                .rate_limit_per_sec
                .map(|r| {
                    r.map(|r| in_range("rate_limit_per_sec", r, 1, 1_000_000).map(|r| r as u32))
                        .transpose()
                })
                .transpose()?,
            webhook_url: p
                .webhook_url
                .map(|u| {
                    u.map(|u| {
                        herald_domain::check_text("webhook_url", &u)?;
                        WebhookUrl::parse("webhook_url", &u)
                    })
                    .transpose()
                })
                .transpose()?,
            webhook_events: p
                .webhook_events
                .map(|e| e.map(webhook_events).transpose())
                .transpose()?,
            tracking: p.tracking,
        })
    }
}

/// A tenant, as the store hands it out and the admin API shows it.
pub use herald_domain::Tenant;

/// `201` of `POST /v1/admin/tenants/{id}/keys`: the key, shown only here
/// (only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Key {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    #[schema(example = "hk_…")]
    pub key: String,
}

/// `DELETE /v1/admin/tenants/{id}/keys/{key_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RevokedKey {
    pub id: ApiKeyId,
    pub revoked: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse_body, ParseError};

    fn draft(body: &str) -> Result<TenantDraft, FieldError> {
        match parse_body::<NewTenant>(body.as_bytes()) {
            Ok(t) => t.try_into(),
            Err(ParseError::Field(e)) => Err(e),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_patch_sets_clears_or_leaves_each_field_and_names_a_bad_one() {
        let change = |body: &str| -> Result<TenantChange, FieldError> {
            match parse_body::<TenantPatch>(body.as_bytes()) {
                Ok(p) => p.try_into(),
                Err(ParseError::Field(e)) => Err(e),
                Err(e) => panic!("{e}"),
            }
        };
        let c = change(r#"{"daily_quota": 20, "rate_limit_per_sec": null}"#).expect("valid");
        assert_eq!(c.daily_quota, Some(Some(20)));
        assert_eq!(c.rate_limit_per_sec, Some(None));
        assert_eq!((c.name, c.weight, c.webhook_url), (None, None, None));
        let c = change(r#"{"webhook_url": null, "weight": 3.0}"#).expect("valid");
        assert_eq!((c.webhook_url, c.weight), (Some(None), Some(3)));
        for (body, field) in [
            (r#"{"daily_quota": 0}"#, "daily_quota"),
            (r#"{"rate_limit_per_sec": 1000001}"#, "rate_limit_per_sec"),
            (r#"{"weight": 0}"#, "weight"),
            (r#"{"name": ""}"#, "name"),
            (r#"{"webhook_url": "ftp://x"}"#, "webhook_url"),
        ] {
            assert_eq!(change(body).expect_err(body).field, field, "{body}");
        }
        assert!(parse_body::<TenantPatch>(br#"{"code": "x"}"#).is_err());
    }

    #[test]
    fn a_tenant_takes_defaults_and_each_mistake_names_its_field() {
        let t = draft(r#"{"code": "shop", "name": "Shop"}"#).expect("valid");
        assert_eq!((t.weight, t.daily_quota), (1, None));
        for (body, field) in [
            (r#"{"name": "Shop"}"#, "code"),
            (r#"{"code": "Shop!", "name": "Shop"}"#, "code"),
            (r#"{"code": "shop", "name": ""}"#, "name"),
            (r#"{"code": "shop", "name": "S", "weight": 0}"#, "weight"),
            (r#"{"code": "shop", "name": "S", "weight": "x"}"#, "weight"),
            (
                r#"{"code": "shop", "name": "S", "daily_quota": 0}"#,
                "daily_quota",
            ),
            (
                r#"{"code": "shop", "name": "S", "rate_limit_per_sec": 2000000}"#,
                "rate_limit_per_sec",
            ),
            (
                r#"{"code": "shop", "name": "S", "webhook_url": "ftp://x"}"#,
                "webhook_url",
            ),
            (r#"{"code": "shop", "name": "S", "colour": 1}"#, "colour"),
        ] {
            assert_eq!(draft(body).expect_err(body).field, field, "{body}");
        }
    }
}
