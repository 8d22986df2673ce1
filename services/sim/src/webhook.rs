//! A webhook receiver: `POST /webhook/{anything}` checks
//! `X-Herald-Signature` (`sha256=<hex HMAC-SHA256 of the body>`, keyed with
//! the simulator's webhook secret), then counts the delivery by
//! `X-Herald-Message-Id` like the other channels, with the same latency and
//! failure injection.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::counters::SimChannel;
use crate::wework::MESSAGE_ID_HEADER;
use crate::SimState;

/// The header the signature comes in.
pub const SIGNATURE_HEADER: &str = "x-herald-signature";

pub(crate) fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/webhook", post(receive_root))
        .route("/webhook/{*path}", post(receive))
        .with_state(state)
}

async fn receive_root(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    deliver(&state, "", &headers, &body).await
}

async fn receive(
    State(state): State<Arc<SimState>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    deliver(&state, &path, &headers, &body).await
}

/// Signature first (as a real receiver does), then injected faults, then the
/// body, which must be JSON.
async fn deliver(state: &SimState, path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok());
    if !verify(state.webhook_secret.as_bytes(), body, signature) {
        state.counters.record_signature_failure();
        return refusal(
            StatusCode::UNAUTHORIZED,
            None,
            "invalid_signature",
            "X-Herald-Signature is missing or does not match the body.",
        );
    }
    let behaviour = state.behaviour().webhook;
    if behaviour.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behaviour.latency_ms)).await;
    }
    let (fail, limited) = {
        let mut rng = rand::thread_rng();
        (
            rng.gen::<f64>() < behaviour.fail_rate,
            rng.gen::<f64>() < behaviour.rate_limit_rate,
        )
    };
    let retry_after = (behaviour.retry_after_s > 0).then_some(behaviour.retry_after_s);
    if fail {
        state.counters.record_rejected(SimChannel::Webhook);
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            retry_after,
            "unavailable",
            "The receiver is busy (injected failure).",
        );
    }
    if limited {
        state.counters.record_rejected(SimChannel::Webhook);
        return refusal(
            StatusCode::TOO_MANY_REQUESTS,
            retry_after,
            "rate_limited",
            "Too many deliveries (injected rate limit).",
        );
    }
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        state.counters.record_rejected(SimChannel::Webhook);
        return refusal(
            StatusCode::BAD_REQUEST,
            None,
            "invalid_json",
            "The body is not JSON.",
        );
    };
    let id = headers
        .get(MESSAGE_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|id| !id.is_empty());
    if state.counters.record_received(
        SimChannel::Webhook,
        id,
        json!({"path": format!("/webhook/{path}"), "body": message}),
    ) {
        state
            .callbacks
            .accepted(SimChannel::Webhook, id, None, None);
    }
    (StatusCode::OK, Json(json!({"received": true}))).into_response()
}

fn refusal(status: StatusCode, retry_after: Option<u64>, code: &str, message: &str) -> Response {
    let body = Json(json!({"error": {"code": code, "message": message}}));
    match retry_after {
        Some(secs) => (status, [(header::RETRY_AFTER, secs.to_string())], body).into_response(),
        None => (status, body).into_response(),
    }
}

/// Whether `signature` is `sha256=<hex HMAC-SHA256 of body>` keyed with
/// `secret` (hex in either case), compared in constant time.
pub fn verify(secret: &[u8], body: &[u8], signature: Option<&str>) -> bool {
    let Some(expected) = signature
        .and_then(|s| s.trim().strip_prefix("sha256="))
        .and_then(|hex| hex::decode(hex).ok())
    else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently:
    /// `python3 -c 'import hmac,hashlib; print(hmac.new(b"key", b"The quick brown fox jumps over the lazy dog", hashlib.sha256).hexdigest())'`
    const VECTOR: &str = "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8";
    const BODY: &[u8] = b"The quick brown fox jumps over the lazy dog";

    #[test]
    fn a_signature_of_the_known_vector_verifies() {
        assert!(verify(b"key", BODY, Some(&format!("sha256={VECTOR}"))));
        assert!(verify(
            b"key",
            BODY,
            Some(&format!("sha256={}", VECTOR.to_uppercase()))
        ));
    }

    #[test]
    fn a_wrong_missing_or_malformed_signature_does_not_verify() {
        assert!(!verify(b"other", BODY, Some(&format!("sha256={VECTOR}"))));
        assert!(!verify(
            b"key",
            b"changed",
            Some(&format!("sha256={VECTOR}"))
        ));
        assert!(!verify(b"key", BODY, Some(VECTOR)));
        assert!(!verify(b"key", BODY, Some("sha256=zz")));
        assert!(!verify(
            b"key",
            BODY,
            Some(&format!("sha256={}", &VECTOR[..10]))
        ));
        assert!(!verify(b"key", BODY, None));
    }
}
