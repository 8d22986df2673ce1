//! herald-producer: Herald's front door. Accepts sends over HTTP/JSON,
//! records them (`queued`/`scheduled`) in one batched statement, publishes
//! them to the tenant's user queue and answers 202 only after RabbitMQ
//! confirmed. Also serves the admin API (tenants, keys, providers).
//!
//! - [`config`]: the settings (`HERALD_*`, flags)
//! - [`startup`]: [`App::build`] connects and binds; [`App::run`] serves
//! - [`api`]: the HTTP handlers, one file per resource
//! - [`grpc`]: the gRPC enqueue API (tonic), over the same pipeline
//! - [`enqueue`]: validation-to-publish pipeline shared by every enqueue path
//! - [`group`]: group commit: concurrent requests share a transaction and publishes
//! - [`confirms`]: confirmed jobs leave the outbox, batched off the request's path
//! - [`callbacks`]: provider callbacks published in batches, each answered on its batch's confirm
//! - [`bounces`]: the return path's SMTP listener: bounce (RFC 3464) and
//!   complaint (ARF) reports queued as events
//! - [`replay`]: dead letters back to the scheduler, by filter

pub mod api;
pub mod bounces;
pub mod callbacks;
pub mod config;
pub mod confirms;
pub mod enqueue;
pub mod group;
pub mod grpc;
pub mod replay;
pub mod startup;
pub mod templates;

pub use config::Settings;
pub use startup::App;
