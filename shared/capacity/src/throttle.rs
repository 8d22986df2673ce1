//! Adapting to a provider's real rate (decision 0018). A rate-limit answer
//! (WeWork 45009 or 45033, HTTP 429, SMTP 4xx with rate wording) lowers the
//! provider's admitted rate for every scheduler at once: multiplicative
//! decrease, at most once a second, a hold for the provider's Retry-After,
//! then additive recovery up to the configured rate (`per_minute` / 60) —
//! as KumoMTA's traffic shaping and PowerMTA's backoff mode do. The
//! reservation script spaces grants at the admitted rate (`reserve.lua`).

use std::time::Duration;

use uuid::Uuid;

use crate::{Capacity, CapacityError, Limits};

/// The factor a rate-limit answer multiplies the admitted rate by.
pub const DECREASE: f64 = 0.5;
/// The recovery per second, as a share of the rate after the last cut.
pub const STEP_SHARE: f64 = 0.1;
/// The lowest admitted rate, units per second.
pub const FLOOR: f64 = 0.2;

impl Limits {
    /// The configured rate in units per second: the minute window's limit
    /// over 60, or `None` without one.
    pub fn configured_rate(&self) -> Option<f64> {
        self.windows
            .iter()
            .find(|(w, _)| *w == 60_000)
            .map(|(_, limit)| *limit as f64 / 60.0)
    }
}

impl Capacity {
    /// Notes a rate-limit answer from `provider`; returns its admitted rate
    /// (units per second) afterwards and the Redis time of its last cut (ms):
    /// what was reserved before that was placed at the old rate.
    pub async fn throttle(
        &self,
        provider: Uuid,
        limits: &Limits,
        hold: Option<Duration>,
    ) -> Result<(f64, i64), CapacityError> {
        let (rate, cut): (String, i64) = self
            .throttle_script
            .key(self.prefix(provider))
            .arg(hold.map_or(0, |h| h.as_millis() as u64))
            .arg(limits.configured_rate().unwrap_or(0.0))
            .arg(DECREASE)
            .arg(STEP_SHARE)
            .arg(FLOOR)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let rate = rate
            .parse()
            .map_err(|_| CapacityError::Protocol(format!("throttle returned {rate:?}")))?;
        Ok((rate, cut))
    }
}
