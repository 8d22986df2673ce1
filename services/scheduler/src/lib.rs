//! herald-scheduler: drains the tenants' user queues into the central
//! queues, placing each job on a provider whose capacity it reserved in
//! Redis first.
//!
//! - [`drain`]: one consumer per (tenant, channel) user queue, plus the
//!   return queue; tenant discovery by `LISTEN`/`NOTIFY`
//! - [`placement`]: eligible providers, their order (the scoring seam), and
//!   the reservation that places a job
//! - [`release`]: scheduled sends parked in PostgreSQL, released on time
//! - [`startup`]: [`App::build`] and [`App::run`]

pub mod config;
pub mod drain;
pub mod placement;
pub mod release;
pub mod startup;

pub use config::Settings;
pub use startup::App;
