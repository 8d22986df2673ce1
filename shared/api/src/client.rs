//! The typed client of Herald's HTTP API, for programs that drive it: the
//! operator CLI, the load test and the test suites. Every method takes and
//! returns the contract's types; a refusal comes back as the API's own error
//! body with its status and `Retry-After`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::page::MAX_PAGE;
use crate::{
    Accepted, AdminMessageRecord, BatchAccepted, Cancelled, ErrorDetail, Key, MessageRecord,
    NewProvider, NewSuppression, NewTemplate, NewTenant, Page, Provider, ProviderPatch,
    ProviderScore, QueueDepth, ReplayReport, ReplayRequest, RevokedKey, SendBatch, SendMessage,
    Suppression, Template, TemplateVersion, Tenant, TenantPatch, WebhookDelivery, WebhookSecret,
    WebhookSettings,
};

/// How often a retryable answer (429, 503, a retryable 409) is retried by
/// [`Client::with_retries`].
pub const MAX_RETRIES: u32 = 8;
/// How often a request that got no answer at all is retried.
pub const MAX_CONNECT_RETRIES: u32 = 3;
/// The longest wait between two tries, whatever `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer: the producer is down, unreachable or too slow.
    #[error("{method} {url}: no answer ({cause})")]
    Unreachable {
        method: Method,
        url: String,
        cause: String,
        connect: bool,
        timeout: bool,
    },
    /// The API refused the call.
    #[error("{method} {path}: HTTP {status}: {}", describe(.error.as_ref(), .text))]
    Refused {
        method: Method,
        path: String,
        status: StatusCode,
        /// The API's error body; `None` when the answer was not in its shape.
        error: Option<ErrorDetail>,
        /// The answer's text when it was not the API's error body.
        text: String,
        retry_after: Option<Duration>,
    },
    /// A 2xx answer that is not the contract's type.
    #[error("{method} {path}: the answer is not the expected JSON: {cause}")]
    Decode {
        method: Method,
        path: String,
        cause: String,
    },
}

fn describe(error: Option<&ErrorDetail>, text: &str) -> String {
    match error {
        Some(e) => {
            let mut s = format!("{}: {}", e.code, e.message);
            if let Some(i) = e.index {
                s.push_str(&format!(" (index {i})"));
            }
            s
        }
        None if text.trim().is_empty() => "(empty body)".to_owned(),
        None => text.trim().chars().take(300).collect(),
    }
}

impl ClientError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API's error body of a refusal.
    pub fn detail(&self) -> Option<&ErrorDetail> {
        match self {
            ClientError::Refused { error, .. } => error.as_ref(),
            _ => None,
        }
    }

    /// The API's error code of a refusal (`invalid_field`, …).
    pub fn code(&self) -> Option<&str> {
        self.detail().map(|d| d.code.as_str())
    }

    /// Whether the same call may succeed later: 429, 503, the retryable
    /// 409 of two requests with the same idempotency keys at once, or no
    /// answer at all.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Refused { status, error, .. } => {
                matches!(
                    *status,
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                ) || (*status == StatusCode::CONFLICT
                    && error.as_ref().is_some_and(|e| e.code == "conflict"))
            }
            ClientError::Decode { .. } => false,
        }
    }

    /// The `Retry-After` of a refusal (429, 503), when it carried one: how
    /// long the API asks a caller that retries by itself to wait.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A client of one producer with one bearer token (a tenant's API key or
/// the admin token). Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    retries: bool,
}

impl Client {
    /// A client of the producer at `base` (`http://127.0.0.1:8080`).
    pub fn new(base: &str, token: &str) -> std::result::Result<Client, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            retries: false,
        })
    }

    /// The same client and connection pool with another bearer token.
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    /// The same client, retrying retryable failures (after `Retry-After`,
    /// else with backoff). Only for calls that are safe to repeat: reads,
    /// PATCH, and sends whose messages carry idempotency keys.
    pub fn with_retries(&self) -> Client {
        Client {
            retries: true,
            ..self.clone()
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    // ---- sending (tenant key) ----

    pub async fn send(&self, message: &SendMessage) -> Result<Accepted> {
        self.call(Method::POST, "/v1/messages", Some(message)).await
    }

    pub async fn send_batch(&self, messages: &[SendMessage]) -> Result<BatchAccepted> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            messages: &'a [SendMessage],
        }
        self.call(
            Method::POST,
            "/v1/messages/batch",
            Some(&Borrowed { messages }),
        )
        .await
    }

    /// The same as [`Client::send_batch`], from an owned request.
    pub async fn send_batch_request(&self, batch: &SendBatch) -> Result<BatchAccepted> {
        self.call(Method::POST, "/v1/messages/batch", Some(batch))
            .await
    }

    pub async fn message(&self, id: impl std::fmt::Display) -> Result<MessageRecord> {
        self.get(&format!("/v1/messages/{id}")).await
    }

    /// One page of the tenant's messages; `query` is the query string
    /// without `?` (`status=sent&limit=10`), possibly empty.
    pub async fn messages(&self, query: &str) -> Result<Page<MessageRecord>> {
        self.get(&with_query("/v1/messages", query)).await
    }

    pub async fn cancel(&self, id: impl std::fmt::Display) -> Result<Cancelled> {
        self.call::<(), _>(Method::POST, &format!("/v1/messages/{id}/cancel"), None)
            .await
    }

    // ---- admin (admin token) ----

    pub async fn create_tenant(&self, tenant: &NewTenant) -> Result<Tenant> {
        self.call(Method::POST, "/v1/admin/tenants", Some(tenant))
            .await
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        self.list_all("/v1/admin/tenants").await
    }

    pub async fn tenant(&self, id: impl std::fmt::Display) -> Result<Tenant> {
        self.get(&format!("/v1/admin/tenants/{id}")).await
    }

    pub async fn update_tenant(
        &self,
        id: impl std::fmt::Display,
        patch: &TenantPatch,
    ) -> Result<Tenant> {
        self.call(
            Method::PATCH,
            &format!("/v1/admin/tenants/{id}"),
            Some(patch),
        )
        .await
    }

    pub async fn disable_tenant(&self, id: impl std::fmt::Display) -> Result<Tenant> {
        self.call::<(), _>(
            Method::POST,
            &format!("/v1/admin/tenants/{id}/disable"),
            None,
        )
        .await
    }

    pub async fn enable_tenant(&self, id: impl std::fmt::Display) -> Result<Tenant> {
        self.call::<(), _>(
            Method::POST,
            &format!("/v1/admin/tenants/{id}/enable"),
            None,
        )
        .await
    }

    pub async fn create_key(&self, tenant: impl std::fmt::Display) -> Result<Key> {
        self.call::<(), _>(
            Method::POST,
            &format!("/v1/admin/tenants/{tenant}/keys"),
            None,
        )
        .await
    }

    pub async fn revoke_key(
        &self,
        tenant: impl std::fmt::Display,
        key: impl std::fmt::Display,
    ) -> Result<RevokedKey> {
        self.call::<(), _>(
            Method::DELETE,
            &format!("/v1/admin/tenants/{tenant}/keys/{key}"),
            None,
        )
        .await
    }

    pub async fn create_provider(&self, provider: &NewProvider) -> Result<Provider> {
        self.call(Method::POST, "/v1/admin/providers", Some(provider))
            .await
    }

    pub async fn providers(&self) -> Result<Vec<Provider>> {
        self.list_all("/v1/admin/providers").await
    }

    pub async fn provider(&self, id: impl std::fmt::Display) -> Result<Provider> {
        self.get(&format!("/v1/admin/providers/{id}")).await
    }

    pub async fn update_provider(
        &self,
        id: impl std::fmt::Display,
        patch: &ProviderPatch,
    ) -> Result<Provider> {
        self.call(
            Method::PATCH,
            &format!("/v1/admin/providers/{id}"),
            Some(patch),
        )
        .await
    }

    pub async fn delete_provider(&self, id: impl std::fmt::Display) -> Result<()> {
        self.call_empty(Method::DELETE, &format!("/v1/admin/providers/{id}"))
            .await
    }

    pub async fn provider_score(&self, id: impl std::fmt::Display) -> Result<ProviderScore> {
        self.get(&format!("/v1/admin/providers/{id}/score")).await
    }

    pub async fn admin_message(&self, id: impl std::fmt::Display) -> Result<AdminMessageRecord> {
        self.get(&format!("/v1/admin/messages/{id}")).await
    }

    pub async fn queues(&self) -> Result<Vec<QueueDepth>> {
        let page: Page<QueueDepth> = self.get("/v1/admin/queues").await?;
        Ok(page.items)
    }

    pub async fn replay_dead_letters(&self, filter: &ReplayRequest) -> Result<ReplayReport> {
        self.call(Method::POST, "/v1/admin/dead-letters/replay", Some(filter))
            .await
    }

    // ---- templates (tenant key) ----

    pub async fn create_template(&self, template: &NewTemplate) -> Result<Template> {
        self.call(Method::POST, "/v1/templates", Some(template))
            .await
    }

    pub async fn templates(&self) -> Result<Vec<Template>> {
        self.list_all("/v1/templates").await
    }

    /// The current version, or `version`.
    pub async fn template(
        &self,
        id: impl std::fmt::Display,
        version: Option<u32>,
    ) -> Result<Template> {
        match version {
            Some(v) => self.get(&format!("/v1/templates/{id}?version={v}")).await,
            None => self.get(&format!("/v1/templates/{id}")).await,
        }
    }

    /// Writes the next version.
    pub async fn put_template(
        &self,
        id: impl std::fmt::Display,
        version: &TemplateVersion,
    ) -> Result<Template> {
        self.call(Method::PUT, &format!("/v1/templates/{id}"), Some(version))
            .await
    }

    pub async fn delete_template(&self, id: impl std::fmt::Display) -> Result<()> {
        self.call_empty(Method::DELETE, &format!("/v1/templates/{id}"))
            .await
    }

    // ---- suppressions (tenant key) ----

    pub async fn suppressions(&self) -> Result<Vec<Suppression>> {
        self.list_all("/v1/suppressions").await
    }

    pub async fn add_suppression(&self, entry: &NewSuppression) -> Result<Suppression> {
        self.call(Method::POST, "/v1/suppressions", Some(entry))
            .await
    }

    pub async fn remove_suppression(&self, address: &str) -> Result<()> {
        self.call_empty(
            Method::DELETE,
            &format!("/v1/suppressions/{}", percent_encode(address)),
        )
        .await
    }

    /// The tenant's webhook settings.
    pub async fn webhook(&self) -> Result<WebhookSettings> {
        self.get("/v1/webhooks").await
    }

    /// A new signing secret (the previous one signs beside it for a day).
    pub async fn rotate_webhook_secret(&self) -> Result<WebhookSecret> {
        self.call::<(), _>(Method::POST, "/v1/webhooks/secret", None)
            .await
    }

    /// Every delivery of the log matching `query` (a query string such as
    /// `state=failed&event=bounced`, or empty), newest first.
    pub async fn webhook_deliveries(&self, query: &str) -> Result<Vec<WebhookDelivery>> {
        self.list_all(&with_query("/v1/webhooks/deliveries", query))
            .await
    }

    pub async fn webhook_delivery(&self, id: impl std::fmt::Display) -> Result<WebhookDelivery> {
        self.get(&format!("/v1/webhooks/deliveries/{id}")).await
    }

    /// Posts a delivery again now.
    pub async fn resend_webhook_delivery(
        &self,
        id: impl std::fmt::Display,
    ) -> Result<WebhookDelivery> {
        self.call::<(), _>(
            Method::POST,
            &format!("/v1/webhooks/deliveries/{id}/resend"),
            None,
        )
        .await
    }

    /// A tenant's new signing secret, made by the admin.
    pub async fn admin_rotate_webhook_secret(
        &self,
        tenant: impl std::fmt::Display,
    ) -> Result<WebhookSecret> {
        self.call::<(), _>(
            Method::POST,
            &format!("/v1/admin/tenants/{tenant}/webhook-secret"),
            None,
        )
        .await
    }

    // ---- plumbing ----

    /// Every item of a `{items, next_cursor}` list, following the cursor.
    pub async fn list_all<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = format!("limit={MAX_PAGE}");
            if let Some(c) = &cursor {
                query.push_str("&cursor=");
                query.push_str(&percent_encode(c));
            }
            let page: Page<T> = self.get(&with_query(path, &query)).await?;
            items.extend(page.items);
            match page.next_cursor {
                Some(next) if !next.is_empty() && Some(&next) != cursor.as_ref() => {
                    cursor = Some(next)
                }
                _ => return Ok(items),
            }
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    /// One call with a JSON body (or none), decoding a JSON answer.
    pub async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let text = self.retrying(&method, path, body).await?;
        serde_json::from_str(&text).map_err(|e| ClientError::Decode {
            method,
            path: path.to_owned(),
            cause: e.to_string(),
        })
    }

    async fn call_empty(&self, method: Method, path: &str) -> Result<()> {
        self.retrying::<()>(&method, path, None).await.map(drop)
    }

    async fn retrying<B: Serialize + ?Sized>(
        &self,
        method: &Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<String> {
        let mut attempt = 0;
        loop {
            match self.once(method, path, body).await {
                Ok(text) => return Ok(text),
                Err(e) => {
                    let limit = match e {
                        ClientError::Unreachable { .. } => MAX_CONNECT_RETRIES,
                        _ => MAX_RETRIES,
                    };
                    if !self.retries || !e.is_retryable() || attempt >= limit {
                        return Err(e);
                    }
                    let wait = e
                        .retry_after()
                        .unwrap_or_else(|| backoff(attempt))
                        .min(MAX_BACKOFF);
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One request; the answer's text on 2xx.
    async fn once<B: Serialize + ?Sized>(
        &self,
        method: &Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<String> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            method: method.clone(),
            url: url.clone(),
            cause: root_cause(&e),
            connect: e.is_connect(),
            timeout: e.is_timeout(),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(if text.trim().is_empty() {
                "null".to_owned()
            } else {
                text
            });
        }
        let error = serde_json::from_str::<crate::ErrorBody>(&text)
            .ok()
            .map(|b| b.error);
        Err(ClientError::Refused {
            method: method.clone(),
            path: path.to_owned(),
            status,
            text: if error.is_some() { String::new() } else { text },
            error,
            retry_after,
        })
    }
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}{query}")
    }
}

/// The innermost cause of `e`, in words (`connection refused`, …).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    match cause.downcast_ref::<std::io::Error>().map(|io| io.kind()) {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".to_owned(),
        Some(std::io::ErrorKind::ConnectionReset) => "connection reset".to_owned(),
        Some(std::io::ErrorKind::TimedOut) => "timed out".to_owned(),
        _ => cause.to_string(),
    }
}

/// 250 ms doubling, capped by the caller.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1u64 << attempt.min(6)))
}

/// `value` for a URL's path segment or query value: unreserved characters
/// as they are, every other byte as `%XX`.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_as_its_code_and_message() {
        let e = ClientError::Refused {
            method: Method::POST,
            path: "/v1/messages/batch".into(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: Some(ErrorDetail {
                code: "invalid_field".into(),
                message: "to: is required".into(),
                field: Some("to".into()),
                index: Some(3),
            }),
            text: String::new(),
            retry_after: None,
        };
        assert_eq!(
            e.to_string(),
            "POST /v1/messages/batch: HTTP 422 Unprocessable Entity: invalid_field: to: is required (index 3)"
        );
        assert!(!e.is_retryable());
        assert_eq!(e.code(), Some("invalid_field"));
    }

    #[test]
    fn overload_and_the_concurrent_key_conflict_are_retryable() {
        let refused = |status, code: &str| ClientError::Refused {
            method: Method::POST,
            path: "/".into(),
            status,
            error: Some(ErrorDetail {
                code: code.into(),
                message: "m".into(),
                field: None,
                index: None,
            }),
            text: String::new(),
            retry_after: None,
        };
        assert!(refused(StatusCode::SERVICE_UNAVAILABLE, "unavailable").is_retryable());
        assert!(refused(StatusCode::TOO_MANY_REQUESTS, "rate_limited").is_retryable());
        assert!(refused(StatusCode::CONFLICT, "conflict").is_retryable());
        assert!(!refused(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_conflict").is_retryable());
    }

    /// A producer that answers every request with 503 `unavailable` and
    /// `Retry-After: 0`, counting the requests.
    async fn always_unavailable() -> (String, std::sync::Arc<std::sync::atomic::AtomicU32>) {
        use std::sync::atomic::{AtomicU32, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let count = std::sync::Arc::new(AtomicU32::new(0));
        let counted = count.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                // The request is small; one read holds its head, and the
                // answer closes the connection, so each try is one accept.
                let mut buf = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                let body = r#"{"error":{"code":"unavailable","message":"retry later"}}"#;
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (base, count)
    }

    #[tokio::test]
    async fn a_plain_client_tries_once_and_a_retrying_one_until_its_limit() {
        use std::sync::atomic::Ordering;

        let (base, count) = always_unavailable().await;
        let client = Client::new(&base, "t").expect("a client");
        let message = SendMessage::email("a@example.com", "s", "t");
        let error = client.send(&message).await.expect_err("refused");
        assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(error.code(), Some("unavailable"));
        assert_eq!(error.retry_after(), Some(Duration::ZERO));
        assert_eq!(count.load(Ordering::SeqCst), 1);

        count.store(0, Ordering::SeqCst);
        let error = client
            .with_retries()
            .send_batch(std::slice::from_ref(&message))
            .await
            .expect_err("still refused");
        assert!(error.is_retryable());
        assert_eq!(count.load(Ordering::SeqCst), MAX_RETRIES + 1);
    }

    #[test]
    fn backoff_grows() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_secs(1));
    }
}
