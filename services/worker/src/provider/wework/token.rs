//! The access token: cached until shortly before it expires, with one
//! `gettoken` fetch shared by every send waiting for it.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use herald_domain::Disposition;
use serde::Deserialize;

use super::outcome::{describe, failover};
use super::WeworkAdapter;

/// Refresh a token this long before WeWork says it expires.
const TOKEN_EARLY_REFRESH: Duration = Duration::from_secs(300);
/// Never cache a token for less than this.
const TOKEN_MIN_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(super) struct TokenState {
    pub(super) current: Option<Token>,
    /// The last failed fetch, shared with the sends that waited for it.
    pub(super) last_failure: Option<(Instant, Disposition)>,
}

#[derive(Clone)]
pub(super) struct Token {
    pub(super) value: Arc<str>,
    pub(super) fresh_until: Instant,
}

#[derive(Deserialize)]
pub(super) struct TokenReply {
    #[serde(default)]
    pub(super) errcode: i64,
    #[serde(default)]
    pub(super) errmsg: String,
    pub(super) access_token: Option<String>,
    pub(super) expires_in: Option<u64>,
}

impl WeworkAdapter {
    /// The cached token, or a fresh one. Concurrent callers share one fetch:
    /// the first takes the refresh lock, the others wait for it and then
    /// find its token (or its failure).
    pub(super) async fn access_token(&self) -> Result<Arc<str>, Disposition> {
        if let Some(token) = self.cached_token() {
            return Ok(token);
        }
        let asked_at = Instant::now();
        let _refresh = self.refresh.lock().await;
        {
            let state = self.token_state();
            if let Some(token) = state
                .current
                .as_ref()
                .filter(|t| t.fresh_until > Instant::now())
            {
                return Ok(Arc::clone(&token.value));
            }
            if let Some((at, failure)) = &state.last_failure {
                if *at >= asked_at {
                    return Err(failure.clone());
                }
            }
        }
        match self.fetch_token().await {
            Ok(token) => {
                let value = Arc::clone(&token.value);
                let mut state = self.token_state();
                state.current = Some(token);
                state.last_failure = None;
                Ok(value)
            }
            Err(failure) => {
                self.token_state().last_failure = Some((Instant::now(), failure.clone()));
                Err(failure)
            }
        }
    }

    pub(super) fn cached_token(&self) -> Option<Arc<str>> {
        let state = self.token_state();
        let token = state.current.as_ref()?;
        (token.fresh_until > Instant::now()).then(|| Arc::clone(&token.value))
    }

    /// Forgets `stale` unless another send has already replaced it.
    pub(super) fn invalidate(&self, stale: &Arc<str>) {
        let mut state = self.token_state();
        if state
            .current
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(&t.value, stale))
        {
            state.current = None;
        }
    }

    pub(super) fn token_state(&self) -> std::sync::MutexGuard<'_, TokenState> {
        self.token.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `GET gettoken`. A failure here concerns every message of this app (bad
    /// credentials, WeWork unreachable), so it fails over.
    pub(super) async fn fetch_token(&self) -> Result<Token, Disposition> {
        // The URL carries the secret: errors are shown without it.
        let response = self
            .client
            .get(format!("{}/cgi-bin/gettoken", self.base_url))
            .query(&[("corpid", &self.corp_id), ("corpsecret", &self.corp_secret)])
            .send()
            .await
            .map_err(|e| {
                failover(
                    "wework_token_unreachable",
                    format!("gettoken failed: {}", describe(e)),
                )
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(failover(
                format!("wework_token_http_{}", status.as_u16()),
                format!("gettoken answered HTTP {status}"),
            ));
        }
        let reply = response.json::<TokenReply>().await.map_err(|e| {
            failover(
                "wework_token_invalid_response",
                format!("gettoken's answer did not parse: {}", describe(e)),
            )
        })?;
        if reply.errcode != 0 {
            return Err(failover(
                format!("wework_token_{}", reply.errcode),
                reply.errmsg,
            ));
        }
        let Some(value) = reply.access_token.filter(|t| !t.is_empty()) else {
            return Err(failover(
                "wework_token_invalid_response",
                "gettoken answered without an access_token",
            ));
        };
        let lifetime = token_lifetime(reply.expires_in.unwrap_or(7200));
        tracing::debug!(
            agent_id = self.agent_id,
            lifetime_secs = lifetime.as_secs(),
            "Fetched a WeWork access token."
        );
        Ok(Token {
            value: value.into(),
            fresh_until: Instant::now() + lifetime,
        })
    }
}

/// How long a token is used: until shortly before it expires.
pub(super) fn token_lifetime(expires_in: u64) -> Duration {
    Duration::from_secs(expires_in)
        .saturating_sub(TOKEN_EARLY_REFRESH)
        .max(TOKEN_MIN_LIFETIME)
}
