//! The verdict as text: the pinch in one sentence, then a ranked table, then (with `--all`)
//! what was checked and found fine or could not be measured.

use std::fmt::Write;

use super::findings::{self, Severity};
use super::verdict::{Finding, Verdict};

/// Renders `v`; `all` adds the checks below info, `color` adds ANSI colours (terminals only).
pub fn render(v: &Verdict, all: bool, color: bool) -> String {
    let paint = |sev: Severity, s: &str| -> String {
        if !color {
            return s.to_string();
        }
        let code = match sev {
            Severity::Critical => "1;31",
            Severity::Warning => "31",
            Severity::Info => "33",
            Severity::Ok => "32",
        };
        format!("\x1b[{code}m{s}\x1b[0m")
    };
    let mut out = String::new();
    let top_sev = v.top().map_or(Severity::Ok, |f| f.severity);
    let _ = writeln!(out, "{}", paint(top_sev, &v.headline));
    let reported: Vec<&Finding> = v.reported().collect();
    if !reported.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "{:<3} {:<24} {:>5} {:<8} {:<44} evidence", "#", "finding", "score", "severity", "where");
        for (i, f) in reported.iter().enumerate() {
            row(&mut out, i + 1, f, &paint);
        }
    }
    for u in &v.unattributed {
        let _ = writeln!(
            out,
            "\n{}: {:.0}% of request time ({:.1} requests in flight) is not spent waiting on a measured lock, pool or call: \
             CPU work or waits the probes do not see. {}",
            u.process,
            u.share * 100.0,
            u.in_flight,
            u.flame
        );
    }
    if all {
        let _ = writeln!(out, "\nchecked, below info:");
        for f in v.findings.iter().filter(|f| !f.reportable()) {
            let why = f.note.clone().unwrap_or_else(|| summary(f));
            let _ = writeln!(
                out,
                "  {} {:<24} {:>5.0}  {:<44} {}",
                paint(Severity::Ok, "✓"),
                f.id,
                f.score,
                f.place.to_string(),
                why
            );
        }
    } else if v.findings.iter().any(|f| !f.reportable()) {
        let _ = writeln!(
            out,
            "\n({} checks below info; --all lists them)",
            v.findings.iter().filter(|f| !f.reportable()).count()
        );
    }
    out
}

fn summary(f: &Finding) -> String {
    f.evidence.iter().take(3).map(|e| e.formatted()).collect::<Vec<_>>().join(", ")
}

fn row(out: &mut String, n: usize, f: &Finding, paint: &dyn Fn(Severity, &str) -> String) {
    let fleet = if f.instances > 1 { format!(" (+{} instances)", f.instances - 1) } else { String::new() };
    let _ = writeln!(
        out,
        "{:<3} {:<24} {:>5.0} {} {:<44} {}",
        n,
        f.id,
        f.score,
        paint(f.severity, &format!("{:<8}", f.severity.as_str())),
        format!("{}{fleet}", f.place),
        summary(f)
    );
    let rest: Vec<String> = f.evidence.iter().skip(3).map(|e| e.formatted()).collect();
    if !rest.is_empty() {
        let _ = writeln!(out, "    {}", rest.join(", "));
    }
    let _ = writeln!(out, "    window {:.1} s, held in {} of {} slices", f.window_seconds, f.slices_held, f.slices);
    if let Some(cause) = &f.cause {
        let _ = writeln!(out, "    symptom of: {cause}");
    }
    let _ = writeln!(out, "    change: {}", f.recommendation);
    let _ = writeln!(out, "    see: dashboard {}; {}", f.dashboard, f.flame);
}

/// `diagnose --explain ID`: the formula and thresholds of one finding.
pub fn explain(id: &str) -> Option<String> {
    let k = findings::kind(id)?;
    Some(format!(
        "{} ({}): {}\n\n{}\n\nscore 0–100; info at {}, warning at {}. Alert: {}. Dashboard: {} / {}. Flamegraph: --kind {}.\n",
        k.id,
        k.alert_name(),
        k.title,
        k.explain,
        findings::INFO,
        findings::WARNING,
        k.alert_name(),
        k.dashboard,
        k.panel,
        k.flame
    ))
}
