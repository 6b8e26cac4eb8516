//! `pinchpoint diagnose`: pick a source, run the rules, print the verdict, set the exit code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::findings::Severity;
use super::verdict::Verdict;

/// Arguments of `pinchpoint diagnose`.
#[derive(clap::Args, Debug, Clone)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["targets", "snapshots", "prometheus", "explain"]))]
pub struct DiagnoseArgs {
    /// Admin listeners of live processes (`http://127.0.0.1:9464`), scraped over --window.
    #[arg(long = "target", value_name = "URL", num_args = 1..)]
    pub targets: Vec<String>,
    /// How long to watch live targets (at least 3 slices are scraped).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DUR")]
    pub window: Duration,
    /// Slices the window is cut into; a finding must hold in two of three.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(3..=60))]
    pub slices: u32,
    /// A directory of saved snapshots (`<process>-<when>.prom`, as `lab --out` writes).
    #[arg(long, value_name = "DIR")]
    pub snapshots: Option<PathBuf>,
    /// A Prometheus-compatible server holding the probes' series (a fleet).
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Label matchers that pick the series, e.g. '{job="gateway"}'.
    #[arg(long, default_value = "", value_name = "SELECTOR")]
    pub selector: String,
    /// How far back to look in Prometheus.
    #[arg(long, default_value = "5m", value_parser = parse_duration, value_name = "DUR")]
    pub range: Duration,
    /// Print the verdict as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also list what was checked and found below info, or could not be measured.
    #[arg(long)]
    pub all: bool,
    /// Print one finding's formula and thresholds, and exit.
    #[arg(long, value_name = "ID")]
    pub explain: Option<String>,
    /// Exit 1 when a finding reaches this severity.
    #[arg(long, value_name = "info|warning", value_parser = ["info", "warning"])]
    pub fail_on: Option<String>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 500ms, 10s, 5m ({e})"))
}

/// Runs the command. `Err` is a one-line reason and exit code 2.
pub async fn run_cli(args: DiagnoseArgs) -> anyhow::Result<ExitCode> {
    if let Some(id) = &args.explain {
        let text = super::report::explain(id).ok_or_else(|| {
            let ids: Vec<&str> = super::findings::KINDS.iter().map(|k| k.id).collect();
            anyhow::anyhow!("unknown finding {id:?}; findings: {}", ids.join(", "))
        })?;
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let slices = args.slices as usize;
    let verdict = if let Some(dir) = &args.snapshots {
        super::diagnose(&super::sources::snapshot_dir(dir)?)
    } else if let Some(url) = &args.prometheus {
        let windows = super::sources::prometheus(url, &args.selector, args.range, slices).await?;
        super::rank::diagnose_fleet(&windows)
    } else {
        if args.window < Duration::from_millis(300) {
            anyhow::bail!("--window {:?} is too short to cut into {slices} slices", args.window);
        }
        super::diagnose(&super::sources::targets(&args.targets, args.window, slices).await?)
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print!("{}", super::report::render(&verdict, args.all, std::io::stdout().is_terminal()));
    }
    Ok(exit_code(&verdict, args.fail_on.as_deref()))
}

/// 1 when a finding reaches `fail_on`, else 0.
pub fn exit_code(v: &Verdict, fail_on: Option<&str>) -> ExitCode {
    let threshold = match fail_on {
        Some("info") => Severity::Info,
        Some("warning") => Severity::Warning,
        _ => return ExitCode::SUCCESS,
    };
    if v.worst() >= threshold {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
