//! Test support shared by every crate's tests (STYLE §9): one [`wait_for`],
//! one [`Isolation`] (a random `HERALD_NAMESPACE` and a fresh database, torn
//! down together), [`fixtures`], and (feature `producer`) [`TestApp`], a
//! producer on port 0 with a typed client.

pub mod fixtures;
mod isolation;
mod wait;

#[cfg(feature = "producer")]
mod app;

#[cfg(feature = "producer")]
pub use app::TestApp;
pub use isolation::{unique, Isolation};
pub use wait::{wait_for, wait_for_value, wait_until, TimedOut};
