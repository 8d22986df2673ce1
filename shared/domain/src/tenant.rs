//! Tenants: their status, the record the store hands out, and their own
//! identifiers (the short code operators type and the name people read).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{check_text, FieldError, TenantId};

/// Whether a tenant may send. A disabled tenant's keys are refused and the
/// schedulers stop draining its queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Disabled,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Disabled => "disabled",
        }
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TenantStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(TenantStatus::Active),
            "disabled" => Ok(TenantStatus::Disabled),
            other => Err(format!(
                "unknown tenant status {other:?}; expected \"active\" or \"disabled\""
            )),
        }
    }
}

/// Which engagement a tenant's HTML email measures (off unless the tenant
/// opts in): `opens` adds a 1×1 pixel, `clicks` rewrites each http(s) link
/// to a signed redirect through Herald.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tracking {
    #[serde(default)]
    pub opens: bool,
    #[serde(default)]
    pub clicks: bool,
}

/// A tenant as the store hands it out, and as the admin API shows it (the
/// contract crate `herald-api` uses this type as its `Tenant`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    pub id: TenantId,
    pub code: String,
    pub name: String,
    pub status: TenantStatus,
    /// Its share of the schedulers' fair drain (1 to 1,000).
    pub weight: u32,
    /// Messages accepted per UTC day; `None` is unlimited.
    pub daily_quota: Option<u64>,
    pub rate_limit_per_sec: Option<u32>,
    pub webhook_url: Option<String>,
    /// The events posted to `webhook_url`; `None` is every event.
    pub webhook_events: Option<Vec<crate::WebhookEvent>>,
    /// Open and click tracking of the tenant's HTML email.
    pub tracking: Tracking,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Tenant {
    pub fn is_active(&self) -> bool {
        self.status == TenantStatus::Active
    }
}

/// A tenant's code: 1 to 64 characters of `a-z 0-9 - _`, unique, used in
/// logs and by operators.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TenantCode(String);

impl TenantCode {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            return Err(FieldError::new(
                field,
                "must be 1 to 64 characters of a-z 0-9 - _",
            ));
        }
        Ok(TenantCode(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A display name of 1 to `max` characters without NUL characters (tenants
/// and providers).
pub fn display_name(field: &str, raw: &str, max: usize) -> Result<String, FieldError> {
    check_text(field, raw)?;
    if raw.is_empty() || raw.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("must have 1 to {max} characters"),
        ));
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_status_reads_back_what_it_writes() {
        for status in [TenantStatus::Active, TenantStatus::Disabled] {
            assert_eq!(status.as_str().parse::<TenantStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).ok(),
                Some(serde_json::Value::String(status.as_str().into()))
            );
        }
        assert!("paused".parse::<TenantStatus>().is_err());
    }

    #[test]
    fn a_tenant_code_is_short_lowercase_ascii() {
        assert!(TenantCode::parse("code", "shop-eu_1").is_ok());
        for bad in ["", "Shop", "shop eu", "ü", &"x".repeat(65)] {
            let e = TenantCode::parse("code", bad).expect_err(bad);
            assert_eq!(e.field, "code");
        }
    }

    #[test]
    fn a_display_name_has_a_bounded_length() {
        assert_eq!(display_name("name", "Shop", 200).as_deref(), Ok("Shop"));
        assert_eq!(
            display_name("name", "", 200).expect_err("empty").field,
            "name"
        );
        assert!(display_name("name", &"x".repeat(201), 200).is_err());
        assert!(display_name("name", "a\0b", 200).is_err());
    }
}
