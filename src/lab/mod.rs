//! The lab (`pinchpoint lab`): start the instrumented counter system in each bottleneck
//! configuration, drive the load ladder, check every run's counts, capture flamegraphs and
//! metric snapshots at the peak, and report — so each failure from the field reports shows
//! up in the numbers.

pub mod children;
pub mod compare;
pub mod consumer_runner;
pub mod cpu;
pub mod headline;
pub mod html;
pub mod http;
pub mod overhead;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod verdict;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::lab::report::LabReport;
use crate::lab::runner::{run_scenario, LabOptions};
use crate::load;

/// Arguments of `pinchpoint lab`.
#[derive(clap::Args, Debug, Clone)]
pub struct LabArgs {
    /// Run this scenario (repeatable); without any, every scenario runs.
    #[arg(long = "scenario", value_name = "NAME")]
    pub scenarios: Vec<String>,
    /// Run every scenario (the default when no --scenario is given).
    #[arg(long)]
    pub all: bool,
    /// A shortened ladder (a tenth of the requests at the same concurrency), one run per level.
    #[arg(long)]
    pub quick: bool,
    /// Runs per level (default 3; 1 with --quick). Median and coefficient of variation are reported.
    #[arg(long)]
    pub repeats: Option<usize>,
    /// Write an HTML report, the JSON report, metric snapshots and flamegraphs to DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Run two scenarios side by side, interleaved, and print the ratio of each figure (B/A).
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    pub compare: Option<Vec<String>>,
    /// Measure what the probes cost: run each --scenario (default: tuned and monolith) with
    /// this build and with PATH, the uninstrumented twin (`--cfg pinchpoint_bare`, see
    /// scripts/overhead.sh), side by side and interleaved, and print the on/off ratios.
    #[arg(long, value_name = "PATH", conflicts_with = "compare")]
    pub baseline_bin: Option<PathBuf>,
    /// Run only this ladder level (repeatable: `--level L4 --level L5`).
    #[arg(long = "level", value_name = "NAME")]
    pub levels: Vec<String>,
    /// Skip the flamegraph captures at the peak level.
    #[arg(long)]
    pub no_flamegraphs: bool,
    /// Where flamegraphs land when there is no --out.
    #[arg(long, default_value = "flamegraphs", value_name = "DIR")]
    pub flame_dir: PathBuf,
    /// How long the doctor watches each scenario at its peak concurrency, after the peak level.
    #[arg(long, default_value = "3s", value_parser = parse_duration, value_name = "DUR")]
    pub doctor_window: std::time::Duration,
    /// Exit 1 when the doctor's verdict misses a scenario's expected finding (a ✗).
    #[arg(long)]
    pub fail_on_miss: bool,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Run only the first N levels of the ladder (for tests and quick looks).
    #[arg(long, value_name = "N")]
    pub max_levels: Option<usize>,
    /// Longest a single run may take; it then stops claiming requests and reports what it sent.
    #[arg(long, default_value = "20s", value_parser = parse_duration, value_name = "DUR")]
    pub max_run_time: std::time::Duration,
    /// CPU work under the store lock per increment in every scenario (service `--store-work`).
    #[arg(long, default_value = scenario::DEFAULT_STORE_WORK, value_name = "DUR")]
    pub store_work: String,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 500ms, 20s ({e})"))
}

fn unknown(name: &str) -> anyhow::Error {
    anyhow::anyhow!("unknown scenario {name:?}; scenarios: {}", scenario::names().join(", "))
}

/// Exit code 2 for bad usage comes back as `Err` with a one-line reason.
pub async fn run_cli(args: LabArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        for s in scenario::all() {
            println!("{:<20} {} (doctor: {})", s.name, s.summary, s.expect);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let opts = LabOptions {
        quick: args.quick,
        repeats: args.repeats.unwrap_or(if args.quick { 1 } else { 3 }).max(1),
        out: args.out.clone(),
        flame_dir: args.flame_dir.clone(),
        flamegraphs: !args.no_flamegraphs,
        verbose: true,
        max_levels: args.max_levels,
        store_work: args.store_work.clone(),
        max_run_time: args.max_run_time,
        doctor_window: args.doctor_window,
        bin: None,
        only_levels: args.levels.clone(),
    };
    let ladder = load::ladder();
    if let Some(bad) = args.levels.iter().find(|l| !ladder.iter().any(|x| &x.name == *l)) {
        let names: Vec<&str> = ladder.iter().map(|l| l.name.as_str()).collect();
        anyhow::bail!("unknown level {bad:?}; levels: {}", names.join(", "));
    }
    if let Some(out) = &opts.out {
        std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    }
    if let Some(pair) = &args.compare {
        let a = scenario::find(&pair[0]).ok_or_else(|| unknown(&pair[0]))?;
        let b = scenario::find(&pair[1]).ok_or_else(|| unknown(&pair[1]))?;
        let report = compare::compare(&a, &b, &opts).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", compare::render(&report));
        }
        if let Some(out) = &opts.out {
            std::fs::write(out.join("compare.json"), serde_json::to_string_pretty(&report)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(baseline) = &args.baseline_bin {
        let names =
            if args.scenarios.is_empty() { vec!["tuned".into(), "monolith".into()] } else { args.scenarios.clone() };
        let chosen: Vec<_> =
            names.iter().map(|n| scenario::find(n).ok_or_else(|| unknown(n))).collect::<anyhow::Result<_>>()?;
        let mut reports = Vec::new();
        for sc in &chosen {
            let report = overhead::overhead(sc, baseline, &opts).await?;
            if !args.json {
                print!("{}", overhead::render(&report));
            }
            reports.push(report);
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&reports)?);
        }
        if let Some(out) = &opts.out {
            std::fs::write(out.join("overhead.json"), serde_json::to_string_pretty(&reports)?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let chosen = if args.scenarios.is_empty() || args.all {
        scenario::all()
    } else {
        args.scenarios.iter().map(|n| scenario::find(n).ok_or_else(|| unknown(n))).collect::<anyhow::Result<_>>()?
    };
    let mut report =
        LabReport { version: env!("CARGO_PKG_VERSION"), quick: opts.quick, repeats: opts.repeats, scenarios: vec![] };
    for sc in &chosen {
        eprintln!("lab: {} — {}", sc.name, sc.summary);
        let r = run_scenario(sc, &opts).await.with_context(|| format!("scenario {}", sc.name))?;
        report.scenarios.push(r);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report::render(&report));
    }
    if let Some(out) = &opts.out {
        std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
        std::fs::write(out.join("index.html"), html::render(&report))?;
        eprintln!("lab: report written to {}", out.join("index.html").display());
    }
    let clean = report.scenarios.iter().all(|s| s.stopped_cleanly);
    if !clean {
        eprintln!("lab: a child process did not exit cleanly");
    }
    let missed = report.scenarios.iter().any(|s| s.check.as_ref().is_some_and(|c| !c.named));
    if args.json {
        eprintln!("lab: {}", report::summary(&report));
    }
    if args.fail_on_miss && missed {
        eprintln!("lab: the doctor missed a scenario's expected finding (--fail-on-miss)");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
