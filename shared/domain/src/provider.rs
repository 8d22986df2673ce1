use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::provider_config::ProviderConfig;
use crate::{Channel, FieldError, ProviderId, TenantId};

/// How a provider sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Smtp,
    Wework,
    Webhook,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Smtp => "smtp",
            ProviderKind::Wework => "wework",
            ProviderKind::Webhook => "webhook",
        }
    }

    /// The one channel a provider kind serves.
    pub fn channel(self) -> Channel {
        match self {
            ProviderKind::Smtp => Channel::Email,
            ProviderKind::Wework => Channel::Wework,
            ProviderKind::Webhook => Channel::Webhook,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "smtp" => Ok(ProviderKind::Smtp),
            "wework" => Ok(ProviderKind::Wework),
            "webhook" => Ok(ProviderKind::Webhook),
            other => Err(FieldError::new(
                "kind",
                format!(
                    "unknown provider kind {other:?}; expected \"smtp\", \"wework\" or \"webhook\""
                ),
            )),
        }
    }
}

/// The largest window limit: 2^53 − 1, the largest integer every JSON
/// reader and Redis's Lua numbers hold exactly.
pub const MAX_WINDOW_LIMIT: u64 = (1 << 53) - 1;

/// A provider's limits. Windows are rolling (`per_minute: N` is at most N
/// sends in any 60 s), counted in the provider's unit; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json_int::opt_u64"
    )]
    #[schema(minimum = 1, maximum = 9_007_199_254_740_991_f64)]
    pub per_minute: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json_int::opt_u64"
    )]
    #[schema(minimum = 1, maximum = 9_007_199_254_740_991_f64)]
    pub per_hour: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json_int::opt_u64"
    )]
    #[schema(minimum = 1, maximum = 9_007_199_254_740_991_f64)]
    pub per_day: Option<u64>,
    /// Sends in flight at once.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::json_int::opt_u64"
    )]
    #[schema(minimum = 1, maximum = 4_294_967_295_f64)]
    pub concurrency: Option<u64>,
}

impl Quota {
    /// `(window_ms, limit)` for each configured rolling window.
    pub fn windows(&self) -> impl Iterator<Item = (u64, u64)> {
        [
            (60_000, self.per_minute),
            (3_600_000, self.per_hour),
            (86_400_000, self.per_day),
        ]
        .into_iter()
        .filter_map(|(window, limit)| limit.map(|l| (window, l)))
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        for (name, v) in [
            ("quota.per_minute", self.per_minute),
            ("quota.per_hour", self.per_hour),
            ("quota.per_day", self.per_day),
            ("quota.concurrency", self.concurrency),
        ] {
            if v == Some(0) {
                return Err(FieldError::new(
                    name,
                    "must be at least 1 (omit it for unlimited)",
                ));
            }
            let max = if name == "quota.concurrency" {
                u64::from(u32::MAX)
            } else {
                MAX_WINDOW_LIMIT
            };
            if v.is_some_and(|v| v > max) {
                return Err(FieldError::new(name, format!("must be at most {max}")));
            }
        }
        Ok(())
    }
}

/// When a provider may send: local hours on some weekdays in a time zone.
/// `end` before `start` spans midnight (22:00–06:00).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendWindow {
    /// IANA time zone, e.g. `Asia/Shanghai`.
    pub tz: String,
    /// `HH:MM`, 24-hour.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub start: String,
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub end: String,
    /// ISO weekdays, 1 = Monday .. 7 = Sunday; empty = every day.
    #[serde(default, deserialize_with = "crate::json_int::days")]
    pub days: Vec<u8>,
}

impl SendWindow {
    pub fn validate(&self) -> Result<(), FieldError> {
        self.parts().map(|_| ())
    }

    fn parts(&self) -> Result<(Tz, NaiveTime, NaiveTime), FieldError> {
        let tz: Tz = self.tz.parse().map_err(|_| {
            FieldError::new("send_window.tz", format!("unknown time zone {:?}", self.tz))
        })?;
        // Exactly `HH:MM`: chrono alone would also take `9:00`.
        let time = |field: &str, raw: &str| {
            let shaped = raw.len() == 5
                && raw.bytes().enumerate().all(|(i, b)| {
                    if i == 2 {
                        b == b':'
                    } else {
                        b.is_ascii_digit()
                    }
                });
            shaped
                .then(|| NaiveTime::parse_from_str(raw, "%H:%M").ok())
                .flatten()
                .ok_or_else(|| {
                    FieldError::new(field, format!("{raw:?} is not a time like \"09:00\""))
                })
        };
        let start = time("send_window.start", &self.start)?;
        let end = time("send_window.end", &self.end)?;
        if let Some(day) = self.days.iter().find(|d| !(1..=7).contains(*d)) {
            return Err(FieldError::new(
                "send_window.days",
                format!("{day} is not an ISO weekday (1 = Monday .. 7 = Sunday)"),
            ));
        }
        Ok((tz, start, end))
    }

    /// Whether the window is open at `now`. An invalid window is closed.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        let Ok((tz, start, end)) = self.parts() else {
            return false;
        };
        let local = tz.from_utc_datetime(&now.naive_utc());
        let t = local.time();
        let day_ok = |weekday: u32| self.days.is_empty() || self.days.contains(&(weekday as u8));
        if start <= end {
            day_ok(local.weekday().number_from_monday()) && t >= start && t < end
        } else if t >= start {
            // The evening part of an overnight window belongs to today.
            day_ok(local.weekday().number_from_monday())
        } else if t < end {
            // The morning part belongs to the window that opened yesterday.
            day_ok(local.weekday().pred().number_from_monday())
        } else {
            false
        }
    }

    /// The next instant (to the minute) at which the window is open, within
    /// eight days; `None` if it never opens.
    pub fn next_open(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_open(now) {
            return Some(now);
        }
        let mut t = now + chrono::Duration::seconds(60 - i64::from(now.timestamp() as u32 % 60));
        for _ in 0..(8 * 24 * 60) {
            if self.is_open(t) {
                return Some(t);
            }
            t += chrono::Duration::minutes(1);
        }
        None
    }
}

/// A provider as the services use it, decoded once by the store: every
/// field parsed and validated, so nothing downstream re-reads a string or
/// falls back to a default. A row that does not decode never becomes one
/// (the store's policy: logged, counted, left out until fixed).
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    pub id: ProviderId,
    /// The tenant it serves alone; `None`: the shared pool.
    pub tenant_id: Option<TenantId>,
    pub name: String,
    pub kind: ProviderKind,
    /// Always `kind.channel()`.
    pub channel: Channel,
    pub config: ProviderConfig,
    pub quota: Quota,
    pub send_window: Option<SendWindow>,
    /// Its share of the draw among near-equal providers (at least 1).
    pub weight: u32,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    /// Changes with every PATCH: what caches of the provider key on.
    pub updated_at: DateTime<Utc>,
}

impl Provider {
    /// May this provider carry `tenant`'s messages on `channel`? A
    /// tenant's own provider never serves another tenant.
    pub fn serves(&self, tenant: TenantId, channel: Channel) -> bool {
        self.enabled && self.channel == channel && self.tenant_id.is_none_or(|t| t == tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn a_daytime_window_is_open_only_in_local_hours_on_its_days() {
        let w = SendWindow {
            tz: "Asia/Shanghai".into(),
            start: "09:00".into(),
            end: "18:00".into(),
            days: vec![1, 2, 3, 4, 5],
        };
        // Monday 2026-11-23 10:00 in Shanghai is 02:00 UTC.
        assert!(w.is_open(at("2026-11-23T02:00:00Z")));
        assert!(!w.is_open(at("2026-11-23T11:00:00Z")));
        // Saturday.
        assert!(!w.is_open(at("2026-11-28T02:00:00Z")));
        assert_eq!(
            w.next_open(at("2026-11-23T11:00:00Z")),
            Some(at("2026-11-24T01:00:00Z"))
        );
    }

    #[test]
    fn an_overnight_window_spans_midnight() {
        let w = SendWindow {
            tz: "UTC".into(),
            start: "22:00".into(),
            end: "06:00".into(),
            days: vec![],
        };
        assert!(w.is_open(at("2026-11-23T23:00:00Z")));
        assert!(w.is_open(at("2026-11-24T05:59:00Z")));
        assert!(!w.is_open(at("2026-11-24T12:00:00Z")));
    }

    #[test]
    fn bad_windows_name_their_field() {
        let w = SendWindow {
            tz: "Mars/Base".into(),
            start: "09:00".into(),
            end: "18:00".into(),
            days: vec![],
        };
        assert_eq!(w.validate().expect_err("bad tz").field, "send_window.tz");
        let w = SendWindow {
            tz: "UTC".into(),
            start: "9am".into(),
            end: "18:00".into(),
            days: vec![],
        };
        assert_eq!(
            w.validate().expect_err("bad start").field,
            "send_window.start"
        );
    }
}
