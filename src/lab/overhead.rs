//! `lab --baseline-bin PATH`: what the probes cost end to end. Each scenario runs twice at
//! the same time, once with this (instrumented) binary and once with PATH, normally the
//! uninstrumented twin built with `--cfg pinchpoint_bare` (scripts/overhead.sh). Their runs are
//! interleaved level by level, the order flipping every round, so drift on a shared machine
//! hits both alike; each round gives one on/off ratio, and the report shows the ratios' min,
//! median and max. Besides QPS and p99 it gives the CPU time the system's processes spent per
//! request: on a shared machine throughput swings with whatever else runs, while the CPU a
//! request costs barely does.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::lab::compare::Spread;
use crate::lab::http;
use crate::lab::runner::{summarize, LabOptions, LevelReport, RunSummary, Skip, System};
use crate::lab::scenario::Scenario;
use crate::load::Level;

/// The spread of `values`, NaN throughout when none is finite (a round that measured nothing).
fn spread_of(values: impl IntoIterator<Item = f64>) -> Spread {
    Spread::of(values).unwrap_or(Spread { min: f64::NAN, median: f64::NAN, max: f64::NAN })
}

#[derive(Debug, Clone, Serialize)]
pub struct OverheadRow {
    pub level: String,
    /// Probes on (this binary) and off (the baseline binary).
    pub on: LevelReport,
    pub off: LevelReport,
    /// Per round: QPS on / QPS off (≥ 1 means the probes cost nothing measurable).
    pub qps_ratio: Spread,
    /// Per round: p99 on / p99 off (≤ 1 means no tail cost).
    pub p99_ratio: Spread,
    /// Median over the rounds of the CPU time the system's processes spent per request, in
    /// seconds, on and off; and per round the ratio on / off. CPU time is what the probes
    /// cost; unlike throughput it barely moves when other work shares the machine.
    pub cpu_per_request_on: f64,
    pub cpu_per_request_off: f64,
    pub cpu_ratio: Spread,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverheadReport {
    pub scenario: String,
    pub baseline: String,
    pub rounds: usize,
    pub rows: Vec<OverheadRow>,
    pub stopped_cleanly: bool,
}

fn ratio(on: f64, off: f64) -> f64 {
    if off > 0.0 {
        on / off
    } else {
        f64::NAN
    }
}

/// Runs `scenario` with this binary and with `baseline`, interleaved.
pub async fn overhead(scenario: &Scenario, baseline: &Path, opts: &LabOptions) -> anyhow::Result<OverheadReport> {
    anyhow::ensure!(baseline.is_file(), "--baseline-bin {}: no such file", baseline.display());
    let baseline = baseline.canonicalize().with_context(|| format!("--baseline-bin {}", baseline.display()))?;
    let on_opts = LabOptions { bin: None, ..opts.clone() };
    let off_opts = LabOptions { bin: Some(baseline.clone()), ..opts.clone() };
    let on = match System::start(scenario, &on_opts).await? {
        Ok(s) => s,
        Err(Skip(why)) => anyhow::bail!("{} cannot run here: {why}", scenario.name),
    };
    let off = match System::start(scenario, &off_opts).await {
        Ok(Ok(s)) => s,
        Ok(Err(Skip(why))) => {
            on.stop().await;
            anyhow::bail!("{} cannot run here: {why}", scenario.name);
        }
        Err(e) => {
            on.stop().await;
            return Err(e.context(format!("start {} with {}", scenario.name, baseline.display())));
        }
    };
    let rounds = opts.repeats.max(1);
    let result = async {
        let levels = opts.levels();
        // One uncounted run each first: connections, pools and caches warm up alike.
        if let Some(first) = levels.first() {
            on.run_once(first).await?;
            off.run_once(first).await?;
        }
        check_builds(&on, &off).await?;
        let mut rows = Vec::new();
        for level in levels {
            let (mut runs_on, mut runs_off) = (Vec::<Measured>::new(), Vec::<Measured>::new());
            for round in 0..rounds {
                // Alternate who goes first, so neither side always runs on a warmer machine.
                if round % 2 == 0 {
                    runs_on.push(measure(&on, &level).await?);
                    runs_off.push(measure(&off, &level).await?);
                } else {
                    runs_off.push(measure(&off, &level).await?);
                    runs_on.push(measure(&on, &level).await?);
                }
            }
            let per_round =
                |f: fn(&Measured) -> f64| spread_of(runs_on.iter().zip(&runs_off).map(|(a, b)| ratio(f(a), f(b))));
            let qps_ratio = per_round(|m| m.run.qps);
            let p99_ratio = per_round(|m| m.run.p99);
            let cpu_ratio = per_round(|m| m.cpu_per_request);
            let cpu_median = |runs: &[Measured]| spread_of(runs.iter().map(|m| m.cpu_per_request)).median;
            let (cpu_on, cpu_off) = (cpu_median(&runs_on), cpu_median(&runs_off));
            let runs_on: Vec<RunSummary> = runs_on.into_iter().map(|m| m.run).collect();
            let runs_off: Vec<RunSummary> = runs_off.into_iter().map(|m| m.run).collect();
            let (lon, loff) = (summarize(&level, runs_on), summarize(&level, runs_off));
            if opts.verbose {
                eprintln!(
                    "lab: overhead {} {}: {:.0} vs {:.0} QPS, on/off {:.3}x",
                    scenario.name, level.name, lon.qps_median, loff.qps_median, qps_ratio.median
                );
            }
            rows.push(OverheadRow {
                level: level.name.clone(),
                on: lon,
                off: loff,
                qps_ratio,
                p99_ratio,
                cpu_per_request_on: cpu_on,
                cpu_per_request_off: cpu_off,
                cpu_ratio,
            });
        }
        anyhow::Ok(rows)
    }
    .await;
    let clean = on.stop().await & off.stop().await;
    Ok(OverheadReport {
        scenario: scenario.name.into(),
        baseline: baseline.display().to_string(),
        rounds,
        rows: result?,
        stopped_cleanly: clean,
    })
}

/// One run and the CPU time its system spent on it.
struct Measured {
    run: RunSummary,
    /// Seconds of CPU (all threads of every process of the system) per request.
    cpu_per_request: f64,
}

async fn measure(system: &System, level: &Level) -> anyhow::Result<Measured> {
    let pids = system.pids();
    let before = cpu_ns(&pids);
    let run = system.run_once(level).await?;
    let spent = cpu_ns(&pids).saturating_sub(before);
    let cpu_per_request = if run.requests == 0 { f64::NAN } else { spent as f64 * 1e-9 / run.requests as f64 };
    Ok(Measured { run, cpu_per_request })
}

/// Nanoseconds on CPU so far of every thread of `pids` (`/proc/PID/task/*/schedstat`, whose
/// first field is exact, where `/proc/PID/stat` counts in 10 ms ticks). Threads that exit
/// take their time with them: a run's servers keep theirs.
fn cpu_ns(pids: &[u32]) -> u64 {
    let mut total = 0;
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            total += stat.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    total
}

/// Whether a process's `/metrics` shows the probes at work: the counting allocator's totals
/// and the request counters of its front (HTTP) or service (gRPC) layer.
fn instrumented(metrics: &str) -> bool {
    let sample = |name: &str| metrics.lines().any(|l| l.starts_with(name));
    sample("pinchpoint_alloc_total ")
        && (sample("pinchpoint_http_requests_total{") || sample("pinchpoint_rpc_server_requests_total{"))
}

/// After a run each, the instrumented side must show its probes at work and the baseline
/// none: a wrong `--baseline-bin` (an instrumented build) would measure nothing.
async fn check_builds(on: &System, off: &System) -> anyhow::Result<()> {
    for (system, want, side) in [(on, true, "this build"), (off, false, "the baseline")] {
        for (role, admin) in system.admins() {
            let metrics = http::get_text(&format!("{admin}/metrics"), Duration::from_secs(10)).await?;
            anyhow::ensure!(
                instrumented(&metrics) == want,
                "{side}'s {role} {} instrumented: --baseline-bin must be the uninstrumented twin \
                 (scripts/overhead.sh builds it with --cfg pinchpoint_bare)",
                if want { "is not" } else { "is" }
            );
        }
    }
    Ok(())
}

pub fn render(r: &OverheadReport) -> String {
    let mut out = format!(
        "\n== {}: probes on (this build) vs off ({}), {} interleaved rounds; ratios on/off per round\n",
        r.scenario, r.baseline, r.rounds
    );
    let _ = writeln!(
        out,
        "   {:<5} {:>8} {:>8}  {:>22}   {:>8} {:>8}  {:>22}   {:>8} {:>8}  {:>22}",
        "level",
        "QPS on",
        "QPS off",
        "QPS on/off min/med/max",
        "p99 on",
        "p99 off",
        "p99 on/off min/med/max",
        "CPU/req on",
        "off",
        "CPU on/off min/med/max"
    );
    for row in &r.rows {
        let spread = |s: &Spread| format!("{:>6.3} {:>6.3} {:>6.3}x", s.min, s.median, s.max);
        let _ = writeln!(
            out,
            "   {:<5} {:>8.0} {:>8.0}  {}   {:>6.2}ms {:>6.2}ms  {}   {:>8.1}µs {:>6.1}µs  {}",
            row.level,
            row.on.qps_median,
            row.off.qps_median,
            spread(&row.qps_ratio),
            row.on.p99 * 1e3,
            row.off.p99 * 1e3,
            spread(&row.p99_ratio),
            row.cpu_per_request_on * 1e6,
            row.cpu_per_request_off * 1e6,
            spread(&row.cpu_ratio),
        );
    }
    if r.rows.iter().any(|row| !row.on.consistent || !row.off.consistent) {
        let _ = writeln!(out, "   WARNING: some runs were inconsistent (store moved ≠ acknowledged)");
    }
    if r.rows.iter().any(|row| row.on.errors + row.off.errors > 0) {
        let _ = writeln!(out, "   WARNING: some requests failed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_min_median_max_and_ignores_undefined_ratios() {
        let s = spread_of([1.02, f64::NAN, 0.95, 0.99]);
        assert_eq!((s.min, s.median, s.max), (0.95, 0.99, 1.02));
        let even = spread_of([1.0, 0.9, 0.8, 0.7]);
        assert!((even.median - 0.85).abs() < 1e-12);
        assert!(spread_of([0.0; 0]).median.is_nan());
    }

    #[test]
    fn instrumented_needs_the_allocator_and_a_request_counter() {
        let on = "pinchpoint_alloc_total 12\npinchpoint_http_requests_total{route=\"/x\"} 3\n";
        assert!(instrumented(on));
        let bare = "# TYPE pinchpoint_http_requests counter\npinchpoint_build_info{version=\"0.1.0\"} 1\n";
        assert!(!instrumented(bare));
        assert!(!instrumented("pinchpoint_http_requests_total{route=\"/x\"} 3\n"));
    }
}
