//! The headline figures of a scenario's peak level, from metric snapshots taken before and
//! after it: the numbers that move when a bottleneck is switched on. Every scenario gets
//! the same set, so scenarios compare column by column; a figure whose metrics a process
//! does not expose is left out ("not measured"), never guessed.

use std::time::Duration;

use serde::Serialize;

use crate::diagnose::snapshot::{delta, share_above, Snapshot};
use crate::lab::scenario::Scenario;

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Stable id, e.g. `pool_wait_ms`.
    pub id: &'static str,
    pub label: String,
    pub process: String,
    pub value: f64,
    pub unit: &'static str,
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

/// Figures for every process that has the metrics behind them.
pub fn figures(
    before: &[(String, Option<Snapshot>)],
    after: &[(String, Option<Snapshot>)],
    elapsed: Duration,
    _scenario: &Scenario,
) -> Vec<Figure> {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let mut out = Vec::new();
    for ((role, b), (_, a)) in before.iter().zip(after) {
        let (Some(b), Some(a)) = (b, a) else { continue };
        let mut push = |id: &'static str, label: String, value: Option<f64>, unit: &'static str| {
            if let Some(value) = value.filter(|v| v.is_finite()) {
                out.push(Figure { id, label, process: role.clone(), value, unit });
            }
        };
        let d = |name: &str, filter: &[(&str, &str)]| delta(b, a, name, filter);

        for pool in a.label_values("pinchpoint_pool_acquire_total", "pool") {
            let f = [("pool", pool.as_str())];
            let acquires = d("pinchpoint_pool_acquire_total", &f);
            push(
                "pool_wait_ms",
                format!("{pool} pool wait per acquire"),
                ratio(d("pinchpoint_pool_acquire_wait_seconds_sum", &f) * 1e3, acquires),
                "ms",
            );
            push(
                "pool_waited_share",
                format!("{pool} pool acquires that waited"),
                ratio(d("pinchpoint_pool_acquire_total", &[("pool", &pool), ("outcome", "waited")]), acquires),
                "share",
            );
            push(
                "pool_opened_per_s",
                format!("{pool} connections opened"),
                Some(d("pinchpoint_pool_opened_total", &f) / secs),
                "/s",
            );
        }
        for lock in a.label_values("pinchpoint_lock_acquire_total", "lock") {
            let f = [("lock", lock.as_str())];
            push(
                "lock_wait_per_s",
                format!("lock {lock} wait"),
                Some(d("pinchpoint_lock_wait_seconds_sum", &f) / secs),
                "s/s",
            );
            push(
                "lock_contended_share",
                format!("lock {lock} acquisitions contended"),
                ratio(d("pinchpoint_lock_contended_total", &f), d("pinchpoint_lock_acquire_total", &f)),
                "share",
            );
        }
        for pool in a.label_values("pinchpoint_worker_jobs_total", "pool") {
            let f = [("pool", pool.as_str())];
            push(
                "queue_wait_ms",
                format!("worker pool {pool} queue wait"),
                ratio(
                    d("pinchpoint_worker_queue_wait_seconds_sum", &f) * 1e3,
                    d("pinchpoint_worker_queue_wait_seconds_count", &f),
                ),
                "ms",
            );
            push(
                "worker_busy_ratio",
                format!("worker pool {pool} busy"),
                ratio(d("pinchpoint_worker_busy_seconds_total", &f) / secs, a.sum("pinchpoint_workers", &f)),
                "share",
            );
        }
        if a.has("pinchpoint_alloc_bytes_total") {
            push(
                "alloc_mb_per_s",
                "allocation rate".into(),
                Some(d("pinchpoint_alloc_bytes_total", &[]) / secs / 1e6),
                "MB/s",
            );
            push(
                "request_alloc_kib",
                "allocated per request".into(),
                ratio(
                    d("pinchpoint_request_alloc_bytes_sum", &[]) / 1024.0,
                    d("pinchpoint_request_alloc_bytes_count", &[]),
                ),
                "KiB",
            );
        }
        if a.has("pinchpoint_task_leak_suspects") {
            push(
                "leak_suspects",
                "task leak suspects".into(),
                Some(a.sum("pinchpoint_task_leak_suspects", &[])),
                "tasks",
            );
            push("tasks_alive", "tasks alive".into(), Some(a.sum("pinchpoint_tasks_alive", &[])), "tasks");
            // Growth, not level: long-lived server tasks are alive in every process.
            push(
                "tasks_alive_growth",
                "tasks alive, growth over the level".into(),
                Some(a.sum("pinchpoint_tasks_alive", &[]) - b.sum("pinchpoint_tasks_alive", &[])),
                "tasks",
            );
        }
        push(
            "runtime_busy_ratio",
            "runtime workers busy".into(),
            ratio(
                d("pinchpoint_runtime_worker_busy_seconds_total", &[]) / secs,
                a.sum("pinchpoint_runtime_workers", &[]),
            ),
            "share",
        );
        push(
            "slow_poll_share",
            "task polls over 1 ms".into(),
            share_above(b, a, "pinchpoint_runtime_poll_seconds", &[], 0.001),
            "share",
        );
        if a.has("pinchpoint_rpc_client_requests_total") {
            let http = d("pinchpoint_http_requests_total", &[]);
            push(
                "rpc_per_request",
                "RPC attempts per HTTP request".into(),
                ratio(d("pinchpoint_rpc_client_requests_total", &[]), http),
                "x",
            );
            push(
                "retries_per_s",
                "RPC retries".into(),
                Some(d("pinchpoint_rpc_client_retries_total", &[]) / secs),
                "/s",
            );
        }
    }
    out
}

/// Formats a figure's value for a table cell.
pub fn format_value(f: &Figure) -> String {
    match f.unit {
        "share" => format!("{:.1}%", f.value * 100.0),
        "ms" => format!("{:.3} ms", f.value),
        "s/s" => format!("{:.3} s/s", f.value),
        "x" => format!("{:.2}x", f.value),
        unit => format!("{:.1} {unit}", f.value),
    }
}
