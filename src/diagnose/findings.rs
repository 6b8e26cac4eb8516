//! The doctor's findings: ids, what each means, how it is scored, and the thresholds they
//! share with the alert rules and dashboards (`dashboards/alerts.yml` is generated from this
//! table, so an alert fires where the doctor's finding reaches warning).
//!
//! Scores run 0–100. Severity follows the JDK Mission Control scale: info at 25, warning at
//! 75. Waiting findings are scored by impact, the share of request time spent waiting on
//! the resource (Little's law: the average number of waiters is the rate of the resource's
//! wait seconds; requests in flight are the rate of request-duration seconds). A share of
//! [`FULL_SCALE_SHARE`] scores 100.

use serde::Serialize;

/// Score at which a finding is reported by default.
pub const INFO: f64 = 25.0;
/// Score at which a finding is a warning (and its alert fires).
pub const WARNING: f64 = 75.0;

/// Share of request time waiting on one resource that scores 100.
pub const FULL_SCALE_SHARE: f64 = 0.5;
/// The share at which a waiting finding reaches info (12.5% of request time).
pub const INFO_SHARE: f64 = FULL_SCALE_SHARE * INFO / 100.0;
/// The share at which a waiting finding reaches warning (37.5% of request time).
pub const WARNING_SHARE: f64 = FULL_SCALE_SHARE * WARNING / 100.0;

/// Without request-duration metrics (a process that serves no requests), waiting findings are
/// scored by the average number of waiters instead: info at a quarter of a waiter ...
pub const WAITERS_INFO: f64 = 0.25;
/// ... and warning at three quarters (the resource has a queue most of the time).
pub const WAITERS_WARNING: f64 = 0.75;

/// Minimum events in a window before any claim about a resource (acquisitions, jobs,
/// requests): fewer is "too few events", not a finding.
pub const MIN_EVENTS: f64 = 50.0;
/// Jobs a worker pool must run in the window before it may be called undersized. Jobs are
/// coarse (a flush of a thousand writes takes 100 ms), and twenty at full utilization with a
/// queue are already a saturated pool.
pub const MIN_JOBS: f64 = 20.0;
/// Jobs a worker pool must run in the window before it may be called oversized or idle.
pub const LOAD_GATE_JOBS: f64 = 100.0;

/// worker-pool-undersized: utilization at or above this, with queue wait at least
/// [`UNDERSIZED_WAIT_PER_SERVICE`] times the mean job time, is a pool that cannot keep up.
pub const UNDERSIZED_UTILIZATION: f64 = 0.8;
/// Mean queue wait / mean job time at which worker-pool-undersized reaches info (1×) ...
pub const UNDERSIZED_WAIT_PER_SERVICE: f64 = 1.0;
/// ... and warning (3× the job time: jobs spend most of their life queued).
pub const UNDERSIZED_WAIT_PER_SERVICE_WARNING: f64 = 3.0;
/// Utilization a recommended pool size aims at.
pub const TARGET_UTILIZATION: f64 = 0.7;

/// worker-pool-oversized: utilization below this ...
pub const OVERSIZED_UTILIZATION: f64 = 0.1;
/// ... with at least this many workers (a pool of 4 idle workers costs nothing worth a finding).
pub const OVERSIZED_MIN_WORKERS: f64 = 16.0;

/// connection-churn: connections opened per acquisition at info (one in eight uses dials) ...
pub const CHURN_OPENS_PER_ACQUIRE_INFO: f64 = 0.125;
/// ... and at warning (three in eight).
pub const CHURN_OPENS_PER_ACQUIRE_WARNING: f64 = 0.375;
/// ... or, without acquisitions, opens per second at info.
pub const CHURN_OPENS_PER_SECOND_INFO: f64 = 10.0;

/// task-leak: tasks a site must gain in the window before growth counts.
pub const LEAK_MIN_GROWTH: f64 = 20.0;
/// task-leak: share of a site's spawns still alive at the end of a slice that scores 100.
pub const LEAK_FULL_SCALE_RETAINED: f64 = 0.5;

/// allocation-churn: bytes allocated per request at info (64 KiB) and warning (1 MiB).
pub const ALLOC_BYTES_PER_REQUEST_INFO: f64 = 64.0 * 1024.0;
/// allocation-churn at warning (see above).
pub const ALLOC_BYTES_PER_REQUEST_WARNING: f64 = 1024.0 * 1024.0;

/// runtime-blocked: share of worker time spent in polls longer than [`SLOW_POLL_SECONDS`]
/// at info and warning, once preemption is subtracted.
pub const SLOW_POLL_SECONDS: f64 = 0.001;
/// runtime-blocked at info (see above).
pub const BLOCKED_SHARE_INFO: f64 = 0.1;
/// runtime-blocked at warning (see above).
pub const BLOCKED_SHARE_WARNING: f64 = 0.3;

/// retry-amplification: retries per RPC attempt at info and warning.
pub const RETRY_SHARE_INFO: f64 = 0.05;
/// retry-amplification at warning (see above).
pub const RETRY_SHARE_WARNING: f64 = 0.2;

/// cpu-saturated: process CPU over the cores it may use, at info and warning.
pub const CPU_SHARE_INFO: f64 = 0.8;
/// cpu-saturated at warning (see above).
pub const CPU_SHARE_WARNING: f64 = 0.95;

/// unbounded-growth: relative growth of heap or a queue over the window at info, when it
/// grew in every slice.
pub const GROWTH_SHARE_INFO: f64 = 0.1;
/// ... and warning at half again per window (it would double within two windows).
pub const GROWTH_SHARE_WARNING: f64 = 0.5;
/// ... and the absolute heap growth below which it is noise.
pub const GROWTH_MIN_HEAP_BYTES: f64 = 16.0 * 1024.0 * 1024.0;

/// noisy-measurement: coefficient of variation (sample standard deviation / mean) of a
/// repeated run at info and warning.
pub const CV_INFO: f64 = 0.1;
/// noisy-measurement at warning (see above).
pub const CV_WARNING: f64 = 0.3;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Checked and below info: shown with `--all`.
    Ok,
    /// Worth a look: a score of at least the info threshold.
    Info,
    /// The pinch: a score of at least the warning threshold.
    Warning,
    /// Data lost: an acknowledged write that the store does not hold.
    Critical,
}

impl Severity {
    /// The severity of a score (0–100); never [`Severity::Critical`], which only the lab assigns.
    pub fn of_score(score: f64) -> Severity {
        if score >= WARNING {
            Severity::Warning
        } else if score >= INFO {
            Severity::Info
        } else {
            Severity::Ok
        }
    }

    /// `ok`, `info`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Maps `value` linearly so that `at_info` scores [`INFO`] and `at_warning` scores
/// [`WARNING`], clamped to 0–100. Every threshold pair above is turned into a score this way,
/// so an alert on `value >= at_warning` fires exactly where the finding becomes a warning.
pub fn score_between(value: f64, at_info: f64, at_warning: f64) -> f64 {
    if !value.is_finite() {
        return 0.0;
    }
    let s = INFO + (value - at_info) * (WARNING - INFO) / (at_warning - at_info);
    s.clamp(0.0, 100.0)
}

/// Like [`score_between`] on a log scale (byte sizes, rates spanning decades).
pub fn score_between_log(value: f64, at_info: f64, at_warning: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 0.0;
    }
    score_between(value.ln(), at_info.ln(), at_warning.ln())
}

/// A finding id with what the doctor, the alerts and the docs say about it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FindingKind {
    /// DESIGN.md id, e.g. `lock-contention`.
    pub id: &'static str,
    /// One line: what it means.
    pub title: &'static str,
    /// The formula and thresholds (`diagnose --explain ID`).
    pub explain: &'static str,
    /// Dashboard uid and panel title that show it.
    pub dashboard: &'static str,
    /// The panel's title.
    pub panel: &'static str,
    /// Flamegraph kind that shows where it happens (`cpu` or `contention`).
    pub flame: &'static str,
    /// Whether it needs a lab run (repeats, acknowledged counts) rather than metrics.
    pub lab_only: bool,
}

impl FindingKind {
    /// The alert name: `Pinchpoint` + the id in CamelCase (`PinchpointLockContention`).
    pub fn alert_name(&self) -> String {
        let mut s = String::from("Pinchpoint");
        for part in self.id.split('-') {
            let mut c = part.chars();
            if let Some(first) = c.next() {
                s.extend(first.to_uppercase());
                s.push_str(c.as_str());
            }
        }
        s
    }
}

macro_rules! kinds {
    ($($id:literal, $title:literal, $dash:literal, $panel:literal, $flame:literal, $lab:literal, $explain:expr;)*) => {
        /// Every finding the doctor can make, in DESIGN.md's order.
        pub const KINDS: &[FindingKind] = &[$(FindingKind {
            id: $id, title: $title, dashboard: $dash, panel: $panel, flame: $flame, lab_only: $lab, explain: $explain,
        }),*];
    };
}

kinds! {
    "pool-saturated", "requests queue for a connection or resource pool", "pinchpoint-pools", "Acquire wait (waiters)", "contention", false,
        "waiters = rate(pool_acquire_wait_seconds_sum); share = waiters / rate(request duration sum). \
         info at 12.5% of request time, warning at 37.5%. Needs 50 acquisitions. \
         Size suggested = ceil((in-use + waiters) / 0.7), in-use = rate(pool_in_use_seconds_total).";
    "connection-churn", "connections are opened and closed per use instead of reused", "pinchpoint-pools", "Connections opened / closed", "cpu", false,
        "opens per acquisition = rate(pool_opened_total) / rate(pool_acquire_total): info at 0.125, warning at 0.375; \
         time dialing = rate(pool_open_seconds_sum) / rate(request duration sum) is the impact shown.";
    "lock-contention", "tasks queue on one lock", "pinchpoint-locks", "Wait rate (waiters)", "contention", false,
        "waiters = rate(lock_wait_seconds_sum); share = waiters / rate(request duration sum): \
         info at 12.5% of request time, warning at 37.5%. Needs 50 contended acquisitions.";
    "worker-pool-undersized", "a worker pool is saturated and jobs wait in its queue", "pinchpoint-pools", "Worker utilization", "cpu", false,
        "utilization = rate(worker_busy_seconds_total) / workers >= 0.8 and mean queue wait / mean job time >= 1 (info), >= 3 (warning). \
         Needs 20 jobs. Workers suggested = ceil(rate(jobs) x job time / 0.7).";
    "worker-pool-oversized", "a worker pool far larger than its load", "pinchpoint-pools", "Worker utilization", "cpu", false,
        "utilization < 0.1 with >= 16 workers, under a load gate of 100 jobs in the window. Scored at info (idle workers cost \
         memory and wakeups, not request time). Workers suggested = ceil(rate(jobs) x job time / 0.7), at least 1.";
    "task-leak", "a spawn site keeps gaining tasks that never end", "pinchpoint-tasks", "Alive by spawn site", "cpu", false,
        "growth = increase(tasks_spawned_total) - increase(tasks_finished_total) per site, >= 20 tasks and > 0 in at least 2 of 3 slices. \
         score from retained = growth / spawned: 0.5 retained scores 100. Age alone is not a leak: \
         accept loops and tickers live as long as the process.";
    "allocation-churn", "requests allocate far more than they need", "pinchpoint-memory", "Allocated per request", "cpu", false,
        "bytes per request = rate(alloc_bytes_total) / rate(requests): info at 64 KiB, warning at 1 MiB (log scale). \
         Needs 50 requests.";
    "runtime-blocked", "a blocking call stalls the async runtime's workers", "pinchpoint-runtime", "Poll time", "cpu", false,
        "blocked = time in polls over 1 ms / (workers x window), estimated from runtime_poll_seconds buckets, \
         minus the time the process's threads waited for a CPU (scheduler_wait_seconds_total: preemption is not blocking). \
         info at 0.1, warning at 0.3. \
         Needs tokio_unstable (poll-time histogram).";
    "retry-amplification", "retries multiply the load on a slow downstream", "pinchpoint-counter", "Retries", "cpu", false,
        "retries per attempt = rate(rpc_client_retries_total) / rate(rpc_client_requests_total): info at 0.05, warning at 0.2. \
         Needs 50 attempts.";
    "breaker-open", "a circuit breaker is open and requests fail fast", "pinchpoint-counter", "Breaker state", "cpu", false,
        "breaker_state == 2 (open) in at least 2 of 3 slices: warning; half-open: info. \
         A symptom of a downstream finding when there is one.";
    "unbounded-growth", "heap or a queue grows in every slice", "pinchpoint-memory", "Live and peak heap", "cpu", false,
        "heap_live_bytes (or a worker queue depth) grew in every slice (at least 3), by >= 10% and >= 16 MiB (heap) over the \
         window: info; 50% per window: warning.";
    "cpu-saturated", "the process uses all the CPU it may use", "pinchpoint-runtime", "CPU", "cpu", false,
        "rate(process_cpu_seconds_total) / cpu_cores: info at 0.8, warning at 0.95.";
    "noisy-measurement", "repeats of one measurement disagree", "pinchpoint-overview", "HTTP requests per second, by route and status", "cpu", true,
        "coefficient of variation of QPS over repeats (sample standard deviation / mean): info at 0.1, warning at 0.3.";
    "inconsistent-counts", "acknowledged writes and the store disagree", "pinchpoint-counter", "Gateway to service RPCs per second, by method and code", "cpu", true,
        "acknowledged increments minus the store's delta: > 0 is data lost (critical); < 0 is increments applied but not \
         acknowledged (timeouts the client could not resolve; a retry with the same request id is safe): info. \
         Received more than sent is stale data from an earlier run.";
}

/// Looks a finding kind up by id.
pub fn kind(id: &str) -> Option<&'static FindingKind> {
    KINDS.iter().find(|k| k.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_names_are_camel_case_ids() {
        assert_eq!(kind("lock-contention").unwrap().alert_name(), "PinchpointLockContention");
        assert_eq!(kind("worker-pool-undersized").unwrap().alert_name(), "PinchpointWorkerPoolUndersized");
    }

    #[test]
    fn scores_cross_info_and_warning_at_the_thresholds() {
        assert!((score_between(INFO_SHARE, INFO_SHARE, WARNING_SHARE) - INFO).abs() < 1e-9);
        assert!((score_between(WARNING_SHARE, INFO_SHARE, WARNING_SHARE) - WARNING).abs() < 1e-9);
        assert_eq!(score_between(10.0, 0.1, 0.2), 100.0);
        assert_eq!(score_between(-1.0, 0.1, 0.2), 0.0);
        let s = score_between_log(
            ALLOC_BYTES_PER_REQUEST_WARNING,
            ALLOC_BYTES_PER_REQUEST_INFO,
            ALLOC_BYTES_PER_REQUEST_WARNING,
        );
        assert!((s - WARNING).abs() < 1e-9);
        assert_eq!(Severity::of_score(24.9), Severity::Ok);
        assert_eq!(Severity::of_score(75.0), Severity::Warning);
    }
}
