use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::TenantId;

/// Whether a tenant may send. A disabled tenant's keys are refused and the
/// schedulers stop draining its queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// A tenant as the store hands it out. Serialized as the admin API shows
/// it, so the field order is the response's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Tenant {
    pub fn is_active(&self) -> bool {
        self.status == TenantStatus::Active
    }
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
}
