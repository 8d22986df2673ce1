//! What every Herald process shares: the common settings (`HERALD_*`),
//! secrets that cannot be printed, the shutdown, the start-up (connect,
//! declare) and the ops endpoints (`/metrics`, `/healthz`, `/readyz`).

mod ops;
mod settings;
mod shutdown;
mod startup;
mod supervise;

pub use ops::{ops_router, serve, Readiness};
pub use settings::{CommonSettings, Secret};
pub use shutdown::{shutdown_signal, Shutdown, Trigger};
pub use startup::{bind, Connections, OpsServer};
pub use supervise::supervise;
