//! The doctor's verdict on a lab scenario, and whether it named what the scenario switched on.
//!
//! The metric rules run on the peak level's snapshots exactly as `pinchpoint diagnose` runs
//! them on live processes; the lab adds what only it knows: repeats (noisy-measurement) and
//! acknowledged increments against the store (inconsistent-counts).

use serde::Serialize;

use crate::diagnose::findings::{score_between, Severity, CV_INFO, CV_WARNING};
use crate::diagnose::verdict::{Evidence, Finding, Verdict, Where};
use crate::diagnose::window::ProcessWindow;
use crate::lab::runner::LevelReport;
use crate::lab::scenario::Scenario;

/// ✓ or ✗ against the scenario's ground truth.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Whether the verdict matches: the expected finding first, at the expected place, or
    /// nothing at info or above when nothing is expected.
    pub named: bool,
    pub expected: String,
    /// What the doctor ranked first, `id @ where`, or "nothing at info or above".
    pub got: String,
}

/// Findings only the lab can make, from its levels.
pub fn lab_findings(scenario: &str, levels: &[LevelReport]) -> Vec<Finding> {
    let mut out = Vec::new();
    let place =
        |resource: &str| Where { process: "lab".into(), kind: "run", resource: format!("{scenario} {resource}") };
    for l in levels {
        if let Some(cv) = l.qps_cv {
            let mut f = Finding::new("noisy-measurement", place(&l.level), score_between(cv, CV_INFO, CV_WARNING));
            f.evidence.push(Evidence::new("coefficient of variation of QPS (sample)", cv, "share"));
            f.evidence.push(Evidence::new("runs", l.runs.len() as f64, ""));
            f.recommendation =
                "repeat on a quieter machine or with more runs before comparing: the spread is larger than \
                                most differences worth measuring"
                    .into();
            out.push(f);
        }
        let stale: i64 = l.runs.iter().map(|r| r.stale).sum();
        if stale > 0 {
            let mut f = Finding::new("inconsistent-counts", place(&l.level), 80.0);
            f.evidence.push(Evidence::new("received beyond what was sent", stale as f64, ""));
            f.recommendation =
                "stale data from an earlier run, not a throughput anomaly: purge the stream (or use fresh \
                                subjects) before every run"
                    .into();
            out.push(f);
            continue;
        }
        let lost: i64 = l.runs.iter().map(|r| r.lost).sum();
        let unacked: i64 = l.runs.iter().map(|r| r.applied_unacked).sum();
        if lost > 0 {
            let mut f = Finding::new("inconsistent-counts", place(&l.level), 100.0);
            f.severity = Severity::Critical;
            f.evidence.push(Evidence::new("acknowledged increments the store does not hold", lost as f64, ""));
            f.recommendation =
                "data was lost: an increment was acknowledged before it was durable; find the path that \
                                answers before applying"
                    .into();
            out.push(f);
        } else if unacked > 0 {
            let mut f = Finding::new("inconsistent-counts", place(&l.level), 30.0);
            f.evidence.push(Evidence::new("increments applied but not acknowledged", unacked as f64, ""));
            f.recommendation =
                "no data lost: these are timeouts whose outcome the client could not know; a retry with \
                                the same request id is applied once"
                    .into();
            out.push(f);
        }
    }
    out
}

/// The verdict of one scenario: metric rules over the peak's windows plus the lab's findings.
pub fn verdict(windows: &[ProcessWindow], scenario: &str, levels: &[LevelReport]) -> Verdict {
    let mut v = crate::diagnose::diagnose(windows);
    let mut findings = std::mem::take(&mut v.findings);
    findings.extend(lab_findings(scenario, levels));
    // Stale messages are extra work the pool was not sized for: its saturation is a symptom.
    let stale = findings
        .iter()
        .find(|f| f.id == "inconsistent-counts" && f.evidence.iter().any(|e| e.label.starts_with("received beyond")))
        .map(Finding::key);
    if let Some(stale) = stale {
        for f in findings.iter_mut().filter(|f| f.id == "worker-pool-undersized" || f.id == "unbounded-growth") {
            f.cause.get_or_insert_with(|| stale.clone());
        }
    }
    crate::diagnose::rank::rank(findings, windows)
}

/// Whether `v` names what `sc` switched on.
pub fn check(sc: &Scenario, v: &Verdict) -> Check {
    let got = v.top().map(|f| format!("{} @ {}", f.id, f.place)).unwrap_or_else(|| "nothing at info or above".into());
    let named = match sc.expect_id {
        None => v.top().is_none(),
        Some(id) => v.top().is_some_and(|f| {
            f.id == id
                && sc.expect_process.is_none_or(|p| f.place.process == p)
                && sc.expect_where.is_none_or(|w| f.place.resource.contains(w))
        }),
    };
    Check { named, expected: sc.expect.to_string(), got }
}
