//! Runs the consumer scenarios against a real `nats-server -js`: the reports' load levels
//! (500 / 2,000 / 5,000 / 10,000 messages over 5 subjects), repeated for median and CV.
//!
//! Every run starts a fresh `pinchpoint consumer` with a new durable name, which reads the
//! stream from its first message — as the field reports' test did. Before each run the
//! stream is purged, except in `consumer-residue`, where the messages of earlier runs are
//! received again: the lab compares what was received with what was sent and with what the
//! stream held before the run, and names stale data rather than a throughput anomaly.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;

use crate::consumer::broker::{NatsServer, MISSING};
use crate::consumer::jetstream::JetStream;
use crate::consumer::process::ShutdownReport;
use crate::consumer::publisher::{publish, PublishPlan};
use crate::diagnose::findings::TARGET_UTILIZATION;
use crate::diagnose::snapshot::{delta, quantile_between, Snapshot};
use crate::lab::children::ChildProc;
use crate::lab::headline;
use crate::lab::runner::{summarize, LabOptions, LevelReport, RunSummary, ScenarioReport};
use crate::lab::scenario::{Scenario, LEAK_THRESHOLD};
use crate::load::Level;

/// The duration histograms' largest finite bucket bound (1µs…10s): latencies beyond it
/// are reported as this value.
const LATENCY_TOP_BUCKET: f64 = 10.0;

/// Subjects per stream, as in the field reports.
pub const SUBJECTS: usize = 5;

/// How a consumer scenario sizes its pool.
#[derive(Debug, Clone, Copy)]
pub enum Workers {
    Fixed(usize),
    /// ceil(measured arrival rate × measured handler time / target utilization), measured in
    /// a calibration run with a generous pool before the first level.
    FromRate,
}

/// What a consumer scenario switches.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub workers: Workers,
    pub handler_time: Duration,
    /// Publish rate in messages per second; None publishes as fast as the broker stores.
    pub rate: Option<f64>,
    /// Purge the stream before every run (run hygiene); off only for `consumer-residue`.
    pub purge: bool,
    pub shutdown_delay: Duration,
}

/// The reports' load levels.
pub fn levels(opts: &LabOptions) -> Vec<Level> {
    let divisor = if opts.quick { 5 } else { 1 };
    let mut v: Vec<Level> = [("Low", 500u64), ("Medium", 2_000), ("High", 5_000), ("Extreme", 10_000)]
        .into_iter()
        .map(|(name, n)| Level::new(name, n / divisor, 0))
        .collect();
    v.truncate(opts.max_levels.unwrap_or(usize::MAX).max(1));
    v
}

/// One run's counts, as the broker and the consumer saw them.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerRun {
    pub level: String,
    pub workers: usize,
    /// Messages the stream held before this run published (0 after a purge).
    pub in_stream_before: u64,
    pub sent: u64,
    pub received: u64,
    pub acked: u64,
    pub failed: u64,
    pub redelivered: u64,
    pub seconds: f64,
    /// Messages received per second: what the consumer really did.
    pub qps: f64,
    /// Sent over the run's time: the figure a report that ignores stale data prints.
    pub sent_per_second: f64,
    /// End-to-end latency quantiles (publish to ack), bucket upper bounds, seconds; 10 means
    /// 10 s or more (stale messages count from their original publish).
    pub latency_p50: f64,
    pub latency_p95: f64,
    pub latency_p99: f64,
    /// Why the counts differ, when they do.
    pub verdict: Option<String>,
    pub shutdown: Option<ShutdownReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsumerDetail {
    pub stream: String,
    pub subjects: Vec<String>,
    pub workers: usize,
    /// How the pool size was chosen.
    pub workers_basis: String,
    pub handler_time_seconds: f64,
    pub publish_rate: Option<f64>,
    pub purged_before_each_run: bool,
    pub shutdown_delay_seconds: f64,
    pub runs: Vec<ConsumerRun>,
    /// Runs whose received count included messages from earlier runs.
    pub stale_runs: usize,
    /// Over all runs: tasks alive after the fixed 100 ms wait, and leaked per LeakCheck.
    pub alive_after_fixed_wait_max: usize,
    pub leaked_by_leak_check_max: usize,
    /// Spawn sites of tasks LeakCheck found leaked (empty when none).
    pub leaked_sites: Vec<String>,
}

/// Runs one consumer scenario end to end.
pub async fn run(scenario: &Scenario, spec: &ConsumerSpec, opts: &LabOptions) -> anyhow::Result<ScenarioReport> {
    let started = Instant::now();
    let Some(broker) = NatsServer::start().await? else {
        return Ok(ScenarioReport::skipped(scenario, MISSING.into()));
    };
    let mut lab = ConsumerLab::open(scenario, spec, opts, &broker).await?;
    let mut report = ScenarioReport::skipped(scenario, String::new());
    report.skipped = None;
    let error = lab.climb(&mut report).await.err().map(|e| format!("{e:#}"));
    let _ = lab.js.delete_stream().await;
    let _ = std::fs::remove_dir_all(&lab.scratch);
    report.error = error;
    report.stopped_cleanly = lab.all_clean;
    if let Some(window) = lab.window.take().filter(|w| w.snapshots.len() >= 2) {
        let windows = [window];
        let verdict = crate::lab::verdict::verdict(&windows, scenario.name, &report.levels);
        report.check = Some(crate::lab::verdict::check(scenario, &verdict));
        report.verdict = Some(verdict);
    }
    report.consumer = Some(lab.detail);
    // The lab's client goes before the broker, which would otherwise see it cut off.
    let _ = lab.js.context.client().drain().await;
    drop(lab.js);
    broker.stop().await;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

struct ConsumerLab<'a> {
    scenario: &'a Scenario,
    spec: &'a ConsumerSpec,
    opts: &'a LabOptions,
    nats_url: String,
    js: JetStream,
    detail: ConsumerDetail,
    runs: u64,
    all_clean: bool,
    scratch: PathBuf,
    /// The peak's last run, for the doctor.
    window: Option<crate::diagnose::ProcessWindow>,
}

impl<'a> ConsumerLab<'a> {
    async fn open(
        scenario: &'a Scenario,
        spec: &'a ConsumerSpec,
        opts: &'a LabOptions,
        broker: &NatsServer,
    ) -> anyhow::Result<ConsumerLab<'a>> {
        // Fresh stream and subjects per scenario: nothing of another scenario is in them.
        let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let stream = format!("lab_{}_{tag}", scenario.name.replace('-', "_"));
        let subjects: Vec<String> = (0..SUBJECTS).map(|i| format!("lab.{tag}.topic{i}")).collect();
        let js = JetStream::connect(&broker.url(), &stream).await?;
        js.ensure_stream(&subjects, crate::consumer::jetstream::Retention::Limits).await?;
        let scratch = std::env::temp_dir().join(format!("pinchpoint-consumer-lab-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&scratch)?;
        Ok(ConsumerLab {
            scenario,
            spec,
            opts,
            nats_url: broker.url(),
            window: None,
            js,
            detail: ConsumerDetail {
                stream,
                subjects,
                workers: 0,
                workers_basis: String::new(),
                handler_time_seconds: spec.handler_time.as_secs_f64(),
                publish_rate: spec.rate,
                purged_before_each_run: spec.purge,
                shutdown_delay_seconds: spec.shutdown_delay.as_secs_f64(),
                runs: vec![],
                stale_runs: 0,
                alive_after_fixed_wait_max: 0,
                leaked_by_leak_check_max: 0,
                leaked_sites: vec![],
            },
            runs: 0,
            all_clean: true,
            scratch,
        })
    }

    async fn climb(&mut self, report: &mut ScenarioReport) -> anyhow::Result<()> {
        let levels = levels(self.opts);
        let workers = self.size_pool(&levels[0]).await?;
        self.detail.workers = workers;
        let name = self.scenario.name;
        let repeats = self.opts.repeats.max(1);
        for (i, level) in levels.iter().enumerate() {
            let peak = i + 1 == levels.len();
            let mut runs = Vec::new();
            for r in 0..repeats {
                let keep_snapshots = peak && r + 1 == repeats;
                let (run, snaps) = self.run_once(level, workers, keep_snapshots).await?;
                if self.opts.verbose {
                    eprintln!(
                        "lab: {name} {} run {}/{repeats}: sent {} received {} acked {} redelivered {}, {:.0} msg/s{}",
                        level.name,
                        r + 1,
                        run.sent,
                        run.received,
                        run.acked,
                        run.redelivered,
                        run.qps,
                        run.verdict.as_deref().map(|v| format!(" — {v}")).unwrap_or_default()
                    );
                }
                if let Some((before, after, elapsed)) = snaps {
                    self.keep_snapshots(report, before, after, elapsed)?;
                }
                runs.push(run_summary(&run));
                self.record(run);
            }
            let mut summary: LevelReport = summarize(&Level::new(level.name.clone(), level.requests, workers), runs);
            summary.concurrency = workers;
            report.levels.push(summary);
        }
        Ok(())
    }

    /// The pool size: fixed, or measured from a calibration run with a generous pool.
    async fn size_pool(&mut self, first: &Level) -> anyhow::Result<usize> {
        match self.spec.workers {
            Workers::Fixed(n) => {
                self.detail.workers_basis = format!("fixed at {n}");
                Ok(n)
            }
            Workers::FromRate => {
                const CALIBRATION_WORKERS: usize = 64;
                let (run, snaps) = self.run_once(first, CALIBRATION_WORKERS, true).await?;
                let (before, after, _) = snaps.context("calibration snapshots")?;
                let jobs = delta(&before, &after, "pinchpoint_worker_jobs_total", &[("pool", "consumer")]);
                let busy = delta(&before, &after, "pinchpoint_worker_busy_seconds_total", &[("pool", "consumer")]);
                if jobs <= 0.0 || run.seconds <= 0.0 {
                    bail!("calibration run handled no messages");
                }
                let job_time = busy / jobs;
                let rate = run.received as f64 / run.seconds;
                let workers = ((rate * job_time / TARGET_UTILIZATION).ceil() as usize).max(1);
                self.detail.workers_basis = format!(
                    "measured {rate:.0} msg/s × {:.2} ms per message / {TARGET_UTILIZATION} target utilization \
                     (calibration run of {} messages, {CALIBRATION_WORKERS} workers)",
                    job_time * 1e3,
                    run.sent
                );
                Ok(workers)
            }
        }
    }

    /// One run: purge (unless residue), a fresh consumer process, publish, wait until the
    /// consumers have nothing pending or unacked, read the counts, stop the consumer.
    async fn run_once(
        &mut self,
        level: &Level,
        workers: usize,
        want_snapshots: bool,
    ) -> anyhow::Result<(ConsumerRun, Option<(Snapshot, Snapshot, Duration)>)> {
        self.runs += 1;
        if self.spec.purge {
            self.js.purge().await?;
        }
        let in_stream_before = self.js.messages().await?;
        let durable = format!("run{}", self.runs);
        let names = JetStream::consumer_names(&durable, SUBJECTS);
        let report_path = self.scratch.join(format!("{durable}-shutdown.json"));
        let args: Vec<String> = [
            "--nats",
            &self.nats_url,
            "--stream",
            &self.detail.stream,
            "--durable",
            &durable,
            "--workers",
            &workers.to_string(),
            "--handler-time",
            &format!("{}us", self.spec.handler_time.as_micros()),
            "--shutdown-delay",
            &format!("{}ms", self.spec.shutdown_delay.as_millis()),
            "--shutdown-report",
            &report_path.display().to_string(),
            "--admin",
            ":0",
            "--leak-threshold",
            LEAK_THRESHOLD,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let child = ChildProc::start_with("consumer", &args, &["admin"]).await?;
        let admin = child.url("admin");
        let outcome = self.drive(level, &names, &admin).await;
        self.all_clean &= child.stop(Duration::from_secs(15)).await;
        let _ = self.js.delete_consumers(&names).await;
        let (mut run, snaps) = outcome?;
        run.in_stream_before = in_stream_before;
        run.workers = workers;
        run.shutdown = std::fs::read_to_string(&report_path).ok().and_then(|t| serde_json::from_str(&t).ok());
        let _ = std::fs::remove_file(&report_path);
        run.verdict = verdict(&run);
        Ok((run, want_snapshots.then_some(snaps)))
    }

    async fn drive(
        &self,
        level: &Level,
        names: &[String],
        admin: &str,
    ) -> anyhow::Result<(ConsumerRun, (Snapshot, Snapshot, Duration))> {
        // The consumer takes messages from the moment it is ready (a stream that was not
        // purged has some already), so the run's clock starts here, and its counts are the
        // process's totals: it is fresh for every run.
        let started = Instant::now();
        let before = Snapshot::scrape(admin).await?;
        let fresh = Snapshot::parse("");
        let plan = PublishPlan {
            subjects: self.detail.subjects.clone(),
            messages: level.requests,
            rate: self.spec.rate,
            payload_bytes: 128,
        };
        let published = publish(&self.js, &plan).await?;
        // Generous: a slow handler behind a small pool takes messages × time / workers.
        let deadline = started + Duration::from_secs(120);
        loop {
            let (ack_pending, pending) = self.js.backlog(names).await?;
            if ack_pending == 0 && pending == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("the consumer still had {pending} messages to take and {ack_pending} unacked after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let elapsed = started.elapsed();
        let after = Snapshot::scrape(admin).await?;
        let count = |name: &str, filter: &[(&str, &str)]| delta(&fresh, &after, name, filter).round() as u64;
        let received = count("pinchpoint_consumer_received_total", &[]);
        let seconds = elapsed.as_secs_f64();
        // Publish to ack, from the histogram's buckets (upper bounds).
        // Above the top bucket the quantile is +Inf; the report says "10 s" (at least), since
        // charts and medians cannot take an infinite value.
        let latency = |q| {
            quantile_between(&fresh, &after, "pinchpoint_consumer_latency_seconds", &[], q)
                .unwrap_or(0.0)
                .min(LATENCY_TOP_BUCKET)
        };
        let run = ConsumerRun {
            level: level.name.clone(),
            workers: 0,
            in_stream_before: 0,
            sent: published.sent,
            received,
            acked: count("pinchpoint_consumer_messages_total", &[("outcome", "acked")]),
            failed: count("pinchpoint_consumer_messages_total", &[("outcome", "failed")]),
            redelivered: count("pinchpoint_consumer_redeliveries_total", &[]),
            seconds,
            qps: received as f64 / seconds,
            sent_per_second: published.sent as f64 / seconds,
            latency_p50: latency(0.5),
            latency_p95: latency(0.95),
            latency_p99: latency(0.99),
            verdict: None,
            shutdown: None,
        };
        Ok((run, (before, after, elapsed)))
    }

    fn keep_snapshots(
        &mut self,
        report: &mut ScenarioReport,
        before: Snapshot,
        after: Snapshot,
        elapsed: Duration,
    ) -> anyhow::Result<()> {
        let role = "consumer".to_string();
        let mut window = crate::diagnose::ProcessWindow::new(role.clone(), None, vec![before.clone(), after.clone()]);
        if window.whole().is_some_and(|w| w.secs <= 1e-3) {
            // Same-instant snapshots (a clock that did not move) say nothing about rates.
            window.snapshots.clear();
        }
        self.window = Some(window);
        report.headline = headline::figures(
            &[(role.clone(), Some(before.clone()))],
            &[(role.clone(), Some(after.clone()))],
            elapsed,
            self.scenario,
        );
        if let Some(out) = &self.opts.out {
            let dir = out.join("metrics").join(self.scenario.name);
            std::fs::create_dir_all(&dir)?;
            report.snapshots.clear();
            for (when, snap) in [("before-peak", &before), ("after-peak", &after)] {
                let path = dir.join(format!("{role}-{when}.prom"));
                std::fs::write(&path, &snap.text).with_context(|| format!("write {}", path.display()))?;
                report.snapshots.push(path.strip_prefix(out).unwrap_or(&path).display().to_string());
            }
        }
        Ok(())
    }

    fn record(&mut self, run: ConsumerRun) {
        let d = &mut self.detail;
        if run.received > run.sent {
            d.stale_runs += 1;
        }
        if let Some(s) = &run.shutdown {
            d.alive_after_fixed_wait_max = d.alive_after_fixed_wait_max.max(s.alive_after_fixed_wait.len());
            d.leaked_by_leak_check_max = d.leaked_by_leak_check_max.max(s.leaked.len());
            for t in &s.leaked {
                let site = format!("{} ({})", t.site, t.name.as_deref().unwrap_or("unnamed"));
                if !d.leaked_sites.contains(&site) {
                    d.leaked_sites.push(site);
                }
            }
        }
        d.runs.push(run);
    }
}

/// Why a run's counts differ, from the counts alone.
pub fn verdict(run: &ConsumerRun) -> Option<String> {
    if run.received > run.sent && run.received - run.sent <= run.in_stream_before + run.redelivered {
        return Some(format!(
            "stale data from an earlier run: received {} of {} sent; the stream held {} messages before this run \
             (not purged), so the extra {} are old messages, not a throughput anomaly",
            run.received,
            run.sent,
            run.in_stream_before,
            run.received - run.sent
        ));
    }
    if run.received != run.sent || run.acked != run.received {
        return Some(format!(
            "inconsistent counts: sent {}, received {}, acked {}, redelivered {}",
            run.sent, run.received, run.acked, run.redelivered
        ));
    }
    (run.redelivered > 0).then(|| format!("{} redeliveries: acks arrived after the ack wait", run.redelivered))
}

fn run_summary(run: &ConsumerRun) -> RunSummary {
    RunSummary {
        qps: run.qps,
        p50: run.latency_p50,
        p95: run.latency_p95,
        p99: run.latency_p99,
        max: run.latency_p99,
        requests: run.sent,
        errors: run.failed,
        errors_by_status: Default::default(),
        acked: run.acked as i64,
        store_delta: run.received as i64,
        consistent: run.verdict.is_none(),
        lost: (run.sent as i64 - run.acked as i64).max(0),
        applied_unacked: 0,
        cpu_us_per_request: Default::default(),
        stale: (run.received as i64 - run.sent as i64).max(0),
    }
}

/// The consumer part of a scenario's text report.
pub fn render(d: &ConsumerDetail) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "   consumer: {} workers ({}), handler {:.1} ms, {} subjects, stream {}",
        d.workers,
        d.workers_basis,
        d.handler_time_seconds * 1e3,
        d.subjects.len(),
        if d.purged_before_each_run { "purged before each run" } else { "NOT purged between runs" }
    );
    let _ = writeln!(
        out,
        "   {:<8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9} {:>12}",
        "level", "before", "sent", "received", "acked", "redel", "msg/s", "sent/elapsed"
    );
    for r in &d.runs {
        let _ = writeln!(
            out,
            "   {:<8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9.0} {:>12.0}",
            r.level, r.in_stream_before, r.sent, r.received, r.acked, r.redelivered, r.qps, r.sent_per_second
        );
        if let Some(v) = &r.verdict {
            let _ = writeln!(out, "     {v}");
        }
    }
    if d.shutdown_delay_seconds > 0.0 || d.leaked_by_leak_check_max > 0 {
        let _ = writeln!(
            out,
            "   shutdown: {} task(s) alive after a fixed 100 ms wait (counted as leaks by such a test); \
             {} leaked per LeakCheck",
            d.alive_after_fixed_wait_max, d.leaked_by_leak_check_max
        );
        for s in &d.leaked_sites {
            let _ = writeln!(out, "     leaked: {s}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(received: u64, in_stream_before: u64) -> ConsumerRun {
        ConsumerRun {
            level: "High".into(),
            workers: 8,
            in_stream_before,
            sent: 5000,
            received,
            acked: received,
            failed: 0,
            redelivered: 0,
            seconds: 10.0,
            qps: received as f64 / 10.0,
            sent_per_second: 500.0,
            latency_p50: 0.0,
            latency_p95: 0.0,
            latency_p99: 0.0,
            verdict: None,
            shutdown: None,
        }
    }

    #[test]
    fn extra_messages_that_were_in_the_stream_are_stale_data_not_an_anomaly() {
        assert_eq!(verdict(&run(5000, 0)), None);
        let stale = verdict(&run(10_000, 5000)).expect("a verdict");
        assert!(stale.starts_with("stale data from an earlier run"), "{stale}");
        // More extra messages than the stream held: not explained by residue.
        let odd = verdict(&run(10_000, 10)).expect("a verdict");
        assert!(odd.starts_with("inconsistent counts"), "{odd}");
    }

    /// Field report 002's three runs: 360.72, 40.22 and 367.80 msg/s. Their CV is 73% with
    /// the sample standard deviation (60% with the population one), not the 13663% printed.
    #[test]
    fn cv_of_the_reports_three_runs_is_the_sample_cv() {
        let runs =
            [360.72, 40.22, 367.80].into_iter().map(|qps| RunSummary { qps, ..run_summary(&run(5000, 0)) }).collect();
        let level = summarize(&Level::new("High", 5000, 0), runs);
        let cv = level.qps_cv.expect("three runs give a CV");
        assert!((cv - 0.7302).abs() < 0.0005, "{cv}");
        assert_eq!(level.qps_median, 360.72);
    }
}
