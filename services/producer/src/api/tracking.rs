//! `/t/o/{token}` and `/t/c/{token}`: the open pixel and the click
//! redirects in the HTML email of tenants that track (issue 17 part 6).
//! The token is signed (`herald_callbacks::links`): a tampered or made-up
//! one is 404, and a click token redirects only to the URL it was made for.
//! Each hit is queued as a `read` or `clicked` event of the message (the
//! callbacks queue, as a provider's report would be) — unless it looks
//! like a machine: a `HEAD` request, no `User-Agent`, or one of a link
//! scanner, a crawler or an HTTP library. Those are kept with `bot: true`
//! and move nothing. The recipient is never kept waiting on Herald: the
//! pixel and the redirect are answered even when the broker is away.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use herald_domain::{EventKind, TRACKING_PROVIDER};
use herald_proto::v1;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::AppState;

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// User agents of link scanners, crawlers, previewers and HTTP libraries
/// (lower case, matched as substrings).
const MACHINES: &[&str] = &[
    "bot",
    "crawl",
    "spider",
    "slurp",
    "preview",
    "scanner",
    "barracuda",
    "proofpoint",
    "mimecast",
    "safelinks",
    "symantec",
    "trendmicro",
    "curl/",
    "wget/",
    "python",
    "go-http-client",
    "java/",
    "okhttp",
    "headless",
    "phantomjs",
];

/// Whether a hit looks like a machine rather than a person (the
/// heuristic, documented in docs/API.md).
pub fn looks_like_a_machine(method: &Method, user_agent: Option<&str>) -> bool {
    if method == Method::HEAD {
        return true;
    }
    match user_agent.map(str::to_ascii_lowercase) {
        None => true,
        Some(ua) => ua.trim().is_empty() || MACHINES.iter().any(|m| ua.contains(m)),
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "This link is not valid.\n",
    )
        .into_response()
}

/// `url` as a header value: bytes a header cannot carry are
/// percent-encoded (a signed URL is otherwise passed on as it is).
fn location(url: &str) -> Option<HeaderValue> {
    let mut out = String::with_capacity(url.len());
    for b in url.bytes() {
        if b.is_ascii_graphic() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).ok()
}

/// Queues the hit as an event of `message` (never failing the answer).
async fn record(
    state: &AppState,
    kind: EventKind,
    message: Uuid,
    token: &str,
    url: Option<&str>,
    method: &Method,
    headers: &HeaderMap,
) {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let bot = looks_like_a_machine(method, user_agent);
    let now = Utc::now();
    let mut detail = serde_json::json!({"source": "tracking", "bot": bot});
    if let Some(url) = url {
        detail["url"] = url.into();
    }
    if let Some(ua) = user_agent {
        detail["user_agent"] = ua.chars().take(256).collect::<String>().into();
    }
    // The same hit again within the minute (a reload, a client fetching
    // twice) is one event.
    let mut key = Sha256::new();
    key.update(token.as_bytes());
    key.update(user_agent.unwrap_or("").as_bytes());
    key.update(method.as_str().as_bytes());
    key.update((now.timestamp() / 60).to_le_bytes());
    let event = v1::CallbackEvent {
        event_id: Uuid::now_v7().to_string(),
        provider_id: TRACKING_PROVIDER.to_string(),
        message_id: message.to_string(),
        kind: match kind {
            EventKind::Clicked => v1::EventKind::Clicked,
            _ => v1::EventKind::Read,
        } as i32,
        at_ms: now.timestamp_millis(),
        detail: detail.to_string(),
        raw: format!(
            "{method} /t/{}/{token}",
            if url.is_some() { "c" } else { "o" }
        )
        .into_bytes(),
        recipient: String::new(),
        dedupe_key: key.finalize().to_vec(),
        received_at_ms: now.timestamp_millis(),
    };
    let kind_label = if url.is_some() { "click" } else { "open" };
    let outcome = match state.callbacks.publish(event).await {
        Ok(()) if bot => "bot",
        Ok(()) => "queued",
        Err(e) => {
            tracing::warn!(error = %e, "A tracking hit could not be queued; answered anyway.");
            "unavailable"
        }
    };
    metrics::counter!("herald_producer_tracking_total", "kind" => kind_label, "outcome" => outcome)
        .increment(1);
}

/// `GET /t/o/{token}`: the open pixel.
#[utoipa::path(
    get, path = "/t/o/{token}", tag = "tracking", operation_id = "tracking_open",
    summary = "The open pixel of a tracked email",
    params(("token" = String, Path, description = "The signed token in the email's pixel")),
    responses(
        (status = 200, description = "A transparent 1×1 GIF; the open is recorded", content_type = "image/gif", body = Vec<u8>),
        (status = 404, description = "The token is not valid", content_type = "text/plain", body = String),
    )
)]
pub async fn open(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let Some(message) = state.links.verify_open(&token) else {
        return not_found();
    };
    record(
        &state,
        EventKind::Read,
        message,
        &token,
        None,
        &method,
        &headers,
    )
    .await;
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (
                header::CACHE_CONTROL,
                "no-store, no-cache, must-revalidate, private",
            ),
        ],
        PIXEL,
    )
        .into_response()
}

/// `GET /t/c/{token}`: a click redirect.
#[utoipa::path(
    get, path = "/t/c/{token}", tag = "tracking", operation_id = "tracking_click",
    summary = "A tracked link: redirects to its destination",
    params(("token" = String, Path, description = "The signed token of the rewritten link")),
    responses(
        (status = 302, description = "To the link's destination (the URL signed into the token); the click is recorded"),
        (status = 404, description = "The token is not valid", content_type = "text/plain", body = String),
    )
)]
pub async fn click(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let Some((message, url)) = state.links.verify_click(&token) else {
        return not_found();
    };
    let Some(to) = location(&url) else {
        return not_found();
    };
    record(
        &state,
        EventKind::Clicked,
        message,
        &token,
        Some(&url),
        &method,
        &headers,
    )
    .await;
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, to),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store, private"),
            ),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_are_told_from_people() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
        assert!(!looks_like_a_machine(&Method::GET, Some(firefox)));
        assert!(looks_like_a_machine(&Method::HEAD, Some(firefox)));
        assert!(looks_like_a_machine(&Method::GET, None));
        assert!(looks_like_a_machine(&Method::GET, Some("  ")));
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1)",
            "Barracuda Sentinel (EE)",
            "python-requests/2.31",
            "curl/8.5.0",
            "Microsoft Office SafeLinks",
        ] {
            assert!(looks_like_a_machine(&Method::GET, Some(ua)), "{ua}");
        }
    }

    #[test]
    fn a_location_carries_any_signed_url() {
        assert_eq!(
            location("https://x.example/a?b=1").expect("a value"),
            "https://x.example/a?b=1"
        );
        assert_eq!(
            location("https://x.example/café").expect("a value"),
            "https://x.example/caf%C3%A9"
        );
    }
}
