//! Webhook adapter: POSTs the message as JSON to the URL in `to`, signed
//! with HMAC-SHA256 of the exact body bytes (docs/webhook.md), refusing
//! targets that are not public unless the provider allows them.

pub mod target;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use herald_domain::provider_config::WebhookConfig;
use herald_domain::{Disposition, FieldError};
use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::redirect;
use serde::Serialize;
use sha2::Sha256;

use self::target::{GuardedResolver, RefusedTarget};
use super::Outgoing;
use crate::classify::{self, Action, Classifier};

const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// The header that carries the message id.
pub const MESSAGE_ID_HEADER: &str = "X-Herald-Message-Id";
/// The header that carries `sha256=<hex HMAC>` of the body.
pub const SIGNATURE_HEADER: &str = "X-Herald-Signature";
/// A `Retry-After` shorter than this (or in the past) waits this long.
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);
/// How much of a refusal's body is read, and how much of it is recorded.
const EXCERPT_READ_BYTES: usize = 4096;
const EXCERPT_CHARS: usize = 200;
/// A success's body is read up to this much so the connection can be
/// reused; a longer one is dropped with its connection.
const DRAIN_BYTES: usize = 64 * 1024;

/// Sends webhook messages for one provider: one signing secret, one HTTP
/// client (and its connection pool) shared by every send.
pub struct WebhookAdapter {
    client: reqwest::Client,
    signing_secret: String,
    allow_private_addresses: bool,
    timeout: Duration,
    /// Says what a non-2xx status means.
    classifier: Arc<Classifier>,
}

/// The JSON body of a webhook: always these keys, in this order
/// (docs/webhook.md). Empty strings are `null`.
#[derive(Serialize)]
struct Body<'a> {
    id: String,
    channel: &'static str,
    to: &'a str,
    subject: Option<&'a str>,
    text: Option<&'a str>,
    html: Option<&'a str>,
    template_id: Option<&'a str>,
    template_version: Option<u32>,
    variables: BTreeMap<&'a str, &'a str>,
    metadata: BTreeMap<&'a str, &'a str>,
    attempt: u32,
    sent_at: String,
}

impl WebhookAdapter {
    /// Builds the HTTP client, with the built-in classifier.
    pub fn new(config: WebhookConfig) -> Result<WebhookAdapter, FieldError> {
        WebhookAdapter::with_classifier(config, Arc::new(Classifier::default()))
    }

    /// As [`WebhookAdapter::new`], with `classifier` deciding what HTTP
    /// statuses mean.
    pub fn with_classifier(
        config: WebhookConfig,
        classifier: Arc<Classifier>,
    ) -> Result<WebhookAdapter, FieldError> {
        let timeout = Duration::from_millis(config.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS).max(1));
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // Shorter than the whole timeout, so a timeout that fires is
            // after the connection was made and the request written (in
            // doubt), and a slow connect is a connect error (retried).
            .connect_timeout(timeout / 2)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(60))
            // The resolver checks the addresses the connection will use;
            // a proxy would resolve the target itself, unchecked.
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private_addresses: config.allow_private_addresses,
            }))
            .no_proxy()
            // A redirect is answered, not followed (docs/webhook.md).
            .redirect(redirect::Policy::none())
            .user_agent(concat!("herald-worker/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FieldError::new("config", format!("cannot build an HTTP client: {e}")))?;
        Ok(WebhookAdapter {
            client,
            signing_secret: config.signing_secret,
            allow_private_addresses: config.allow_private_addresses,
            timeout,
            classifier,
        })
    }

    /// Sends one message and says what happens next.
    pub async fn send(&self, out: Outgoing<'_>) -> Disposition {
        let disposition = self.try_send(&out).await;
        tracing::debug!(
            message_id = %out.message_id,
            attempt = out.attempt,
            outcome = ?disposition,
            "Webhook send finished."
        );
        disposition
    }

    async fn try_send(&self, out: &Outgoing<'_>) -> Disposition {
        let [to] = out.recipients else {
            return dead_letter(
                "webhook_recipient",
                format!(
                    "a webhook message has exactly one URL, this one has {}",
                    out.recipients.len()
                ),
            );
        };
        let url = match reqwest::Url::parse(to) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            _ => return dead_letter("webhook_invalid_url", "the recipient is not an http(s) URL"),
        };
        if let Some(refused) = self.refused_literal(&url) {
            return dead_letter("webhook_target_refused", refused.to_string());
        }
        let body = body(out, to, Utc::now());
        let signature = format!("sha256={}", sign(self.signing_secret.as_bytes(), &body));
        let sent = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(MESSAGE_ID_HEADER, out.message_id.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => self.answered(out, response).await,
            Err(error) => self.transport_failure(out, error),
        }
    }

    /// An IP-literal host is connected to without a lookup, so it is
    /// checked here; names are checked by the [`GuardedResolver`].
    fn refused_literal(&self, url: &reqwest::Url) -> Option<RefusedTarget> {
        if self.allow_private_addresses {
            return None;
        }
        // The URL parser writes every IPv4 form (`0x7f.1`, `2130706433`)
        // as dotted decimal and IPv6 in brackets; anything else is a name.
        let host = url.host_str()?;
        let address: IpAddr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        RefusedTarget::check(host, address)
    }

    /// 2xx is sent; any other status goes through the classifier, and a
    /// retry honours the target's `Retry-After`.
    async fn answered(&self, out: &Outgoing<'_>, mut response: reqwest::Response) -> Disposition {
        let status = response.status();
        if status.is_success() {
            drain(&mut response).await;
            return Disposition::Sent {
                provider_message_id: None,
            };
        }
        let headers = response.headers();
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Utc::now()));
        let location = status
            .is_redirection()
            .then(|| headers.get(LOCATION).and_then(|v| v.to_str().ok()))
            .flatten()
            .map(|location| excerpt(location.as_bytes()));
        let mut reason = format!("the webhook target answered HTTP {status}");
        if let Some(location) = location {
            reason.push_str(&format!(
                " (redirects are not followed; Location: {location})"
            ));
        }
        let body = read_excerpt(&mut response).await;
        if !body.is_empty() {
            reason.push_str(": ");
            reason.push_str(&body);
        }
        let code = format!("webhook_http_{}", status.as_u16());
        match (self.classifier.http(status.as_u16()), retry_after) {
            (Action::Retry { .. }, Some(after)) => Disposition::RetryAfter {
                after,
                code,
                reason,
            },
            (Action::Throttle { .. }, Some(hold)) => Disposition::Throttled {
                hold: Some(hold),
                code,
                reason,
            },
            (action, _) => action.disposition(out.attempt, code, reason),
        }
    }

    /// No HTTP answer. Before the request left (refused connection, failed
    /// lookup, connect timeout) the target never saw it: retry. After it
    /// left (timeout, broken connection) it may have been delivered: in
    /// doubt, never resent silently.
    fn transport_failure(&self, out: &Outgoing<'_>, error: reqwest::Error) -> Disposition {
        if let Some(refused) = find_cause::<RefusedTarget>(&error) {
            return dead_letter("webhook_target_refused", refused.to_string());
        }
        let (connect, builder, timeout) =
            (error.is_connect(), error.is_builder(), error.is_timeout());
        let text = describe(error);
        if builder {
            dead_letter(
                "webhook_request",
                format!("the request cannot be built: {text}"),
            )
        } else if connect {
            Disposition::RetryAfter {
                after: classify::retry_delay(classify::HTTP_RETRY_AFTER, out.attempt),
                code: "webhook_unreachable".to_owned(),
                reason: format!("cannot reach the webhook target: {text}"),
            }
        } else if timeout {
            Disposition::InDoubt {
                reason: format!(
                    "the webhook target did not answer within {} ms of the request: {text}",
                    self.timeout.as_millis()
                ),
            }
        } else {
            Disposition::InDoubt {
                reason: format!("the connection broke after the request was sent: {text}"),
            }
        }
    }
}

impl fmt::Debug for WebhookAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookAdapter")
            .field("allow_private_addresses", &self.allow_private_addresses)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The body's bytes: what is signed is exactly what is sent.
fn body(out: &Outgoing<'_>, to: &str, now: DateTime<Utc>) -> Vec<u8> {
    fn text(s: &str) -> Option<&str> {
        (!s.is_empty()).then_some(s)
    }
    fn map(m: &HashMap<String, String>) -> BTreeMap<&str, &str> {
        m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
    let content = out.content;
    let body = Body {
        id: out.message_id.to_string(),
        channel: "webhook",
        to,
        subject: text(&content.subject),
        text: text(&content.text),
        html: text(&content.html),
        template_id: text(&content.template_id),
        template_version: (content.template_version != 0).then_some(content.template_version),
        variables: map(&content.variables),
        metadata: map(out.metadata),
        attempt: out.attempt,
        sent_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
    };
    // Strings and maps of strings always serialise.
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Lowercase hex HMAC-SHA256 of `body` keyed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// `Retry-After` as delta-seconds or an HTTP-date (IMF-fixdate), at least
/// [`MIN_RETRY_AFTER`] and at most [`classify::MAX_RETRY_DELAY`]; `None`
/// when it is neither.
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let delay = if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        // Too many digits for a u64 is "very long": the cap applies.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = DateTime::parse_from_rfc2822(value).ok()?;
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(delay.clamp(MIN_RETRY_AFTER, classify::MAX_RETRY_DELAY))
}

/// Reads (and forgets) up to [`DRAIN_BYTES`] of a body.
async fn drain(response: &mut reqwest::Response) {
    let mut read = 0;
    while read < DRAIN_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            _ => return,
        }
    }
}

/// The start of a refusal's body, for the recorded reason.
async fn read_excerpt(response: &mut reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_READ_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(EXCERPT_READ_BYTES);
    excerpt(&bytes)
}

/// Up to [`EXCERPT_CHARS`] characters of `bytes`, whitespace and control
/// characters collapsed to single spaces, `…` when cut.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect();
    let joined = words.join(" ");
    let mut chars = joined.chars();
    let mut short: String = chars.by_ref().take(EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        short.push('…');
    }
    short
}

/// The first error of type `E` in `error`'s chain of causes.
fn find_cause<E: std::error::Error + 'static>(error: &reqwest::Error) -> Option<&E> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(found) = cause.downcast_ref::<E>() {
            return Some(found);
        }
        source = cause.source();
    }
    None
}

/// The error and its causes, without the URL: a webhook URL may carry a
/// token.
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

fn dead_letter(code: impl Into<String>, reason: impl Into<String>) -> Disposition {
    Disposition::DeadLetter {
        code: code.into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests;
