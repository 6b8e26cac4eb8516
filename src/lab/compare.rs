//! `lab --compare A B`: two scenarios running at the same time, their runs interleaved
//! level by level (A, B, A, B…), so drift on a shared, noisy machine hits both alike; then
//! the ratio B/A of each figure.

use std::fmt::Write;

use serde::Serialize;

use crate::lab::runner::{summarize, LabOptions, LevelReport, Skip, System};
use crate::lab::scenario::Scenario;

#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    pub level: String,
    pub a: LevelReport,
    pub b: LevelReport,
    pub qps_ratio: f64,
    pub p50_ratio: f64,
    pub p99_ratio: f64,
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
            rows.push(CompareRow {
                level: level.name.clone(),
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
    if r.rows.iter().any(|row| !row.a.consistent || !row.b.consistent) {
        let _ = writeln!(out, "   WARNING: some runs were inconsistent (store moved ≠ acknowledged)");
    }
    out
}
