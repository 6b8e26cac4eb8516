//! Tokio runtime metrics, read from `Handle::metrics()` at scrape time, plus task-poll
//! durations recorded by runtime hooks into per-thread slots (`poll_times.rs`; the same
//! bucket layout as every other duration, unlike tokio's own poll-time histogram).
//!
//! Attach a runtime with [`register`]; build it with [`builder_multi_thread`] /
//! [`builder_current_thread`] (or call [`install_hooks`] on your own builder) to get poll
//! times and tracking of plain `tokio::spawn` tasks.
//!
//! Task hooks, poll times and the blocking-pool gauges need `--cfg tokio_unstable`. Built
//! without it, those families are absent from `/metrics` (the doctor reads them as "not
//! measured"), the hooks are not installed, and the first [`register`] or [`install_hooks`]
//! logs how to turn them on. Everything else here works with stock compiler flags.

#[cfg(tokio_unstable)]
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use parking_lot::Mutex;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use tokio::runtime::{Builder, Handle};

#[cfg(tokio_unstable)]
use super::task;
use crate::metrics::catalog::*;
use crate::metrics::{describe, emit_gauge};

static HANDLE: Mutex<Option<Handle>> = Mutex::new(None);
static HOOKS: AtomicBool = AtomicBool::new(false);

/// Attaches `handle`'s runtime to the metrics (replacing any earlier one).
pub fn register(handle: Handle) {
    explain_missing_unstable();
    super::export();
    *HANDLE.lock() = Some(handle);
}

/// What a build without `--cfg tokio_unstable` leaves out, and how to get it.
pub const UNSTABLE_HINT: &str = "tokio task hooks, task poll times and blocking-pool gauges are not measured: \
     this build lacks `--cfg tokio_unstable`; build with RUSTFLAGS=\"--cfg tokio_unstable\" or add \
     `[build] rustflags = [\"--cfg\", \"tokio_unstable\"]` to .cargo/config.toml";

/// Whether this build measures what needs `--cfg tokio_unstable` (task hooks, poll times,
/// blocking-pool gauges, task names in tokio-console).
pub const fn unstable_measured() -> bool {
    cfg!(tokio_unstable)
}

/// Logs [`UNSTABLE_HINT`] once per process, in builds without `tokio_unstable`.
fn explain_missing_unstable() {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !unstable_measured() && !SAID.swap(true, Relaxed) {
        tracing::info!("{UNSTABLE_HINT}");
    }
}

/// Attaches the current runtime. Panics outside a runtime.
pub fn register_current() {
    register(Handle::current());
}

#[cfg(tokio_unstable)]
thread_local! {
    /// [`clock_ns`](super::clock_ns) at the start of this thread's current poll; 0 = none.
    static POLL_START: Cell<u64> = const { Cell::new(0) };
}

/// When the current task's poll started, if a hooked runtime is polling it (else 0): lets a
/// tracked task's wrapper reuse the hook's clock read.
pub(super) fn poll_started_ns() -> u64 {
    #[cfg(tokio_unstable)]
    return POLL_START.try_with(Cell::get).unwrap_or(0);
    #[cfg(not(tokio_unstable))]
    0
}

/// Installs task tracking and poll timing hooks on `builder`. Without `--cfg tokio_unstable`
/// tokio has no hooks: this leaves `builder` as it is and logs [`UNSTABLE_HINT`] once.
pub fn install_hooks(builder: &mut Builder) -> &mut Builder {
    // The uninstrumented twin (`--cfg pinchpoint_bare`) runs without hooks.
    if cfg!(pinchpoint_bare) {
        return builder;
    }
    super::export();
    #[cfg(not(tokio_unstable))]
    {
        explain_missing_unstable();
        builder
    }
    #[cfg(tokio_unstable)]
    install_unstable_hooks(builder)
}

#[cfg(tokio_unstable)]
fn install_unstable_hooks(builder: &mut Builder) -> &mut Builder {
    HOOKS.store(true, Relaxed);
    builder
        .on_task_spawn(task::hook_spawn)
        .on_task_terminate(task::hook_terminate)
        .on_before_task_poll(|meta| {
            // One clock read serves both the poll timer and the task's last-poll time.
            let now = super::clock_ns().max(1);
            task::hook_before_poll(meta, now);
            let _ = POLL_START.try_with(|s| s.set(now));
        })
        .on_after_task_poll(|_| {
            let start = POLL_START.try_with(Cell::take).unwrap_or(0);
            if start != 0 {
                super::poll_times::observe(super::clock_ns().saturating_sub(start));
            }
            task::hook_after_poll();
        })
}

/// A multi-thread runtime builder with all drivers enabled and the hooks installed.
pub fn builder_multi_thread() -> Builder {
    let mut b = Builder::new_multi_thread();
    b.enable_all();
    install_hooks(&mut b);
    b
}

/// A current-thread runtime builder with all drivers enabled and the hooks installed.
pub fn builder_current_thread() -> Builder {
    let mut b = Builder::new_current_thread();
    b.enable_all();
    install_hooks(&mut b);
    b
}

/// The runtime's families, read at scrape time (part of the probes' metrics source).
pub(super) fn encode(enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
    if HOOKS.load(Relaxed) {
        super::poll_times::PollTimes.encode(describe(enc, &RUNTIME_POLL)?)?;
    }
    let Some(handle) = HANDLE.lock().clone() else {
        return Ok(());
    };
    let m = handle.metrics();
    let workers = m.num_workers();
    emit_gauge(enc, &RUNTIME_WORKERS, workers as i64)?;
    emit_gauge(enc, &RUNTIME_ALIVE_TASKS, m.num_alive_tasks() as i64)?;
    emit_gauge(enc, &RUNTIME_GLOBAL_QUEUE, m.global_queue_depth() as i64)?;
    {
        let mut e = describe(enc, &RUNTIME_WORKER_BUSY)?;
        for w in 0..workers {
            let label = w.to_string();
            let busy = m.worker_total_busy_duration(w).as_secs_f64();
            e.encode_family(&[("worker", label.as_str())])?.encode_counter::<NoLabelSet, _, f64>(&busy, None)?;
        }
    }
    {
        let mut e = describe(enc, &RUNTIME_WORKER_PARK)?;
        for w in 0..workers {
            let label = w.to_string();
            e.encode_family(&[("worker", label.as_str())])?
                .encode_counter::<NoLabelSet, _, u64>(&m.worker_park_count(w), None)?;
        }
    }
    #[cfg(tokio_unstable)]
    {
        emit_gauge(enc, &RUNTIME_BLOCKING_THREADS, m.num_blocking_threads() as i64)?;
        emit_gauge(enc, &RUNTIME_BLOCKING_QUEUE, m.blocking_queue_depth() as i64)?;
    }
    Ok(())
}
