//! Metrics core: one global registry (prefix `pinchpoint`), the [`catalog`] of every family,
//! hot-path metric types ([`Counter`], [`Gauge`], [`Histogram`], [`Integral`]) and the
//! OpenMetrics exposition ([`encode`]).
//!
//! All catalog families are created and registered once, on first use, in [`families`];
//! probes take their series handles from there at construction time. Families whose values
//! are read at scrape time are collectors: the process's own here, the allocator's, tasks'
//! and runtime's added by their probes as a [`Source`] (the core imports none of its users).

pub mod catalog;
mod family;
mod histogram;
mod integral;
mod intern;
mod process;
mod recent;
pub mod red;
mod sources;
mod striped;

use std::sync::OnceLock;

use parking_lot::Mutex;
use prometheus_client::encoding::text;
use prometheus_client::encoding::EncodeMetric;
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::Registry;

pub use family::{Fam, LabelSet};
pub use histogram::{Histogram, Snapshot, BYTE_BOUNDS, COUNT_BOUNDS, DURATION_BOUNDS_NS};
pub use integral::{Entered, Integral};
pub use intern::{intern, intern_cached};
pub(crate) use recent::Recent;
pub use sources::{add_source, Source};
pub use striped::{stripe_count, stripe_index, Counter, Gauge, ReadTimeSum};

use catalog::*;

/// Content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every family the probes and the counter system write to, created and registered once.
#[derive(Debug)]
pub struct Families {
    /// `pinchpoint_lock_acquire_total`: see [`catalog::LOCK_ACQUIRE`].
    pub lock_acquire: Fam<Counter, 2>,
    /// `pinchpoint_lock_contended_total`: see [`catalog::LOCK_CONTENDED`].
    pub lock_contended: Fam<Counter, 2>,
    /// `pinchpoint_lock_wait_seconds`: see [`catalog::LOCK_WAIT`].
    pub lock_wait: Fam<Histogram, 2>,
    /// `pinchpoint_lock_hold_seconds`: see [`catalog::LOCK_HOLD`].
    pub lock_hold: Fam<Histogram, 1>,
    /// `pinchpoint_lock_waiters`: see [`catalog::LOCK_WAITERS`].
    pub lock_waiters: Fam<Gauge, 1>,

    /// `pinchpoint_pool_max_size`: see [`catalog::POOL_MAX_SIZE`].
    pub pool_max_size: Fam<Gauge, 1>,
    /// `pinchpoint_pool_size`: see [`catalog::POOL_SIZE`].
    pub pool_size: Fam<Gauge, 1>,
    /// `pinchpoint_pool_in_use`: see [`catalog::POOL_IN_USE`].
    pub pool_in_use: Fam<Gauge, 1>,
    /// `pinchpoint_pool_waiters`: see [`catalog::POOL_WAITERS`].
    pub pool_waiters: Fam<Gauge, 1>,
    /// `pinchpoint_pool_acquire_total`: see [`catalog::POOL_ACQUIRE`].
    pub pool_acquire: Fam<Counter, 2>,
    /// `pinchpoint_pool_acquire_wait_seconds`: see [`catalog::POOL_ACQUIRE_WAIT`].
    pub pool_acquire_wait: Fam<Histogram, 1>,
    /// `pinchpoint_pool_in_use_seconds_total`: see [`catalog::POOL_IN_USE_SECONDS`].
    pub pool_in_use_seconds: Fam<Integral, 1>,
    /// `pinchpoint_pool_opened_total`: see [`catalog::POOL_OPENED`].
    pub pool_opened: Fam<Counter, 1>,
    /// `pinchpoint_pool_closed_total`: see [`catalog::POOL_CLOSED`].
    pub pool_closed: Fam<Counter, 2>,
    /// `pinchpoint_pool_open_seconds`: see [`catalog::POOL_OPEN`].
    pub pool_open: Fam<Histogram, 1>,

    /// `pinchpoint_workers`: see [`catalog::WORKER_COUNT`].
    pub worker_count: Fam<Gauge, 1>,
    /// `pinchpoint_worker_queue_depth`: see [`catalog::WORKER_QUEUE_DEPTH`].
    pub worker_queue_depth: Fam<Gauge, 1>,
    /// `pinchpoint_worker_queue_capacity`: see [`catalog::WORKER_QUEUE_CAPACITY`].
    pub worker_queue_capacity: Fam<Gauge, 1>,
    /// `pinchpoint_worker_busy_seconds_total`: see [`catalog::WORKER_BUSY`].
    pub worker_busy: Fam<Integral, 1>,
    /// `pinchpoint_worker_queue_wait_seconds`: see [`catalog::WORKER_QUEUE_WAIT`].
    pub worker_queue_wait: Fam<Histogram, 1>,
    /// `pinchpoint_worker_jobs_total`: see [`catalog::WORKER_JOBS`].
    pub worker_jobs: Fam<Counter, 2>,

    /// `pinchpoint_request_alloc_bytes`: see [`catalog::REQUEST_ALLOC`].
    pub request_alloc: Fam<Histogram, 1>,

    /// `pinchpoint_tasks_spawned_total`: see [`catalog::TASKS_SPAWNED`].
    pub tasks_spawned: Fam<Counter, 1>,
    /// `pinchpoint_tasks_finished_total`: see [`catalog::TASKS_FINISHED`].
    pub tasks_finished: Fam<Counter, 1>,

    /// `pinchpoint_http_requests_total`: see [`catalog::HTTP_REQUESTS`].
    pub http_requests: Fam<Counter, 3>,
    /// `pinchpoint_http_request_duration_seconds`: see [`catalog::HTTP_DURATION`].
    pub http_duration: Fam<Histogram, 2>,
    /// `pinchpoint_rpc_client_requests_total`: see [`catalog::RPC_CLIENT_REQUESTS`].
    pub rpc_client_requests: Fam<Counter, 2>,
    /// `pinchpoint_rpc_server_requests_total`: see [`catalog::RPC_SERVER_REQUESTS`].
    pub rpc_server_requests: Fam<Counter, 2>,
    /// `pinchpoint_rpc_client_duration_seconds`: see [`catalog::RPC_CLIENT_DURATION`].
    pub rpc_client_duration: Fam<Histogram, 1>,
    /// `pinchpoint_rpc_server_duration_seconds`: see [`catalog::RPC_SERVER_DURATION`].
    pub rpc_server_duration: Fam<Histogram, 1>,
    /// `pinchpoint_rpc_client_retries_total`: see [`catalog::RPC_CLIENT_RETRIES`].
    pub rpc_client_retries: Fam<Counter, 1>,
    /// `pinchpoint_store_op_duration_seconds`: see [`catalog::STORE_OP`].
    pub store_op: Fam<Histogram, 2>,

    /// `pinchpoint_breaker_state`: see [`catalog::BREAKER_STATE`].
    pub breaker_state: Fam<Gauge, 1>,
    /// `pinchpoint_cache_requests_total`: see [`catalog::CACHE_REQUESTS`].
    pub cache_requests: Fam<Counter, 1>,
    /// `pinchpoint_write_buffer_pending`: see [`catalog::WRITE_BUFFER_PENDING`].
    pub write_buffer_pending: Gauge,
    /// `pinchpoint_write_buffer_flushes_total`: see [`catalog::WRITE_BUFFER_FLUSHES`].
    pub write_buffer_flushes: Counter,
    /// `pinchpoint_write_buffer_batch_size`: see [`catalog::WRITE_BUFFER_BATCH`].
    pub write_buffer_batch: Histogram,
    /// `pinchpoint_ratelimit_decisions_total`: see [`catalog::RATELIMIT_DECISIONS`].
    pub ratelimit_decisions: Fam<Counter, 1>,
    /// `pinchpoint_ratelimit_tracked_keys`: see [`catalog::RATELIMIT_TRACKED_KEYS`].
    pub ratelimit_tracked_keys: Gauge,
    /// `pinchpoint_consumer_received_total`: see [`catalog::CONSUMER_RECEIVED`].
    pub consumer_received: Counter,
    /// `pinchpoint_consumer_messages_total`: see [`catalog::CONSUMER_MESSAGES`].
    pub consumer_messages: Fam<Counter, 1>,
    /// `pinchpoint_consumer_redeliveries_total`: see [`catalog::CONSUMER_REDELIVERIES`].
    pub consumer_redeliveries: Counter,
    /// `pinchpoint_consumer_latency_seconds`: see [`catalog::CONSUMER_LATENCY`].
    pub consumer_latency: Histogram,
    /// `pinchpoint_build_info`: see [`catalog::BUILD_INFO`].
    pub build_info: Fam<Gauge, 1>,
}

struct Global {
    registry: Registry,
    families: Families,
    extra: Mutex<Registry>,
}

fn global() -> &'static Global {
    static G: OnceLock<Global> = OnceLock::new();
    G.get_or_init(|| {
        let mut root = Registry::default();
        root.register_collector(Box::new(process::ProcessCollector));
        let r = root.sub_registry_with_prefix(PREFIX);
        let families = Families::new(r);
        r.register_collector(Box::new(process::SchedulerCollector));
        // The probes' scrape-time families (allocator, tasks, runtime), which they add
        // themselves: see `sources`.
        r.register_collector(Box::new(sources::Sources));
        families.build_info.get([env!("CARGO_PKG_VERSION")]).set(1);
        Global { registry: root, families, extra: Mutex::new(Registry::default()) }
    })
}

/// The global families. The first call creates and registers all of them.
pub fn families() -> &'static Families {
    &global().families
}

/// Registers a caller's own metrics (encoded after pinchpoint's). Names are used as given.
pub fn with_extra_registry<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    f(&mut global().extra.lock())
}

/// OpenMetrics text of every family, ending in `# EOF`.
pub fn encode() -> String {
    let g = global();
    // Written through the histograms' exemplar sink, so bucket lines carry trace-id exemplars.
    histogram::encode_with_exemplars(|out| {
        // Writing to a String cannot fail; collectors that fail skip their part.
        let _ = text::encode_registry(out, &g.registry);
        let _ = text::encode_registry(out, &g.extra.lock());
        let _ = text::encode_eof(out);
    })
}

/// Content type of [`encode_text`]'s output (the classic Prometheus text format).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every family in the classic Prometheus text format (0.0.4), for clients that do not speak
/// OpenMetrics, such as `promtool check metrics`: see [`to_prometheus_text`].
pub fn encode_text() -> String {
    to_prometheus_text(&encode())
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4: counter families are named with their
/// `_total` suffix (as their samples are), `# UNIT` lines and `# EOF` are dropped, `unknown`
/// becomes `untyped`, and exemplars are removed (0.0.4 has none).
pub fn to_prometheus_text(openmetrics: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(openmetrics.len());
    // HELP precedes TYPE in OpenMetrics; hold it until TYPE tells whether the name changes.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, ty) = match ty {
                "counter" if !name.ends_with("_total") => (format!("{name}_total"), ty),
                "unknown" => (name.to_string(), "untyped"),
                _ => (name.to_string(), ty),
            };
            if let Some((_, text)) = help.take() {
                // OpenMetrics also escapes `"` in help; 0.0.4 escapes only `\` and newlines.
                let _ = writeln!(out, "# HELP {name} {}", text.replace("\\\"", "\""));
            }
            let _ = writeln!(out, "# TYPE {name} {ty}");
            continue;
        }
        let sample = line.find(" # {").map_or(line, |i| &line[..i]);
        out.push_str(sample);
        out.push('\n');
    }
    out
}

fn single<M>(spec: &'static Spec, m: M, r: &mut Registry) -> M
where
    M: EncodeMetric + TypedMetric + Clone + Send + Sync + std::fmt::Debug + 'static,
{
    assert!(spec.labels.is_empty(), "{}", spec.name);
    match spec.unit() {
        Some(unit) => r.register_with_unit(spec.base_name(), spec.help, unit, m.clone()),
        None => r.register(spec.base_name(), spec.help, m.clone()),
    }
    m
}

impl Families {
    fn new(r: &mut Registry) -> Self {
        fn dur() -> Histogram {
            Histogram::durations()
        }
        fn bytes() -> Histogram {
            Histogram::bytes()
        }
        let c = Counter::new as fn() -> Counter;
        let g = Gauge::new as fn() -> Gauge;
        let i = Integral::new as fn() -> Integral;
        Self {
            lock_acquire: Fam::new(&LOCK_ACQUIRE, c, r),
            lock_contended: Fam::new(&LOCK_CONTENDED, c, r),
            lock_wait: Fam::new(&LOCK_WAIT, dur, r),
            lock_hold: Fam::new(&LOCK_HOLD, dur, r),
            lock_waiters: Fam::new(&LOCK_WAITERS, g, r),

            pool_max_size: Fam::new(&POOL_MAX_SIZE, g, r),
            pool_size: Fam::new(&POOL_SIZE, g, r),
            pool_in_use: Fam::new(&POOL_IN_USE, g, r),
            pool_waiters: Fam::new(&POOL_WAITERS, g, r),
            pool_acquire: Fam::new(&POOL_ACQUIRE, c, r),
            pool_acquire_wait: Fam::new(&POOL_ACQUIRE_WAIT, dur, r),
            pool_in_use_seconds: Fam::new(&POOL_IN_USE_SECONDS, i, r),
            pool_opened: Fam::new(&POOL_OPENED, c, r),
            pool_closed: Fam::new(&POOL_CLOSED, c, r),
            pool_open: Fam::new(&POOL_OPEN, dur, r),

            worker_count: Fam::new(&WORKER_COUNT, g, r),
            worker_queue_depth: Fam::new(&WORKER_QUEUE_DEPTH, g, r),
            worker_queue_capacity: Fam::new(&WORKER_QUEUE_CAPACITY, g, r),
            worker_busy: Fam::new(&WORKER_BUSY, i, r),
            worker_queue_wait: Fam::new(&WORKER_QUEUE_WAIT, dur, r),
            worker_jobs: Fam::new(&WORKER_JOBS, c, r),

            request_alloc: Fam::new(&REQUEST_ALLOC, bytes, r),

            tasks_spawned: Fam::new(&TASKS_SPAWNED, c, r),
            tasks_finished: Fam::new(&TASKS_FINISHED, c, r),

            http_requests: Fam::new(&HTTP_REQUESTS, c, r),
            http_duration: Fam::new(&HTTP_DURATION, dur, r),
            rpc_client_requests: Fam::new(&RPC_CLIENT_REQUESTS, c, r),
            rpc_server_requests: Fam::new(&RPC_SERVER_REQUESTS, c, r),
            rpc_client_duration: Fam::new(&RPC_CLIENT_DURATION, dur, r),
            rpc_server_duration: Fam::new(&RPC_SERVER_DURATION, dur, r),
            rpc_client_retries: Fam::new(&RPC_CLIENT_RETRIES, c, r),
            store_op: Fam::new(&STORE_OP, dur, r),

            breaker_state: Fam::new(&BREAKER_STATE, g, r),
            cache_requests: Fam::new(&CACHE_REQUESTS, c, r),
            write_buffer_pending: single(&WRITE_BUFFER_PENDING, Gauge::new(), r),
            write_buffer_flushes: single(&WRITE_BUFFER_FLUSHES, Counter::new(), r),
            write_buffer_batch: single(&WRITE_BUFFER_BATCH, Histogram::counts(), r),
            ratelimit_decisions: Fam::new(&RATELIMIT_DECISIONS, c, r),
            ratelimit_tracked_keys: single(&RATELIMIT_TRACKED_KEYS, Gauge::new(), r),
            consumer_received: single(&CONSUMER_RECEIVED, Counter::new(), r),
            consumer_messages: Fam::new(&CONSUMER_MESSAGES, c, r),
            consumer_redeliveries: single(&CONSUMER_REDELIVERIES, Counter::new(), r),
            consumer_latency: single(&CONSUMER_LATENCY, Histogram::durations(), r),
            build_info: Fam::new(&BUILD_INFO, g, r),
        }
    }
}

static SECONDS: prometheus_client::registry::Unit = prometheus_client::registry::Unit::Seconds;
static BYTES: prometheus_client::registry::Unit = prometheus_client::registry::Unit::Bytes;

/// For collectors: writes the HELP/TYPE/UNIT of a catalog family and returns the encoder for
/// its samples.
pub(crate) fn describe<'a>(
    enc: &'a mut prometheus_client::encoding::DescriptorEncoder<'_>,
    spec: &'static Spec,
) -> Result<prometheus_client::encoding::MetricEncoder<'a>, std::fmt::Error> {
    use prometheus_client::metrics::MetricType;
    use prometheus_client::registry::Unit;
    let unit = match spec.unit() {
        Some(Unit::Seconds) => Some(&SECONDS),
        Some(_) => Some(&BYTES),
        None => None,
    };
    let ty = match spec.kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Histogram => MetricType::Histogram,
    };
    enc.encode_descriptor(spec.base_name(), &spec.help_text(), unit, ty)
}

/// For collectors: one unlabeled gauge family.
pub(crate) fn emit_gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    enc: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    spec: &'static Spec,
    v: V,
) -> Result<(), std::fmt::Error> {
    describe(enc, spec)?.encode_gauge(&v)
}

/// For collectors: one unlabeled counter family.
pub(crate) fn emit_counter<V: prometheus_client::encoding::EncodeCounterValue>(
    enc: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    spec: &'static Spec,
    v: V,
) -> Result<(), std::fmt::Error> {
    use prometheus_client::encoding::NoLabelSet;
    describe(enc, spec)?.encode_counter::<NoLabelSet, _, u64>(&v, None)
}
