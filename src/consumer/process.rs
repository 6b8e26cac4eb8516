//! `pinchpoint consumer`: the consumer as a process with the usual admin listener, so
//! `diagnose`, the dashboards and the flamegraph endpoints work on it unchanged.
//!
//! On SIGTERM it closes the consumer and measures its shutdown two ways: tasks still alive
//! after a fixed 100 ms wait (what field report 002 counted as leaks), and a [`LeakCheck`]
//! that waits until every task has ended or its deadline passed (what is really leaked).
//! Both go to stderr and, with `--shutdown-report FILE`, to a JSON file the lab reads.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::dispatch::{Consumer, ConsumerOptions};
use super::jetstream::JetStream;
use crate::counter::process::{bind_admin, spawn_http, AdminConfig, StartError};
use crate::probe::task::LeakCheck;
use crate::shutdown::{Shutdown, DRAIN_DEADLINE};

/// The fixed wait field report 002's test used before counting goroutines.
pub const FIXED_WAIT: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub nats: String,
    pub stream: String,
    /// Subjects to consume, one puller each; empty: every subject of the stream.
    pub subjects: Vec<String>,
    /// Create the stream over `subjects` when it does not exist.
    pub create_stream: bool,
    /// Durable consumer name prefix (`NAME-0`, `NAME-1`, ... one per subject).
    pub durable: String,
    /// Messages delivered and not yet acked per subject before the broker holds back.
    pub max_ack_pending: i64,
    pub options: ConsumerOptions,
    pub admin: AdminConfig,
    pub shutdown_report: Option<PathBuf>,
    /// How long the LeakCheck at shutdown waits for tasks to end.
    pub leak_deadline: Duration,
}

/// A task still alive at a shutdown measurement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AliveTask {
    pub name: Option<String>,
    pub site: String,
}

/// How the consumer's shutdown went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShutdownReport {
    /// Seconds `close` took (stop pulling, handle and ack what was taken).
    pub close_seconds: f64,
    pub fixed_wait_ms: u64,
    /// Tasks alive when the fixed wait ended: the count a fixed-wait leak test reports.
    pub alive_after_fixed_wait: Vec<AliveTask>,
    pub leak_check_deadline_ms: u64,
    /// Seconds until every task had ended (or the deadline passed).
    pub leak_check_waited_seconds: f64,
    /// Tasks alive at LeakCheck's deadline: really leaked.
    pub leaked: Vec<AliveTask>,
}

fn alive_tasks(tasks: &[crate::probe::task::LeakedTask]) -> Vec<AliveTask> {
    tasks.iter().map(|t| AliveTask { name: t.name.map(str::to_string), site: t.site.clone() }).collect()
}

/// Closes `consumer` and measures the shutdown of the tasks spawned under `check`.
pub async fn close_and_measure(
    mut consumer: Consumer,
    check: LeakCheck,
    fixed_wait: Duration,
    deadline: Duration,
) -> ShutdownReport {
    let started = Instant::now();
    consumer.close().await;
    let close_seconds = started.elapsed().as_secs_f64();
    // The pullers' handles are dropped: nothing here waits for them but the checks below.
    drop(consumer);
    let measured_from = Instant::now();
    tokio::time::sleep(fixed_wait).await;
    let alive_after_fixed_wait = alive_tasks(&check.alive());
    let leaked = match check.finish(deadline.saturating_sub(measured_from.elapsed())).await {
        Ok(()) => vec![],
        Err(report) => alive_tasks(&report.tasks),
    };
    ShutdownReport {
        close_seconds,
        fixed_wait_ms: fixed_wait.as_millis() as u64,
        alive_after_fixed_wait,
        leak_check_deadline_ms: deadline.as_millis() as u64,
        leak_check_waited_seconds: measured_from.elapsed().as_secs_f64(),
        leaked,
    }
}

pub async fn run_consumer(config: ConsumerConfig, shutdown: Shutdown) -> Result<(), StartError> {
    let fail = |e: anyhow::Error| StartError::Config(format!("{e:#}"));
    if config.options.workers == 0 || config.options.queue == 0 {
        return Err(StartError::Config("--workers and --queue must be at least 1".into()));
    }
    let js = JetStream::connect(&config.nats, &config.stream).await.map_err(fail)?;
    if config.create_stream {
        if config.subjects.is_empty() {
            return Err(StartError::Config("--create-stream needs --subject (one or more)".into()));
        }
        js.ensure_stream(&config.subjects, super::jetstream::Retention::Limits).await.map_err(fail)?;
    }
    let subjects =
        if config.subjects.is_empty() { js.subjects().await.map_err(fail)? } else { config.subjects.clone() };
    let sources = js.sources(&config.durable, &subjects, config.max_ack_pending).await.map_err(fail)?;
    let (admin_listener, admin_router) = bind_admin("consumer", &config.admin).await?;
    let admin_task = spawn_http("admin.server", admin_listener, admin_router, &shutdown);
    // Everything the consumer spawns from here on is the check's to account for.
    let check = LeakCheck::start();
    let consumer = Consumer::start(sources, config.options.clone());
    tracing::info!(
        "consuming {} subject(s) of stream {} with {} workers",
        subjects.len(),
        config.stream,
        consumer.workers()
    );
    shutdown.wait().await;
    let report = close_and_measure(consumer, check, FIXED_WAIT, config.leak_deadline).await;
    eprintln!(
        "consumer shutdown: {} task(s) alive after a fixed {} ms wait; {} leaked after LeakCheck waited {:.2} s",
        report.alive_after_fixed_wait.len(),
        report.fixed_wait_ms,
        report.leaked.len(),
        report.leak_check_waited_seconds
    );
    for t in &report.leaked {
        eprintln!("  leaked: {} spawned at {}", t.name.as_deref().unwrap_or("(unnamed)"), t.site);
    }
    if let Some(path) = &config.shutdown_report {
        let json = serde_json::to_string_pretty(&report).expect("report serializes");
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("pinchpoint: cannot write {}: {e}", path.display());
        }
    }
    if tokio::time::timeout(DRAIN_DEADLINE, admin_task).await.is_err() {
        tracing::warn!("admin listener still draining after {DRAIN_DEADLINE:?}; exiting anyway");
    }
    Ok(())
}
