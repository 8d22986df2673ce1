use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{header, Request, StatusCode};
use serde_json::Value;

use super::error::ApiError;

/// Bodies up to 1 MiB.
pub const MAX_BODY: usize = 1024 * 1024;
/// The batch endpoint takes up to 16 MiB.
pub const MAX_BATCH_BODY: usize = 16 * 1024 * 1024;

/// A JSON body of at most `LIMIT` bytes, read before any parsing so that
/// each failure gets its own error: 415 without a JSON content type, 413 when
/// too large, 400 `invalid_json` when it does not parse.
pub struct JsonBody<const LIMIT: usize>(pub Value);

impl<S: Send + Sync, const LIMIT: usize> FromRequest<S> for JsonBody<LIMIT> {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json" && !mime.ends_with("+json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = axum::body::to_bytes(req.into_body(), LIMIT)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body is larger than {} MiB", LIMIT / (1024 * 1024)),
                )
            })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        Ok(JsonBody(value))
    }
}
