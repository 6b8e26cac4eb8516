//! The metric catalog: the one place that holds every family's name, type, labels, unit and
//! help text (DESIGN.md "Metric catalog"). Probes, dashboards, alerts and the doctor refer to
//! these names; nothing else in the crate spells a metric name.
//!
//! `name` is the family name as it appears in the exposition *without* the `pinchpoint_`
//! prefix, including the `_total` suffix for counters and the unit suffix (`_seconds`,
//! `_bytes`). Families named `process_*` are the Prometheus-standard process metrics and are
//! exposed without the prefix.

use prometheus_client::registry::Unit;

/// Prefix of every pinchpoint family (except the standard `process_*` ones).
pub const PREFIX: &str = "pinchpoint";

/// Labels past this many distinct values per label fold into [`OTHER`].
pub const LABEL_CAP: usize = 200;

/// The label value that absorbs values past [`LABEL_CAP`].
pub const OTHER: &str = "other";

/// Rate at which lock hold times are sampled: one acquisition in this many (per instance for
/// `Mutex`, per thread for `RwLock` writers and async locks). Two clock reads cost ~47 ns here;
/// at one in 64 they were half of the probe's cost on an uncontended lock.
pub const HOLD_SAMPLE_EVERY: u32 = 256;

/// OpenMetrics type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (`_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

/// Bucket layout of a histogram family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buckets {
    /// 1µs…10s in 1-2.5-5 steps (the one duration layout).
    Duration,
    /// 64 B…1 GiB in powers of 4.
    Bytes,
    /// 1…10,000 in 1-2.5-5 steps (batch sizes).
    Count,
    /// Not a histogram.
    None,
}

/// One family of the catalog.
#[derive(Debug)]
pub struct Spec {
    /// The family's name without the `pinchpoint_` prefix (see the module docs).
    pub name: &'static str,
    /// Its OpenMetrics type.
    pub kind: Kind,
    /// Its label names, in order.
    pub labels: &'static [&'static str],
    /// Its bucket layout ([`Buckets::None`] unless a histogram).
    pub buckets: Buckets,
    /// Its help text.
    pub help: &'static str,
}

impl Spec {
    /// The unit, inferred from the name's suffix (base units only).
    pub fn unit(&self) -> Option<Unit> {
        let n = self.name.strip_suffix("_total").unwrap_or(self.name);
        if n.ends_with("_seconds") {
            Some(Unit::Seconds)
        } else if n.ends_with("_bytes") {
            Some(Unit::Bytes)
        } else {
            None
        }
    }

    /// The name to register with prometheus-client, which appends the unit and, for
    /// counters, `_total` itself.
    pub fn base_name(&self) -> &'static str {
        let n = self.name.strip_suffix("_total").unwrap_or(self.name);
        n.strip_suffix("_seconds").or_else(|| n.strip_suffix("_bytes")).unwrap_or(n)
    }

    /// Whether the family carries the `pinchpoint_` prefix.
    pub fn prefixed(&self) -> bool {
        !self.name.starts_with("process_")
    }

    /// The full name of the family's samples as scraped (counters include `_total`).
    pub fn exposed_name(&self) -> String {
        if self.prefixed() {
            format!("{PREFIX}_{}", self.name)
        } else {
            self.name.to_string()
        }
    }

    /// Help text as written to the exposition (prometheus-client adds the full stop for
    /// registered metrics; collectors use this).
    pub fn help_text(&self) -> String {
        format!("{}.", self.help)
    }
}

macro_rules! spec {
    ($id:ident, $name:literal, $kind:ident, [$($l:literal),*], $buckets:ident, $help:literal) => {
        #[doc = concat!("`", $name, "`: ", $help, ".")]
        pub static $id: Spec = Spec {
            name: $name,
            kind: Kind::$kind,
            labels: &[$($l),*],
            buckets: Buckets::$buckets,
            help: $help,
        };
    };
}

// ---- locks -------------------------------------------------------------------------------
spec!(
    LOCK_ACQUIRE,
    "lock_acquire_total",
    Counter,
    ["lock", "mode"],
    None,
    "Lock acquisitions by lock name and mode (exclusive/shared); rate() is the lock's traffic"
);
spec!(
    LOCK_CONTENDED,
    "lock_contended_total",
    Counter,
    ["lock", "mode"],
    None,
    "Acquisitions that found the lock taken and had to wait; divide by lock_acquire_total for the contention ratio"
);
spec!(
    LOCK_WAIT,
    "lock_wait_seconds",
    Histogram,
    ["lock", "mode"],
    Duration,
    "Wait of each acquisition that blocked; rate(_sum) is the average number of threads/tasks blocked on the lock. Uncontended acquisitions and those won within a short spin (well under 1us) are not timed"
);
spec!(LOCK_HOLD, "lock_hold_seconds", Histogram, ["lock"], Duration,
    "Exclusive hold time, sampled: one acquisition in 256 is timed (per lock instance for a Mutex, per thread for RwLock writers and async locks), so _count is about 1/256 of acquisitions while quantiles are unbiased");
spec!(
    LOCK_WAITERS,
    "lock_waiters",
    Gauge,
    ["lock"],
    None,
    "Threads or tasks waiting for the lock right now; a steady non-zero value is a convoy"
);

// ---- pools -------------------------------------------------------------------------------
spec!(POOL_MAX_SIZE, "pool_max_size", Gauge, ["pool"], None, "Configured capacity of the pool (connections, permits)");
spec!(POOL_SIZE, "pool_size", Gauge, ["pool"], None, "Resources currently open in the pool, idle or in use");
spec!(
    POOL_IN_USE,
    "pool_in_use",
    Gauge,
    ["pool"],
    None,
    "Resources leased out right now; equal to pool_max_size means saturated"
);
spec!(
    POOL_WAITERS,
    "pool_waiters",
    Gauge,
    ["pool"],
    None,
    "Callers waiting for a resource right now; non-zero means demand exceeds the pool"
);
spec!(
    POOL_ACQUIRE,
    "pool_acquire_total",
    Counter,
    ["pool", "outcome"],
    None,
    "Acquisitions by outcome: immediate, waited (queued first), timeout (gave up or cancelled), error"
);
spec!(
    POOL_ACQUIRE_WAIT,
    "pool_acquire_wait_seconds",
    Histogram,
    ["pool"],
    Duration,
    "Time from asking the pool to holding a resource, for successful acquisitions"
);
spec!(
    POOL_IN_USE_SECONDS,
    "pool_in_use_seconds_total",
    Counter,
    ["pool"],
    None,
    "Integral of in-use resources over time; rate() divided by pool_max_size is utilization (1 = always full)"
);
spec!(
    POOL_OPENED,
    "pool_opened_total",
    Counter,
    ["pool"],
    None,
    "Resources (connections) established; a rate close to the request rate means no reuse (churn)"
);
spec!(
    POOL_CLOSED,
    "pool_closed_total",
    Counter,
    ["pool", "reason"],
    None,
    "Resources closed, by reason (idle, error, per-request, shutdown, ...)"
);
spec!(
    POOL_OPEN,
    "pool_open_seconds",
    Histogram,
    ["pool"],
    Duration,
    "Time to establish one resource (dial + handshake)"
);

// ---- worker pools ------------------------------------------------------------------------
spec!(
    WORKER_COUNT,
    "workers",
    Gauge,
    ["pool"],
    None,
    "Workers in the worker pool (DESIGN.md: worker_count, renamed because promtool reserves _count for histograms)"
);
spec!(
    WORKER_QUEUE_DEPTH,
    "worker_queue_depth",
    Gauge,
    ["pool"],
    None,
    "Jobs queued and not yet picked by a worker; near worker_queue_capacity means submissions will be rejected"
);
spec!(WORKER_QUEUE_CAPACITY, "worker_queue_capacity", Gauge, ["pool"], None, "Bound of the worker pool's queue");
spec!(
    WORKER_BUSY,
    "worker_busy_seconds_total",
    Counter,
    ["pool"],
    None,
    "Integral of busy workers over time; rate() divided by workers is utilization (1 = undersized)"
);
spec!(
    WORKER_QUEUE_WAIT,
    "worker_queue_wait_seconds",
    Histogram,
    ["pool"],
    Duration,
    "Time a job waited in the queue before a worker picked it"
);
spec!(
    WORKER_JOBS,
    "worker_jobs_total",
    Counter,
    ["pool", "outcome"],
    None,
    "Jobs by outcome: done, rejected (queue full or closed), panicked"
);

// ---- allocation --------------------------------------------------------------------------
spec!(
    ALLOC,
    "alloc_total",
    Counter,
    [],
    None,
    "Heap allocations (reallocations count once); absent when the counting allocator is not installed"
);
spec!(ALLOC_BYTES, "alloc_bytes_total", Counter, [], None, "Bytes allocated; rate() is allocation churn");
spec!(ALLOC_LARGE, "alloc_large_total", Counter, [], None, "Allocations of at least 1 MiB");
spec!(FREE, "free_total", Counter, [], None, "Heap deallocations (reallocations count once)");
spec!(FREE_BYTES, "free_bytes_total", Counter, [], None, "Bytes freed");
spec!(HEAP_LIVE, "heap_live_bytes", Gauge, [], None, "Bytes allocated and not yet freed");
spec!(
    HEAP_PEAK,
    "heap_peak_bytes",
    Gauge,
    [],
    None,
    "Highest heap_live_bytes seen; approximate: updated at each scrape and on large allocations"
);
spec!(
    REQUEST_ALLOC,
    "request_alloc_bytes",
    Histogram,
    ["route"],
    Bytes,
    "Bytes allocated while polling one request's future, by route"
);

// ---- tasks -------------------------------------------------------------------------------
spec!(TASKS_SPAWNED, "tasks_spawned_total", Counter, ["task"], None, "Tasks spawned, by name or spawn site");
spec!(
    TASKS_FINISHED,
    "tasks_finished_total",
    Counter,
    ["task"],
    None,
    "Tasks finished or aborted; spawned minus finished growing without bound is a leak"
);
spec!(TASKS_ALIVE, "tasks_alive", Gauge, ["task"], None, "Tasks alive right now, by name or spawn site");
spec!(
    TASK_LEAK_SUSPECTS,
    "task_leak_suspects",
    Gauge,
    ["task"],
    None,
    "Tasks of a spawn site whose population keeps growing (three rising counts, half the leak threshold apart) that \
     are older than the leak threshold (default 60s) and not polled within it; accept loops, tickers and signal \
     waiters are old but not growing, so a healthy process reads 0"
);
spec!(
    TASK_OLDEST,
    "task_oldest_seconds",
    Gauge,
    ["task"],
    None,
    "Age of the oldest live task of this name or spawn site"
);

// ---- runtime -----------------------------------------------------------------------------
spec!(RUNTIME_WORKERS, "runtime_workers", Gauge, [], None, "Worker threads of the tokio runtime");
spec!(
    RUNTIME_ALIVE_TASKS,
    "runtime_alive_tasks",
    Gauge,
    [],
    None,
    "Tasks alive in the tokio runtime (all spawns, tracked or not)"
);
spec!(
    RUNTIME_GLOBAL_QUEUE,
    "runtime_global_queue_depth",
    Gauge,
    [],
    None,
    "Tasks in the runtime's global (injection) queue; growing means workers cannot keep up"
);
spec!(
    RUNTIME_WORKER_BUSY,
    "runtime_worker_busy_seconds_total",
    Counter,
    ["worker"],
    None,
    "Time each worker spent polling tasks; rate() near 1 for all workers means CPU-bound or blocked"
);
spec!(
    RUNTIME_WORKER_PARK,
    "runtime_worker_park_total",
    Counter,
    ["worker"],
    None,
    "Times each worker parked (went idle)"
);
spec!(
    RUNTIME_POLL,
    "runtime_poll_seconds",
    Histogram,
    [],
    Duration,
    "Duration of each task poll; polls over 1ms block the worker (blocking call in async code)"
);
spec!(
    RUNTIME_BLOCKING_THREADS,
    "runtime_blocking_threads",
    Gauge,
    [],
    None,
    "Threads in the blocking pool (spawn_blocking)"
);
spec!(
    RUNTIME_BLOCKING_QUEUE,
    "runtime_blocking_queue_depth",
    Gauge,
    [],
    None,
    "Blocking tasks waiting for a blocking-pool thread"
);

// ---- RED ---------------------------------------------------------------------------------
spec!(
    HTTP_REQUESTS,
    "http_requests_total",
    Counter,
    ["route", "method", "status"],
    None,
    "HTTP requests served, by route template, method and status"
);
spec!(
    HTTP_DURATION,
    "http_request_duration_seconds",
    Histogram,
    ["route", "method"],
    Duration,
    "HTTP request latency from first byte to response"
);
spec!(
    RPC_CLIENT_REQUESTS,
    "rpc_client_requests_total",
    Counter,
    ["method", "code"],
    None,
    "gRPC calls made, by method and status code (ok, unavailable, deadline_exceeded, ...)"
);
spec!(
    RPC_SERVER_REQUESTS,
    "rpc_server_requests_total",
    Counter,
    ["method", "code"],
    None,
    "gRPC calls served, by method and status code"
);
spec!(
    RPC_CLIENT_DURATION,
    "rpc_client_duration_seconds",
    Histogram,
    ["method"],
    Duration,
    "gRPC call latency seen by the client, including pool wait and retries"
);
spec!(
    RPC_SERVER_DURATION,
    "rpc_server_duration_seconds",
    Histogram,
    ["method"],
    Duration,
    "gRPC call latency inside the server"
);
spec!(
    RPC_CLIENT_RETRIES,
    "rpc_client_retries_total",
    Counter,
    ["method"],
    None,
    "gRPC retries; divided by rpc_client_requests_total it is the retry amplification"
);
spec!(
    STORE_OP,
    "store_op_duration_seconds",
    Histogram,
    ["backend", "op"],
    Duration,
    "Store operation latency by backend (memory, redis) and op (increment, batch, get)"
);

// ---- counter-system components -----------------------------------------------------------
spec!(
    BREAKER_STATE,
    "breaker_state",
    Gauge,
    ["target"],
    None,
    "Circuit breaker state per target: 0 closed, 1 half-open, 2 open"
);
spec!(CACHE_REQUESTS, "cache_requests_total", Counter, ["outcome"], None, "Cache lookups by outcome (hit, miss)");
spec!(WRITE_BUFFER_PENDING, "write_buffer_pending", Gauge, [], None, "Increments buffered and not yet flushed");
spec!(WRITE_BUFFER_FLUSHES, "write_buffer_flushes_total", Counter, [], None, "Write-buffer flushes");
spec!(WRITE_BUFFER_BATCH, "write_buffer_batch_size", Histogram, [], Count, "Increments per write-buffer flush");
spec!(
    RATELIMIT_DECISIONS,
    "ratelimit_decisions_total",
    Counter,
    ["outcome"],
    None,
    "Rate limiter decisions by outcome (allowed, limited)"
);
spec!(
    RATELIMIT_TRACKED_KEYS,
    "ratelimit_tracked_keys",
    Gauge,
    [],
    None,
    "Keys the rate limiter tracks; growing without bound is a leak"
);
// ---- message consumers (src/consumer/) ---------------------------------------------------
spec!(
    CONSUMER_RECEIVED,
    "consumer_received_total",
    Counter,
    [],
    None,
    "Messages the consumer took from its broker, redeliveries included; more than were published in a run means \
     the stream held messages from an earlier run"
);
spec!(
    CONSUMER_MESSAGES,
    "consumer_messages_total",
    Counter,
    ["outcome"],
    None,
    "Messages whose handling ended, by outcome (acked, failed: the handler or the ack returned an error)"
);
spec!(
    CONSUMER_REDELIVERIES,
    "consumer_redeliveries_total",
    Counter,
    [],
    None,
    "Messages the broker delivered more than once (ack not received within its ack wait, or a negative ack)"
);
spec!(
    CONSUMER_LATENCY,
    "consumer_latency_seconds",
    Histogram,
    [],
    Duration,
    "End to end: from the publisher's timestamp (message header) to the ack after the handler finished"
);
spec!(BUILD_INFO, "build_info", Gauge, ["version"], None, "Always 1; the version label names the pinchpoint build");

// ---- standard process metrics (no prefix) ------------------------------------------------
spec!(
    PROCESS_CPU,
    "process_cpu_seconds_total",
    Counter,
    [],
    None,
    "User and system CPU time of the process; rate() is cores in use"
);
spec!(PROCESS_RSS, "process_resident_memory_bytes", Gauge, [], None, "Resident memory of the process");
spec!(PROCESS_FDS, "process_open_fds", Gauge, [], None, "Open file descriptors of the process");
spec!(PROCESS_THREADS, "process_threads", Gauge, [], None, "OS threads of the process");
spec!(PROCESS_START, "process_start_time_seconds", Gauge, [], None, "Start time of the process since the Unix epoch");
spec!(
    CONTEXT_SWITCHES,
    "context_switches_total",
    Counter,
    ["kind"],
    None,
    "Context switches of all the process's threads (getrusage), kind = voluntary (blocked or parked) or involuntary \
     (preempted); a high involuntary rate means more runnable threads than cores, which makes polls long without any \
     blocking call"
);
spec!(
    SCHEDULER_WAIT,
    "scheduler_wait_seconds_total",
    Counter,
    [],
    None,
    "Time the process's threads were runnable but waiting for a CPU (run-queue delay from /proc schedstat); \
     rate() is threads waiting on average: polls are long because they were preempted, not because they block"
);
spec!(
    CPU_CORES,
    "cpu_cores",
    Gauge,
    [],
    None,
    "Cores the process may run on (its CPU affinity); rate(process_cpu_seconds_total) / this is CPU saturation"
);

/// Every family, in exposition order.
pub static ALL: &[&Spec] = &[
    &LOCK_ACQUIRE,
    &LOCK_CONTENDED,
    &LOCK_WAIT,
    &LOCK_HOLD,
    &LOCK_WAITERS,
    &POOL_MAX_SIZE,
    &POOL_SIZE,
    &POOL_IN_USE,
    &POOL_WAITERS,
    &POOL_ACQUIRE,
    &POOL_ACQUIRE_WAIT,
    &POOL_IN_USE_SECONDS,
    &POOL_OPENED,
    &POOL_CLOSED,
    &POOL_OPEN,
    &WORKER_COUNT,
    &WORKER_QUEUE_DEPTH,
    &WORKER_QUEUE_CAPACITY,
    &WORKER_BUSY,
    &WORKER_QUEUE_WAIT,
    &WORKER_JOBS,
    &ALLOC,
    &ALLOC_BYTES,
    &ALLOC_LARGE,
    &FREE,
    &FREE_BYTES,
    &HEAP_LIVE,
    &HEAP_PEAK,
    &REQUEST_ALLOC,
    &TASKS_SPAWNED,
    &TASKS_FINISHED,
    &TASKS_ALIVE,
    &TASK_LEAK_SUSPECTS,
    &TASK_OLDEST,
    &RUNTIME_WORKERS,
    &RUNTIME_ALIVE_TASKS,
    &RUNTIME_GLOBAL_QUEUE,
    &RUNTIME_WORKER_BUSY,
    &RUNTIME_WORKER_PARK,
    &RUNTIME_POLL,
    &RUNTIME_BLOCKING_THREADS,
    &RUNTIME_BLOCKING_QUEUE,
    &HTTP_REQUESTS,
    &HTTP_DURATION,
    &RPC_CLIENT_REQUESTS,
    &RPC_SERVER_REQUESTS,
    &RPC_CLIENT_DURATION,
    &RPC_SERVER_DURATION,
    &RPC_CLIENT_RETRIES,
    &STORE_OP,
    &BREAKER_STATE,
    &CACHE_REQUESTS,
    &WRITE_BUFFER_PENDING,
    &WRITE_BUFFER_FLUSHES,
    &WRITE_BUFFER_BATCH,
    &RATELIMIT_DECISIONS,
    &RATELIMIT_TRACKED_KEYS,
    &CONSUMER_RECEIVED,
    &CONSUMER_MESSAGES,
    &CONSUMER_REDELIVERIES,
    &CONSUMER_LATENCY,
    &BUILD_INFO,
    &PROCESS_CPU,
    &PROCESS_RSS,
    &PROCESS_FDS,
    &PROCESS_THREADS,
    &PROCESS_START,
    &CONTEXT_SWITCHES,
    &SCHEDULER_WAIT,
    &CPU_CORES,
];

/// Looks a family up by its catalog name (without prefix), e.g. `"lock_wait_seconds"`.
pub fn find(name: &str) -> Option<&'static Spec> {
    ALL.iter().copied().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_conventions() {
        let mut seen = std::collections::HashSet::new();
        for s in ALL {
            assert!(seen.insert(s.name), "duplicate {}", s.name);
            assert!(!s.help.is_empty() && !s.help.ends_with('.'), "{}", s.name);
            assert_eq!(s.kind == Kind::Counter, s.name.ends_with("_total"), "{}", s.name);
            assert_eq!(s.kind == Kind::Histogram, s.buckets != Buckets::None, "{}", s.name);
        }
        assert_eq!(LOCK_WAIT.base_name(), "lock_wait");
        assert!(matches!(LOCK_WAIT.unit(), Some(Unit::Seconds)));
        assert_eq!(POOL_IN_USE_SECONDS.base_name(), "pool_in_use");
        assert!(matches!(POOL_IN_USE_SECONDS.unit(), Some(Unit::Seconds)));
        assert_eq!(HEAP_LIVE.base_name(), "heap_live");
        assert_eq!(POOL_ACQUIRE.base_name(), "pool_acquire");
        assert!(POOL_ACQUIRE.unit().is_none());
    }
}
