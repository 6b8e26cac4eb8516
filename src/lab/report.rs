//! The lab's report: a table on stdout, JSON for machines.

use std::fmt::Write;

use serde::Serialize;

use crate::lab::headline::format_value;
use crate::lab::runner::{LevelReport, ScenarioReport};

#[derive(Debug, Clone, Serialize)]
pub struct LabReport {
    pub version: &'static str,
    pub quick: bool,
    pub repeats: usize,
    pub scenarios: Vec<ScenarioReport>,
}

fn ms(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2}s")
    } else {
        format!("{:.2}ms", s * 1e3)
    }
}

fn cv(l: &LevelReport) -> String {
    l.qps_cv.map(|c| format!("{:.1}%", c * 100.0)).unwrap_or_else(|| "-".into())
}

pub fn render(report: &LabReport) -> String {
    let mut out = String::new();
    for sc in &report.scenarios {
        let _ = writeln!(out, "\n== {} — {}", sc.name, sc.summary);
        let _ = writeln!(out, "   the doctor must name: {}", sc.expect);
        if let Some(why) = &sc.skipped {
            let _ = writeln!(out, "   skipped: {why}");
            continue;
        }
        let _ = writeln!(
            out,
            "   {:<5} {:>12} {:>9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>7} {:>10}",
            "level", "req/conc", "QPS", "CV", "p50", "p95", "p99", "max", "errors", "consistent"
        );
        for l in &sc.levels {
            let _ = writeln!(
                out,
                "   {:<5} {:>12} {:>9.0} {:>6} {:>9} {:>9} {:>9} {:>9} {:>7} {:>10}",
                l.level,
                format!("{}{}/{}", l.requests, if l.capped { "*" } else { "" }, l.concurrency),
                l.qps_median,
                cv(l),
                ms(l.p50),
                ms(l.p95),
                ms(l.p99),
                ms(l.max),
                l.errors,
                if l.consistent { "yes" } else { "NO" }
            );
        }
        if let Some(consumer) = &sc.consumer {
            out.push_str(&crate::lab::consumer_runner::render(consumer));
        }
        if !sc.headline.is_empty() {
            let _ = writeln!(out, "   at the peak level:");
            for f in &sc.headline {
                let _ = writeln!(out, "     {:<10} {:<44} {}", f.process, f.label, format_value(f));
            }
        }
        for c in &sc.flamegraphs {
            match (&c.path, &c.error) {
                (Some(p), _) => {
                    let _ = writeln!(out, "   flamegraph {} {}: {p}", c.process, c.kind);
                }
                (None, Some(e)) => {
                    let _ = writeln!(out, "   flamegraph {} {}: not captured ({e})", c.process, c.kind);
                }
                _ => {}
            }
        }
        if sc.levels.iter().any(|l| l.capped) {
            let _ = writeln!(out, "   * a run hit --max-run-time and sent fewer requests than planned");
        }
        if let Some(e) = &sc.error {
            let _ = writeln!(out, "   ERROR: the scenario stopped early: {e}");
        }
        if !sc.stopped_cleanly {
            let _ = writeln!(out, "   WARNING: a process did not exit cleanly on SIGTERM");
        }
        let _ = writeln!(out, "   ({:.1} s)", sc.seconds);
    }
    out
}
