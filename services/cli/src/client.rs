//! The producer's admin API, as the CLI calls it. Every failure says what
//! went wrong and what to check.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

pub struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    pub fn new(base: &str, token: Option<&str>) -> anyhow::Result<Admin> {
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
            anyhow!("no admin token: pass --admin-token or set HERALD_ADMIN_TOKEN")
        })?;
        let base = base.trim_end_matches('/').to_owned();
        anyhow::ensure!(
            base.starts_with("http://") || base.starts_with("https://"),
            "the producer URL {base:?} must start with http:// or https://"
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

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() || e.is_timeout() {
                    anyhow!(
                        "cannot reach the producer at {}: is it running? (--producer-url or HERALD_PRODUCER_URL)",
                        self.base
                    )
                } else {
                    anyhow!("POST {url} failed: {e}")
                }
            })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        let error = &answer["error"];
        let message = error["message"].as_str().unwrap_or(text.trim());
        match status.as_u16() {
            401 | 403 => bail!(
                "the producer refused the admin token ({}): check --admin-token or HERALD_ADMIN_TOKEN",
                message
            ),
            _ => {
                let code = error["code"].as_str().unwrap_or("error");
                let field = error["field"]
                    .as_str()
                    .map(|f| format!(" (field {f})"))
                    .unwrap_or_default();
                bail!("HTTP {status}: {code}: {message}{field}")
            }
        }
    }
}
