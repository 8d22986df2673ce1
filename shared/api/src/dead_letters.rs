//! `/v1/admin/dead-letters`: replaying dead letters.

use herald_domain::{FieldError, ProviderId, TenantId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::tenants::in_range;

/// `POST /v1/admin/dead-letters/replay`: every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub provider_id: Option<String>,
    /// The dead letter's reason code, e.g. `in_doubt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[^\\x00]*$")]
    pub reason: Option<String>,
    /// 1 to 100,000; 1,000 when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "herald_domain::json_int::opt"
    )]
    #[schema(minimum = 1, maximum = 100000)]
    pub limit: Option<i64>,
}

/// A parsed [`ReplayRequest`]: which dead letters to replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayFilter {
    pub tenant: Option<TenantId>,
    pub provider: Option<ProviderId>,
    /// The dead letter's code (`x-herald-code`: `in_doubt`, `unplaceable`,
    /// a provider's error code …).
    pub reason: Option<String>,
    /// Replay at most this many.
    pub limit: usize,
}

impl TryFrom<ReplayRequest> for ReplayFilter {
    type Error = FieldError;

    fn try_from(r: ReplayRequest) -> Result<Self, FieldError> {
        fn id<T: std::str::FromStr>(
            field: &str,
            raw: Option<String>,
        ) -> Result<Option<T>, FieldError> {
            raw.map(|s| {
                s.parse()
                    .map_err(|_| FieldError::new(field, "must be an id"))
            })
            .transpose()
        }
        if let Some(reason) = &r.reason {
            herald_domain::check_text("reason", reason)?;
        }
        Ok(ReplayFilter {
            tenant: id("tenant_id", r.tenant_id)?,
            provider: id("provider_id", r.provider_id)?,
            reason: r.reason,
            limit: match r.limit {
                Some(l) => in_range("limit", l, 1, 100_000)? as usize,
                None => 1_000,
            },
        })
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReplayReport {
    /// Dead letters read.
    pub scanned: u64,
    /// Sent back to the scheduler.
    pub replayed: u64,
    /// Left in the dead-letter queue (did not match, or could not be read).
    pub kept: u64,
}
