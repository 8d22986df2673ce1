//! One leader for periodic work: a PostgreSQL session-level advisory lock,
//! held on a connection of its own. It is released when that connection
//! ends — the holder stops, is killed, or loses the database — so another
//! process takes over at its next attempt.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

use crate::{Result, Store};

/// How long a lease check may take before the lease counts as lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The held lock. Check it with [`Leadership::check`] before each round of
/// work; give it up with [`Leadership::resign`].
pub struct Leadership {
    conn: PgConnection,
    name: String,
}

impl Store {
    /// Takes the leader lock named `name` if nobody holds it.
    pub async fn try_lead(&self, name: &str) -> Result<Option<Leadership>> {
        let mut conn = self.pool.acquire().await?.detach();
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
        if !held {
            let _ = conn.close().await;
            return Ok(None);
        }
        Ok(Some(Leadership {
            conn,
            name: name.to_owned(),
        }))
    }
}

impl Leadership {
    /// Whether this process still holds the lock: the session that took it
    /// answers and still owns it. `false` means lost (drop this value and
    /// try to lead again).
    pub async fn check(&mut self) -> bool {
        let owns = sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
                 AND pid = pg_backend_pid() AND granted
                 AND ((classid::bigint << 32) | objid::bigint) = hashtextextended($1, 0))",
        )
        .bind(&self.name)
        .fetch_one(&mut self.conn);
        matches!(
            tokio::time::timeout(CHECK_TIMEOUT, owns).await,
            Ok(Ok(true))
        )
    }

    /// Releases the lock at once (a stopping leader), so the next one need
    /// not wait for the connection to time out.
    pub async fn resign(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
            .bind(&self.name)
            .execute(&mut self.conn)
            .await;
        let _ = self.conn.close().await;
    }
}
