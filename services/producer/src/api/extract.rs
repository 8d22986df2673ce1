//! Request bodies as contract types: read within a size limit, then parsed
//! once into the type the handler takes.

use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::http::{header, Request, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Bodies up to 1 MiB.
pub const MAX_BODY: usize = 1024 * 1024;
/// The batch endpoint takes up to 16 MiB.
pub const MAX_BATCH_BODY: usize = 16 * 1024 * 1024;

/// A JSON body of at most `LIMIT` bytes parsed as a `T`, each failure with
/// its own error: 415 without a JSON content type, 413 when too large, 400
/// `invalid_json` when it does not parse, 422 `invalid_field` naming the
/// field when its shape is wrong.
pub struct JsonBody<T, const LIMIT: usize = MAX_BODY>(pub T);

impl<S: Send + Sync, T: DeserializeOwned, const LIMIT: usize> FromRequest<S>
    for JsonBody<T, LIMIT>
{
    type Rejection = ApiError;

    async fn from_request(
        req: Request<axum::body::Body>,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let bytes = read_json(req, LIMIT).await?;
        herald_api::parse_object(&bytes)
            .map(JsonBody)
            .map_err(ApiError::from)
    }
}

/// The body's bytes, once the content type says JSON and the size fits.
async fn read_json(req: Request<axum::body::Body>, limit: usize) -> Result<Bytes, ApiError> {
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
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {} MiB", limit / (1024 * 1024)),
            )
        })
}

/// A query string parsed as a `T`; a query that does not parse (a
/// parameter given twice, say) is 422 `invalid_field` in the API's error
/// shape, not axum's plain-text 400.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| QueryParams(q))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    format!("the query string is invalid: {}", e.body_text()),
                )
            })
    }
}
