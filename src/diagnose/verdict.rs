//! What the doctor says: findings with their evidence, ranked so the cause comes first.

use serde::Serialize;

use super::findings::{self, Severity};

/// Where a finding is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Where {
    /// The process (lab role, admin address, or Prometheus `job/instance`).
    pub process: String,
    /// `lock`, `pool`, `worker pool`, `spawn site`, `runtime`, `process`, `rpc`, `breaker`, `run`.
    pub kind: &'static str,
    /// The resource's name: the lock, pool, worker pool or spawn site label.
    pub resource: String,
}

impl std::fmt::Display for Where {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.resource.is_empty() {
            write!(f, "{}", self.process)
        } else {
            write!(f, "{} {} {}", self.process, self.kind, self.resource)
        }
    }
}

/// One number behind a finding.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    /// What was measured (`wait p99`).
    pub label: String,
    /// The number, in `unit`.
    pub value: f64,
    /// `s`, `B`, `B/s`, `share` (0–1), `x` (a ratio), `/s`, or empty for a plain count.
    pub unit: &'static str,
}

impl Evidence {
    /// Evidence `label`: `value` in `unit`.
    pub fn new(label: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Evidence { label: label.into(), value, unit }
    }

    /// `label value` with the unit made readable (`wait p99 3.20 ms`, `share 41.0%`).
    pub fn formatted(&self) -> String {
        let v = self.value;
        let num = match self.unit {
            "share" => return format!("{} {:.1}%", self.label, v * 100.0),
            "s" if v < 1e-3 => format!("{:.1} µs", v * 1e6),
            "s" if v < 1.0 => format!("{:.2} ms", v * 1e3),
            "s" => format!("{v:.2} s"),
            "B" if v >= 1024.0 * 1024.0 => format!("{:.2} MiB", v / (1024.0 * 1024.0)),
            "B" if v >= 1024.0 => format!("{:.1} KiB", v / 1024.0),
            "B" => format!("{v:.0} B"),
            "B/s" => format!("{:.1} MB/s", v / 1e6),
            "x" => format!("{v:.2}×"),
            "" => format_number(v),
            unit => format!("{} {unit}", format_number(v)),
        };
        format!("{} {num}", self.label)
    }
}

fn format_number(v: f64) -> String {
    if (v.fract() == 0.0 && v.abs() < 1e12) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The finding's id (`lock-contention`, ...; see [`findings::KINDS`]).
    pub id: &'static str,
    /// 0–100: how strongly the evidence says this is the pinch.
    pub score: f64,
    /// The score's severity.
    pub severity: Severity,
    #[serde(rename = "where")]
    /// The process and resource it is about.
    pub place: Where,
    /// Share of the process's request time spent waiting on this resource, when it applies.
    pub impact: Option<f64>,
    /// The window the evidence covers, in seconds, and slices where the finding held.
    pub window_seconds: f64,
    /// Slices of the window in which the finding held.
    pub slices_held: usize,
    /// Slices of the window.
    pub slices: usize,
    /// The numbers behind it, most telling first.
    pub evidence: Vec<Evidence>,
    /// What to do about it.
    pub recommendation: String,
    /// `id @ where` of the finding this one is a symptom of.
    pub cause: Option<String>,
    /// Dashboard uid and panel, and the flamegraph command, that show it.
    pub dashboard: String,
    /// The `pinchpoint flame` command that shows where it happens.
    pub flame: String,
    /// In a fleet (Prometheus source): how many instances share this finding at info or above.
    pub instances: usize,
    /// For findings below info: why (e.g. "not measured: pinchpoint_runtime_poll_seconds").
    pub note: Option<String>,
}

impl Finding {
    /// A finding of `id` at `place` with `score`; severity follows the score.
    pub fn new(id: &'static str, place: Where, score: f64) -> Self {
        let kind = findings::kind(id).expect("finding ids come from findings::KINDS");
        Finding {
            id,
            score: score.clamp(0.0, 100.0),
            severity: Severity::of_score(score),
            place,
            impact: None,
            window_seconds: 0.0,
            slices_held: 0,
            slices: 0,
            evidence: vec![],
            recommendation: String::new(),
            cause: None,
            dashboard: format!("{} / {}", kind.dashboard, kind.panel),
            flame: String::new(),
            instances: 1,
            note: None,
        }
    }

    /// A check that could not be made because `metric` is missing.
    pub fn not_measured(id: &'static str, process: &str, metric: &str) -> Self {
        let mut f = Finding::new(id, Where { process: process.into(), kind: "", resource: String::new() }, 0.0);
        f.note = Some(format!("not measured: {metric}"));
        f
    }

    /// At info or above.
    pub fn reportable(&self) -> bool {
        self.severity >= Severity::Info
    }

    /// `id @ where`, how a symptom names its cause.
    pub fn key(&self) -> String {
        format!("{} @ {}", self.id, self.place)
    }
}

/// The doctor's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The pinch in one sentence.
    pub headline: String,
    /// Findings at info and above first, cause before symptom, then by score; then the
    /// checks below info (what `--all` adds).
    pub findings: Vec<Finding>,
    /// Per front process: request time no measured wait explains.
    pub unattributed: Vec<Unattributed>,
    /// The window the verdict covers, in seconds.
    pub window_seconds: f64,
}

/// Request time of a process that no measured resource explains.
#[derive(Debug, Clone, Serialize)]
pub struct Unattributed {
    /// The process (target name).
    pub process: String,
    /// Share (0–1) of its request time that no lock, pool or downstream call explains.
    pub share: f64,
    /// Requests in flight on average (rate of request-duration seconds).
    pub in_flight: f64,
    /// The `pinchpoint flame` command that shows where its time goes.
    pub flame: String,
}

impl Verdict {
    /// Findings at info and above.
    pub fn reported(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.reportable())
    }

    /// The finding named first: the pinch, if any is at info or above.
    pub fn top(&self) -> Option<&Finding> {
        self.reported().next()
    }

    /// The worst severity reported.
    pub fn worst(&self) -> Severity {
        self.reported().map(|f| f.severity).max().unwrap_or(Severity::Ok)
    }
}
