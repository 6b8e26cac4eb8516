//! Striped counter and plain gauge: the hot-path metric types.
//!
//! A counter that every thread bumps through one `AtomicU64` turns the metric into the
//! contention it is meant to measure: the cache line ping-pongs between cores. Here each
//! counter has one cache-padded stripe per (rounded-up) CPU; a thread always adds to "its"
//! stripe (picked once per thread, round-robin) and a scrape sums the stripes.

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Number of stripes: available parallelism rounded up to a power of two, at most 64.
pub fn stripe_count() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        cpus.next_power_of_two().clamp(2, 64)
    })
}

thread_local! {
    // `usize::MAX` = not yet assigned. Const-initialised and without a destructor, so reading
    // it never allocates (the counting allocator relies on that too).
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe, in `0..stripe_count()`.
#[inline]
pub fn stripe_index() -> usize {
    raw_stripe() & (stripe_count() - 1)
}

/// This thread's stripe number before masking (mask with a power-of-two stripe count).
#[inline]
pub(crate) fn raw_stripe() -> usize {
    STRIPE
        .try_with(|s| {
            let v = s.get();
            if v != usize::MAX {
                return v;
            }
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let v = NEXT.fetch_add(1, Relaxed);
            s.set(v);
            v
        })
        .unwrap_or(0)
}

/// A part of a counter's value kept outside its stripes and added at read time (see
/// [`Counter::attach`]): e.g. per-instance lock acquisition counts that the lock itself
/// protects, so the hot path needs no read-modify-write on shared memory.
pub trait ReadTimeSum: Send + Sync {
    /// The current raw value of this part; must never decrease.
    fn sum(&self) -> u64;
}

/// A monotonically increasing counter split into per-CPU stripes.
///
/// Cloning shares the counter. `scale` turns the raw integer into the exposed value: `1.0`
/// for counts, `1e-9` for durations stored in nanoseconds (exposed in seconds).
///
/// A service's own counter, exposed next to pinchpoint's families:
///
/// ```
/// use pinchpoint::metrics::{self, Counter};
///
/// let jobs = Counter::new();
/// metrics::with_extra_registry(|r| r.register("docs_jobs", "Jobs done", jobs.clone()));
/// jobs.inc();
/// jobs.inc_by(2);
/// assert_eq!(jobs.get(), 3);
/// assert!(metrics::encode().contains("docs_jobs_total 3"));
/// ```
#[derive(Clone)]
pub struct Counter {
    // One indirection to the stripes; the length is a power of two.
    stripes: Arc<[CachePadded<AtomicU64>]>,
    // Parts summed at read time only; never touched by `inc`.
    attached: Arc<Mutex<Vec<Arc<dyn ReadTimeSum>>>>,
    scale: f64,
}

impl Default for Counter {
    fn default() -> Self {
        Self::with_scale(1.0)
    }
}

impl Counter {
    /// A counter of events.
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter of seconds, fed with [`Counter::add_duration`] (nanosecond resolution).
    pub fn seconds() -> Self {
        Self::with_scale(1e-9)
    }

    fn with_scale(scale: f64) -> Self {
        let stripes = (0..stripe_count()).map(|_| CachePadded::new(AtomicU64::new(0))).collect();
        Self { stripes, attached: Arc::default(), scale }
    }

    /// Adds `part` to this counter's value from now on (read time only; cold).
    pub fn attach(&self, part: Arc<dyn ReadTimeSum>) {
        self.attached.lock().push(part);
    }

    #[inline]
    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    #[inline]
    /// Adds `v`.
    pub fn inc_by(&self, v: u64) {
        // The uninstrumented twin (`--cfg pinchpoint_bare`) records nothing.
        if cfg!(pinchpoint_bare) {
            return;
        }
        // Safe indexing is fine: stripe_index() < stripe_count() == len.
        let i = raw_stripe() & (self.stripes.len() - 1);
        self.stripes[i].fetch_add(v, Relaxed);
    }

    /// Adds a duration (for counters made with [`Counter::seconds`]).
    #[inline]
    pub fn add_duration(&self, d: Duration) {
        self.inc_by(d.as_nanos().min(u64::MAX as u128) as u64);
    }

    /// The raw sum (events, or nanoseconds for a seconds counter).
    pub fn get(&self) -> u64 {
        let striped = self.stripes.iter().fold(0u64, |a, s| a.wrapping_add(s.load(Relaxed)));
        self.attached.lock().iter().fold(striped, |a, p| a.wrapping_add(p.sum()))
    }

    /// The exposed value (events, or seconds).
    pub fn value(&self) -> f64 {
        self.get() as f64 * self.scale
    }

    fn is_integer(&self) -> bool {
        self.scale == 1.0
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Counter").field(&self.value()).finish()
    }
}

impl TypedMetric for Counter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Counter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        if self.is_integer() {
            encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
        } else {
            encoder.encode_counter::<NoLabelSet, _, f64>(&self.value(), None)
        }
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A gauge: one atomic. Gauges move on state changes (a waiter arrives, a lease ends) that
/// already touch shared state of the same resource, so striping would buy nothing.
#[derive(Clone, Default)]
pub struct Gauge {
    value: Arc<AtomicI64>,
}

impl Gauge {
    /// A gauge at zero.
    pub fn new() -> Self {
        Self::default()
    }
    #[inline]
    /// Adds one.
    pub fn inc(&self) {
        self.value.fetch_add(1, Relaxed);
    }
    #[inline]
    /// Subtracts one.
    pub fn dec(&self) {
        self.value.fetch_sub(1, Relaxed);
    }
    #[inline]
    /// Adds `v` (negative to subtract).
    pub fn add(&self, v: i64) {
        self.value.fetch_add(v, Relaxed);
    }
    #[inline]
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.value.store(v, Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.value.load(Relaxed)
    }
}

impl std::fmt::Debug for Gauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Gauge").field(&self.get()).finish()
    }
}

impl TypedMetric for Gauge {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for Gauge {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_sums_stripes_across_threads() {
        let c = Counter::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                let c = c.clone();
                s.spawn(move || {
                    for _ in 0..1000 {
                        c.inc();
                    }
                });
            }
        });
        assert_eq!(c.get(), 4000);
        struct Fixed(u64);
        impl ReadTimeSum for Fixed {
            fn sum(&self) -> u64 {
                self.0
            }
        }
        c.clone().attach(Arc::new(Fixed(5)));
        c.attach(Arc::new(Fixed(2)));
        assert_eq!(c.get(), 4007);
        let d = Counter::seconds();
        d.add_duration(Duration::from_millis(1500));
        assert!((d.value() - 1.5).abs() < 1e-9);
    }
}
