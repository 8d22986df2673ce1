//! `/v1/admin/*` (the admin token): one file per resource — tenants, their
//! API keys, providers and their scores, any tenant's message records,
//! queue depths, and dead-letter replay.

pub mod dead_letters;
pub mod keys;
pub mod messages;
pub mod providers;
pub mod queues;
pub mod score;
pub mod suppressions;
pub mod tenants;

use super::error::ApiError;

/// An id in a path; a malformed one is a 404 like an unknown one.
fn path_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(&format!("no such {what}")))
}
