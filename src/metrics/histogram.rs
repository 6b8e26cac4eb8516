//! A lock-free, striped histogram.
//!
//! prometheus-client's `Histogram` takes a mutex per observation; a lock probe built on it
//! would add a lock to every contended acquisition. Here an observation is two relaxed
//! `fetch_add`s on the calling thread's stripe (bucket count and integer sum), and a scrape
//! folds the stripes. Values are integers in a raw unit (nanoseconds, bytes, items) and
//! scaled on encode, so the sum needs no CAS loop on an `f64`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{fence, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::catalog::Buckets;
use super::striped::{raw_stripe, stripe_count};

/// Upper bounds (inclusive, raw units) of the duration layout: 1µs…10s in 1-2.5-5 steps,
/// in nanoseconds.
pub const DURATION_BOUNDS_NS: [u64; 22] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Byte layout: 64 B…1 GiB in powers of 4.
pub const BYTE_BOUNDS: [u64; 13] = [
    64,
    256,
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
    64 << 20,
    256 << 20,
    1 << 30,
];

/// Count layout: 1…10,000 in 1-2.5-5 steps (batch sizes).
pub const COUNT_BOUNDS: [u64; 13] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];

const MAX_BUCKETS: usize = 23; // 22 duration bounds + the +Inf bucket

struct Stripe {
    buckets: [AtomicU64; MAX_BUCKETS],
    sum: AtomicU64,
}

struct Inner {
    bounds: &'static [u64],
    /// Raw units per exposed unit (1e9 for nanoseconds → seconds); dividing keeps bounds
    /// such as 1e-6 exact in the exposition.
    per_unit: f64,
    stripes: Box<[CachePadded<Stripe>]>,
    /// Latest exemplar per bucket, allocated on the first traced observation.
    exemplars: OnceLock<Box<[ExemplarSlot; MAX_BUCKETS]>>,
}

/// A histogram with a fixed bucket layout. Cloning shares it.
///
/// ```
/// use std::time::Duration;
/// use pinchpoint::metrics::{self, Histogram};
///
/// let latency = Histogram::durations();
/// metrics::with_extra_registry(|r| r.register("docs_latency_seconds", "Job latency", latency.clone()));
/// latency.observe_duration(Duration::from_millis(3));
/// latency.observe_duration(Duration::from_millis(40));
/// assert_eq!(latency.count(), 2);
/// let snapshot = latency.snapshot();
/// assert!((snapshot.sum - 0.043).abs() < 1e-9);
/// assert!(metrics::encode().contains("docs_latency_seconds_count 2"));
/// ```
#[derive(Clone)]
pub struct Histogram {
    inner: Arc<Inner>,
}

/// A folded view of a histogram.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Observations.
    pub count: u64,
    /// Sum in exposed units (seconds, bytes, items).
    pub sum: f64,
    /// `(upper bound in exposed units, non-cumulative count)`; the last bound is `+Inf`.
    pub buckets: Vec<(f64, u64)>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::durations()
    }
}

impl Histogram {
    /// The one duration layout (seconds).
    pub fn durations() -> Self {
        Self::new(&DURATION_BOUNDS_NS, 1e9)
    }

    /// Byte sizes.
    pub fn bytes() -> Self {
        Self::new(&BYTE_BOUNDS, 1.0)
    }

    /// Item counts.
    pub fn counts() -> Self {
        Self::new(&COUNT_BOUNDS, 1.0)
    }

    /// The layout a catalog family asks for.
    pub fn for_layout(b: Buckets) -> Self {
        match b {
            Buckets::Bytes => Self::bytes(),
            Buckets::Count => Self::counts(),
            Buckets::Duration | Buckets::None => Self::durations(),
        }
    }

    fn new(bounds: &'static [u64], per_unit: f64) -> Self {
        assert!(bounds.len() < MAX_BUCKETS);
        let stripes = (0..stripe_count())
            .map(|_| {
                CachePadded::new(Stripe { buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum: AtomicU64::new(0) })
            })
            .collect();
        Self { inner: Arc::new(Inner { bounds, per_unit, stripes, exemplars: OnceLock::new() }) }
    }

    /// Records a value in raw units (nanoseconds for duration histograms).
    #[inline]
    pub fn observe_raw(&self, v: u64) {
        // The uninstrumented twin (`--cfg pinchpoint_bare`) records nothing.
        if cfg!(pinchpoint_bare) {
            return;
        }
        let inner = &*self.inner;
        // `le` semantics: v goes to the first bucket whose bound is >= v.
        let idx = inner.bounds.partition_point(|&b| b < v);
        let stripe = &inner.stripes[raw_stripe() & (inner.stripes.len() - 1)];
        stripe.buckets[idx].fetch_add(1, Relaxed);
        stripe.sum.fetch_add(v, Relaxed);
    }

    /// Records a duration (duration layout).
    #[inline]
    pub fn observe_duration(&self, d: Duration) {
        self.observe_raw(d.as_nanos().min(u64::MAX as u128) as u64);
    }

    /// Records a value in exposed units (seconds for durations).
    pub fn observe(&self, v: f64) {
        let raw = (v * self.inner.per_unit).max(0.0);
        self.observe_raw(if raw >= u64::MAX as f64 { u64::MAX } else { raw as u64 });
    }

    /// Records a value in raw units and keeps `trace_id` as its bucket's exemplar (the
    /// latest one wins). Lock-free: the exemplar slot is a seqlock a writer skips when
    /// another writer holds it.
    #[inline]
    pub fn observe_raw_traced(&self, v: u64, trace_id: u128) {
        if cfg!(pinchpoint_bare) {
            return;
        }
        self.observe_raw(v);
        let inner = &*self.inner;
        let idx = inner.bounds.partition_point(|&b| b < v);
        let slots = inner.exemplars.get_or_init(|| Box::new(std::array::from_fn(|_| ExemplarSlot::default())));
        slots[idx].store(trace_id, v);
    }

    /// Records a duration with the trace id of the request it timed, when there is one.
    #[inline]
    pub fn observe_duration_traced(&self, d: Duration, trace_id: Option<u128>) {
        let v = d.as_nanos().min(u64::MAX as u128) as u64;
        match trace_id {
            Some(t) => self.observe_raw_traced(v, t),
            None => self.observe_raw(v),
        }
    }

    /// The latest exemplar of each bucket that has one: `(bucket index, exemplar)`.
    pub fn exemplars(&self) -> Vec<(usize, ExemplarSnapshot)> {
        let inner = &*self.inner;
        let Some(slots) = inner.exemplars.get() else { return Vec::new() };
        slots
            .iter()
            .enumerate()
            .take(inner.bounds.len() + 1)
            .filter_map(|(i, slot)| {
                let (trace_id, raw, at_ns) = slot.load()?;
                Some((i, ExemplarSnapshot { trace_id, value: raw as f64 / inner.per_unit, unix_nanos: at_ns }))
            })
            .collect()
    }

    /// Folds the stripes.
    pub fn snapshot(&self) -> Snapshot {
        let inner = &*self.inner;
        let n = inner.bounds.len() + 1;
        let mut counts = vec![0u64; n];
        let mut sum = 0u64;
        for s in inner.stripes.iter() {
            for (c, b) in counts.iter_mut().zip(s.buckets.iter()) {
                *c += b.load(Relaxed);
            }
            sum = sum.wrapping_add(s.sum.load(Relaxed));
        }
        let buckets = counts
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                let bound = inner.bounds.get(i).map_or(f64::INFINITY, |&b| b as f64 / inner.per_unit);
                (bound, c)
            })
            .collect();
        Snapshot { count: counts.iter().sum(), sum: sum as f64 / inner.per_unit, buckets }
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.snapshot().count
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.snapshot();
        f.debug_struct("Histogram").field("count", &s.count).field("sum", &s.sum).finish()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let s = self.snapshot();
        let start = sink_len();
        encoder.encode_histogram::<NoLabelSet>(
            s.sum,
            s.count,
            &s.buckets,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )?;
        if let Some(start) = start {
            let exemplars = self.exemplars();
            if !exemplars.is_empty() {
                sink_add_exemplars(start, &exemplars);
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// One bucket's latest exemplar, as read at scrape time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExemplarSnapshot {
    /// W3C trace id (128 bits).
    pub trace_id: u128,
    /// The observed value, in exposed units.
    pub value: f64,
    /// When it was observed (nanoseconds since the Unix epoch).
    pub unix_nanos: u64,
}

impl ExemplarSnapshot {
    /// OpenMetrics exemplar text: ` # {trace_id="..."} VALUE TIMESTAMP`.
    pub fn openmetrics(&self) -> String {
        let secs = self.unix_nanos / 1_000_000_000;
        let millis = (self.unix_nanos % 1_000_000_000) / 1_000_000;
        format!(" # {{trace_id=\"{:032x}\"}} {} {secs}.{millis:03}", self.trace_id, self.value)
    }
}

/// A seqlock over one exemplar: `seq` odd while a writer fills it, 0 until first written.
/// Writers never wait (a writer finding it busy drops its exemplar); readers retry a few
/// times and give up rather than spin.
#[derive(Default)]
struct ExemplarSlot {
    seq: AtomicU64,
    trace_hi: AtomicU64,
    trace_lo: AtomicU64,
    raw: AtomicU64,
    at_ns: AtomicU64,
}

impl ExemplarSlot {
    fn store(&self, trace_id: u128, raw: u64) {
        let seq = self.seq.load(Relaxed);
        if seq & 1 == 1 || self.seq.compare_exchange(seq, seq + 1, Acquire, Relaxed).is_err() {
            return;
        }
        fence(Release);
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        self.trace_hi.store((trace_id >> 64) as u64, Relaxed);
        self.trace_lo.store(trace_id as u64, Relaxed);
        self.raw.store(raw, Relaxed);
        self.at_ns.store(at, Relaxed);
        self.seq.store(seq + 2, Release);
    }

    fn load(&self) -> Option<(u128, u64, u64)> {
        for _ in 0..8 {
            let s1 = self.seq.load(Acquire);
            if s1 == 0 {
                return None;
            }
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let hi = self.trace_hi.load(Relaxed);
            let lo = self.trace_lo.load(Relaxed);
            let raw = self.raw.load(Relaxed);
            let at = self.at_ns.load(Relaxed);
            fence(Acquire);
            if self.seq.load(Relaxed) == s1 {
                return Some((((hi as u128) << 64) | lo as u128, raw, at));
            }
        }
        None
    }
}

// prometheus-client has no public way to build an `Exemplar` from our own storage, so the
// exposition is written through a thread-local sink: a histogram that has exemplars appends
// them to the bucket lines it has just written (`_sum`, `_count`, then one `_bucket` line per
// bucket, in order).
thread_local! {
    static SINK: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A `fmt::Write` into the thread's exposition sink (see [`encode_with_exemplars`]).
pub struct SinkWriter(());

impl std::fmt::Write for SinkWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        SINK.with(|sink| match sink.borrow_mut().as_mut() {
            Some(buf) => {
                buf.push_str(s);
                Ok(())
            }
            None => Err(std::fmt::Error),
        })
    }
}

/// Runs `f` writing into a fresh sink and returns the text, with the exemplars of every
/// [`Histogram`] encoded in it.
pub fn encode_with_exemplars(f: impl FnOnce(&mut SinkWriter)) -> String {
    let previous = SINK.with(|s| s.borrow_mut().replace(String::with_capacity(64 * 1024)));
    f(&mut SinkWriter(()));
    SINK.with(|s| {
        let mut s = s.borrow_mut();
        let out = s.take().unwrap_or_default();
        *s = previous;
        out
    })
}

fn sink_len() -> Option<usize> {
    SINK.try_with(|s| s.borrow().as_ref().map(String::len)).ok().flatten()
}

fn sink_add_exemplars(start: usize, exemplars: &[(usize, ExemplarSnapshot)]) {
    let _ = SINK.try_with(|s| {
        let mut s = s.borrow_mut();
        let Some(buf) = s.as_mut() else { return };
        if start > buf.len() {
            return;
        }
        let tail = buf.split_off(start);
        for (n, line) in tail.split_inclusive('\n').enumerate() {
            // Lines 0 and 1 are `_sum` and `_count`; bucket i is line 2 + i.
            let bucket = n.checked_sub(2);
            match bucket.and_then(|b| exemplars.iter().find(|(i, _)| *i == b)) {
                Some((_, e)) if line.ends_with('\n') && line.contains("_bucket{") => {
                    buf.push_str(&line[..line.len() - 1]);
                    buf.push_str(&e.openmetrics());
                    buf.push('\n');
                }
                _ => buf.push_str(line),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_use_le_semantics() {
        let h = Histogram::durations();
        h.observe_duration(Duration::from_micros(1)); // exactly on the first bound
        h.observe_duration(Duration::from_micros(2)); // (1µs, 2.5µs]
        h.observe_duration(Duration::from_secs(60)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0].1, 1);
        assert_eq!(s.buckets[1].1, 1);
        assert_eq!(s.buckets.last().unwrap(), &(f64::INFINITY, 1));
        assert!((s.sum - 60.000003).abs() < 1e-9);
        assert!((s.buckets[1].0 - 2.5e-6).abs() < 1e-15);
    }

    #[test]
    fn exemplars_ride_on_bucket_lines() {
        let h = Histogram::durations();
        h.observe_duration(Duration::from_micros(3));
        h.observe_duration_traced(Duration::from_millis(2), Some(0x4bf92f3577b34da6a3ce929d0e0e4736));
        let ex = h.exemplars();
        assert_eq!(ex.len(), 1);
        assert_eq!(ex[0].0, 10); // (1ms, 2.5ms]
        assert!((ex[0].1.value - 0.002).abs() < 1e-12);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("lat", "help", h.clone());
        let text = encode_with_exemplars(|w| {
            prometheus_client::encoding::text::encode(w, &registry).unwrap();
        });
        let line = text.lines().find(|l| l.starts_with("lat_bucket{le=\"0.0025\"}")).unwrap();
        assert!(
            line.starts_with("lat_bucket{le=\"0.0025\"} 2 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 0.002 "),
            "{line}"
        );
        assert_eq!(text.matches("trace_id").count(), 1, "{text}");
        // Without the sink the exposition is unchanged.
        let mut plain = String::new();
        prometheus_client::encoding::text::encode(&mut plain, &registry).unwrap();
        assert!(!plain.contains("trace_id"));
    }

    #[test]
    fn observe_in_exposed_units() {
        let h = Histogram::bytes();
        h.observe(1_048_576.0);
        let s = h.snapshot();
        assert_eq!(s.buckets[7], (1_048_576.0, 1));
    }
}
