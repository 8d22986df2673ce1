//! The producer's admin API, as the CLI calls it. Every failure says what
//! went wrong and what to check: the producer's address, the admin token,
//! or the API's own error (its code, field and message).

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Items asked for per page when a command reads a whole list.
const PAGE: u32 = 1000;

pub struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    pub fn new(base: &str, token: Option<&str>) -> anyhow::Result<Admin> {
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
            anyhow!("no admin token: pass --admin-token or set HERALD_ADMIN_TOKEN (the producer's admin token)")
        })?;
        let base = base.trim_end_matches('/').to_owned();
        anyhow::ensure!(
            base.starts_with("http://") || base.starts_with("https://"),
            "the producer URL {base:?} must start with http:// or https:// (--producer-url or HERALD_PRODUCER_URL)"
        );
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()
            .context("Failed to build the HTTP client")?;
        Ok(Admin {
            http,
            base,
            token: token.to_owned(),
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::DELETE, path, None).await
    }

    /// Every item of a list endpoint, following `next_cursor`, in the
    /// API's envelope (`{items, next_cursor: null}`).
    pub async fn list_all(&self, path: &str) -> anyhow::Result<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut page_path = format!("{path}?limit={PAGE}");
            if let Some(c) = &cursor {
                page_path.push_str("&cursor=");
                page_path.push_str(c);
            }
            let mut page = self.get(&page_path).await?;
            match page["items"].take() {
                Value::Array(more) => items.extend(more),
                _ => bail!("GET {path} answered without an items list"),
            }
            match page["next_cursor"].as_str() {
                Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(json!({"items": items, "next_cursor": null}))
    }

    /// One call; a 2xx answer's JSON (`null` when it has no body), or an
    /// error that says what to do.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.unreachable(&method, &url, &e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response
            .text()
            .await
            .map_err(|e| self.unreachable(&method, &url, &e))?;
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).with_context(|| {
                format!("{method} {url} answered {status} with a body that is not JSON")
            });
        }
        Err(refusal(status, &text, retry_after.as_deref()))
    }

    fn unreachable(&self, method: &Method, url: &str, e: &reqwest::Error) -> anyhow::Error {
        let cause = root_cause(e);
        if e.is_connect() {
            anyhow!(
                "cannot reach the producer at {}: {cause} — is it running? set --producer-url or HERALD_PRODUCER_URL",
                self.base
            )
        } else if e.is_timeout() {
            anyhow!(
                "the producer at {} did not answer {method} {url} in time — is it overloaded or stuck? set --producer-url or HERALD_PRODUCER_URL to try another",
                self.base
            )
        } else {
            anyhow!("{method} {url} failed: {cause}")
        }
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

/// The error for a refused call, from the API's `{"error": {code, message,
/// field?, index?}}` body.
fn refusal(status: StatusCode, text: &str, retry_after: Option<&str>) -> anyhow::Error {
    let answer: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let error = &answer["error"];
    let Some(code) = error["code"].as_str() else {
        let text: String = text.trim().chars().take(200).collect();
        return anyhow!("the producer answered {status}: {text}");
    };
    let field = error["field"].as_str();
    let mut message = error["message"].as_str().unwrap_or("").to_owned();
    // The API's message for a field starts with its name; it is said apart.
    if let Some(rest) = field.and_then(|f| message.strip_prefix(&format!("{f}: "))) {
        message = rest.to_owned();
    }
    match status {
        StatusCode::UNAUTHORIZED => anyhow!(
            "the producer refused the admin token ({code}: {message}): check --admin-token or HERALD_ADMIN_TOKEN"
        ),
        StatusCode::FORBIDDEN => anyhow!(
            "the producer refused the admin call ({code}: {message}): the producer needs HERALD_ADMIN_TOKEN set, and this command the same token (--admin-token or HERALD_ADMIN_TOKEN)"
        ),
        _ => {
            let mut at = String::new();
            if let Some(index) = error["index"].as_u64() {
                at.push_str(&format!("item {index}, "));
            }
            if let Some(field) = field {
                at.push_str(&format!("field `{field}`: "));
            }
            let retry = retry_after
                .map(|s| format!(" (retry after {s} s)"))
                .unwrap_or_default();
            anyhow!(
                "the producer refused the request ({} {code}): {at}{message}{retry}",
                status.as_u16()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_error_names_the_code_and_the_field_once() {
        let body = r#"{"error": {"code": "invalid_field", "message": "config.host: is required", "field": "config.host"}}"#;
        let e = refusal(StatusCode::UNPROCESSABLE_ENTITY, body, None).to_string();
        assert_eq!(
            e,
            "the producer refused the request (422 invalid_field): field `config.host`: is required"
        );
    }

    #[test]
    fn a_refused_token_says_which_variable_to_set() {
        let body =
            r#"{"error": {"code": "unauthorized", "message": "the admin token is not valid"}}"#;
        let e = refusal(StatusCode::UNAUTHORIZED, body, None).to_string();
        assert!(e.contains("HERALD_ADMIN_TOKEN"), "{e}");
    }

    #[test]
    fn an_answer_that_is_not_the_api_shows_its_status_and_text() {
        let e = refusal(StatusCode::BAD_GATEWAY, "upstream down\n", Some("5")).to_string();
        assert_eq!(e, "the producer answered 502 Bad Gateway: upstream down");
    }
}
