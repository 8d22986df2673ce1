//! Where the CPU goes: every process's user + system time from
//! `/proc/*/stat`, grouped by component (RabbitMQ's `beam.smp`, PostgreSQL's
//! backends, Redis, each Herald binary), read before and after a step.

use std::collections::BTreeMap;

/// The component a process's command name belongs to, if one we follow.
fn component(comm: &str) -> Option<&'static str> {
    Some(match comm {
        "beam.smp" | "erl_child_setup" | "epmd" | "inet_gethost" => "rabbitmq",
        "postgres" | "postmaster" => "postgres",
        "redis-server" => "redis",
        // /proc truncates command names to 15 bytes.
        "herald-producer" => "producer",
        "herald-schedule" => "scheduler",
        "herald-worker" => "workers",
        "herald-sim" => "sim",
        "herald-loadtest" | "herald-loadtes" => "loadtest",
        _ => return None,
    })
}

/// CPU seconds used so far, per component.
pub fn snapshot() -> BTreeMap<&'static str, f64> {
    let ticks = ticks_per_second();
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((comm, seconds)) = parse_stat(&stat, ticks) {
            if let Some(c) = component(comm) {
                *out.entry(c).or_insert(0.0) += seconds;
            }
        }
    }
    out
}

/// `(comm, utime + stime in seconds)` from one `/proc/<pid>/stat` line.
fn parse_stat(stat: &str, ticks: f64) -> Option<(&str, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = &stat[open + 1..close];
    // After the command: state is field 3; utime and stime are 14 and 15.
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / ticks))
}

fn ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux architecture Herald runs on.
    100.0
}

/// `after - before`, per component (a process that ended in between is
/// missing from `after`; its time reads as zero, never negative).
pub fn since(
    after: &BTreeMap<&'static str, f64>,
    before: &BTreeMap<&'static str, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| {
            let used = (v - before.get(k).copied().unwrap_or(0.0)).max(0.0);
            ((*k).to_owned(), (used * 100.0).round() / 100.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_its_command_and_cpu_seconds() {
        let line = "4242 (herald-worker) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        let (comm, secs) = parse_stat(line, 100.0).expect("parses");
        assert_eq!(comm, "herald-worker");
        assert!((secs - 3.0).abs() < 1e-9, "{secs}");
    }

    #[test]
    fn a_command_with_spaces_and_parentheses_parses() {
        let line = "7 (beam.smp (x)) S 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 0 0";
        let (comm, secs) = parse_stat(line, 100.0).expect("parses");
        assert_eq!(comm, "beam.smp (x)");
        assert!((secs - 0.03).abs() < 1e-9);
    }

    #[test]
    fn components_are_named_and_differences_never_negative() {
        assert_eq!(component("herald-schedule"), Some("scheduler"));
        assert_eq!(component("beam.smp"), Some("rabbitmq"));
        assert_eq!(component("bash"), None);
        let before = BTreeMap::from([("workers", 5.0)]);
        let after = BTreeMap::from([("workers", 3.0), ("sim", 1.234)]);
        let d = since(&after, &before);
        assert_eq!(d["workers"], 0.0);
        assert_eq!(d["sim"], 1.23);
    }
}
