//! What every Herald process shares: the common settings (`HERALD_*`),
//! secrets that cannot be printed, the shutdown signal, and the ops
//! endpoints (`/metrics`, `/healthz`, `/readyz`).

mod ops;
mod settings;
mod shutdown;
mod supervise;

pub use ops::{ops_router, serve, Readiness};
pub use settings::{CommonSettings, Secret};
pub use shutdown::{shutdown_signal, Shutdown, Trigger};
pub use supervise::supervise;
