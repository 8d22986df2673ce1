//! Upkeep of the database the hot path depends on: the planner statistics
//! of the tables it joins batches to (see `herald_store::HOT_TABLES`).
//! Every scheduler runs it; an `ANALYZE` that two run at once costs twice,
//! nothing worse.

use std::time::Duration;

use herald_runtime::Shutdown;
use herald_store::Store;

/// How often the hot tables' growth is compared with their statistics.
const EVERY: Duration = Duration::from_secs(2);

/// Analyzes hot tables whose size moved away from their statistics, until
/// `stop` fires.
pub async fn keep_statistics_fresh(store: Store, stop: Shutdown) {
    loop {
        match store.refresh_hot_statistics().await {
            Ok(tables) if !tables.is_empty() => {
                metrics::counter!("herald_scheduler_analyze_total").increment(tables.len() as u64);
                tracing::info!(tables = ?tables, "Analyzed tables whose size doubled or halved since their statistics.");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Failed to refresh planner statistics."),
        }
        tokio::select! {
            _ = stop.wait() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}
