use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_domain::FieldError;

/// Every 4xx/5xx answer: `{"error": {"code", "message", "field"?, "index"?}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub index: Option<usize>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            index: None,
            retry_after: None,
        }
    }

    pub fn invalid_field(e: FieldError) -> Self {
        let mut err = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            if e.field.is_empty() {
                e.message.clone()
            } else {
                format!("{}: {}", e.field, e.message)
            },
        );
        err.field = (!e.field.is_empty()).then_some(e.field);
        err
    }

    pub fn at(mut self, index: usize) -> Self {
        self.index = Some(index);
        self
    }

    /// The refusal of a single-message request: its field without an index.
    pub fn unindexed(mut self) -> Self {
        self.index = None;
        self
    }

    pub fn unauthorized(message: &str) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: &str) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not take that method",
        )
    }

    /// 429 `rate_limited` or `quota_exceeded` (`code`), with Retry-After.
    pub fn too_many(code: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message);
        e.retry_after = Some(retry_after.max(1));
        e
    }

    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        e.retry_after = Some(retry_after);
        e
    }

    /// A failure of ours, logged with its cause; the caller sees 503 with
    /// Retry-After (storage or broker trouble is passing, not permanent).
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "{context}");
        ApiError::unavailable(format!("{context}; try again shortly"), 5)
    }
}

impl From<herald_api::ParseError> for ApiError {
    /// Not JSON is 400 `invalid_json`; a field of the wrong shape is 422
    /// naming it, and a batch item's path (`messages[3].to`) becomes its
    /// `index` and the field inside it.
    fn from(e: herald_api::ParseError) -> Self {
        match e {
            herald_api::ParseError::Syntax(detail) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not valid JSON: {detail}"),
            ),
            herald_api::ParseError::Field(mut field) => {
                match herald_api::parse::split_item(&field.field, "messages") {
                    Some((index, inner)) => {
                        field.field = inner;
                        ApiError::invalid_field(field).at(index)
                    }
                    None => ApiError::invalid_field(field),
                }
            }
        }
    }
}

impl From<herald_store::StoreError> for ApiError {
    fn from(e: herald_store::StoreError) -> Self {
        match e {
            herald_store::StoreError::Conflict(what) => {
                ApiError::conflict(format!("{what} already exists"))
            }
            other => ApiError::internal("The database could not be reached", other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = herald_api::ErrorBody {
            error: herald_api::ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
                index: self.index.map(|i| i as u32),
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
