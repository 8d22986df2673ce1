//! Following the run's records in PostgreSQL until every one is final.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use uuid::Uuid;

use crate::report::{is_final, StatusCounts};

/// Ids per query: keeps each `= ANY($1)` array a modest size.
const IDS_PER_QUERY: usize = 10_000;

pub async fn connect(database_url: &str) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(database_url)
        .await
        .with_context(|| {
            format!(
                "Failed to connect to PostgreSQL at {}",
                redact_url(database_url)
            )
        })
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// How many of `ids` are in each status. Ids without a record are absent.
pub async fn status_counts(pool: &PgPool, ids: &[Uuid]) -> anyhow::Result<StatusCounts> {
    let mut counts = BTreeMap::new();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM messages WHERE id = ANY($1) GROUP BY status",
        )
        .bind(chunk)
        .fetch_all(pool)
        .await
        .context("Failed to count the run's records by status")?;
        for (status, n) in rows {
            *counts.entry(status).or_insert(0u64) += u64::try_from(n).unwrap_or(0);
        }
    }
    Ok(StatusCounts(counts))
}

/// One record's timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

pub async fn records(pool: &PgPool, ids: &[Uuid]) -> anyhow::Result<Vec<Record>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let rows: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)> =
            sqlx::query_as("SELECT status, created_at, sent_at FROM messages WHERE id = ANY($1)")
                .bind(chunk)
                .fetch_all(pool)
                .await
                .context("Failed to read the run's records")?;
        out.extend(
            rows.into_iter()
                .map(|(status, created_at, sent_at)| Record {
                    status,
                    created_at,
                    sent_at,
                }),
        );
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct WaitOutcome {
    pub counts: StatusCounts,
    pub timed_out: bool,
    pub waited: Duration,
}

/// Polls until every id has a final record, or `timeout`. `progress` sees
/// each poll's counts and the time waited so far.
pub async fn wait_final(
    pool: &PgPool,
    ids: &[Uuid],
    timeout: Duration,
    mut progress: impl FnMut(&StatusCounts, Duration),
) -> anyhow::Result<WaitOutcome> {
    let clock = Instant::now();
    let total = ids.len() as u64;
    let mut interval = Duration::from_millis(250);
    loop {
        let counts = status_counts(pool, ids).await?;
        let waited = clock.elapsed();
        progress(&counts, waited);
        if counts.final_total() >= total {
            return Ok(WaitOutcome {
                counts,
                timed_out: false,
                waited,
            });
        }
        if waited >= timeout {
            return Ok(WaitOutcome {
                counts,
                timed_out: true,
                waited,
            });
        }
        tokio::time::sleep(
            interval
                .min(timeout.saturating_sub(waited))
                .max(Duration::from_millis(50)),
        )
        .await;
        interval = (interval * 2).min(Duration::from_secs(1));
    }
}

/// Statuses still on their way to a final one.
pub fn in_flight(counts: &StatusCounts) -> u64 {
    counts
        .0
        .iter()
        .filter(|(s, _)| !is_final(s))
        .map(|(_, n)| n)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/herald"),
            "postgres://postgres@127.0.0.1/herald"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn in_flight_counts_only_unfinished_statuses() {
        let counts = StatusCounts(
            [
                ("queued", 3u64),
                ("sending", 2),
                ("sent", 10),
                ("in_doubt", 1),
            ]
            .into_iter()
            .map(|(s, n)| (s.to_owned(), n))
            .collect(),
        );
        assert_eq!(in_flight(&counts), 5);
    }
}
