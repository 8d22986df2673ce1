//! The bench run as an SVG: sends per second (top) and enqueue→send p99
//! (bottom) over the run's seconds, each step's span labelled. Hand-written
//! SVG, no plotting crate.

use std::fmt::Write;

use super::BenchReport;

const WIDTH: f64 = 960.0;
const PANEL: f64 = 220.0;
const LEFT: f64 = 70.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A round upper bound for an axis (1, 2 or 5 × 10^n).
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|m| *m >= v)
        .unwrap_or(10.0 * magnitude)
}

pub fn render(report: &BenchReport) -> String {
    let points: Vec<_> = report.steps.iter().flat_map(|s| s.series.iter()).collect();
    let t_max = nice_max(points.iter().map(|p| p.t_s).fold(1.0, f64::max));
    let rate_max = nice_max(points.iter().map(|p| p.sent_per_s).fold(1.0, f64::max));
    let p99_max = nice_max(points.iter().map(|p| p.p99_ms).fold(1.0, f64::max));
    let plot_w = WIDTH - LEFT - 20.0;
    let height = TOP + 2.0 * PANEL + GAP + 50.0;
    let x = |t: f64| LEFT + t / t_max * plot_w;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let title = match report.ceiling_per_s {
        Some(c) => format!(
            "herald-loadtest bench, {} — bare broker ceiling {c:.0} msg/s",
            report.date.format("%Y-%m-%d %H:%M UTC")
        ),
        None => format!(
            "herald-loadtest bench, {}",
            report.date.format("%Y-%m-%d %H:%M UTC")
        ),
    };
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="20" font-size="14">{}</text>"#,
        escape(&title)
    );
    let panels = [
        ("sends per second", rate_max, TOP, "#1f77b4", true),
        (
            "enqueue→send p99 (ms)",
            p99_max,
            TOP + PANEL + GAP,
            "#d62728",
            false,
        ),
    ];
    for (label, y_max, top, colour, is_rate) in panels {
        let y = |v: f64| top + PANEL - v / y_max * PANEL;
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#888"/>"##
        );
        for i in 0..=4 {
            let v = y_max * f64::from(i) / 4.0;
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{y0:.1}" y2="{y0:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{v:.0}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                y(v) + 4.0,
                y0 = y(v)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
            top - 6.0,
            escape(label)
        );
        for step in &report.steps {
            if step.series.is_empty() {
                continue;
            }
            let path: Vec<String> = step
                .series
                .iter()
                .map(|p| {
                    let v = if is_rate { p.sent_per_s } else { p.p99_ms };
                    format!("{:.1},{:.1}", x(p.t_s), y(v.min(y_max)))
                })
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                path.join(" ")
            );
            if is_rate {
                let start = step.series.first().map_or(0.0, |p| p.t_s);
                let x0 = x(start);
                let _ = writeln!(
                    svg,
                    r##"<line x1="{x0:.1}" x2="{x0:.1}" y1="{top}" y2="{}" stroke="#bbb" stroke-dasharray="3,3"/><text x="{:.1}" y="{}" transform="rotate(90 {:.1} {})" fill="#555">{}</text>"##,
                    top + 2.0 * PANEL + GAP,
                    x0 + 3.0,
                    top + 4.0,
                    x0 + 3.0,
                    top + 4.0,
                    escape(&step.name),
                );
            }
        }
    }
    let axis_y = TOP + 2.0 * PANEL + GAP;
    for i in 0..=5 {
        let t = t_max * f64::from(i) / 5.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{t:.0} s</text>"#,
            x(t),
            axis_y + 16.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Point, Scenario, Step};

    fn step(name: &str, points: &[(f64, f64, f64)]) -> Step {
        Step {
            name: name.to_owned(),
            scenario: Scenario::Max,
            workers: 2,
            provider_latency_ms: 0,
            accepted: 10,
            sent: 10,
            failed: 0,
            in_doubt: 0,
            lost: 0,
            unfinished: 0,
            duplicates: 0,
            throughput: 10.0,
            enqueue_rate: 10.0,
            latency: None,
            ratio_to_ceiling: None,
            producer_rss_mib: None,
            worker_rss_mib: None,
            timed_out: false,
            cpu_s: Default::default(),
            series: points
                .iter()
                .map(|&(t_s, sent_per_s, p99_ms)| Point {
                    t_s,
                    sent_per_s,
                    p99_ms,
                })
                .collect(),
        }
    }

    #[test]
    fn axes_round_up_to_one_two_or_five() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(1_790.0), 2_000.0);
        assert_eq!(nice_max(5_001.0), 10_000.0);
    }

    #[test]
    fn every_step_is_drawn_and_named_and_text_is_escaped() {
        let report = BenchReport {
            date: chrono::Utc::now(),
            command: "bench".into(),
            ceiling_per_s: Some(6_000.0),
            steps: vec![
                step("max <2 workers>", &[(0.0, 100.0, 5.0), (1.0, 300.0, 9.0)]),
                step("steady", &[(5.0, 50.0, 3.0)]),
            ],
            callbacks: Vec::new(),
            webhooks: Vec::new(),
            elapsed_s: 6.0,
        };
        let svg = render(&report);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
        // Two panels × two steps.
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("max &lt;2 workers&gt;"));
        assert!(svg.contains("ceiling 6000 msg/s"));
    }
}
