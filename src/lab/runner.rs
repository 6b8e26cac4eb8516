//! Runs one scenario: start its processes, climb the load ladder with repeats and fresh
//! resource ids, check after every run that the store moved by exactly what was
//! acknowledged, capture flamegraphs and metric snapshots at the peak level, stop cleanly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde::Serialize;

use crate::diagnose::snapshot::Snapshot;
use crate::lab::children::{ChildProc, RedisProc};
use crate::lab::cpu::CpuMeter;
use crate::lab::headline::{self, Figure};
use crate::lab::http;
use crate::lab::scenario::{Scenario, Topology, LEAK_THRESHOLD};
use crate::load::{self, Level, LoadPlan, LoadReport};

#[derive(Debug, Clone)]
pub struct LabOptions {
    pub quick: bool,
    pub repeats: usize,
    /// Where reports, snapshots and flamegraphs go (None: flamegraphs to `flame_dir` only).
    pub out: Option<PathBuf>,
    /// Where flamegraphs land when there is no `out`.
    pub flame_dir: PathBuf,
    pub flamegraphs: bool,
    /// Progress lines on stderr.
    pub verbose: bool,
    /// Run only the first N levels of the ladder.
    pub max_levels: Option<usize>,
    /// `--store-work` of every store process (a duration like `20us`).
    pub store_work: String,
    /// A run stops claiming new requests after this long (slow scenarios would otherwise
    /// take minutes per level); the report shows the requests actually sent.
    pub max_run_time: Duration,
    /// How long the doctor watches the peak concurrency after the peak level.
    pub doctor_window: Duration,
    /// The pinchpoint binary the scenario's processes run (None: this one).
    pub bin: Option<PathBuf>,
    /// Run only the ladder levels with these names (empty: all).
    pub only_levels: Vec<String>,
}

impl LabOptions {
    pub fn levels(&self) -> Vec<Level> {
        let mut levels = if self.quick { load::ladder_quick() } else { load::ladder() };
        if !self.only_levels.is_empty() {
            levels.retain(|l| self.only_levels.contains(&l.name));
        }
        levels.truncate(self.max_levels.unwrap_or(usize::MAX).max(1));
        levels
    }

    fn flame_root(&self) -> PathBuf {
        match &self.out {
            Some(out) => out.join("flamegraphs"),
            None => self.flame_dir.clone(),
        }
    }
}

/// One load run of a level, reduced to what the report shows.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub qps: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub requests: u64,
    pub errors: u64,
    pub errors_by_status: std::collections::BTreeMap<String, u64>,
    /// Sum of acknowledged deltas, and how far the store moved for the run's keys.
    pub acked: i64,
    pub store_delta: i64,
    pub consistent: bool,
    /// Acknowledged increments the store does not hold: data lost.
    pub lost: i64,
    /// Increments the store holds that were never acknowledged: timeouts whose outcome the
    /// client could not know (a retry with the same request id is applied once). Not a loss.
    pub applied_unacked: i64,
    /// Received beyond what the run sent: left over from an earlier run (a broker stream
    /// that was not purged), not a throughput anomaly.
    pub stale: i64,
    /// Microseconds of CPU per request of each process (`driver` is the lab's load driver)
    /// and their `total`: on shared cores, what throughput is the inverse of.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub cpu_us_per_request: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LevelReport {
    pub level: String,
    /// Requests per run as planned; runs that hit `--max-run-time` sent fewer (`capped`).
    pub requests: u64,
    pub capped: bool,
    pub concurrency: usize,
    pub runs: Vec<RunSummary>,
    pub qps_median: f64,
    /// Coefficient of variation of QPS over the repeats (None with one run).
    pub qps_cv: Option<f64>,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub errors: u64,
    pub error_rate: f64,
    pub consistent: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Capture {
    pub process: String,
    pub kind: String,
    /// Relative to the report directory when there is one.
    pub path: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub summary: String,
    pub expect: String,
    pub skipped: Option<String>,
    /// Why the scenario stopped early, if it did.
    pub error: Option<String>,
    pub levels: Vec<LevelReport>,
    pub headline: Vec<Figure>,
    pub flamegraphs: Vec<Capture>,
    pub snapshots: Vec<String>,
    /// The doctor's verdict on the peak level, and whether it named the scenario's bottleneck.
    pub verdict: Option<crate::diagnose::Verdict>,
    pub check: Option<crate::lab::verdict::Check>,
    pub stopped_cleanly: bool,
    pub seconds: f64,
    /// Consumer scenarios: per-run broker counts, pool sizing, shutdown measurements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<crate::lab::consumer_runner::ConsumerDetail>,
}

impl ScenarioReport {
    /// The finding the scenario must produce (None: nothing at info or above).
    pub fn expect_id(&self) -> Option<&'static str> {
        crate::lab::scenario::find(&self.name).and_then(|s| s.expect_id)
    }

    pub fn skipped(sc: &Scenario, why: String) -> Self {
        ScenarioReport {
            name: sc.name.into(),
            summary: sc.summary.into(),
            expect: sc.expect.into(),
            skipped: Some(why),
            error: None,
            levels: vec![],
            headline: vec![],
            flamegraphs: vec![],
            snapshots: vec![],
            verdict: None,
            check: None,
            stopped_cleanly: true,
            seconds: 0.0,
            consumer: None,
        }
    }
}

/// The processes of one scenario.
pub struct System {
    pub scenario: Scenario,
    redis: Option<RedisProc>,
    service: Option<ChildProc>,
    front: ChildProc,
    /// Reads for consistency checks go straight to the service, so gateway faults,
    /// timeouts and caches cannot blur what the store holds.
    reader: tokio::sync::OnceCell<tonic::transport::Channel>,
    max_run_time: Duration,
}

/// Why a scenario could not run here (not an error of the lab).
#[derive(Debug)]
pub struct Skip(pub String);

impl System {
    pub async fn start(scenario: &Scenario, opts: &LabOptions) -> anyhow::Result<Result<System, Skip>> {
        let common = |extra: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            v.extend(["--leak-threshold".to_string(), LEAK_THRESHOLD.to_string()]);
            v
        };
        let store_work = match humantime::parse_duration(&opts.store_work) {
            Ok(d) => format!("{}ns", d.as_nanos() * scenario.store_work_factor as u128),
            Err(_) => opts.store_work.clone(), // the service reports the bad value
        };
        let with_store_work = |mut v: Vec<String>| {
            v.extend(["--store-work".to_string(), store_work.clone()]);
            v
        };
        let system = match &scenario.topology {
            Topology::Monolith(flags) => {
                let front = ChildProc::start(opts.bin.as_deref(), "monolith", &with_store_work(common(flags))).await?;
                System {
                    scenario: scenario.clone(),
                    redis: None,
                    service: None,
                    front,
                    reader: Default::default(),
                    max_run_time: opts.max_run_time,
                }
            }
            Topology::Consumer(_) => bail!("{}: consumer scenarios run in consumer_runner", scenario.name),
            Topology::Split { service, gateway, redis } => {
                let redis = if *redis {
                    match RedisProc::start().await? {
                        Some(r) => Some(r),
                        None => {
                            return Ok(Err(Skip(
                                "redis-server is not installed (apt-get install redis-server to run it)".into(),
                            )))
                        }
                    }
                } else {
                    None
                };
                let mut service_args = with_store_work(common(service));
                if let Some(r) = &redis {
                    service_args.extend(["--store".to_string(), r.url()]);
                }
                let svc = ChildProc::start(opts.bin.as_deref(), "service", &service_args).await?;
                let mut gw_args = common(gateway);
                gw_args.extend(["--service".to_string(), svc.url("grpc")]);
                let front = ChildProc::start(opts.bin.as_deref(), "gateway", &gw_args).await?;
                System {
                    scenario: scenario.clone(),
                    redis,
                    service: Some(svc),
                    front,
                    reader: Default::default(),
                    max_run_time: opts.max_run_time,
                }
            }
        };
        system.wait_healthy(Duration::from_secs(30)).await?;
        Ok(Ok(system))
    }

    pub fn api_url(&self) -> String {
        self.front.url("http")
    }

    /// The pids of every pinchpoint process (front first).
    pub fn pids(&self) -> Vec<u32> {
        self.front.pid().into_iter().chain(self.service.as_ref().and_then(|s| s.pid())).collect()
    }

    /// (role, admin URL) of every pinchpoint process.
    pub fn admins(&self) -> Vec<(String, String)> {
        let mut v = vec![(self.front.role.clone(), self.front.url("admin"))];
        if let Some(s) = &self.service {
            v.push((s.role.clone(), s.url("admin")));
        }
        v
    }

    async fn wait_healthy(&self, deadline: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + deadline;
        let url = format!("{}/health", self.api_url());
        loop {
            if let Ok((200, _)) = http::get(&url, Duration::from_secs(2)).await {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("{}: {} never became healthy", self.scenario.name, url);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every process; true when all exited cleanly and none is left running.
    pub async fn stop(self) -> bool {
        let mut clean = self.front.stop(Duration::from_secs(12)).await;
        if let Some(s) = self.service {
            clean &= s.stop(Duration::from_secs(12)).await;
        }
        if let Some(r) = self.redis {
            r.stop().await;
        }
        clean
    }

    pub async fn snapshot_all(&self) -> Vec<(String, Option<Snapshot>)> {
        let mut out = Vec::new();
        for (role, admin) in self.admins() {
            out.push((role, Snapshot::scrape(&admin).await.ok()));
        }
        out
    }

    /// The plan for one run of `level`: fresh resource ids every time.
    pub fn plan(&self, level: &Level) -> LoadPlan {
        let mut base = LoadPlan::closed(self.api_url(), level.requests, level.concurrency);
        base.mix = self.scenario.mix;
        base.batch_size = self.scenario.batch_size;
        base.asynchronous = self.scenario.asynchronous;
        base.keys = self.scenario.keys;
        base.timeout = Duration::from_secs(30);
        let mut plan = level.plan(&base);
        if let load::Mode::Closed { max_duration, .. } = &mut plan.mode {
            *max_duration = Some(self.max_run_time);
        }
        plan
    }

    /// The doctor's window: the peak concurrency held for `window` (a quick ladder's peak
    /// lasts well under a second, too short to cut into slices), scraped every sixth of it.
    pub async fn observe(&self, level: &Level, window: Duration) -> Vec<crate::diagnose::ProcessWindow> {
        let mut plan = self.plan(level);
        if let load::Mode::Closed { requests, max_duration, .. } = &mut plan.mode {
            *requests = u64::MAX;
            *max_duration = Some(window);
        }
        let first = self.snapshot_all().await;
        let sampler = PeakSampler::start(self.admins(), window / DOCTOR_SLICES);
        if let Err(e) = load::run(&plan).await {
            tracing::warn!("doctor's observation run failed: {e:#}");
        }
        let during = sampler.stop().await;
        let mut rounds = vec![first];
        rounds.extend(during);
        rounds.push(self.snapshot_all().await);
        peak_windows(self, &rounds)
    }

    /// (role, pid) of every process of the system.
    pub fn processes(&self) -> Vec<(String, u32)> {
        [Some(&self.front), self.service.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c.role.clone(), c.pid()?)))
            .collect()
    }

    /// One run of `level`, checked for consistency.
    pub async fn run_once(&self, level: &Level) -> anyhow::Result<RunSummary> {
        let plan = self.plan(level);
        let cpu = CpuMeter::start(self.processes());
        let report = load::run(&plan).await.with_context(|| format!("load {} at {}", level.name, plan.url))?;
        let cpu_us_per_request = cpu.per_request(report.requests);
        let (store_delta, consistent, lost, applied_unacked) = self.check_consistency(&plan, &report).await?;
        Ok(RunSummary {
            qps: report.qps,
            p50: report.latency.p50,
            p95: report.latency.p95,
            p99: report.latency.p99,
            max: report.latency.max,
            requests: report.requests,
            errors: report.errors(),
            errors_by_status: report.errors_by_status.clone(),
            acked: report.acked_total(),
            store_delta,
            consistent,
            lost,
            applied_unacked,
            stale: 0,
            cpu_us_per_request,
        })
    }

    /// Reads back every key the run used. Asynchronous writes may still be in the write
    /// buffer, so those are polled until they match or 30 s pass.
    async fn check_consistency(&self, plan: &LoadPlan, report: &LoadReport) -> anyhow::Result<(i64, bool, i64, i64)> {
        if !matches!(plan.mix, load::Mix::Increment | load::Mix::Batch) {
            return Ok((0, true, 0, 0));
        }
        let deadline = Instant::now() + if plan.asynchronous { Duration::from_secs(30) } else { Duration::ZERO };
        loop {
            let (mut moved, mut lost, mut unacked) = (0, 0, 0);
            let mut all_equal = true;
            // Concurrent reads: a slow store (undersized-workers adds 20 ms to every call) over
            // thousands of keys would take minutes one by one.
            let reads = futures_util::stream::iter(0..plan.keys)
                .map(|k| {
                    let rid = plan.resource_id(k);
                    async move { self.read(&rid, &plan.counter_type).await.map(|v| (rid, v)) }
                })
                .buffer_unordered(CONSISTENCY_READS_IN_FLIGHT)
                .collect::<Vec<_>>()
                .await;
            for read in reads {
                let (rid, value) = read?;
                moved += value;
                let acked = report.acked.get(&(rid, plan.counter_type.clone())).copied().unwrap_or(0);
                all_equal &= value == acked;
                // Deltas are positive in the lab's mixes: short of acked is lost, past it unacked.
                lost += (acked - value).max(0);
                unacked += (value - acked).max(0);
            }
            if all_equal || Instant::now() > deadline {
                return Ok((moved, all_equal, lost, unacked));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl System {
    /// What the store holds for one counter.
    async fn read(&self, resource_id: &str, counter_type: &str) -> anyhow::Result<i64> {
        use crate::counter::proto::{counter_service_client::CounterServiceClient, GetRequest};
        let Some(service) = &self.service else {
            let url = format!("{}/api/v1/counter/{resource_id}/{counter_type}", self.api_url());
            let value: serde_json::Value = serde_json::from_str(&http::get_text(&url, Duration::from_secs(10)).await?)?;
            return value["value"].as_i64().context("counter read without a value");
        };
        let channel = self
            .reader
            .get_or_try_init(|| async {
                tonic::transport::Endpoint::from_shared(service.url("grpc"))?
                    .timeout(Duration::from_secs(10))
                    .connect()
                    .await
            })
            .await
            .context("connect to the service for consistency reads")?;
        let request = GetRequest { resource_id: resource_id.into(), counter_type: counter_type.into() };
        let reply =
            CounterServiceClient::new(channel.clone()).get(request).await.context("read a counter from the service")?;
        Ok(reply.into_inner().value)
    }
}

pub fn summarize(level: &Level, runs: Vec<RunSummary>) -> LevelReport {
    let median = |f: &dyn Fn(&RunSummary) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            0.0
        } else if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        }
    };
    let qps: Vec<f64> = runs.iter().map(|r| r.qps).collect();
    let qps_cv = (qps.len() >= 2).then(|| {
        let mean = qps.iter().sum::<f64>() / qps.len() as f64;
        let var = qps.iter().map(|q| (q - mean).powi(2)).sum::<f64>() / (qps.len() - 1) as f64;
        if mean > 0.0 {
            var.sqrt() / mean
        } else {
            0.0
        }
    });
    let requests: u64 = runs.iter().map(|r| r.requests).sum();
    let errors: u64 = runs.iter().map(|r| r.errors).sum();
    LevelReport {
        level: level.name.clone(),
        requests: level.requests,
        capped: runs.iter().any(|r| r.requests < level.requests),
        concurrency: level.concurrency,
        qps_median: median(&|r| r.qps),
        qps_cv,
        p50: median(&|r| r.p50),
        p95: median(&|r| r.p95),
        p99: median(&|r| r.p99),
        max: runs.iter().map(|r| r.max).fold(0.0, f64::max),
        errors,
        error_rate: if requests == 0 { 0.0 } else { errors as f64 / requests as f64 },
        consistent: runs.iter().all(|r| r.consistent),
        runs,
    }
}

/// Starts a flamegraph capture of `kind` (`cpu` or `contention`) from one process.
async fn capture(admin: String, kind: &'static str, seconds: u64, path: PathBuf) -> Result<(), String> {
    let endpoint = if kind == "cpu" { "profile" } else { "contention" };
    let url = format!("{admin}/debug/pprof/{endpoint}?seconds={seconds}&format=svg");
    match http::get(&url, Duration::from_secs(seconds + 30)).await {
        Ok((200, body)) if !body.is_empty() => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            std::fs::write(&path, &body).map_err(|e| format!("write {}: {e}", path.display()))
        }
        Ok((200, _)) => Err("empty profile".into()),
        Ok((status, body)) => {
            Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body).chars().take(200).collect::<String>()))
        }
        Err(e) => Err(e.to_string()),
    }
}

fn relative(path: &Path, base: Option<&Path>) -> String {
    base.and_then(|b| path.strip_prefix(b).ok()).unwrap_or(path).display().to_string()
}

/// Runs `scenario` end to end.
pub async fn run_scenario(scenario: &Scenario, opts: &LabOptions) -> anyhow::Result<ScenarioReport> {
    if let Topology::Consumer(spec) = &scenario.topology {
        return crate::lab::consumer_runner::run(scenario, spec, opts).await;
    }
    let started = Instant::now();
    let system = match System::start(scenario, opts).await? {
        Ok(s) => s,
        Err(Skip(why)) => return Ok(ScenarioReport::skipped(scenario, why)),
    };
    let mut outcome = Climb::default();
    let error = climb(&system, opts, &mut outcome).await.err().map(|e| format!("{e:#}"));
    let stopped_cleanly = system.stop().await;
    let Climb { levels, headline, flamegraphs, snapshots, windows } = outcome;
    let verdict = (!windows.is_empty()).then(|| crate::lab::verdict::verdict(&windows, scenario.name, &levels));
    let check = verdict.as_ref().map(|v| crate::lab::verdict::check(scenario, v));
    Ok(ScenarioReport {
        name: scenario.name.into(),
        summary: scenario.summary.into(),
        expect: scenario.expect.into(),
        skipped: None,
        error,
        levels,
        headline,
        flamegraphs,
        snapshots,
        verdict,
        check,
        stopped_cleanly,
        seconds: started.elapsed().as_secs_f64(),
        consumer: None,
    })
}

/// What a scenario's climb produced so far (kept when a level fails).
#[derive(Default)]
struct Climb {
    levels: Vec<LevelReport>,
    headline: Vec<Figure>,
    flamegraphs: Vec<Capture>,
    snapshots: Vec<String>,
    /// Each process's snapshots over the peak level, for the doctor.
    windows: Vec<crate::diagnose::ProcessWindow>,
}

async fn climb(system: &System, opts: &LabOptions, done: &mut Climb) -> anyhow::Result<()> {
    let name = system.scenario.name;
    let levels = opts.levels();
    let Climb { levels: reports, headline, flamegraphs: captures, snapshots: snapshot_files, windows } = done;
    let mut last_qps: Option<f64> = None;
    for (i, level) in levels.iter().enumerate() {
        let peak = i + 1 == levels.len();
        let mut pending = Vec::new();
        let before = if peak { system.snapshot_all().await } else { vec![] };
        let peak_started = Instant::now();
        if peak && opts.flamegraphs {
            // Long enough to cover most of the first peak run, judged from the level below.
            let expected = last_qps.filter(|q| *q > 0.0).map(|q| level.requests as f64 / q).unwrap_or(5.0);
            let seconds = expected.clamp(1.0, 10.0).round() as u64;
            for (role, admin) in system.admins() {
                for kind in ["cpu", "contention"] {
                    let path = opts.flame_root().join(name).join(format!("{role}-{kind}.svg"));
                    let rel = relative(&path, opts.out.as_deref());
                    let role = role.clone();
                    let task = tokio::spawn(capture(admin.clone(), kind, seconds, path));
                    pending.push((role, kind, rel, task));
                }
            }
        }
        let mut runs = Vec::new();
        for r in 0..opts.repeats.max(1) {
            let run = system.run_once(level).await?;
            if opts.verbose {
                eprintln!(
                    "lab: {name} {} run {}/{}: {:.0} QPS, p99 {:.1} ms, {} errors, {}",
                    level.name,
                    r + 1,
                    opts.repeats.max(1),
                    run.qps,
                    run.p99 * 1e3,
                    run.errors,
                    if run.consistent { "consistent" } else { "INCONSISTENT" }
                );
            }
            runs.push(run);
        }
        let summary = summarize(level, runs);
        last_qps = Some(summary.qps_median);
        if peak {
            let after = system.snapshot_all().await;
            let elapsed = peak_started.elapsed();
            *headline = headline::figures(&before, &after, elapsed, &system.scenario);
            *windows = system.observe(level, opts.doctor_window * system.scenario.doctor_window_factor).await;
            if let Some(out) = &opts.out {
                let dir = out.join("metrics").join(name);
                snapshot_files.extend(save_windows(&dir, windows)?.into_iter().map(|p| relative(&p, Some(out))));
            }
            for (role, kind, rel, task) in pending {
                let result = task.await.unwrap_or_else(|e| Err(e.to_string()));
                captures.push(Capture {
                    process: role,
                    kind: kind.into(),
                    path: result.is_ok().then_some(rel),
                    error: result.err(),
                });
            }
        }
        reports.push(summary);
    }
    Ok(())
}

/// Counter reads in flight while checking a run's consistency.
const CONSISTENCY_READS_IN_FLIGHT: usize = 64;

/// Slices of the doctor's window in the lab.
const DOCTOR_SLICES: u32 = 6;

/// One scrape of every process: (role, snapshot or None when the scrape failed).
type Round = Vec<(String, Option<Snapshot>)>;

/// Scrapes every process at a fixed interval until stopped.
struct PeakSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<Round>>,
}

impl PeakSampler {
    fn start(admins: Vec<(String, String)>, every: Duration) -> PeakSampler {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut taken = Vec::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => return taken,
                    _ = tokio::time::sleep(every) => {}
                }
                let mut round = Vec::new();
                for (role, admin) in &admins {
                    round.push((role.clone(), Snapshot::scrape(admin).await.ok()));
                }
                taken.push(round);
            }
        });
        PeakSampler { stop, task }
    }

    async fn stop(self) -> Vec<Round> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// One window per process from rounds of snapshots (a failed scrape is skipped).
fn peak_windows(system: &System, rounds: &[Round]) -> Vec<crate::diagnose::ProcessWindow> {
    system
        .admins()
        .into_iter()
        .map(|(role, admin)| {
            let snaps: Vec<Snapshot> = rounds
                .iter()
                .flat_map(|r| r.iter().filter(|(n, _)| *n == role).filter_map(|(_, s)| s.clone()))
                .collect();
            crate::diagnose::ProcessWindow::new(role, Some(admin), snaps)
        })
        .filter(|w| w.snapshots.len() >= 2)
        .collect()
}

/// Writes `<role>-<NN>.prom` per snapshot and `window.json` (times and admin URLs), the layout
/// `pinchpoint diagnose --snapshots DIR` reads.
fn save_windows(dir: &Path, windows: &[crate::diagnose::ProcessWindow]) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut taken_at = serde_json::Map::new();
    let mut admin = serde_json::Map::new();
    for w in windows {
        if let Some(url) = &w.admin_url {
            admin.insert(w.name.clone(), url.clone().into());
        }
        for (i, snap) in w.snapshots.iter().enumerate() {
            let file = format!("{}-{i:02}.prom", w.name);
            std::fs::write(dir.join(&file), &snap.text)?;
            taken_at.insert(file.clone(), crate::diagnose::window::unix_seconds(snap.taken_at).into());
            written.push(dir.join(file));
        }
    }
    let meta = serde_json::json!({ "taken_at": taken_at, "admin": admin });
    std::fs::write(dir.join("window.json"), serde_json::to_string_pretty(&meta)?)?;
    Ok(written)
}
