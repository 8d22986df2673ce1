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
use crate::classify::{self, Action, Classifier};

const DEFAULT_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_DUPLICATE_CHECK_INTERVAL: u32 = 1800;
/// Refresh a token this long before WeWork says it expires.
const TOKEN_EARLY_REFRESH: Duration = Duration::from_secs(300);
/// Never cache a token for less than this.
const TOKEN_MIN_LIFETIME: Duration = Duration::from_secs(60);

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
    /// Says what an errcode or a non-200 HTTP status means.
    classifier: Arc<Classifier>,
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
    /// Builds the HTTP client, with the built-in classifier; fetches no
    /// token until the first send.
    pub fn new(config: WeworkConfig) -> Result<WeworkAdapter, FieldError> {
        WeworkAdapter::with_classifier(config, Arc::new(Classifier::default()))
    }

    /// As [`WeworkAdapter::new`], with `classifier` deciding what errcodes
    /// and HTTP statuses mean.
    pub fn with_classifier(
        config: WeworkConfig,
        classifier: Arc<Classifier>,
    ) -> Result<WeworkAdapter, FieldError> {
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
            classifier,
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
            if reply.errcode == 0 {
                return sent(out, reply);
            }
            return match self.classifier.wework(reply.errcode) {
                Action::Sent => sent(out, reply),
                // The token expired or was revoked: refresh and resend once.
                Action::RefreshToken { .. } if !refreshed => {
                    self.invalidate(&token);
                    refreshed = true;
                    continue;
                }
                action => action.disposition(
                    out.attempt,
                    format!("wework_{}", reply.errcode),
                    reply.errmsg,
                ),
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
            return Err(dead_letter(
                "empty_content",
                "the message has neither text nor html",
            ));
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
            return Err(self.classifier.http(status.as_u16()).disposition(
                out.attempt,
                code,
                reason,
            ));
        }
        response.json::<SendReply>().await.map_err(|e| {
            if e.is_decode() {
                // The request went through but the answer is garbled; WeWork's
                // duplicate check makes a resend safe.
                retry_after(
                    out,
                    Duration::from_secs(30),
                    "wework_invalid_response",
                    format!(
                        "message/send answered something else than JSON: {}",
                        describe(e)
                    ),
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

    fn cached_token(&self) -> Option<Arc<str>> {
        let state = self.token_state();
        let token = state.current.as_ref()?;
        (token.fresh_until > Instant::now()).then(|| Arc::clone(&token.value))
    }

    /// Forgets `stale` unless another send has already replaced it.
    fn invalidate(&self, stale: &Arc<str>) {
        let mut state = self.token_state();
        if state
            .current
            .as_ref()
            .is_some_and(|t| Arc::ptr_eq(&t.value, stale))
        {
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
    let (connect, builder, timeout) = (error.is_connect(), error.is_builder(), error.is_timeout());
    let error = describe(error);
    if connect {
        failover(
            "wework_unreachable",
            format!("cannot reach WeWork: {error}"),
        )
    } else if builder {
        failover(
            "wework_request",
            format!("the request cannot be built: {error}"),
        )
    } else if timeout {
        retry_after(out, Duration::from_secs(30), "wework_timeout", error)
    } else {
        retry_after(out, Duration::from_secs(30), "wework_transport", error)
    }
}

/// The error and its causes, without the URL: it carries the corp secret or
/// the access token.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `base`, doubled for each attempt after the first, up to 15 minutes.
fn retry_after(
    out: &Outgoing<'_>,
    base: Duration,
    code: impl Into<String>,
    reason: impl Into<String>,
) -> Disposition {
    Disposition::RetryAfter {
        after: classify::retry_delay(base, out.attempt),
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

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, VecDeque};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::{Query, State};
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use herald_domain::MessageId;
    use herald_proto::v1;

    use super::*;

    /// A WeWork API stand-in: tokens `token-1`, `token-2`, ... one per
    /// `gettoken`, and scripted `message/send` replies.
    #[derive(Default)]
    struct FakeWework {
        token_calls: AtomicUsize,
        /// `gettoken` answers this errcode instead of a token.
        token_errcode: Option<i64>,
        /// Replies to `message/send` in order; errcode 0 once they run out.
        replies: Mutex<VecDeque<Value>>,
        sends: Mutex<Vec<Seen>>,
    }

    struct Seen {
        token: String,
        herald_message_id: Option<String>,
        body: Value,
    }

    impl FakeWework {
        fn replying(replies: &[Value]) -> FakeWework {
            FakeWework {
                replies: Mutex::new(replies.iter().cloned().collect()),
                ..FakeWework::default()
            }
        }

        async fn start(self) -> (Arc<FakeWework>, WeworkAdapter) {
            self.start_classified(Classifier::default()).await
        }

        async fn start_classified(
            self,
            classifier: Classifier,
        ) -> (Arc<FakeWework>, WeworkAdapter) {
            let fake = Arc::new(self);
            let app = Router::new()
                .route("/cgi-bin/gettoken", get(gettoken))
                .route("/cgi-bin/message/send", post(message_send))
                .with_state(Arc::clone(&fake));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("local addr");
            tokio::spawn(async move { axum::serve(listener, app).await });
            let adapter = WeworkAdapter::with_classifier(
                WeworkConfig {
                    base_url: format!("http://{addr}/"),
                    corp_id: "corp".to_owned(),
                    corp_secret: "secret".to_owned(),
                    agent_id: 1000002,
                    token: None,
                    encoding_aes_key: None,
                    duplicate_check_interval: None,
                    timeout_ms: Some(5000),
                    callback_secret: None,
                },
                Arc::new(classifier),
            )
            .expect("adapter");
            (fake, adapter)
        }

        fn token_calls(&self) -> usize {
            self.token_calls.load(Ordering::SeqCst)
        }

        fn sends(&self) -> std::sync::MutexGuard<'_, Vec<Seen>> {
            self.sends.lock().expect("sends")
        }
    }

    async fn gettoken(
        State(fake): State<Arc<FakeWework>>,
        Query(query): Query<HashMap<String, String>>,
    ) -> Json<Value> {
        assert_eq!(query.get("corpid").map(String::as_str), Some("corp"));
        assert_eq!(query.get("corpsecret").map(String::as_str), Some("secret"));
        let n = fake.token_calls.fetch_add(1, Ordering::SeqCst) + 1;
        // Slow enough that concurrent sends all find this fetch in flight.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(errcode) = fake.token_errcode {
            return Json(json!({"errcode": errcode, "errmsg": "invalid credential"}));
        }
        Json(json!({
            "errcode": 0, "errmsg": "ok", "access_token": format!("token-{n}"), "expires_in": 7200
        }))
    }

    async fn message_send(
        State(fake): State<Arc<FakeWework>>,
        Query(query): Query<HashMap<String, String>>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> Json<Value> {
        fake.sends().push(Seen {
            token: query.get("access_token").cloned().unwrap_or_default(),
            herald_message_id: headers
                .get("x-herald-message-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body,
        });
        let reply = fake.replies.lock().expect("replies").pop_front();
        Json(reply.unwrap_or_else(|| json!({"errcode": 0, "errmsg": "ok", "msgid": "msg-1"})))
    }

    struct Job {
        id: MessageId,
        recipients: Vec<String>,
        content: v1::Content,
        metadata: HashMap<String, String>,
    }

    impl Job {
        fn new() -> Job {
            Job {
                id: MessageId::new(),
                recipients: vec!["zhangsan|lisi".to_owned()],
                content: v1::Content {
                    text: "Your order shipped".to_owned(),
                    ..Default::default()
                },
                metadata: HashMap::new(),
            }
        }

        fn out(&self) -> Outgoing<'_> {
            Outgoing {
                message_id: self.id,
                recipients: &self.recipients,
                content: &self.content,
                metadata: &self.metadata,
                attempt: 1,
            }
        }
    }

    #[tokio::test]
    async fn fifty_concurrent_sends_share_one_token_fetch() {
        let (fake, wework) = FakeWework::default().start().await;
        let jobs: Vec<Job> = (0..50).map(|_| Job::new()).collect();

        let outcomes = futures::future::join_all(jobs.iter().map(|j| wework.send(j.out()))).await;

        assert!(outcomes.iter().all(Disposition::is_sent), "{outcomes:?}");
        assert_eq!(fake.token_calls(), 1);
        assert_eq!(fake.sends().len(), 50);
        assert!(fake.sends().iter().all(|s| s.token == "token-1"));
    }

    #[tokio::test]
    async fn a_send_carries_the_herald_message_id_header_and_the_real_apis_fields() {
        let (fake, wework) = FakeWework::default().start().await;
        let job = Job::new();

        let outcome = wework.send(job.out()).await;

        assert_eq!(
            outcome,
            Disposition::Sent {
                provider_message_id: Some("msg-1".to_owned())
            }
        );
        let sends = fake.sends();
        assert_eq!(sends[0].herald_message_id, Some(job.id.to_string()));
        assert_eq!(
            sends[0].body,
            json!({
                "touser": "zhangsan|lisi",
                "msgtype": "text",
                "agentid": 1000002,
                "text": {"content": "Your order shipped"},
                "enable_duplicate_check": 1,
                "duplicate_check_interval": 1800,
            })
        );
    }

    #[tokio::test]
    async fn html_only_content_is_sent_as_markdown() {
        let (fake, wework) = FakeWework::default().start().await;
        let mut job = Job::new();
        job.content.text.clear();
        job.content.html = "**shipped**".to_owned();

        assert!(wework.send(job.out()).await.is_sent());
        let sends = fake.sends();
        assert_eq!(sends[0].body["msgtype"], "markdown");
        assert_eq!(sends[0].body["markdown"]["content"], "**shipped**");
    }

    #[tokio::test]
    async fn an_invalid_token_is_refreshed_and_the_message_resent_once() {
        let (fake, wework) =
            FakeWework::replying(&[json!({"errcode": 40014, "errmsg": "invalid access_token"})])
                .start()
                .await;

        let outcome = wework.send(Job::new().out()).await;

        assert!(outcome.is_sent(), "{outcome:?}");
        assert_eq!(fake.token_calls(), 2);
        let tokens: Vec<String> = fake.sends().iter().map(|s| s.token.clone()).collect();
        assert_eq!(tokens, ["token-1", "token-2"]);
    }

    #[tokio::test]
    async fn a_second_token_error_in_a_row_retries_later() {
        let (fake, wework) = FakeWework::replying(&[
            json!({"errcode": 40014, "errmsg": "invalid access_token"}),
            json!({"errcode": 42001, "errmsg": "access_token expired"}),
        ])
        .start()
        .await;

        let outcome = wework.send(Job::new().out()).await;

        assert!(
            matches!(outcome, Disposition::RetryAfter { .. }),
            "{outcome:?}"
        );
        assert_eq!(outcome.code(), Some("wework_42001"));
        assert_eq!(fake.sends().len(), 2);
    }

    #[tokio::test]
    async fn the_api_frequency_limit_retries_after_a_minute() {
        let (_fake, wework) =
            FakeWework::replying(&[json!({"errcode": 45009, "errmsg": "api freq out of limit"})])
                .start()
                .await;

        let outcome = wework.send(Job::new().out()).await;

        assert_eq!(
            outcome,
            Disposition::RetryAfter {
                after: Duration::from_secs(60),
                code: "wework_45009".to_owned(),
                reason: "api freq out of limit".to_owned(),
            }
        );
    }

    #[tokio::test]
    async fn a_user_rule_overrides_the_delay_of_the_api_frequency_limit() {
        let classifier = Classifier::from_json(
            r#"{"wework": [{"errcode": 45009, "action": "retry", "after_s": 120}]}"#,
        )
        .expect("rules");
        let (_fake, wework) =
            FakeWework::replying(&[json!({"errcode": 45009, "errmsg": "api freq out of limit"})])
                .start_classified(classifier)
                .await;

        let outcome = wework.send(Job::new().out()).await;

        assert_eq!(
            outcome,
            Disposition::RetryAfter {
                after: Duration::from_secs(120),
                code: "wework_45009".to_owned(),
                reason: "api freq out of limit".to_owned(),
            }
        );
    }

    #[tokio::test]
    async fn later_attempts_back_off_longer() {
        let (_fake, wework) =
            FakeWework::replying(&[json!({"errcode": -1, "errmsg": "system busy"})])
                .start()
                .await;
        let job = Job::new();

        let outcome = wework
            .send(Outgoing {
                attempt: 3,
                ..job.out()
            })
            .await;

        assert!(
            matches!(outcome, Disposition::RetryAfter { after, .. } if after == Duration::from_secs(20)),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn an_unknown_errcode_dead_letters_with_its_errmsg() {
        let (_fake, wework) = FakeWework::replying(&[
            json!({"errcode": 60020, "errmsg": "not allow to access from your ip"}),
        ])
        .start()
        .await;

        let outcome = wework.send(Job::new().out()).await;

        assert_eq!(
            outcome,
            Disposition::DeadLetter {
                code: "wework_60020".to_owned(),
                reason: "not allow to access from your ip".to_owned(),
            }
        );
    }

    #[tokio::test]
    async fn invalid_users_do_not_stop_a_send_to_the_valid_ones() {
        let (_fake, wework) = FakeWework::replying(&[json!({
            "errcode": 0, "errmsg": "ok", "invaliduser": "lisi", "msgid": "msg-9"
        })])
        .start()
        .await;

        let outcome = wework.send(Job::new().out()).await;

        assert_eq!(
            outcome,
            Disposition::Sent {
                provider_message_id: Some("msg-9".to_owned())
            }
        );
    }

    #[tokio::test]
    async fn a_rejected_corp_secret_fails_over_once_for_all_waiting_sends() {
        let (fake, wework) = FakeWework {
            token_errcode: Some(40001),
            ..FakeWework::default()
        }
        .start()
        .await;
        let jobs: Vec<Job> = (0..10).map(|_| Job::new()).collect();

        let outcomes = futures::future::join_all(jobs.iter().map(|j| wework.send(j.out()))).await;

        for outcome in &outcomes {
            assert!(
                matches!(outcome, Disposition::Failover { .. }),
                "{outcome:?}"
            );
            assert_eq!(outcome.code(), Some("wework_token_40001"));
        }
        assert_eq!(fake.token_calls(), 1);
        assert!(fake.sends().is_empty());
    }

    #[tokio::test]
    async fn an_unreachable_api_fails_over_without_revealing_the_secret() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        drop(listener);
        let wework = WeworkAdapter::new(WeworkConfig {
            base_url: format!("http://{addr}"),
            corp_id: "corp".to_owned(),
            corp_secret: "very-secret".to_owned(),
            agent_id: 1,
            token: None,
            encoding_aes_key: None,
            duplicate_check_interval: None,
            timeout_ms: Some(2000),
            callback_secret: None,
        })
        .expect("adapter");

        let outcome = wework.send(Job::new().out()).await;

        assert!(
            matches!(outcome, Disposition::Failover { .. }),
            "{outcome:?}"
        );
        assert_eq!(outcome.code(), Some("wework_token_unreachable"));
        let reason = outcome.reason().unwrap_or_default();
        assert!(reason.contains("connect"), "{reason}");
        assert!(!reason.contains("very-secret"), "{reason}");
    }

    #[tokio::test]
    async fn a_template_message_is_dead_lettered_until_templates_exist() {
        let (fake, wework) = FakeWework::default().start().await;
        let mut job = Job::new();
        job.content.template_id = "shipped".to_owned();

        let outcome = wework.send(job.out()).await;

        assert_eq!(outcome.code(), Some("template_unsupported"), "{outcome:?}");
        assert_eq!(fake.token_calls(), 0);
    }

    #[test]
    fn tokens_are_refreshed_five_minutes_early_but_kept_at_least_a_minute() {
        assert_eq!(token_lifetime(7200), Duration::from_secs(6900));
        assert_eq!(token_lifetime(100), Duration::from_secs(60));
    }
}
