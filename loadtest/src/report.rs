//! The run's summary: counts by outcome, throughput, latency percentiles
//! (HdrHistogram) and the simulator's view, as text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::sim::SimStats;
use crate::wait::Record;

/// Statuses on the way to a final one; every other status is final.
pub const IN_FLIGHT_STATUSES: [&str; 4] = ["queued", "scheduled", "pending", "sending"];
/// Final statuses that mean the provider took the message: callbacks
/// move a sent message on (a bounce or a complaint comes after the
/// provider took it, too).
pub const SENT_STATUSES: [&str; 7] = [
    "sent",
    "delivered",
    "read",
    "clicked",
    "replied",
    "bounced",
    "complained",
];

pub fn is_final(status: &str) -> bool {
    !IN_FLIGHT_STATUSES.contains(&status)
}

pub fn is_sent(status: &str) -> bool {
    SENT_STATUSES.contains(&status)
}

/// Records per status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StatusCounts(pub BTreeMap<String, u64>);

impl StatusCounts {
    pub fn get(&self, status: &str) -> u64 {
        self.0.get(status).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn final_total(&self) -> u64 {
        self.sum_where(is_final)
    }

    pub fn sent(&self) -> u64 {
        self.sum_where(is_sent)
    }

    pub fn failed(&self) -> u64 {
        self.get("failed")
    }

    pub fn in_doubt(&self) -> u64 {
        self.get("in_doubt")
    }

    /// Final, but neither sent, failed nor in doubt (cancelled, suppressed,
    /// bounced, complained, or a status this tool does not know).
    pub fn other(&self) -> u64 {
        self.sum_where(|s| is_final(s) && !is_sent(s) && s != "failed" && s != "in_doubt")
    }

    fn sum_where(&self, keep: impl Fn(&str) -> bool) -> u64 {
        self.0.iter().filter(|(s, _)| keep(s)).map(|(_, n)| n).sum()
    }

    /// `sent 10, queued 3` (largest first), for progress lines.
    pub fn brief(&self) -> String {
        let mut items: Vec<_> = self.0.iter().filter(|(_, n)| **n > 0).collect();
        items.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        items
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `n / secs`, or 0 when no time passed.
pub fn per_second(n: u64, secs: f64) -> f64 {
    if secs > 0.0 && secs.is_finite() {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyStats {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl LatencyStats {
    /// From latencies in microseconds (negative ones, from clock skew, count
    /// as zero). `None` for no samples. Percentiles are HdrHistogram's with
    /// three significant digits; the max is exact.
    pub fn from_micros(samples: impl IntoIterator<Item = i64>) -> Option<LatencyStats> {
        // 1 µs to a day; longer latencies clamp to a day (the max stays exact).
        let mut hist = Histogram::<u64>::new_with_bounds(1, 86_400_000_000, 3).ok()?;
        let mut max = 0u64;
        for s in samples {
            let v = u64::try_from(s).unwrap_or(0);
            max = max.max(v);
            hist.saturating_record(v);
        }
        if hist.is_empty() {
            return None;
        }
        // A bucket's reported value can exceed the true max; cap at it.
        let ms = |us: u64| us.min(max) as f64 / 1000.0;
        Some(LatencyStats {
            count: hist.len(),
            p50_ms: ms(hist.value_at_quantile(0.50)),
            p90_ms: ms(hist.value_at_quantile(0.90)),
            p99_ms: ms(hist.value_at_quantile(0.99)),
            p999_ms: ms(hist.value_at_quantile(0.999)),
            max_ms: ms(max),
            mean_ms: hist.mean() / 1000.0,
        })
    }

    /// Enqueue→sent latency of the records the provider took (sent or a
    /// later delivery status) that have a `sent_at`.
    pub fn from_records(records: &[Record]) -> Option<LatencyStats> {
        Self::from_micros(
            records
                .iter()
                .filter(|r| is_sent(&r.status))
                .filter_map(|r| {
                    r.sent_at
                        .map(|s| (s - r.created_at).num_microseconds().unwrap_or(i64::MAX))
                }),
        )
    }
}

/// First enqueue to last `sent_at`, from the records themselves (one clock).
pub fn sent_span(records: &[Record]) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let first = records.iter().map(|r| r.created_at).min()?;
    let last = records
        .iter()
        .filter(|r| is_sent(&r.status))
        .filter_map(|r| r.sent_at)
        .max()?;
    Some((first, last))
}

#[derive(Debug, Clone, Serialize)]
pub struct SimDelta {
    pub url: String,
    pub smtp_received: u64,
    pub smtp_unique: u64,
    pub smtp_duplicates: u64,
    pub wework_received: u64,
    pub wework_unique: u64,
    pub wework_duplicates: u64,
    pub webhook_received: u64,
    pub webhook_unique: u64,
    pub webhook_duplicates: u64,
    /// Webhooks the simulator refused (401) because their signature did not
    /// verify: the provider's secret is not the simulator's.
    pub webhook_signature_failures: u64,
}

impl SimDelta {
    pub fn new(url: String, delta: &SimStats) -> Self {
        SimDelta {
            url,
            smtp_received: delta.smtp.received,
            smtp_unique: delta.smtp.unique,
            smtp_duplicates: delta.smtp.duplicates,
            wework_received: delta.wework.received,
            wework_unique: delta.wework.unique,
            wework_duplicates: delta.wework.duplicates,
            webhook_received: delta.webhook.received,
            webhook_unique: delta.webhook.unique,
            webhook_duplicates: delta.webhook.duplicates,
            webhook_signature_failures: delta.webhook.signature_failures,
        }
    }

    /// Receptions beyond the first, over the three channels.
    pub fn duplicates(&self) -> u64 {
        self.smtp_duplicates + self.wework_duplicates + self.webhook_duplicates
    }
}

/// Where to look after the run.
#[derive(Debug, Clone, Serialize)]
pub struct LookFurther {
    pub api_key: String,
    pub list_messages: String,
    pub sim_stats: String,
    pub logs: String,
}

impl LookFurther {
    pub fn new(producer_url: &str, api_key: &str, sim_stats_url: &str, logs: &str) -> Self {
        LookFurther {
            api_key: api_key.to_owned(),
            list_messages: format!(
                "curl -H \"Authorization: Bearer {api_key}\" '{}/v1/messages?limit=5'",
                producer_url.trim_end_matches('/')
            ),
            sim_stats: format!("curl {sim_stats_url}"),
            logs: logs.to_owned(),
        }
    }
}

/// Everything measured, before it is judged and shown.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub run_id: String,
    pub tenant_id: String,
    pub emails: u64,
    pub wework: u64,
    pub webhooks: u64,
    pub accepted: u64,
    pub not_accepted: u64,
    pub enqueue_errors: Vec<String>,
    pub enqueue_secs: f64,
    /// From the first enqueue request to the end of waiting.
    pub wall_secs: f64,
    pub timeout_secs: u64,
    pub timed_out: bool,
    pub counts: StatusCounts,
    pub records: Vec<Record>,
    pub sim: Option<SimDelta>,
    pub sim_error: Option<String>,
    pub look: LookFurther,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub run_id: String,
    pub tenant_id: String,
    pub requested: u64,
    pub emails: u64,
    pub wework: u64,
    pub webhooks: u64,
    pub accepted: u64,
    pub not_accepted: u64,
    pub sent: u64,
    pub failed: u64,
    pub in_doubt: u64,
    pub other: u64,
    /// Accepted but not final when the wait ended (or with no record).
    pub lost: u64,
    pub statuses: StatusCounts,
    pub duration_secs: f64,
    pub enqueue_secs: f64,
    pub enqueue_per_sec: f64,
    /// First enqueue (`created_at`) to the last `sent_at`.
    pub end_to_end_secs: f64,
    pub end_to_end_per_sec: f64,
    pub latency: Option<LatencyStats>,
    /// The bare broker's two-hop ceiling, measured in the same run.
    pub ceiling: Option<crate::ceiling::Ceiling>,
    /// `end_to_end_per_sec` over the ceiling.
    pub ratio_to_ceiling: Option<f64>,
    pub sim: Option<SimDelta>,
    pub sim_error: Option<String>,
    pub timed_out: bool,
    pub timeout_secs: u64,
    pub errors: Vec<String>,
    pub problems: Vec<String>,
    pub ok: bool,
    pub look_further: LookFurther,
}

impl Summary {
    pub fn build(f: RunFacts) -> Summary {
        let counts = f.counts;
        let sent = counts.sent();
        let failed = counts.failed();
        let in_doubt = counts.in_doubt();
        let other = counts.other();
        let lost = f.accepted.saturating_sub(counts.final_total());
        let (end_to_end_secs, end_to_end_per_sec) = match sent_span(&f.records) {
            Some((first, last)) => {
                let secs = (last - first)
                    .num_microseconds()
                    .map_or(0.0, |us| us.max(0) as f64 / 1e6);
                (secs, per_second(sent, secs))
            }
            None => (0.0, 0.0),
        };
        let mut problems = Vec::new();
        if f.not_accepted > 0 {
            problems.push(format!(
                "{} message(s) were not accepted by the producer",
                f.not_accepted
            ));
        }
        if lost > 0 {
            problems.push(format!(
                "{lost} accepted message(s) were not final after {} s (lost or stuck)",
                f.timeout_secs
            ));
        }
        if failed > 0 {
            problems.push(format!("{failed} message(s) failed"));
        }
        let signature_failures = f.sim.as_ref().map_or(0, |s| s.webhook_signature_failures);
        if signature_failures > 0 {
            problems.push(format!(
                "{signature_failures} webhook(s) failed the simulator's signature check \
                 (is --sim-webhook-secret the simulator's HERALD_SIM_WEBHOOK_SECRET?)"
            ));
        }
        let ok = problems.is_empty();
        Summary {
            run_id: f.run_id,
            tenant_id: f.tenant_id,
            requested: f.emails + f.wework + f.webhooks,
            emails: f.emails,
            wework: f.wework,
            webhooks: f.webhooks,
            accepted: f.accepted,
            not_accepted: f.not_accepted,
            sent,
            failed,
            in_doubt,
            other,
            lost,
            latency: LatencyStats::from_records(&f.records),
            statuses: counts,
            duration_secs: f.wall_secs,
            enqueue_secs: f.enqueue_secs,
            enqueue_per_sec: per_second(f.accepted, f.enqueue_secs),
            end_to_end_secs,
            end_to_end_per_sec,
            ceiling: None,
            ratio_to_ceiling: None,
            sim: f.sim,
            sim_error: f.sim_error,
            timed_out: f.timed_out,
            timeout_secs: f.timeout_secs,
            errors: f.enqueue_errors,
            problems,
            ok,
            look_further: f.look,
        }
    }

    /// Process exit code: 0 when nothing was lost, rejected or failed and
    /// every webhook's signature verified at the simulator.
    pub fn exit_code(&self) -> u8 {
        if self.ok {
            0
        } else {
            1
        }
    }

    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "Herald demo — run {} (tenant {})",
            self.run_id, self.tenant_id
        );
        let _ = writeln!(
            o,
            "  accepted     {} of {} (email {}, wework {}, webhook {})",
            self.accepted, self.requested, self.emails, self.wework, self.webhooks
        );
        let _ = writeln!(o, "  sent         {}", self.sent);
        let _ = writeln!(o, "  failed       {}", self.failed);
        let _ = writeln!(o, "  in_doubt     {}", self.in_doubt);
        let other: Vec<String> = self
            .statuses
            .0
            .iter()
            .filter(|(s, n)| {
                **n > 0 && is_final(s) && !is_sent(s) && *s != "failed" && *s != "in_doubt"
            })
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        if other.is_empty() {
            let _ = writeln!(o, "  other        {}", self.other);
        } else {
            let _ = writeln!(o, "  other        {} ({})", self.other, other.join(", "));
        }
        let _ = writeln!(
            o,
            "  lost         {}{}",
            self.lost,
            if self.timed_out {
                " (timed out waiting)"
            } else {
                ""
            }
        );
        let _ = writeln!(o, "  statuses     {}", self.statuses.brief());
        let _ = writeln!(
            o,
            "  duration     {} (enqueue {} at {:.0} msg/s)",
            secs(self.duration_secs),
            secs(self.enqueue_secs),
            self.enqueue_per_sec
        );
        let _ = writeln!(
            o,
            "  throughput   {:.0} msg/s end to end ({} sent in {}, first enqueue to last sent_at)",
            self.end_to_end_per_sec,
            self.sent,
            secs(self.end_to_end_secs)
        );
        if let (Some(c), Some(ratio)) = (&self.ceiling, self.ratio_to_ceiling) {
            let _ = writeln!(
                o,
                "  ceiling      {:.0} msg/s bare RabbitMQ, {} hops, {} B messages, same run: Herald is {:.2}× of it",
                c.per_second, c.hops, c.size, ratio
            );
        }
        match &self.latency {
            Some(l) => {
                let _ = writeln!(
                    o,
                    "  latency      enqueue→sent p50 {}  p90 {}  p99 {}  max {}  (n={})",
                    ms(l.p50_ms),
                    ms(l.p90_ms),
                    ms(l.p99_ms),
                    ms(l.max_ms),
                    l.count
                );
            }
            None => {
                let _ = writeln!(o, "  latency      n/a (nothing was sent)");
            }
        }
        match (&self.sim, &self.sim_error) {
            (Some(s), _) => {
                let _ = writeln!(
                    o,
                    "  simulator    smtp     received {} (unique {}, duplicates {})",
                    s.smtp_received, s.smtp_unique, s.smtp_duplicates
                );
                let _ = writeln!(
                    o,
                    "               wework   received {} (unique {}, duplicates {})",
                    s.wework_received, s.wework_unique, s.wework_duplicates
                );
                let _ = writeln!(
                    o,
                    "               webhook  received {} (unique {}, duplicates {}, signature failures {})",
                    s.webhook_received,
                    s.webhook_unique,
                    s.webhook_duplicates,
                    s.webhook_signature_failures
                );
            }
            (None, Some(e)) => {
                let _ = writeln!(o, "  simulator    n/a ({e})");
            }
            (None, None) => {
                let _ = writeln!(o, "  simulator    n/a");
            }
        }
        for e in &self.errors {
            let _ = writeln!(o, "  error        {e}");
        }
        if self.ok {
            let _ = writeln!(o, "  result       OK: nothing lost, nothing failed");
        } else {
            let _ = writeln!(o, "  result       FAILED: {}", self.problems.join("; "));
        }
        if self.in_doubt > 0 {
            let _ = writeln!(
                o,
                "  note         {} message(s) are in_doubt: the provider may or may not have them",
                self.in_doubt
            );
        }
        let l = &self.look_further;
        let _ = writeln!(o);
        let _ = writeln!(o, "Look further:");
        let _ = writeln!(o, "  API key of tenant demo:  {}", l.api_key);
        let _ = writeln!(o, "  the latest messages:     {}", l.list_messages);
        let _ = writeln!(o, "  the simulator's counts:  {}", l.sim_stats);
        let _ = writeln!(o, "  the services' logs:      {}", l.logs);
        o
    }
}

/// `850 ms` under a second, else `12.34 s`.
pub fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

/// `12.3 ms` under a second, else `1.23 s`.
pub fn ms(v: f64) -> String {
    if v < 1000.0 {
        format!("{v:.1} ms")
    } else {
        format!("{:.2} s", v / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::sim::{SmtpStats, WebhookStats, WeworkStats};

    fn counts(pairs: &[(&str, u64)]) -> StatusCounts {
        StatusCounts(pairs.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect())
    }

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_800_000_000_000 + ms)
            .single()
            .expect("valid time")
    }

    fn record(created_ms: i64, sent_ms: Option<i64>, status: &str) -> Record {
        Record {
            status: status.to_owned(),
            created_at: at(created_ms),
            sent_at: sent_ms.map(at),
        }
    }

    fn look() -> LookFurther {
        LookFurther::new(
            "http://127.0.0.1:8080/",
            "hk_x",
            "http://127.0.0.1:8090/sim/stats",
            "tail -f .herald/logs/*.log",
        )
    }

    fn facts(accepted: u64, c: StatusCounts, records: Vec<Record>) -> RunFacts {
        RunFacts {
            run_id: "r".into(),
            tenant_id: "t".into(),
            emails: accepted,
            wework: 0,
            webhooks: 0,
            accepted,
            not_accepted: 0,
            enqueue_errors: vec![],
            enqueue_secs: 2.0,
            wall_secs: 10.0,
            timeout_secs: 300,
            timed_out: false,
            counts: c,
            records,
            sim: None,
            sim_error: None,
            look: look(),
        }
    }

    fn sim(webhook_signature_failures: u64) -> SimDelta {
        SimDelta::new(
            "http://127.0.0.1:8090/sim/stats".into(),
            &SimStats {
                smtp: SmtpStats {
                    received: 3,
                    unique: 2,
                    duplicates: 1,
                    ..SmtpStats::default()
                },
                wework: WeworkStats {
                    received: 2,
                    unique: 2,
                    ..WeworkStats::default()
                },
                webhook: WebhookStats {
                    received: 4,
                    unique: 2,
                    duplicates: 2,
                    rejected: 1,
                    signature_failures: webhook_signature_failures,
                },
            },
        )
    }

    fn close(a: f64, b: f64) -> bool {
        // HdrHistogram with 3 significant digits: within 0.1 %.
        (a - b).abs() <= b.abs() * 0.001 + 1e-9
    }

    #[test]
    fn final_statuses() {
        for s in ["queued", "scheduled", "pending", "sending"] {
            assert!(!is_final(s), "{s}");
        }
        for s in [
            "sent",
            "delivered",
            "failed",
            "in_doubt",
            "cancelled",
            "bounced",
            "something_new",
        ] {
            assert!(is_final(s), "{s}");
        }
    }

    #[test]
    fn counts_split_into_outcomes() {
        let c = counts(&[
            ("sent", 90),
            ("delivered", 5),
            ("failed", 2),
            ("in_doubt", 1),
            ("cancelled", 1),
            ("bounced", 1),
            ("queued", 3),
            ("sending", 2),
        ]);
        assert_eq!(c.total(), 105);
        // A bounce came after the provider took the message.
        assert_eq!(c.sent(), 96);
        assert_eq!(c.failed(), 2);
        assert_eq!(c.in_doubt(), 1);
        assert_eq!(c.other(), 1);
        assert_eq!(c.final_total(), 100);
        assert_eq!(c.brief(), "sent 90, delivered 5, queued 3, failed 2, sending 2, bounced 1, cancelled 1, in_doubt 1");
    }

    #[test]
    fn percentiles_of_one_to_a_thousand_ms() {
        // 1..=1000 ms in microseconds.
        let l = LatencyStats::from_micros((1..=1000).map(|ms| ms * 1000)).expect("samples");
        assert_eq!(l.count, 1000);
        assert!(close(l.p50_ms, 500.0), "p50 {}", l.p50_ms);
        assert!(close(l.p90_ms, 900.0), "p90 {}", l.p90_ms);
        assert!(close(l.p99_ms, 990.0), "p99 {}", l.p99_ms);
        assert_eq!(l.max_ms, 1000.0);
        assert!(close(l.mean_ms, 500.5), "mean {}", l.mean_ms);
    }

    #[test]
    fn percentiles_of_a_skewed_distribution() {
        // 980 fast (10 ms), 20 slow (5 s): p50 and p90 fast, p99 slow.
        let samples = std::iter::repeat_n(10_000, 980).chain(std::iter::repeat_n(5_000_000, 20));
        let l = LatencyStats::from_micros(samples).expect("samples");
        assert!(close(l.p50_ms, 10.0));
        assert!(close(l.p90_ms, 10.0));
        assert!(close(l.p99_ms, 5000.0), "p99 {}", l.p99_ms);
        assert_eq!(l.max_ms, 5000.0);
    }

    #[test]
    fn percentiles_never_exceed_the_max() {
        let l = LatencyStats::from_micros([2_109_838, 1_000_000, 2_109_000]).expect("samples");
        assert!(l.p99_ms <= l.max_ms, "{l:?}");
        assert_eq!(l.max_ms, 2109.838);
    }

    #[test]
    fn no_samples_no_latency_and_skew_counts_as_zero() {
        assert!(LatencyStats::from_micros(std::iter::empty()).is_none());
        let l = LatencyStats::from_micros([-5_000, 2_000]).expect("samples");
        assert_eq!(l.count, 2);
        assert_eq!(l.max_ms, 2.0);
        assert_eq!(l.p50_ms, 0.0);
    }

    #[test]
    fn latency_and_span_from_records() {
        let records = vec![
            record(0, Some(100), "sent"),
            record(10, Some(310), "sent"),
            record(20, None, "failed"),
            record(25, Some(9_999), "failed"),
            record(30, Some(1030), "delivered"),
        ];
        let l = LatencyStats::from_records(&records).expect("sent records");
        assert_eq!(l.count, 3);
        assert_eq!(l.max_ms, 1000.0);
        assert!(close(l.p50_ms, 300.0), "p50 {}", l.p50_ms);
        let (first, last) = sent_span(&records).expect("span");
        assert_eq!(first, at(0));
        assert_eq!(last, at(1030));
    }

    #[test]
    fn throughput_math() {
        assert_eq!(per_second(100, 4.0), 25.0);
        assert_eq!(per_second(100, 0.0), 0.0);
        assert_eq!(per_second(0, 3.0), 0.0);
        assert_eq!(per_second(1, f64::NAN), 0.0);
    }

    #[test]
    fn a_clean_run_is_ok() {
        let records = vec![record(0, Some(500), "sent"), record(0, Some(1000), "sent")];
        let s = Summary::build(facts(2, counts(&[("sent", 2)]), records));
        assert!(s.ok, "{:?}", s.problems);
        assert_eq!(s.exit_code(), 0);
        assert_eq!(s.lost, 0);
        assert_eq!(s.end_to_end_secs, 1.0);
        assert_eq!(s.end_to_end_per_sec, 2.0);
        assert_eq!(s.enqueue_per_sec, 1.0);
        let text = s.to_text();
        assert!(text.contains("result       OK"), "{text}");
        assert!(text.contains("Bearer hk_x"), "{text}");
        assert!(
            text.contains("http://127.0.0.1:8080/v1/messages?limit=5"),
            "{text}"
        );
    }

    #[test]
    fn lost_and_failed_messages_fail_the_run() {
        let c = counts(&[("sent", 7), ("failed", 1), ("queued", 2)]);
        let mut f = facts(11, c, vec![]);
        f.timed_out = true;
        let s = Summary::build(f);
        // 11 accepted, 8 final: 2 still queued and 1 without a record.
        assert_eq!(s.lost, 3);
        assert_eq!(s.failed, 1);
        assert!(!s.ok);
        assert_eq!(s.exit_code(), 1);
        assert_eq!(s.problems.len(), 2);
        assert!(s.latency.is_none());
        assert!(s.to_text().contains("FAILED"));
    }

    #[test]
    fn in_doubt_alone_is_reported_but_not_a_failure() {
        let s = Summary::build(facts(3, counts(&[("sent", 2), ("in_doubt", 1)]), vec![]));
        assert!(s.ok);
        assert_eq!(s.in_doubt, 1);
        assert!(s
            .to_text()
            .contains("in_doubt: the provider may or may not have them"));
    }

    #[test]
    fn summary_serialises_to_json() {
        let mut f = facts(1, counts(&[("sent", 1)]), vec![record(0, Some(20), "sent")]);
        f.webhooks = 1;
        f.emails = 0;
        f.sim = Some(sim(0));
        let s = Summary::build(f);
        let v = serde_json::to_value(&s).expect("serialises");
        assert_eq!(v["webhooks"], 1);
        assert_eq!(v["requested"], 1);
        assert_eq!(v["sim"]["webhook_received"], 4);
        assert_eq!(v["sim"]["webhook_unique"], 2);
        assert_eq!(v["sim"]["webhook_duplicates"], 2);
        assert_eq!(v["sim"]["webhook_signature_failures"], 0);
        assert_eq!(v["sent"], 1);
        assert_eq!(v["statuses"]["sent"], 1);
        assert_eq!(v["ok"], true);
        assert_eq!(v["latency"]["max_ms"], 20.0);
        assert_eq!(v["look_further"]["api_key"], "hk_x");
    }

    #[test]
    fn the_simulators_counts_cover_three_channels() {
        let d = sim(0);
        assert_eq!(d.webhook_received, 4);
        assert_eq!(d.webhook_unique, 2);
        assert_eq!(d.duplicates(), 3, "smtp 1 + wework 0 + webhook 2");
    }

    #[test]
    fn a_webhook_signature_failure_fails_the_run() {
        let mut f = facts(1, counts(&[("sent", 1)]), vec![]);
        f.sim = Some(sim(2));
        let s = Summary::build(f);
        assert!(!s.ok);
        assert_eq!(s.exit_code(), 1);
        assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
        assert!(s.problems[0].contains("2 webhook(s) failed the simulator's signature check"));
        assert!(s.to_text().contains("signature failures 2"));
    }

    #[test]
    fn simulator_duplicates_are_reported_but_do_not_fail_the_run() {
        // Allowed for in-doubt messages; the chaos scenario tells them apart.
        let mut f = facts(1, counts(&[("sent", 1)]), vec![]);
        f.sim = Some(sim(0));
        let s = Summary::build(f);
        assert!(s.ok, "{:?}", s.problems);
        assert_eq!(s.exit_code(), 0);
    }

    #[test]
    fn the_text_lists_each_channel_in_aligned_columns() {
        let mut f = facts(9, counts(&[("sent", 9)]), vec![]);
        f.emails = 3;
        f.wework = 2;
        f.webhooks = 4;
        f.sim = Some(sim(0));
        let text = Summary::build(f).to_text();
        assert!(
            text.contains("  accepted     9 of 9 (email 3, wework 2, webhook 4)\n"),
            "{text}"
        );
        let expected = "  simulator    smtp     received 3 (unique 2, duplicates 1)\n\
                        \x20              wework   received 2 (unique 2, duplicates 0)\n\
                        \x20              webhook  received 4 (unique 2, duplicates 2, signature failures 0)\n";
        assert!(text.contains(expected), "{text}");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(secs(0.25), "250 ms");
        assert_eq!(secs(12.345), "12.35 s");
        assert_eq!(ms(12.34), "12.3 ms");
        assert_eq!(ms(2500.0), "2.50 s");
    }
}
