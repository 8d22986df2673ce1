//! Herald's PostgreSQL store. [`Store::connect`] creates the database if it
//! is missing and runs the migrations; each module holds the queries of one
//! table, and every hot-path write is one batched statement.

mod callbacks;
pub mod catalog;
mod checkpoints;
mod db;
pub mod decode;
pub mod keys;
mod leader;
mod messages;
pub mod metrics;
mod outbox;
mod parked;
mod providers;
mod secrets;
mod statistics;
mod suppressions;
mod templates;
mod tenants;
mod webhooks;

pub use callbacks::{Applied, NewCallback, StoredEvent, WAIT_LIMIT_DAYS};
pub use checkpoints::SavedBucket;
pub use db::Store;
pub use decode::RowError;
pub use keys::ApiKeyOwner;
pub use leader::Leadership;
pub use messages::{
    ClaimedMessage, IdempotentHit, MessageFilter, NewRecord, Outcome, MAX_IN_DOUBT_RESENDS,
};
pub use outbox::{Stale, UnconfirmedJob};
pub use parked::{DueJobs, ParkedJob, Requeued};
pub use providers::{NewProvider, ProviderPatch, ProviderRow};
pub use statistics::HOT_TABLES;
pub use suppressions::SuppressionRow;
pub use templates::StoredTemplate;
pub use tenants::{NewTenant, TenantChange};
pub use webhooks::{Attempt, DeliveryFilter, DeliveryRow, DueDelivery, SecretDates};

/// The channel on which tenant changes are announced (`LISTEN`/`NOTIFY`).
pub const TENANTS_CHANNEL: &str = "herald_tenants";
/// The channel on which template writes are announced (`<tenant>/<id>`).
pub const TEMPLATES_CHANNEL: &str = "herald_templates";
/// The channel on which provider changes are announced.
pub const PROVIDERS_CHANNEL: &str = "herald_providers";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A unique constraint refused the write (e.g. a tenant code in use).
    #[error("{0} already exists")]
    Conflict(String),
    /// The row read does not decode into its domain type (reported when
    /// read; see [`decode`]).
    #[error(transparent)]
    Undecodable(#[from] RowError),
}

impl StoreError {
    /// Connection-level failures worth retrying after a reconnect.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            )
        )
    }
}

pub(crate) fn conflict_or(err: sqlx::Error, what: &str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            StoreError::Conflict(what.to_owned())
        }
        _ => StoreError::Database(err),
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;
