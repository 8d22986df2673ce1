//! herald-worker: consumes the central queues, sends through the provider
//! chosen by the scheduler, records the outcome, and only then acks.
//!
//! - [`provider`]: one adapter per provider kind (SMTP, WeWork, webhook), each
//!   mapping every outcome to a [`herald_domain::Disposition`]
//! - [`classify`]: the rule tables (defaults and `--classifier-file`) that
//!   say what a provider's refusal means
//! - [`registry`]: adapters built from the live provider catalog
//! - [`pace`]: each provider's per-minute quota smoothed to a per-second
//!   pace inside the worker (`governor`)
//! - [`metrics`]: the pacing metrics' names and help texts
//! - [`decision`]: what happens to a message after its send, as pure functions
//! - [`process`]: the pipeline — claim a window of deliveries in one
//!   statement, send concurrently, record outcomes in one statement, ack
//! - [`callbacks`]: provider callbacks from the callbacks queue, stored
//!   and applied to their messages in batches
//! - [`tracking`]: open pixel and click redirects in HTML email, for
//!   tenants that opt in
//! - [`webhooks`]: tenant webhooks — due deliveries claimed, signed,
//!   POSTed, retried with backoff for a day
//! - [`startup`]: [`App::build`] and [`App::run`]

pub mod callbacks;
pub mod classify;
pub mod config;
pub mod decision;
pub mod metrics;
pub mod pace;
pub mod process;
pub mod provider;
pub mod registry;
pub mod startup;
pub mod templates;
pub mod tracking;
pub mod webhooks;

pub use config::Settings;
pub use startup::App;
