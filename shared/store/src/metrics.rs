//! The store's metric names and help texts. [`describe`] runs when the
//! store connects, after the service installed its recorder.

/// Rows read that do not decode into domain types, by `table`
/// (`providers`, `tenants`, `messages`, `parked_jobs`): a bounded label set.
pub const UNDECODABLE_ROWS: &str = "herald_store_undecodable_rows_total";
const UNDECODABLE_ROWS_HELP: &str = "Rows read from PostgreSQL that do not decode into Herald's \
    domain types, by table. Each is logged at WARN with its id and left out of what the services \
    use (an undecodable provider is unusable) until an operator fixes it; counted on every read, \
    so the rate stays above zero while such a row remains.";

/// Providers left out of the last read of the catalog because their row
/// does not decode.
pub const UNDECODABLE_PROVIDERS: &str = "herald_store_undecodable_providers";
const UNDECODABLE_PROVIDERS_HELP: &str = "Providers whose stored row did not decode at the last \
    read of the provider catalog; they take no sends until fixed (see the WARN log for the id).";

/// Registers the help texts with the installed recorder.
pub fn describe() {
    metrics::describe_counter!(UNDECODABLE_ROWS, UNDECODABLE_ROWS_HELP);
    metrics::describe_gauge!(UNDECODABLE_PROVIDERS, UNDECODABLE_PROVIDERS_HELP);
}
