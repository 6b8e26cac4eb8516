//! A lock-free, striped histogram.
//!
//! prometheus-client's `Histogram` takes a mutex per observation; a lock probe built on it
//! would add a lock to every contended acquisition. Here an observation is two relaxed
//! `fetch_add`s on the calling thread's stripe (bucket count and integer sum), and a scrape
//! folds the stripes. Values are integers in a raw unit (nanoseconds, bytes, items) and
//! scaled on encode, so the sum needs no CAS loop on an `f64`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
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
}

/// A histogram with a fixed bucket layout. Cloning shares it.
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
        Self { inner: Arc::new(Inner { bounds, per_unit, stripes }) }
    }

    /// Records a value in raw units (nanoseconds for duration histograms).
    #[inline]
    pub fn observe_raw(&self, v: u64) {
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
        encoder.encode_histogram::<NoLabelSet>(
            s.sum,
            s.count,
            &s.buckets,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
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
    fn observe_in_exposed_units() {
        let h = Histogram::bytes();
        h.observe(1_048_576.0);
        let s = h.snapshot();
        assert_eq!(s.buckets[7], (1_048_576.0, 1));
    }
}
