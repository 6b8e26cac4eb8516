//! `lab --compare A B`: two scenarios running at the same time, their runs interleaved
//! level by level (A, B, A, B…), so drift on a shared, noisy machine hits both alike; then
//! the ratio B/A of each figure.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::lab::runner::{summarize, LabOptions, LevelReport, RunSummary, Skip, System};
use crate::lab::scenario::Scenario;

#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    pub level: String,
    pub a: LevelReport,
    pub b: LevelReport,
    pub qps_ratio: f64,
    pub p50_ratio: f64,
    pub p99_ratio: f64,
    /// B/A of each interleaved pair of runs (A's i-th run against B's i-th run).
    pub qps_ratio_rounds: Spread,
    /// Median over the runs of each process's CPU microseconds per request.
    pub cpu_us_per_request_a: BTreeMap<String, f64>,
    pub cpu_us_per_request_b: BTreeMap<String, f64>,
}

/// Min, median and max of a set of figures.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    /// None for no finite figure.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Some(Spread { min: v[0], median, max: v[n - 1] })
    }
}

/// Per process, the median of its CPU per request over `runs`.
fn cpu_medians(runs: &[RunSummary]) -> BTreeMap<String, f64> {
    let roles: std::collections::BTreeSet<&String> = runs.iter().flat_map(|r| r.cpu_us_per_request.keys()).collect();
    roles
        .into_iter()
        .filter_map(|role| {
            let s = Spread::of(runs.iter().filter_map(|r| r.cpu_us_per_request.get(role).copied()))?;
            Some((role.clone(), s.median))
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub a: String,
    pub b: String,
    pub rows: Vec<CompareRow>,
    pub stopped_cleanly: bool,
}

fn ratio(b: f64, a: f64) -> f64 {
    if a > 0.0 {
        b / a
    } else {
        f64::NAN
    }
}

pub async fn compare(a: &Scenario, b: &Scenario, opts: &LabOptions) -> anyhow::Result<CompareReport> {
    let sys_a = match System::start(a, opts).await? {
        Ok(s) => s,
        Err(Skip(why)) => anyhow::bail!("{} cannot run here: {why}", a.name),
    };
    let sys_b = match System::start(b, opts).await? {
        Ok(s) => s,
        Err(Skip(why)) => {
            sys_a.stop().await;
            anyhow::bail!("{} cannot run here: {why}", b.name);
        }
    };
    let result = async {
        let mut rows = Vec::new();
        for level in opts.levels() {
            let (mut runs_a, mut runs_b) = (Vec::new(), Vec::new());
            for _ in 0..opts.repeats.max(1) {
                runs_a.push(sys_a.run_once(&level).await?);
                runs_b.push(sys_b.run_once(&level).await?);
            }
            let (la, lb) = (summarize(&level, runs_a), summarize(&level, runs_b));
            if opts.verbose {
                eprintln!("lab: compare {} {:.0} vs {:.0} QPS", level.name, la.qps_median, lb.qps_median);
            }
            let rounds = la.runs.iter().zip(&lb.runs).map(|(a, b)| ratio(b.qps, a.qps));
            let nan = Spread { min: f64::NAN, median: f64::NAN, max: f64::NAN };
            rows.push(CompareRow {
                level: level.name.clone(),
                qps_ratio_rounds: Spread::of(rounds).unwrap_or(nan),
                cpu_us_per_request_a: cpu_medians(&la.runs),
                cpu_us_per_request_b: cpu_medians(&lb.runs),
                qps_ratio: ratio(lb.qps_median, la.qps_median),
                p50_ratio: ratio(lb.p50, la.p50),
                p99_ratio: ratio(lb.p99, la.p99),
                a: la,
                b: lb,
            });
        }
        anyhow::Ok(rows)
    }
    .await;
    let clean = sys_a.stop().await & sys_b.stop().await;
    Ok(CompareReport { a: a.name.into(), b: b.name.into(), rows: result?, stopped_cleanly: clean })
}

pub fn render(r: &CompareReport) -> String {
    let mut out = format!("\n== {} (A) vs {} (B), runs interleaved\n", r.a, r.b);
    let _ = writeln!(
        out,
        "   {:<5} {:>9} {:>9} {:>7}   {:>9} {:>9} {:>7}   {:>9} {:>9} {:>7}",
        "level", "QPS A", "QPS B", "B/A", "p50 A", "p50 B", "B/A", "p99 A", "p99 B", "B/A"
    );
    for row in &r.rows {
        let _ = writeln!(
            out,
            "   {:<5} {:>9.0} {:>9.0} {:>6.2}x   {:>7.2}ms {:>7.2}ms {:>6.2}x   {:>7.2}ms {:>7.2}ms {:>6.2}x",
            row.level,
            row.a.qps_median,
            row.b.qps_median,
            row.qps_ratio,
            row.a.p50 * 1e3,
            row.b.p50 * 1e3,
            row.p50_ratio,
            row.a.p99 * 1e3,
            row.b.p99 * 1e3,
            row.p99_ratio
        );
    }
    let _ = writeln!(out, "\n   QPS B/A of each interleaved pair of runs, and CPU µs per request (median of runs):");
    for row in &r.rows {
        let q = row.qps_ratio_rounds;
        let _ = writeln!(
            out,
            "   {:<5} B/A min {:.2}x median {:.2}x max {:.2}x ({} pairs)   A: {}   B: {}",
            row.level,
            q.min,
            q.median,
            q.max,
            row.a.runs.len().min(row.b.runs.len()),
            cpu_line(&row.cpu_us_per_request_a),
            cpu_line(&row.cpu_us_per_request_b)
        );
    }
    if r.rows.iter().any(|row| !row.a.consistent || !row.b.consistent) {
        let _ = writeln!(out, "   WARNING: some runs were inconsistent (store moved ≠ acknowledged)");
    }
    out
}

/// `driver 11.2 gateway 9.8 service 31.0 = 52.0` (the total last).
fn cpu_line(cpu: &BTreeMap<String, f64>) -> String {
    if cpu.is_empty() {
        return "cpu n/a".into();
    }
    let parts: Vec<String> =
        cpu.iter().filter(|(role, _)| *role != "total").map(|(role, us)| format!("{role} {us:.1}")).collect();
    format!("{} = {:.1}", parts.join(" + "), cpu.get("total").copied().unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_min_median_max_of_finite_figures() {
        let s = Spread::of([0.9, f64::NAN, 0.7, 1.1, 0.8]).unwrap();
        assert_eq!((s.min, s.max), (0.7, 1.1));
        assert!((s.median - 0.85).abs() < 1e-12, "median of the four finite figures: {}", s.median);
        assert!(Spread::of([f64::NAN]).is_none());
    }

    #[test]
    fn cpu_line_lists_each_process_then_the_total() {
        let cpu: BTreeMap<String, f64> =
            [("driver", 10.0), ("gateway", 5.26), ("total", 15.26)].map(|(k, v)| (k.to_string(), v)).into();
        assert_eq!(cpu_line(&cpu), "driver 10.0 + gateway 5.3 = 15.3");
        assert_eq!(cpu_line(&BTreeMap::new()), "cpu n/a");
    }
}
