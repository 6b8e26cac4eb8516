//! `runtime_poll_seconds`: how long each task poll took, in slots each worker thread owns.
//!
//! The runtime hooks observe every poll of every task, so this histogram is the hottest the
//! probes have. A shared (striped) histogram costs two locked read-modify-writes per poll, on
//! lines other threads write too when threads outnumber stripes. Here a thread claims a slot
//! of its own on its first poll and updates it with plain loads and stores, as the counting
//! allocator does; a scrape folds the slots. Threads past [`SLOTS`] share atomic counters.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::{MetricType, TypedMetric};

use crate::metrics::DURATION_BOUNDS_NS;

/// Threads with a slot of their own (runtime workers and blocking threads that poll).
const SLOTS: usize = 256;
const BUCKETS: usize = DURATION_BOUNDS_NS.len() + 1;

#[repr(align(64))]
struct Slot {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Slot {
    const fn new() -> Self {
        Slot { buckets: [const { AtomicU64::new(0) }; BUCKETS], sum_ns: AtomicU64::new(0) }
    }
}

static OWNED: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
static SHARED: Slot = Slot::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

const UNSET: usize = usize::MAX;

thread_local! {
    /// This thread's index in [`OWNED`], [`SLOTS`] when it shares, [`UNSET`] before its first poll.
    static MINE: Cell<usize> = const { Cell::new(UNSET) };
}

/// Records one poll of `ns` nanoseconds.
#[cfg_attr(not(tokio_unstable), allow(dead_code))]
#[inline]
pub(super) fn observe(ns: u64) {
    let i = DURATION_BOUNDS_NS.partition_point(|&b| b < ns);
    let mine = MINE.try_with(Cell::get).unwrap_or(SLOTS);
    match OWNED.get(mine) {
        Some(slot) => {
            // Only the owner writes its slot: a relaxed load and store is exact.
            let b = &slot.buckets[i];
            b.store(b.load(Relaxed) + 1, Relaxed);
            slot.sum_ns.store(slot.sum_ns.load(Relaxed).wrapping_add(ns), Relaxed);
        }
        None => observe_slow(mine, i, ns),
    }
}

#[cfg_attr(not(tokio_unstable), allow(dead_code))]
#[cold]
#[inline(never)]
fn observe_slow(mine: usize, i: usize, ns: u64) {
    if mine == UNSET {
        let claimed = NEXT.fetch_add(1, Relaxed).min(SLOTS);
        let _ = MINE.try_with(|m| m.set(claimed));
        if claimed < SLOTS {
            return observe(ns);
        }
    }
    SHARED.buckets[i].fetch_add(1, Relaxed);
    SHARED.sum_ns.fetch_add(ns, Relaxed);
}

/// The folded histogram, as the exposition wants it.
pub(super) struct PollTimes;

impl PollTimes {
    /// `(count, sum in seconds, per-bucket (upper bound in seconds, count))`.
    fn fold() -> (u64, f64, Vec<(f64, u64)>) {
        let used = NEXT.load(Relaxed).min(SLOTS);
        let mut counts = [0u64; BUCKETS];
        let mut sum = 0u64;
        for slot in OWNED[..used].iter().chain(std::iter::once(&SHARED)) {
            for (c, b) in counts.iter_mut().zip(&slot.buckets) {
                *c += b.load(Relaxed);
            }
            sum = sum.wrapping_add(slot.sum_ns.load(Relaxed));
        }
        let buckets = counts
            .iter()
            .enumerate()
            .map(|(i, &c)| (DURATION_BOUNDS_NS.get(i).map_or(f64::INFINITY, |&b| b as f64 / 1e9), c))
            .collect();
        (counts.iter().sum(), sum as f64 / 1e9, buckets)
    }
}

impl TypedMetric for PollTimes {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for PollTimes {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (count, sum, buckets) = Self::fold();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_on_many_threads_all_count() {
        let (before, before_sum, _) = PollTimes::fold();
        // More threads than one slot each would need on a small machine, all at once.
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        observe(2_000); // (1µs, 2.5µs]
                    }
                    observe(3_000_000_000); // (2.5s, 5s]
                });
            }
        });
        let (count, sum, buckets) = PollTimes::fold();
        assert_eq!(count - before, 8 * 1001);
        assert!((sum - before_sum - 8.0 * (1000.0 * 2e-6 + 3.0)).abs() < 1e-6);
        let at = |bound: f64| buckets.iter().find(|(b, _)| (b - bound).abs() < 1e-12).unwrap().1;
        assert!(at(2.5e-6) >= 8000);
        assert!(at(5.0) >= 8);
    }
}
