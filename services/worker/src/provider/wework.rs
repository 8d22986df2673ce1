//! WeWork adapter: the real API's `gettoken` and `message/send`, with the
//! access token cached and one refresh shared by every in-flight send.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use herald_domain::provider_config::WeworkConfig;
use herald_domain::{Disposition, FieldError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::Outgoing;

const DEFAULT_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_DUPLICATE_CHECK_INTERVAL: u32 = 1800;
/// Refresh a token this long before WeWork says it expires.
const TOKEN_EARLY_REFRESH: Duration = Duration::from_secs(300);
/// Never cache a token for less than this.
const TOKEN_MIN_LIFETIME: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// Sends WeWork app messages for one app (corp id, secret, agent id).
pub struct WeworkAdapter {
    client: reqwest::Client,
    base_url: String,
    corp_id: String,
    corp_secret: String,
    agent_id: i64,
    duplicate_check_interval: u32,
    token: Mutex<TokenState>,
    /// Held while a token is fetched, so concurrent sends wait for one fetch.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct TokenState {
    current: Option<Token>,
    /// The last failed fetch, shared with the sends that waited for it.
    last_failure: Option<(Instant, Disposition)>,
}

#[derive(Clone)]
struct Token {
    value: Arc<str>,
    fresh_until: Instant,
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct SendReply {
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    #[serde(default)]
    msgid: String,
    #[serde(default)]
    invaliduser: String,
    #[serde(default)]
    invalidparty: String,
    #[serde(default)]
    invalidtag: String,
}

impl WeworkAdapter {
    /// Builds the HTTP client; fetches no token until the first send.
    pub fn new(config: WeworkConfig) -> Result<WeworkAdapter, FieldError> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base_url)
            .map_err(|e| FieldError::new("config.base_url", format!("is not a URL: {e}")))?;
        let timeout = Duration::from_millis(config.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).max(1));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            .user_agent(concat!("herald-worker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FieldError::new("config", format!("cannot build an HTTP client: {e}")))?;
        Ok(WeworkAdapter {
            client,
            base_url,
            corp_id: config.corp_id,
            corp_secret: config.corp_secret,
            agent_id: config.agent_id,
            duplicate_check_interval: config
                .duplicate_check_interval
                .unwrap_or(DEFAULT_DUPLICATE_CHECK_INTERVAL),
            token: Mutex::new(TokenState::default()),
            refresh: tokio::sync::Mutex::new(()),
        })
    }

    /// Sends one message and says what happens next.
    pub async fn send(&self, out: Outgoing<'_>) -> Disposition {
        let disposition = self.try_send(&out).await;
        tracing::debug!(
            message_id = %out.message_id,
            agent_id = self.agent_id,
            attempt = out.attempt,
            outcome = ?disposition,
            "WeWork send finished."
        );
        disposition
    }

    async fn try_send(&self, out: &Outgoing<'_>) -> Disposition {
        let body = match self.request_body(out) {
            Ok(body) => body,
            Err(disposition) => return disposition,
        };
        let mut refreshed = false;
        loop {
            let token = match self.access_token().await {
                Ok(token) => token,
                Err(disposition) => return disposition,
            };
            let reply = match self.post(&token, out, &body).await {
                Ok(reply) => reply,
                Err(disposition) => return disposition,
            };
            let code = format!("wework_{}", reply.errcode);
            return match reply.errcode {
                0 => sent(out, reply),
                // The token expired or was revoked: refresh and resend once.
                40014 | 42001 if !refreshed => {
                    self.invalidate(&token);
                    refreshed = true;
                    continue;
                }
                40014 | 42001 => retry_after(out, Duration::from_secs(30), code, reply.errmsg),
                // System busy.
                -1 => retry_after(out, Duration::from_secs(5), code, reply.errmsg),
                // API frequency limit.
                45009 => retry_after(out, Duration::from_secs(60), code, reply.errmsg),
                // Too many concurrent requests.
                45033 => retry_after(out, Duration::from_secs(10), code, reply.errmsg),
                _ => Disposition::DeadLetter {
                    code,
                    reason: reply.errmsg,
                },
            };
        }
    }

    fn request_body(&self, out: &Outgoing<'_>) -> Result<Value, Disposition> {
        let content = out.content;
        if !content.template_id.is_empty() {
            return Err(dead_letter(
                "template_unsupported",
                format!(
                    "template {} cannot be rendered: templates are not supported yet",
                    content.template_id
                ),
            ));
        }
        if out.recipients.is_empty() {
            return Err(dead_letter("no_recipient", "the message has no recipient"));
        }
        let (msgtype, text) = if !content.text.is_empty() {
            ("text", &content.text)
        } else if !content.html.is_empty() {
            ("markdown", &content.html)
        } else {
            return Err(dead_letter("empty_content", "the message has neither text nor html"));
        };
        Ok(json!({
            "touser": out.recipients.join("|"),
            "msgtype": msgtype,
            "agentid": self.agent_id,
            msgtype: {"content": text},
            "enable_duplicate_check": 1,
            "duplicate_check_interval": self.duplicate_check_interval,
        }))
    }

    /// POSTs to `message/send`; `Err` is the disposition when no errcode came
    /// back.
    async fn post(
        &self,
        token: &str,
        out: &Outgoing<'_>,
        body: &Value,
    ) -> Result<SendReply, Disposition> {
        let response = self
            .client
            .post(format!("{}/cgi-bin/message/send", self.base_url))
            .query(&[("access_token", token)])
            .header("X-Herald-Message-Id", out.message_id.to_string())
            .json(body)
            .send()
            .await
            .map_err(|e| transport_failure(out, e))?;
        let status = response.status();
        if !status.is_success() {
            let code = format!("wework_http_{}", status.as_u16());
            let reason = format!("message/send answered HTTP {status}");
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                retry_after(out, Duration::from_secs(30), code, reason)
            } else {
                dead_letter(code, reason)
            });
        }
        response.json::<SendReply>().await.map_err(|e| {
            if e.is_decode() {
                // The request went through but the answer is garbled; WeWork's
                // duplicate check makes a resend safe.
                retry_after(
                    out,
                    Duration::from_secs(30),
                    "wework_invalid_response",
                    format!("message/send answered something else than JSON: {}", e.without_url()),
                )
            } else {
                transport_failure(out, e)
            }
        })
    }

    /// The cached token, or a fresh one. Concurrent callers share one fetch:
    /// the first takes the refresh lock, the others wait for it and then
    /// find its token (or its failure).
    async fn access_token(&self) -> Result<Arc<str>, Disposition> {
        if let Some(token) = self.cached_token() {
            return Ok(token);
        }
        let asked_at = Instant::now();
        let _refresh = self.refresh.lock().await;
        {
            let state = self.token_state();
            if let Some(token) = state.current.as_ref().filter(|t| t.fresh_until > Instant::now()) {
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

    fn cached_token(&self) -> Option<Arc<str>> {
        let state = self.token_state();
        let token = state.current.as_ref()?;
        (token.fresh_until > Instant::now()).then(|| Arc::clone(&token.value))
    }

    /// Forgets `stale` unless another send has already replaced it.
    fn invalidate(&self, stale: &Arc<str>) {
        let mut state = self.token_state();
        if state.current.as_ref().is_some_and(|t| Arc::ptr_eq(&t.value, stale)) {
            state.current = None;
        }
    }

    fn token_state(&self) -> std::sync::MutexGuard<'_, TokenState> {
        self.token.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `GET gettoken`. A failure here concerns every message of this app (bad
    /// credentials, WeWork unreachable), so it fails over.
    async fn fetch_token(&self) -> Result<Token, Disposition> {
        // The URL carries the secret: errors are shown without it.
        let response = self
            .client
            .get(format!("{}/cgi-bin/gettoken", self.base_url))
            .query(&[("corpid", &self.corp_id), ("corpsecret", &self.corp_secret)])
            .send()
            .await
            .map_err(|e| {
                failover("wework_token_unreachable", format!("gettoken failed: {}", e.without_url()))
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
                format!("gettoken's answer did not parse: {}", e.without_url()),
            )
        })?;
        if reply.errcode != 0 {
            return Err(failover(format!("wework_token_{}", reply.errcode), reply.errmsg));
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

impl fmt::Debug for WeworkAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeworkAdapter")
            .field("base_url", &self.base_url)
            .field("corp_id", &self.corp_id)
            .field("agent_id", &self.agent_id)
            .finish_non_exhaustive()
    }
}

/// How long a token is used: until shortly before it expires.
fn token_lifetime(expires_in: u64) -> Duration {
    Duration::from_secs(expires_in)
        .saturating_sub(TOKEN_EARLY_REFRESH)
        .max(TOKEN_MIN_LIFETIME)
}

fn sent(out: &Outgoing<'_>, reply: SendReply) -> Disposition {
    // WeWork sends to the valid users and lists the others; the message
    // counts as sent. (All invalid is errcode 81013, a dead letter.)
    if !(reply.invaliduser.is_empty()
        && reply.invalidparty.is_empty()
        && reply.invalidtag.is_empty())
    {
        tracing::warn!(
            message_id = %out.message_id,
            invaliduser = %reply.invaliduser,
            invalidparty = %reply.invalidparty,
            invalidtag = %reply.invalidtag,
            "WeWork accepted the message but skipped invalid recipients."
        );
    }
    Disposition::Sent {
        provider_message_id: (!reply.msgid.is_empty()).then_some(reply.msgid),
    }
}

/// A transport error on `message/send`. Before the request left (connect
/// failure) WeWork never saw it: fail over. After it left (timeout, broken
/// connection) it may have been delivered, but WeWork's
/// `enable_duplicate_check` drops a resend of the same content to the same
/// users within `duplicate_check_interval`, so a retry is safe.
fn transport_failure(out: &Outgoing<'_>, error: reqwest::Error) -> Disposition {
    let error = error.without_url();
    if error.is_connect() {
        failover("wework_unreachable", format!("cannot reach WeWork: {error}"))
    } else if error.is_builder() {
        failover("wework_request", format!("the request cannot be built: {error}"))
    } else if error.is_timeout() {
        retry_after(out, Duration::from_secs(30), "wework_timeout", error.to_string())
    } else {
        retry_after(out, Duration::from_secs(30), "wework_transport", error.to_string())
    }
}

/// `base`, doubled for each attempt after the first, up to 15 minutes.
fn retry_after(
    out: &Outgoing<'_>,
    base: Duration,
    code: impl Into<String>,
    reason: impl Into<String>,
) -> Disposition {
    let doublings = out.attempt.saturating_sub(1).min(8);
    Disposition::RetryAfter {
        after: base.saturating_mul(1 << doublings).min(MAX_BACKOFF),
        code: code.into(),
        reason: reason.into(),
    }
}

fn failover(code: impl Into<String>, reason: impl Into<String>) -> Disposition {
    Disposition::Failover {
        code: code.into(),
        reason: reason.into(),
    }
}

fn dead_letter(code: impl Into<String>, reason: impl Into<String>) -> Disposition {
    Disposition::DeadLetter {
        code: code.into(),
        reason: reason.into(),
    }
}
