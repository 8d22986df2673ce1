//! The refusals every secured route shares, for the OpenAPI document.

use herald_api::ErrorBody;

/// The refusals of a route that takes a tenant's API key.
#[derive(utoipa::IntoResponses)]
pub enum TenantAuthErrors {
    #[response(status = 401, description = "Missing or invalid API key")]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = "The tenant is disabled")]
    Disabled(ErrorBody),
}

/// The refusals of an admin route.
#[derive(utoipa::IntoResponses)]
pub enum AdminAuthErrors {
    #[response(status = 401, description = "Missing or invalid admin token")]
    Unauthorized(ErrorBody),
    #[response(
        status = 403,
        description = "The admin API is off (no HERALD_ADMIN_TOKEN)"
    )]
    Off(ErrorBody),
}
