//! Poison jobs: a job that makes the scheduler fail every time it places
//! it (its drain errs, or the process dies) comes back redelivered without
//! end — classic queues count no deliveries. Every broker message a
//! placement round takes is counted in Redis (surviving the scheduler's
//! restarts; one key per message, not per job) and its count cleared when
//! the round ends without an error, so a count above zero means "was in a
//! round that failed". Such suspects are placed one at a time, counted
//! just before: a suspect of several jobs is first split into a message per
//! job, and a single job past `HERALD_SCHEDULER_MAX_DELIVERIES` failed
//! rounds is dead-lettered with code `poison`, as it was delivered. A
//! neighbour of the poison job is counted only in rounds it was tried in,
//! so it goes on once the poison job is set aside. A drain that pauses
//! ends its round cleanly: waiting for capacity never counts.

use redis::aio::ConnectionManager;

/// How long a count lives without news (a job that stopped coming back).
const COUNT_TTL_SECS: i64 = 24 * 3600;

/// The per-job counts of failed placements.
#[derive(Clone)]
pub struct Tries {
    conn: ConnectionManager,
    prefix: String,
    /// Failed placements a job may cause before it is dead-lettered.
    pub max: u32,
}

impl Tries {
    pub fn new(conn: ConnectionManager, namespace: &str, max: u32) -> Tries {
        Tries {
            conn,
            prefix: format!("{namespace}:sched:tries:"),
            max: max.max(1),
        }
    }

    /// The counts of these messages now (0 for a message never in a failed
    /// round; all 0 when Redis is away).
    pub async fn counts(&self, ids: &[String]) -> Vec<u32> {
        if ids.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| format!("{}{id}", self.prefix))
            .collect();
        match redis::cmd("MGET")
            .arg(&keys)
            .query_async::<Vec<Option<u32>>>(&mut self.conn.clone())
            .await
        {
            Ok(counts) => counts.into_iter().map(Option::unwrap_or_default).collect(),
            Err(_) => vec![0; ids.len()],
        }
    }

    /// Counts one more round for each message, this one included. Redis
    /// being away counts nothing (0): placement fails closed meanwhile.
    pub async fn count(&self, ids: &[String]) -> Vec<u32> {
        if ids.is_empty() {
            return Vec::new();
        }
        let mut pipe = redis::pipe();
        for id in ids {
            let key = format!("{}{id}", self.prefix);
            pipe.incr(&key, 1).expire(&key, COUNT_TTL_SECS).ignore();
        }
        match pipe.query_async::<Vec<u32>>(&mut self.conn.clone()).await {
            Ok(counts) => counts,
            Err(e) => {
                tracing::warn!(error = %e, "Failed to count redeliveries.");
                vec![0; ids.len()]
            }
        }
    }

    /// Forgets the counts of jobs whose round ended cleanly.
    pub async fn clear(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| format!("{}{id}", self.prefix))
            .collect();
        if let Err(e) = redis::cmd("DEL")
            .arg(&keys)
            .query_async::<i64>(&mut self.conn.clone())
            .await
        {
            tracing::debug!(error = %e, "Failed to clear redelivery counts; they expire.");
        }
    }
}
