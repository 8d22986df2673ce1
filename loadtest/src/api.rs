//! A small client for the producer's HTTP API: bearer auth, the error shape
//! `{"error": {code, message, field?, index?}}`, and retries of 429/503 that
//! honour `Retry-After`.

use std::time::Duration;

use anyhow::{bail, Context};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// How often a retryable answer (429, 503, a connection error) is retried.
pub const MAX_RETRIES: u32 = 8;
/// How often a request that got no answer at all is retried.
pub const MAX_CONNECT_RETRIES: u32 = 3;
/// The longest wait between two tries, whatever `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// A non-2xx answer, with the API's error fields when the body had them.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: Option<String>,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(
                f,
                "HTTP {} {}: {}",
                self.status.as_u16(),
                code,
                self.message
            ),
            None => write!(f, "HTTP {}: {}", self.status.as_u16(), self.message),
        }
    }
}

impl std::error::Error for ApiFailure {}

impl ApiFailure {
    pub fn retryable(&self) -> bool {
        matches!(self.status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
            // Two requests with the same idempotency keys at once: try again.
            || (self.status == StatusCode::CONFLICT && self.code.as_deref() == Some("conflict"))
    }
}

/// Turns an error body into a readable line: `message (field x, index 3)`.
pub fn describe_error_body(body: &str) -> (Option<String>, String) {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        let trimmed: String = body.trim().chars().take(300).collect();
        return (
            None,
            if trimmed.is_empty() {
                "(empty body)".to_owned()
            } else {
                trimmed
            },
        );
    };
    let err = &value["error"];
    let code = err["code"].as_str().map(str::to_owned);
    let mut message = err["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string());
    let mut parts = Vec::new();
    if let Some(field) = err["field"].as_str() {
        parts.push(format!("field {field}"));
    }
    if let Some(index) = err["index"].as_u64() {
        parts.push(format!("index {index}"));
    }
    if !parts.is_empty() {
        message = format!("{message} ({})", parts.join(", "));
    }
    (code, message)
}

impl ApiClient {
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .context("Failed to build the HTTP client")?;
        Ok(ApiClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        })
    }

    /// The same client and connection pool with another bearer token.
    pub fn with_token(&self, token: &str) -> Self {
        ApiClient {
            http: self.http.clone(),
            base: self.base.clone(),
            token: token.to_owned(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// One request, no retries. `Err` carries an [`ApiFailure`] for non-2xx.
    pub async fn once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.with_context(|| {
            format!("{method} {url}: no answer (is the producer running there?)")
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp
            .text()
            .await
            .with_context(|| format!("{method} {url}: failed to read the answer"))?;
        if !status.is_success() {
            let (code, message) = describe_error_body(&text);
            return Err(anyhow::Error::new(ApiFailure {
                status,
                code,
                message,
                retry_after,
            }))
            .with_context(|| format!("{method} {path}"));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{method} {path}: the answer is not JSON"))
    }

    /// Like [`ApiClient::once`], retrying 429/503 (after `Retry-After`, with
    /// backoff) and connection errors. Only for requests that are safe to
    /// repeat (reads, PATCH, sends with idempotency keys).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut attempt = 0;
        loop {
            match self.once(method.clone(), path, body).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let failure = e.downcast_ref::<ApiFailure>();
                    let retryable = match failure {
                        Some(f) => f.retryable(),
                        // No HTTP answer at all (connection refused or reset).
                        None => e
                            .chain()
                            .any(|c| c.downcast_ref::<reqwest::Error>().is_some()),
                    };
                    let limit = if failure.is_some() {
                        MAX_RETRIES
                    } else {
                        MAX_CONNECT_RETRIES
                    };
                    if !retryable || attempt >= limit {
                        return Err(e);
                    }
                    let wait = failure
                        .and_then(|f| f.retry_after)
                        .unwrap_or_else(|| backoff(attempt))
                        .min(MAX_BACKOFF);
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    /// Every item of a `{items, next_cursor}` list.
    pub async fn list_all(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = match &cursor {
                Some(c) => format!("{path}{sep}limit=1000&cursor={c}"),
                None => format!("{path}{sep}limit=1000"),
            };
            let page = self.get(&url).await?;
            match page["items"].as_array() {
                Some(page_items) => items.extend(page_items.iter().cloned()),
                None => bail!("GET {path}: the answer has no `items` list"),
            }
            match page["next_cursor"].as_str() {
                Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
                _ => return Ok(items),
            }
        }
        bail!("GET {path}: too many pages")
    }
}

/// 250 ms doubling to the cap.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1u64 << attempt.min(6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_read_as_sentences() {
        let (code, msg) = describe_error_body(
            r#"{"error":{"code":"invalid_field","message":"is required","field":"to","index":3}}"#,
        );
        assert_eq!(code.as_deref(), Some("invalid_field"));
        assert_eq!(msg, "is required (field to, index 3)");
        let (code, msg) = describe_error_body("upstream timeout");
        assert_eq!(code, None);
        assert_eq!(msg, "upstream timeout");
        assert_eq!(describe_error_body("").1, "(empty body)");
    }

    #[test]
    fn backoff_grows_and_is_capped_by_the_caller() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert!(backoff(30) <= Duration::from_secs(16));
    }
}
