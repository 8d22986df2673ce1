//! The one policy for a stored row that does not decode into a domain
//! type: it is logged at WARN with its table and id, counted in
//! [`UNDECODABLE_ROWS`], and left out of what the services read — an
//! undecodable provider is unusable (never scored, never sent through)
//! until an operator fixes it. Operators still see it as stored through
//! the admin reads ([`crate::ProviderRow`]). A single read of an
//! undecodable tenant or message is an error ([`crate::StoreError::Undecodable`]),
//! never a default.

use uuid::Uuid;

use crate::metrics::UNDECODABLE_ROWS;

/// A stored row that does not decode, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("row {id} of {table} does not decode: {reason}")]
pub struct RowError {
    /// `providers`, `tenants`, `messages` or `parked_jobs`.
    pub table: &'static str,
    pub id: Uuid,
    pub reason: String,
}

impl RowError {
    pub(crate) fn new(table: &'static str, id: Uuid, reason: impl Into<String>) -> RowError {
        RowError {
            table,
            id,
            reason: reason.into(),
        }
    }

    /// Logs and counts this row (the policy above).
    pub(crate) fn report(&self) {
        tracing::warn!(
            table = self.table,
            id = %self.id,
            error = %self.reason,
            "A stored row does not decode; it is left out until an operator fixes it."
        );
        metrics::counter!(UNDECODABLE_ROWS, "table" => self.table).increment(1);
    }
}

/// The rows that decode; each one that does not is reported and left out.
pub(crate) fn decode_all<R, T>(
    rows: Vec<R>,
    decode: impl Fn(R) -> Result<T, RowError>,
) -> (Vec<T>, usize) {
    let mut skipped = 0;
    let decoded = rows
        .into_iter()
        .filter_map(|row| match decode(row) {
            Ok(value) => Some(value),
            Err(e) => {
                e.report();
                skipped += 1;
                None
            }
        })
        .collect();
    (decoded, skipped)
}
