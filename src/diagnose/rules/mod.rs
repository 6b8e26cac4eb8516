//! The rules: each reads one process's window and returns findings (or "not measured").
//!
//! No rule knows the lab: they read catalog families and label values only, so they work on
//! any service that embeds the probes.

mod memory;
mod rpc;
mod runtime;
mod tasks;
mod waits;
mod workers;

use super::findings::{INFO, MIN_EVENTS};
use super::verdict::Finding;
use super::window::{ProcessWindow, Slice};

/// Metric names, spelled once for the rules.
pub(crate) mod m {
    pub const HTTP_DURATION_SUM: &str = "pinchpoint_http_request_duration_seconds_sum";
    pub const HTTP_REQUESTS: &str = "pinchpoint_http_requests_total";
    pub const RPC_SERVER_DURATION_SUM: &str = "pinchpoint_rpc_server_duration_seconds_sum";
    pub const RPC_SERVER_REQUESTS: &str = "pinchpoint_rpc_server_requests_total";
    pub const RPC_CLIENT_DURATION: &str = "pinchpoint_rpc_client_duration_seconds";
    pub const RPC_CLIENT_DURATION_SUM: &str = "pinchpoint_rpc_client_duration_seconds_sum";
    pub const RPC_CLIENT_REQUESTS: &str = "pinchpoint_rpc_client_requests_total";
    pub const RPC_CLIENT_RETRIES: &str = "pinchpoint_rpc_client_retries_total";
    pub const LOCK_ACQUIRE: &str = "pinchpoint_lock_acquire_total";
    pub const LOCK_CONTENDED: &str = "pinchpoint_lock_contended_total";
    pub const LOCK_WAIT: &str = "pinchpoint_lock_wait_seconds";
    pub const LOCK_WAIT_SUM: &str = "pinchpoint_lock_wait_seconds_sum";
    pub const LOCK_HOLD: &str = "pinchpoint_lock_hold_seconds";
    pub const POOL_ACQUIRE: &str = "pinchpoint_pool_acquire_total";
    pub const POOL_WAIT: &str = "pinchpoint_pool_acquire_wait_seconds";
    pub const POOL_WAIT_SUM: &str = "pinchpoint_pool_acquire_wait_seconds_sum";
    pub const POOL_IN_USE_SECONDS: &str = "pinchpoint_pool_in_use_seconds_total";
    pub const POOL_MAX: &str = "pinchpoint_pool_max_size";
    pub const POOL_OPENED: &str = "pinchpoint_pool_opened_total";
    pub const POOL_OPEN: &str = "pinchpoint_pool_open_seconds";
    pub const POOL_OPEN_SUM: &str = "pinchpoint_pool_open_seconds_sum";
    pub const WORKERS: &str = "pinchpoint_workers";
    pub const WORKER_JOBS: &str = "pinchpoint_worker_jobs_total";
    pub const WORKER_BUSY: &str = "pinchpoint_worker_busy_seconds_total";
    pub const WORKER_QUEUE_WAIT: &str = "pinchpoint_worker_queue_wait_seconds";
    pub const WORKER_QUEUE_DEPTH: &str = "pinchpoint_worker_queue_depth";
    pub const WORKER_QUEUE_CAPACITY: &str = "pinchpoint_worker_queue_capacity";
    pub const TASKS_SPAWNED: &str = "pinchpoint_tasks_spawned_total";
    pub const TASKS_FINISHED: &str = "pinchpoint_tasks_finished_total";
    pub const TASKS_ALIVE: &str = "pinchpoint_tasks_alive";
    pub const TASK_OLDEST: &str = "pinchpoint_task_oldest_seconds";
    pub const TASK_LEAK_SUSPECTS: &str = "pinchpoint_task_leak_suspects";
    pub const ALLOC_BYTES: &str = "pinchpoint_alloc_bytes_total";
    pub const ALLOC_LARGE: &str = "pinchpoint_alloc_large_total";
    pub const REQUEST_ALLOC: &str = "pinchpoint_request_alloc_bytes";
    pub const HEAP_LIVE: &str = "pinchpoint_heap_live_bytes";
    pub const RUNTIME_WORKERS: &str = "pinchpoint_runtime_workers";
    pub const RUNTIME_BUSY: &str = "pinchpoint_runtime_worker_busy_seconds_total";
    pub const RUNTIME_POLL: &str = "pinchpoint_runtime_poll_seconds";
    pub const BREAKER_STATE: &str = "pinchpoint_breaker_state";
    pub const PROCESS_CPU: &str = "process_cpu_seconds_total";
    pub const CPU_CORES: &str = "pinchpoint_cpu_cores";
    pub const SCHEDULER_WAIT: &str = "pinchpoint_scheduler_wait_seconds_total";
}

/// Every rule over one process.
pub fn evaluate(w: &ProcessWindow) -> Vec<Finding> {
    let Some(whole) = w.whole() else { return vec![] };
    let mut out = Vec::new();
    waits::locks(w, &whole, &mut out);
    waits::pools(w, &whole, &mut out);
    waits::churn(w, &whole, &mut out);
    workers::pools(w, &whole, &mut out);
    tasks::leaks(w, &whole, &mut out);
    memory::churn(w, &whole, &mut out);
    memory::growth(w, &whole, &mut out);
    runtime::blocked(w, &whole, &mut out);
    runtime::cpu(w, &whole, &mut out);
    rpc::retries(w, &whole, &mut out);
    rpc::breaker(w, &whole, &mut out);
    for f in &mut out {
        f.window_seconds = whole.secs;
    }
    out
}

/// Requests in flight on average over a slice (Little's law: the rate of request-duration
/// seconds), and the requests served. None when the process serves no measured requests.
pub(crate) fn in_flight(s: &Slice) -> Option<(f64, f64)> {
    let requests = s.delta(m::HTTP_REQUESTS, &[]) + s.delta(m::RPC_SERVER_REQUESTS, &[]);
    let busy = s.rate(m::HTTP_DURATION_SUM, &[]) + s.rate(m::RPC_SERVER_DURATION_SUM, &[]);
    (requests > 0.0 && busy > 0.0).then_some((busy, requests))
}

/// The share of the window a slice covers, to scale event minimums.
pub(crate) fn part(slice: &Slice, whole: &Slice) -> f64 {
    (slice.secs / whole.secs).clamp(0.0, 1.0)
}

/// Minimum events for a slice that covers `part` of the window.
pub(crate) fn min_events(part: f64) -> f64 {
    MIN_EVENTS * part
}

/// Slices a finding must hold in: two of three, and all of them when there are fewer.
pub(crate) fn required(slices: usize) -> usize {
    if slices >= 3 {
        (2 * slices).div_ceil(3)
    } else {
        slices
    }
}

/// Scores `score_of` on each slice, records how many held at info, and demotes a finding
/// that scored info over the window but did not hold in enough slices.
pub(crate) fn guard(f: &mut Finding, w: &ProcessWindow, whole: &Slice, score_of: impl Fn(&Slice, f64) -> f64) {
    let slices = w.slices();
    f.slices = slices.len();
    f.slices_held = slices.iter().filter(|s| score_of(s, part(s, whole)) >= INFO).count();
    if f.score >= INFO && f.slices_held < required(f.slices) {
        f.note = Some(format!(
            "scored {:.0} over the window but held in only {} of {} slices: a burst, not a steady pinch",
            f.score, f.slices_held, f.slices
        ));
        f.score = f.score.min(INFO - 1.0);
        f.severity = super::findings::Severity::of_score(f.score);
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::time::{Duration, SystemTime};

    use crate::diagnose::snapshot::Snapshot;
    use crate::diagnose::window::ProcessWindow;

    /// A window of snapshots `secs_apart` seconds apart, each built by `text(i)`.
    pub fn window(slices: usize, secs_apart: u64, text: impl Fn(usize) -> String) -> ProcessWindow {
        let snaps = (0..=slices)
            .map(|i| {
                let mut s = Snapshot::parse(&text(i));
                s.taken_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + i as u64 * secs_apart);
                s
            })
            .collect();
        ProcessWindow::new("p", Some("http://127.0.0.1:9464".into()), snaps)
    }

    /// Histogram lines with every observation in one bucket (`le`), cumulative above it.
    pub fn hist(name: &str, labels: &str, le: f64, count: f64, sum: f64) -> String {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut s = String::new();
        for b in [1e-6, 1e-5, 1e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 0.1, 1.0, 10.0] {
            let c = if b >= le { count } else { 0.0 };
            s += &format!("{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}\n");
        }
        s += &format!("{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}\n");
        s += &format!("{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {count}\n");
        s
    }

    /// A server that handled `n` requests with `seconds` of total duration by snapshot `i`.
    pub fn http(requests: f64, seconds: f64) -> String {
        format!(
            "pinchpoint_http_requests_total{{route=\"/r\",method=\"POST\",status=\"200\"}} {requests}\n\
             pinchpoint_http_request_duration_seconds_sum{{route=\"/r\",method=\"POST\"}} {seconds}\n\
             pinchpoint_http_request_duration_seconds_count{{route=\"/r\",method=\"POST\"}} {requests}\n"
        )
    }
}
