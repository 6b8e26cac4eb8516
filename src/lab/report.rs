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

/// "yes", or what disagreed: lost acknowledged increments, or applied ones never acknowledged.
pub fn consistency(l: &LevelReport) -> String {
    let lost: i64 = l.runs.iter().map(|r| r.lost).sum();
    let unacked: i64 = l.runs.iter().map(|r| r.applied_unacked).sum();
    match (lost, unacked) {
        (0, 0) if l.consistent => "yes".into(),
        (0, 0) => "NO".into(),
        (0, u) => format!("+{u} unacked"),
        (lost, _) => format!("LOST {lost}"),
    }
}

/// The doctor's verdict, first, with ✓ or ✗ against the scenario's ground truth.
fn verdict(out: &mut String, sc: &ScenarioReport) {
    let (Some(v), Some(check)) = (&sc.verdict, &sc.check) else {
        let _ = writeln!(out, "   the doctor must name: {} — no verdict (no peak snapshots)", sc.expect);
        return;
    };
    let mark = if check.named { "✓" } else { "✗" };
    let _ = writeln!(out, "   {mark} doctor: {}", v.headline);
    let _ = writeln!(out, "     expected {}; ranked first: {}", check.expected, check.got);
    for f in v.reported().take(4) {
        let cause = f.cause.as_ref().map(|c| format!(" (symptom of {c})")).unwrap_or_default();
        let _ = writeln!(out, "     {:<8} {:>3.0} {:<24} {}{cause}", f.severity.as_str(), f.score, f.id, f.place);
    }
}

/// "named N/M; nothing at info or above in tuned and monolith" over the scenarios that ran.
pub fn summary(report: &LabReport) -> String {
    let checked: Vec<&ScenarioReport> = report.scenarios.iter().filter(|s| s.check.is_some()).collect();
    let expecting: Vec<&&ScenarioReport> = checked.iter().filter(|s| s.expect_id().is_some()).collect();
    let named = expecting.iter().filter(|s| s.check.as_ref().is_some_and(|c| c.named)).count();
    let clean: Vec<&str> = checked.iter().filter(|s| s.expect_id().is_none()).map(|s| s.name.as_str()).collect();
    let clean_ok =
        checked.iter().filter(|s| s.expect_id().is_none()).all(|s| s.check.as_ref().is_some_and(|c| c.named));
    let mut line = format!("doctor: named {named}/{}", expecting.len());
    if !clean.is_empty() {
        let _ = write!(
            line,
            "; {} at info or above in {}",
            if clean_ok { "no finding" } else { "FINDINGS" },
            clean.join(" and ")
        );
    }
    let missed: Vec<&str> =
        checked.iter().filter(|s| s.check.as_ref().is_some_and(|c| !c.named)).map(|s| s.name.as_str()).collect();
    if !missed.is_empty() {
        let _ = write!(line, " (✗ {})", missed.join(", "));
    }
    line
}

pub fn render(report: &LabReport) -> String {
    let mut out = String::new();
    for sc in &report.scenarios {
        let _ = writeln!(out, "\n== {} — {}", sc.name, sc.summary);
        if let Some(why) = &sc.skipped {
            let _ = writeln!(out, "   the doctor must name: {}", sc.expect);
            let _ = writeln!(out, "   skipped: {why}");
            continue;
        }
        verdict(&mut out, sc);
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
                consistency(l)
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
    let _ = writeln!(out, "\n{}", summary(report));
    out
}
