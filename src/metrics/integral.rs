//! A counter that is the integral of a level over time ("busy-seconds", "in-use-seconds").
//!
//! `rate(x_seconds_total)` of such a counter is the average level over the window, so
//! utilization is `rate / capacity` — exact, unlike sampling a gauge at scrape time, which
//! misses every lease shorter than the scrape interval.
//!
//! Each stripe keeps `(level, last_change, accumulated)` under a tiny mutex; a lease enters
//! and leaves on the same stripe (it remembers it), so the stripes never go negative and a
//! scrape sums `accumulated + level × (now − last_change)` over stripes: exact and monotone.
//! Three `AtomicU64`s without a lock cannot be read consistently, and an inconsistent read
//! could jump a counter by the process uptime.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::striped::{stripe_count, stripe_index};

#[derive(Clone, Copy)]
struct State {
    level: u64,
    last: Instant,
    acc_ns: u128,
}

impl State {
    fn advance(&mut self, now: Instant) {
        if now > self.last {
            self.acc_ns += self.level as u128 * (now - self.last).as_nanos();
            self.last = now;
        }
    }
}

/// Integral of a level over time, exposed in seconds as a counter.
#[derive(Clone)]
pub struct Integral {
    stripes: Arc<[CachePadded<Mutex<State>>]>,
}

/// Proof that the level was raised; give it back to [`Integral::leave`].
#[derive(Debug)]
#[must_use]
pub struct Entered {
    stripe: usize,
}

impl Default for Integral {
    fn default() -> Self {
        let now = Instant::now();
        let stripes = (0..stripe_count())
            .map(|_| CachePadded::new(Mutex::new(State { level: 0, last: now, acc_ns: 0 })))
            .collect();
        Self { stripes }
    }
}

impl Integral {
    /// An integral at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the level by one from now on.
    pub fn enter(&self) -> Entered {
        // The uninstrumented twin (`--cfg pinchpoint_bare`) records nothing.
        if cfg!(pinchpoint_bare) {
            return Entered { stripe: 0 };
        }
        let stripe = stripe_index();
        let mut s = self.stripes[stripe].lock();
        s.advance(Instant::now());
        s.level += 1;
        Entered { stripe }
    }

    /// Lowers the level raised by `e`.
    pub fn leave(&self, e: Entered) {
        if cfg!(pinchpoint_bare) {
            return;
        }
        let mut s = self.stripes[e.stripe].lock();
        s.advance(Instant::now());
        s.level = s.level.saturating_sub(1);
    }

    /// The current level (sum over stripes).
    pub fn level(&self) -> u64 {
        self.stripes.iter().map(|s| s.lock().level).sum()
    }

    /// The integral so far, in seconds, including the intervals still open.
    pub fn seconds(&self) -> f64 {
        let now = Instant::now();
        let ns: u128 = self
            .stripes
            .iter()
            .map(|s| {
                let mut s = s.lock();
                s.advance(now);
                s.acc_ns
            })
            .sum();
        ns as f64 * 1e-9
    }
}

impl std::fmt::Debug for Integral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Integral").field(&self.seconds()).finish()
    }
}

impl TypedMetric for Integral {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Integral {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, f64>(&self.seconds(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_while_entered_and_stops_after() {
        let i = Integral::new();
        assert_eq!(i.seconds(), 0.0);
        let e = i.enter();
        let a = i.seconds();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = i.seconds();
        assert!(b > a && b >= 0.004, "{a} {b}");
        i.leave(e);
        let c = i.seconds();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert_eq!(i.seconds(), c);
        assert_eq!(i.level(), 0);
    }
}
