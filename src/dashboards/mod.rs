//! Grafana dashboards, Prometheus alert rules and their configuration, generated from the
//! metric catalog and the doctor's finding catalog so names and thresholds have one source.
//! `pinchpoint dashboards --out dashboards` writes them; `--check` says which committed file
//! differs from what the code generates.

pub mod alerts;
pub mod config;
pub mod counter;
pub mod locks;
pub mod memory;
pub mod overview;
pub mod panel;
pub mod pools;
pub mod promql;
pub mod runtime;
pub mod tasks;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::metrics::catalog::BUILD_INFO;
use panel::Dashboard;

/// Every dashboard with its file name, overview first.
pub fn dashboards() -> Vec<(&'static str, Dashboard)> {
    vec![
        ("overview.json", overview::dashboard()),
        ("locks.json", locks::dashboard()),
        ("pools.json", pools::dashboard()),
        ("memory.json", memory::dashboard()),
        ("tasks.json", tasks::dashboard()),
        ("runtime.json", runtime::dashboard()),
        ("counter.json", counter::dashboard()),
    ]
}

/// The `job` and `instance` variables every dashboard starts with.
pub fn standard_variables() -> Vec<(&'static str, &'static str, String)> {
    let info = BUILD_INFO.exposed_name();
    vec![
        ("job", "Job", format!("label_values({info}, job)")),
        ("instance", "Instance", format!("label_values({info}{{job=~\"$job\"}}, instance)")),
    ]
}

/// The annotation query: pinchpoint alerts firing for the selected processes.
pub const ALERTS_ANNOTATION: &str =
    r#"ALERTS{alertstate="firing",alertname=~"Pinchpoint.*",job=~"$job",instance=~"$instance"}"#;

/// Every generated file: path relative to the output directory, and contents.
pub fn files() -> Vec<(String, String)> {
    let vars = standard_variables();
    let mut out: Vec<(String, String)> = dashboards()
        .into_iter()
        .map(|(name, d)| {
            let json = serde_json::to_string_pretty(&d.to_json(&vars, ALERTS_ANNOTATION)).expect("dashboard json");
            (name.to_string(), json + "\n")
        })
        .collect();
    let rules = alerts::all();
    out.push(("alerts.yml".into(), alerts::rules_yaml(&rules)));
    out.push(("alerts_test.yml".into(), alerts::tests_yaml(&rules)));
    out.push(("prometheus.yml".into(), config::prometheus_yaml()));
    out.push(("provisioning/datasources/pinchpoint.yml".into(), config::grafana_datasource_yaml()));
    out.push(("provisioning/dashboards/pinchpoint.yml".into(), config::grafana_dashboards_yaml()));
    out
}

/// Writes every file under `dir`.
pub fn write(dir: &Path) -> std::io::Result<()> {
    for (rel, contents) in files() {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, contents)?;
    }
    Ok(())
}

/// Files under `dir` that are missing or differ from the generator's output.
pub fn stale(dir: &Path) -> Vec<String> {
    files()
        .into_iter()
        .filter(|(rel, contents)| std::fs::read_to_string(dir.join(rel)).ok().as_deref() != Some(contents.as_str()))
        .map(|(rel, _)| rel)
        .collect()
}

/// `pinchpoint dashboards`: write the dashboards, rules and configuration, or check them.
#[derive(clap::Args, Debug)]
pub struct DashboardsArgs {
    /// Directory to write into (or to check with --check).
    #[arg(long, default_value = "dashboards")]
    pub out: PathBuf,
    /// Write nothing; exit 1 and name the files that differ from what the code generates.
    #[arg(long)]
    pub check: bool,
}

pub fn run_cli(args: DashboardsArgs) -> anyhow::Result<ExitCode> {
    if args.check {
        let stale = stale(&args.out);
        if stale.is_empty() {
            println!("{}: up to date", args.out.display());
            return Ok(ExitCode::SUCCESS);
        }
        for f in &stale {
            println!("{}: differs from the generator", args.out.join(f).display());
        }
        println!("run `pinchpoint dashboards --out {}` to regenerate", args.out.display());
        return Ok(ExitCode::from(1));
    }
    write(&args.out).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", args.out.display()))?;
    println!("wrote {} files to {}", files().len(), args.out.display());
    Ok(ExitCode::SUCCESS)
}
