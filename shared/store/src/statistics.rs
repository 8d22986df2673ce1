//! Fresh planner statistics for the tables the hot path joins batches to.
//!
//! Prepared statements keep a generic plan until the tables they read are
//! analyzed. A plan made while `messages` was small scans it whole; as the
//! table grows by thousands of rows a second, that plan stays until
//! autovacuum analyzes (once a minute at best, after 10 % of changes). The
//! scheduler asks here every few seconds and analyzes a hot table whose
//! row count has doubled or halved since its statistics were taken, which
//! also makes every connection plan its statements again
//! (`docs/decisions/0011-hot-statistics-kept-fresh.md`).

use crate::{Result, Store};

/// The tables whose size the hot path's plans depend on.
pub const HOT_TABLES: [&str; 2] = ["messages", "idempotency_keys"];
/// Below this many rows, a table is not analyzed for its growth alone.
const MIN_ROWS: f64 = 1_000.0;

impl Store {
    /// Analyzes each hot table whose live rows are more than twice, or less
    /// than half, what its statistics say (or that was never analyzed and
    /// holds at least [`MIN_ROWS`]). Returns the tables analyzed.
    pub async fn refresh_hot_statistics(&self) -> Result<Vec<String>> {
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT s.relname::text
             FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
             WHERE s.schemaname = current_schema() AND s.relname = ANY($1)
               AND s.n_live_tup >= $2
               AND (c.reltuples < 0
                    OR s.n_live_tup > 2 * c.reltuples
                    OR s.n_live_tup < c.reltuples / 2)",
        )
        .bind(HOT_TABLES.as_slice())
        .bind(MIN_ROWS)
        .fetch_all(&self.pool)
        .await?;
        for table in &stale {
            // The names come from HOT_TABLES, never from input.
            if HOT_TABLES.contains(&table.as_str()) {
                sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}")))
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(stale)
    }
}
