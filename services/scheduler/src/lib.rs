//! herald-scheduler: drains the tenants' user queues into the central
//! queues, placing each job on a provider whose capacity it reserved in
//! Redis first.
//!
//! - [`fair`]: the gate that admits (tenant, channel) lanes by weighted
//!   deficit round robin, as fast as workers empty the central queues
//! - [`drain`]: one consumer per (tenant, channel) user queue, plus the
//!   return queue; waiting, pausing and parking; tenant discovery
//! - [`placement`]: provider rankings by score (`herald-scoring`) and the
//!   reservation that places a job
//! - [`poison`]: redelivered jobs counted, a job that fails every
//!   placement dead-lettered
//! - [`release`]: scheduled and parked jobs held in PostgreSQL, released
//!   on time
//! - [`leader`]: periodic work for all schedulers, done by the one holding
//!   the leader lock: the reconciler (jobs whose confirm was never
//!   recorded) and idempotency key expiry
//! - [`startup`]: [`App::build`] and [`App::run`]

pub mod config;
pub mod drain;
pub mod fair;
pub mod leader;
pub mod maintenance;
pub mod placement;
pub mod poison;
pub mod release;
pub mod startup;

pub use config::Settings;
pub use startup::App;
