//! `pinchpoint load`: an HTTP load driver for the counter gateway and any other HTTP/1.1
//! endpoint (`--mix url`: the URL as given, with `-m`, `-d`, `-H` like `hey` or `oha`).
//!
//! - **Closed loop** (like `hey`): `-n` requests over `-c` workers; each worker sends its next
//!   request when the previous one answered.
//! - **Open loop** (`--rate R --duration D`): requests are due at fixed intervals; latency counts
//!   from the *intended* send time (coordinated-omission correction), at most
//!   `--max-in-flight` are outstanding, and requests that had to wait for a free slot are
//!   counted as `late`.
//!
//! Latencies go into per-worker HDR histograms merged after the run; every acknowledged
//! increment is tallied per key so the lab can check that the store moved by exactly that much.
//!
//! SIGINT or SIGTERM stops a run: no new requests, in-flight ones get [`STOP_GRACE`] to finish,
//! and the report is marked partial.

mod driver;
mod ladder;
mod report;
mod request;
mod stats;

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use ladder::{ladder, ladder_quick, ladder_scaled, Level};
pub use request::CustomRequest;
pub use stats::LatencySummary;

/// After a stop signal, how long in-flight requests may take before they are abandoned.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// What each request does.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mix {
    /// `POST /api/v1/counter/increment`, one key per request.
    #[default]
    Increment,
    /// `POST /api/v1/counter/batch-increment` with `--batch-size` operations.
    Batch,
    /// `GET /api/v1/counter/{resource_id}/{counter_type}`.
    Read,
    /// `GET /health`.
    Health,
    /// The URL as given (path and query), with `-m`, `-d` and `-H`.
    Url,
}

impl Mix {
    pub fn as_str(self) -> &'static str {
        match self {
            Mix::Increment => "increment",
            Mix::Batch => "batch",
            Mix::Read => "read",
            Mix::Health => "health",
            Mix::Url => "url",
        }
    }
}

/// Arguments of `pinchpoint load`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// The target. With a counter --mix, the base URL (http://127.0.0.1:8080; the mix appends
    /// its paths); with --mix url, the full URL every request goes to, path and query included.
    #[arg(long)]
    pub url: String,
    /// HTTP method of --mix url (default GET, or POST with -d).
    #[arg(short = 'm', long = "method")]
    pub method: Option<String>,
    /// Request body of --mix url; `@path` reads it from a file.
    #[arg(short = 'd', long = "data")]
    pub data: Option<String>,
    /// A request header of --mix url, `'Name: value'`; repeatable.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Total requests (closed loop: default 200, or unbounded up to --duration; open loop: used
    /// when --duration is not given).
    #[arg(short = 'n', long = "requests")]
    pub requests: Option<u64>,
    /// Concurrent workers (closed loop), one keep-alive connection each.
    #[arg(short = 'c', long = "concurrency", default_value_t = 50)]
    pub concurrency: usize,
    /// Open loop: requests per second, sent at fixed intervals whatever the answers do.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: how long to send for. Closed loop: stop claiming requests after this long.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Request mix. Default: `url` when -m, -d or -H is given or the URL has a path or query,
    /// else `increment`.
    #[arg(long, value_enum)]
    pub mix: Option<Mix>,
    /// Operations per batch (--mix batch), 1..=1000.
    #[arg(long, default_value_t = 10)]
    pub batch_size: usize,
    /// Send batches with `"async": true` (a gateway's write buffer answers 202 at once;
    /// 202 counts as acknowledged).
    #[arg(long = "async")]
    pub asynchronous: bool,
    /// Distinct keys (resource ids) the run spreads over.
    #[arg(long, default_value_t = 100)]
    pub keys: u32,
    /// Resource id prefix; default a fresh random one per run so runs never see each other.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Counter type of every key.
    #[arg(long, default_value = "hits")]
    pub counter_type: String,
    /// Per-request timeout (connect included).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Open loop: at most this many requests outstanding; more are sent late (and counted).
    #[arg(long, default_value_t = 1000)]
    pub max_in_flight: usize,
    /// No progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// `requests` over `concurrency` workers, each waiting for its answer; optionally stop
    /// claiming new requests after `max_duration`.
    Closed { requests: u64, concurrency: usize, max_duration: Option<Duration> },
    /// `rate` requests per second for `duration`, at most `max_in_flight` outstanding.
    Open { rate: f64, duration: Duration, max_in_flight: usize },
}

impl Mode {
    /// The number of requests the run will send at most.
    pub fn total_requests(&self) -> u64 {
        match *self {
            Mode::Closed { requests, .. } => requests,
            Mode::Open { rate, duration, .. } => (rate * duration.as_secs_f64()).floor() as u64,
        }
    }
}

/// One load run, fully specified.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    /// Base URL, `http://host:port[/prefix]`.
    pub url: String,
    pub mode: Mode,
    pub mix: Mix,
    /// Operations per batch request (only for [`Mix::Batch`]).
    pub batch_size: usize,
    /// Batches ask for `"async": true`.
    pub asynchronous: bool,
    /// What [`Mix::Url`] sends (ignored by the counter mixes).
    pub request: CustomRequest,
    /// Distinct keys: resource ids `{prefix}-0` … `{prefix}-{keys-1}`.
    pub keys: u32,
    pub prefix: String,
    pub counter_type: String,
    /// Per request, connect included.
    pub timeout: Duration,
    /// Draw a progress bar on stderr (the caller decides whether stderr is a terminal).
    pub progress: bool,
}

fn valid_id(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

impl LoadPlan {
    /// A closed-loop increment run with defaults (100 keys, fresh prefix, 10 s timeout).
    pub fn closed(url: impl Into<String>, requests: u64, concurrency: usize) -> Self {
        LoadPlan {
            url: url.into(),
            mode: Mode::Closed { requests, concurrency, max_duration: None },
            mix: Mix::Increment,
            batch_size: 10,
            asynchronous: false,
            request: CustomRequest::default(),
            keys: 100,
            prefix: Self::fresh_prefix(),
            counter_type: "hits".to_string(),
            timeout: Duration::from_secs(10),
            progress: false,
        }
    }

    /// An open-loop increment run with the same defaults.
    pub fn open(url: impl Into<String>, rate: f64, duration: Duration, max_in_flight: usize) -> Self {
        LoadPlan { mode: Mode::Open { rate, duration, max_in_flight }, ..Self::closed(url, 0, 1) }
    }

    /// A random resource-id prefix (`ld` + 12 hex digits), new on every call.
    pub fn fresh_prefix() -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("ld{}", &id[..12])
    }

    /// The resource id of key `k`.
    pub fn resource_id(&self, k: u32) -> String {
        format!("{}-{}", self.prefix, k)
    }

    /// Builds a plan from the command line.
    pub fn from_args(args: &LoadArgs) -> anyhow::Result<Self> {
        let mode = match (args.rate, args.duration, args.requests) {
            (Some(rate), Some(duration), _) => Mode::Open { rate, duration, max_in_flight: args.max_in_flight },
            (Some(rate), None, Some(n)) => Mode::Open {
                rate,
                duration: Duration::from_secs_f64(n as f64 / rate.max(f64::MIN_POSITIVE)),
                max_in_flight: args.max_in_flight,
            },
            (Some(_), None, None) => anyhow::bail!("--rate needs --duration (or -n)"),
            (None, duration, requests) => Mode::Closed {
                requests: requests.unwrap_or(if duration.is_some() { u64::MAX } else { 200 }),
                concurrency: args.concurrency,
                max_duration: duration,
            },
        };
        let custom = args.method.is_some() || args.data.is_some() || !args.headers.is_empty();
        let mix = match args.mix {
            Some(mix) => mix,
            None if custom || driver::parse_url(&args.url)?.has_path_or_query() => Mix::Url,
            None => Mix::Increment,
        };
        if custom && mix != Mix::Url {
            anyhow::bail!("-m, -d and -H apply to --mix url; the counter mixes build their own requests");
        }
        let plan = LoadPlan {
            url: args.url.clone(),
            mode,
            mix,
            request: CustomRequest::from_args(args.method.as_deref(), args.data.as_deref(), &args.headers)?,
            batch_size: args.batch_size,
            asynchronous: args.asynchronous,
            keys: args.keys,
            prefix: args.prefix.clone().unwrap_or_else(Self::fresh_prefix),
            counter_type: args.counter_type.clone(),
            timeout: args.timeout,
            progress: false,
        };
        plan.validate()?;
        Ok(plan)
    }

    /// Checks the plan; the error is one line fit for the CLI.
    pub fn validate(&self) -> anyhow::Result<()> {
        let url = driver::parse_url(&self.url)?;
        if url.query.is_some() && self.mix != Mix::Url {
            anyhow::bail!(
                "URL {:?} has a query: the {} mix appends its own paths (use --mix url)",
                self.url,
                self.mix.as_str()
            );
        }
        match self.mode {
            Mode::Closed { concurrency: 0, .. } => {
                anyhow::bail!("concurrency must be at least 1")
            }
            Mode::Open { rate, duration, max_in_flight } => {
                if !(rate.is_finite() && rate > 0.0) {
                    anyhow::bail!("--rate must be a positive number");
                }
                if max_in_flight == 0 {
                    anyhow::bail!("--max-in-flight must be at least 1");
                }
                if duration.is_zero() {
                    anyhow::bail!("--duration must be positive");
                }
            }
            _ => {}
        }
        if self.keys == 0 {
            anyhow::bail!("--keys must be at least 1");
        }
        if !(1..=1000).contains(&self.batch_size) {
            anyhow::bail!("--batch-size must be 1..=1000");
        }
        // Resource ids are `{prefix}-{key}` and must stay within 128 chars.
        if !valid_id(&self.prefix, 100) {
            anyhow::bail!("--prefix must be 1-100 chars of [A-Za-z0-9_.:-]");
        }
        if !valid_id(&self.counter_type, 64) {
            anyhow::bail!("--counter-type must be 1-64 chars of [A-Za-z0-9_.:-]");
        }
        if self.timeout.is_zero() {
            anyhow::bail!("--timeout must be positive");
        }
        Ok(())
    }
}

/// What a run measured. Latencies in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub url: String,
    /// `closed` or `open`.
    pub mode: String,
    pub mix: Mix,
    /// Closed loop: workers (= connections kept alive). Open loop: workers used (≤ the cap).
    pub concurrency: usize,
    /// Open loop: the target rate.
    pub rate: Option<f64>,
    pub prefix: String,
    pub counter_type: String,
    /// Requests sent (each with an outcome below).
    pub requests: u64,
    /// Answered with a 2xx status.
    pub ok: u64,
    /// Everything else: `"500"`, `"409"`, … or `"timeout"`, `"connect"`, `"io"`.
    pub errors_by_status: BTreeMap<String, u64>,
    pub elapsed_seconds: f64,
    /// `requests / elapsed_seconds`.
    pub qps: f64,
    /// Requests that got an HTTP response, from when they were due (open loop: the intended
    /// send time, i.e. corrected for coordinated omission).
    pub latency: LatencySummary,
    /// Open loop only: from the actual send, uncorrected — compare with `latency`.
    pub service_latency: Option<LatencySummary>,
    /// Open loop: requests sent late because `max_in_flight` were outstanding.
    pub late: u64,
    /// Open loop: the largest delay between a request's intended and actual send.
    pub max_dispatch_lag_seconds: f64,
    pub connections_opened: u64,
    /// Increment operations acknowledged with 200 (a batch counts its operations).
    pub acked_ops: u64,
    /// Sum of deltas acknowledged with 200, per `(resource_id, counter_type)`.
    #[serde(with = "acked_serde")]
    pub acked: BTreeMap<(String, String), i64>,
    /// The run was stopped by a signal before its end: the numbers cover only its first part.
    #[serde(default)]
    pub partial: bool,
    /// Requests still in flight [`STOP_GRACE`] after the stop signal, abandoned uncounted.
    #[serde(default)]
    pub abandoned: u64,
}

impl LoadReport {
    /// Requests that did not get a 2xx answer.
    pub fn errors(&self) -> u64 {
        self.errors_by_status.values().sum()
    }

    /// `errors / requests` (0 for an empty run).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors() as f64 / self.requests as f64
        }
    }

    /// The sum of all acknowledged deltas.
    pub fn acked_total(&self) -> i64 {
        self.acked.values().sum()
    }

    /// A human-readable table.
    pub fn render(&self) -> String {
        report::render(self)
    }
}

/// JSON has no tuple keys: `acked` is a list of `{resource_id, counter_type, delta}`.
mod acked_serde {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Entry {
        resource_id: String,
        counter_type: String,
        delta: i64,
    }

    pub fn serialize<S: Serializer>(map: &BTreeMap<(String, String), i64>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter().map(|((r, c), d)| Entry {
            resource_id: r.clone(),
            counter_type: c.clone(),
            delta: *d,
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<(String, String), i64>, D::Error> {
        let entries = Vec::<Entry>::deserialize(d)?;
        let mut map = BTreeMap::new();
        for e in entries {
            *map.entry((e.resource_id, e.counter_type)).or_insert(0) += e.delta;
        }
        Ok(map)
    }
}

/// Runs one load. Connection failures are counted (`"connect"`), not returned: the error case
/// is a plan that does not validate or a host that does not resolve.
pub async fn run(plan: &LoadPlan) -> anyhow::Result<LoadReport> {
    run_until(plan, CancellationToken::new()).await
}

/// Like [`run`], and cancelling `stop` ends the run early: no new requests, in-flight ones get
/// [`STOP_GRACE`], and the report is marked [`partial`](LoadReport::partial).
pub async fn run_until(plan: &LoadPlan, stop: CancellationToken) -> anyhow::Result<LoadReport> {
    plan.validate()?;
    let target = driver::resolve(&plan.url).await?;
    let progress = Arc::new(driver::Progress::new());
    let bar = plan.progress.then(|| report::spawn_progress(progress.clone(), plan.mode));
    let result = driver::drive(plan, target, progress, stop.clone()).await;
    if let Some(bar) = bar {
        bar.finish().await;
    }
    let r = result?;
    let m = r.merged;
    let elapsed = r.elapsed.as_secs_f64();
    let acked = m.acked.into_iter().map(|(k, d)| ((plan.resource_id(k), plan.counter_type.clone()), d)).collect();
    Ok(LoadReport {
        url: plan.url.clone(),
        mode: match plan.mode {
            Mode::Closed { .. } => "closed",
            Mode::Open { .. } => "open",
        }
        .to_string(),
        mix: plan.mix,
        concurrency: r.concurrency,
        rate: match plan.mode {
            Mode::Open { rate, .. } => Some(rate),
            Mode::Closed { .. } => None,
        },
        prefix: plan.prefix.clone(),
        counter_type: plan.counter_type.clone(),
        requests: m.requests,
        ok: m.ok,
        errors_by_status: m.errors_by_status,
        elapsed_seconds: elapsed,
        qps: if elapsed > 0.0 { m.requests as f64 / elapsed } else { 0.0 },
        latency: LatencySummary::from_histogram(&m.latency),
        service_latency: m.service.as_ref().map(LatencySummary::from_histogram),
        late: r.late,
        max_dispatch_lag_seconds: r.max_dispatch_lag.as_secs_f64(),
        connections_opened: m.connections_opened,
        acked_ops: m.acked_ops,
        acked,
        partial: stop.is_cancelled(),
        abandoned: m.abandoned,
    })
}

/// Checks that the target accepts TCP connections (bounded by `timeout`, at most 3 s).
async fn preflight(plan: &LoadPlan) -> anyhow::Result<()> {
    let target = driver::resolve(&plan.url).await?;
    let wait = plan.timeout.min(Duration::from_secs(3));
    match tokio::time::timeout(wait, tokio::net::TcpStream::connect(target.addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => anyhow::bail!("{}: {e}", target.addr),
        Err(_) => anyhow::bail!("{}: no answer within {wait:?}", target.addr),
    }
}

/// `pinchpoint load`: runs the plan and prints a table (or `--json`). Exit 2 with a one-line
/// reason on bad arguments or an unreachable target.
pub async fn run_cli(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let mut plan = match LoadPlan::from_args(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pinchpoint load: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Err(e) = preflight(&plan).await {
        eprintln!("pinchpoint load: cannot reach {}: {e:#}", plan.url);
        return Ok(ExitCode::from(2));
    }
    plan.progress = !args.json && !args.no_progress && std::io::stderr().is_terminal();
    let stop = CancellationToken::new();
    let on_signal = {
        let stop = stop.clone();
        tokio::spawn(async move {
            crate::shutdown::wait_for_signal().await;
            eprintln!(
                "pinchpoint load: stopping: no new requests; in-flight ones get {}s to finish",
                STOP_GRACE.as_secs()
            );
            stop.cancel();
        })
    };
    let report = run_until(&plan, stop).await;
    on_signal.abort();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    if report.requests > 0 && report.errors_by_status.get("connect") == Some(&report.requests) {
        eprintln!("pinchpoint load: cannot reach {}: every connection failed", plan.url);
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    fn args(argv: &[&str]) -> LoadArgs {
        let mut v = vec!["load"];
        v.extend_from_slice(argv);
        Cli::try_parse_from(v).unwrap().load
    }

    #[test]
    fn closed_defaults() {
        let p = LoadPlan::from_args(&args(&["--url", "http://127.0.0.1:1"])).unwrap();
        assert_eq!(p.mode, Mode::Closed { requests: 200, concurrency: 50, max_duration: None });
        assert_eq!(p.request, CustomRequest::default());
        assert_eq!(p.mix, Mix::Increment);
        assert_eq!((p.keys, p.batch_size), (100, 10));
        assert!(p.prefix.starts_with("ld") && p.prefix.len() == 14);
        let q = LoadPlan::from_args(&args(&["--url", "http://127.0.0.1:1"])).unwrap();
        assert_ne!(p.prefix, q.prefix, "a fresh prefix per run");
    }

    #[test]
    fn closed_with_duration_is_time_bounded() {
        let p = LoadPlan::from_args(&args(&["--url", "http://127.0.0.1:1", "-c", "8", "--duration", "5s"])).unwrap();
        assert_eq!(
            p.mode,
            Mode::Closed { requests: u64::MAX, concurrency: 8, max_duration: Some(Duration::from_secs(5)) }
        );
    }

    #[test]
    fn open_loop_args() {
        let p = LoadPlan::from_args(&args(&[
            "--url",
            "http://127.0.0.1:1",
            "--rate",
            "200",
            "--duration",
            "1500ms",
            "--mix",
            "batch",
            "--batch-size",
            "5",
            "--prefix",
            "run1",
        ]))
        .unwrap();
        assert_eq!(p.mode.total_requests(), 300);
        assert_eq!(p.mix, Mix::Batch);
        assert_eq!(p.prefix, "run1");
        assert!(LoadPlan::from_args(&args(&["--url", "http://x:1", "--rate", "5"])).is_err());
    }

    #[test]
    fn the_mix_follows_the_url_and_request_flags() {
        let mix = |argv: &[&str]| LoadPlan::from_args(&args(argv)).map(|p| p.mix);
        assert_eq!(mix(&["--url", "http://h:1"]).unwrap(), Mix::Increment);
        assert_eq!(mix(&["--url", "http://h:1/"]).unwrap(), Mix::Increment);
        assert_eq!(mix(&["--url", "http://h:1/any/path"]).unwrap(), Mix::Url);
        assert_eq!(mix(&["--url", "http://h:1/?q=1"]).unwrap(), Mix::Url);
        assert_eq!(mix(&["--url", "http://h:1", "-H", "x-a: 1"]).unwrap(), Mix::Url);
        assert_eq!(mix(&["--url", "http://h:1/gw", "--mix", "read"]).unwrap(), Mix::Read);
        let err = mix(&["--url", "http://h:1", "--mix", "increment", "-m", "PUT"]).unwrap_err().to_string();
        assert!(err.contains("--mix url"), "{err}");
        assert!(mix(&["--url", "http://h:1/x", "-H", "nocolon"]).is_err());
    }

    #[test]
    fn validation() {
        let bad = |f: &dyn Fn(&mut LoadPlan)| {
            let mut p = LoadPlan::closed("http://127.0.0.1:1", 1, 1);
            f(&mut p);
            p.validate().is_err()
        };
        assert!(!bad(&|_| {}));
        assert!(bad(&|p| p.prefix = "has space".into()));
        assert!(bad(&|p| p.prefix = "x".repeat(101)));
        assert!(bad(&|p| p.counter_type = String::new()));
        assert!(bad(&|p| p.batch_size = 1001));
        assert!(bad(&|p| p.keys = 0));
        assert!(bad(&|p| p.url = "ftp://x".into()));
        assert!(bad(&|p| p.url = "http://x:1/a?q=1".into()));
        assert!(!bad(&|p| {
            p.url = "http://x:1/a?q=1".into();
            p.mix = Mix::Url;
        }));
        assert!(bad(&|p| p.mode = Mode::Open { rate: 0.0, duration: Duration::from_secs(1), max_in_flight: 1 }));
    }

    #[test]
    fn report_json_round_trips_acked() {
        let mut acked = BTreeMap::new();
        acked.insert(("p-1".to_string(), "hits".to_string()), 7);
        let r = LoadReport {
            url: "http://x:1".into(),
            mode: "closed".into(),
            mix: Mix::Batch,
            concurrency: 1,
            rate: None,
            prefix: "p".into(),
            counter_type: "hits".into(),
            requests: 2,
            ok: 1,
            errors_by_status: [("500".to_string(), 1)].into(),
            elapsed_seconds: 1.0,
            qps: 2.0,
            latency: LatencySummary::default(),
            service_latency: None,
            late: 0,
            max_dispatch_lag_seconds: 0.0,
            connections_opened: 1,
            acked_ops: 1,
            acked,
            partial: true,
            abandoned: 2,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["acked"], serde_json::json!([{"resource_id":"p-1","counter_type":"hits","delta":7}]));
        assert_eq!(v["mix"], "batch");
        let back: LoadReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.errors(), 1);
        assert!((r.error_rate() - 0.5).abs() < 1e-9);
    }
}
