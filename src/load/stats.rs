//! Per-worker statistics (HDR histograms, outcome counts, acknowledged deltas) and their merge.
//!
//! Every worker owns one [`WorkerStats`]; nothing on the hot path is shared between workers.
//! The driver merges them once, after the run.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds.
const UNIT_PER_SEC: f64 = 1_000_000.0;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// An HTTP response with this status code.
    Status(u16),
    /// No complete response within the per-request timeout.
    Timeout,
    /// The TCP connection could not be opened.
    Connect,
    /// The connection failed while the request was in flight.
    Io,
}

impl Outcome {
    pub(crate) fn is_success(self) -> bool {
        matches!(self, Outcome::Status(s) if (200..300).contains(&s))
    }
}

/// What one worker saw. Merged into a [`super::LoadReport`] after the run.
pub(crate) struct WorkerStats {
    /// Latency of every request that got a response: from the moment it was due (open loop:
    /// the intended send time) to the end of the response body.
    pub(crate) latency: Histogram<u64>,
    /// Open loop only: latency from the actual send (what an uncorrected driver reports).
    pub(crate) service: Option<Histogram<u64>>,
    pub(crate) requests: u64,
    pub(crate) ok: u64,
    pub(crate) by_status: HashMap<u16, u64>,
    pub(crate) timeouts: u64,
    pub(crate) connect_errors: u64,
    pub(crate) io_errors: u64,
    pub(crate) connections_opened: u64,
    /// Key index -> sum of deltas acknowledged with 200.
    pub(crate) acked: HashMap<u32, i64>,
    /// Number of increment operations acknowledged with 200.
    pub(crate) acked_ops: u64,
    /// Requests still in flight when the stop grace ran out (not counted in `requests`).
    pub(crate) abandoned: u64,
}

fn new_histogram() -> Histogram<u64> {
    // Auto-resizing: memory grows with the largest value recorded, not with a fixed range.
    Histogram::new(3).expect("3 significant figures is valid")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

impl WorkerStats {
    pub(crate) fn new(open_loop: bool) -> Self {
        WorkerStats {
            latency: new_histogram(),
            service: open_loop.then(new_histogram),
            requests: 0,
            ok: 0,
            by_status: HashMap::new(),
            timeouts: 0,
            connect_errors: 0,
            io_errors: 0,
            connections_opened: 0,
            acked: HashMap::new(),
            acked_ops: 0,
            abandoned: 0,
        }
    }

    /// Records one finished request. `latency` counts from when the request was due; `service`
    /// (open loop) from when it was actually sent.
    pub(crate) fn record(&mut self, outcome: Outcome, latency: Duration, service: Duration) {
        self.requests += 1;
        match outcome {
            Outcome::Status(s) => {
                // Saturating: values past the histogram's range cannot occur with auto-resize.
                let _ = self.latency.record(micros(latency));
                if let Some(h) = self.service.as_mut() {
                    let _ = h.record(micros(service));
                }
                if outcome.is_success() {
                    self.ok += 1;
                } else {
                    *self.by_status.entry(s).or_insert(0) += 1;
                }
            }
            Outcome::Timeout => self.timeouts += 1,
            Outcome::Connect => self.connect_errors += 1,
            Outcome::Io => self.io_errors += 1,
        }
    }

    pub(crate) fn ack(&mut self, key: u32, delta: i64) {
        *self.acked.entry(key).or_insert(0) += delta;
        self.acked_ops += 1;
    }
}

/// Latency percentiles, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of requests the summary covers (those that got an HTTP response).
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencySummary {
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let q = |q: f64| h.value_at_quantile(q) as f64 / UNIT_PER_SEC;
        LatencySummary {
            count: h.len(),
            mean: h.mean() / UNIT_PER_SEC,
            p50: q(0.50),
            p90: q(0.90),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max() as f64 / UNIT_PER_SEC,
        }
    }
}

/// All workers' figures added together.
pub(crate) struct Merged {
    pub(crate) latency: Histogram<u64>,
    pub(crate) service: Option<Histogram<u64>>,
    pub(crate) requests: u64,
    pub(crate) ok: u64,
    pub(crate) errors_by_status: BTreeMap<String, u64>,
    pub(crate) connections_opened: u64,
    pub(crate) acked: HashMap<u32, i64>,
    pub(crate) acked_ops: u64,
    pub(crate) abandoned: u64,
}

pub(crate) fn merge(workers: Vec<WorkerStats>, open_loop: bool) -> Merged {
    let mut m = Merged {
        latency: new_histogram(),
        service: open_loop.then(new_histogram),
        requests: 0,
        ok: 0,
        errors_by_status: BTreeMap::new(),
        connections_opened: 0,
        acked: HashMap::new(),
        acked_ops: 0,
        abandoned: 0,
    };
    let mut timeouts = 0;
    let mut connect = 0;
    let mut io = 0;
    for w in workers {
        m.latency.add(&w.latency).expect("auto-resizing histograms always add");
        if let (Some(into), Some(from)) = (m.service.as_mut(), w.service.as_ref()) {
            into.add(from).expect("auto-resizing histograms always add");
        }
        m.requests += w.requests;
        m.ok += w.ok;
        for (status, n) in w.by_status {
            *m.errors_by_status.entry(status.to_string()).or_insert(0) += n;
        }
        timeouts += w.timeouts;
        connect += w.connect_errors;
        io += w.io_errors;
        m.connections_opened += w.connections_opened;
        for (k, d) in w.acked {
            *m.acked.entry(k).or_insert(0) += d;
        }
        m.acked_ops += w.acked_ops;
        m.abandoned += w.abandoned;
    }
    for (name, n) in [("timeout", timeouts), ("connect", connect), ("io", io)] {
        if n > 0 {
            m.errors_by_status.insert(name.to_string(), n);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_counts_histograms_and_acks() {
        let mut a = WorkerStats::new(false);
        let mut b = WorkerStats::new(false);
        for _ in 0..90 {
            a.record(Outcome::Status(200), Duration::from_millis(10), Duration::ZERO);
        }
        for _ in 0..9 {
            b.record(Outcome::Status(500), Duration::from_millis(20), Duration::ZERO);
        }
        b.record(Outcome::Timeout, Duration::from_secs(1), Duration::ZERO);
        a.ack(1, 5);
        b.ack(1, -2);
        b.ack(2, 3);
        let m = merge(vec![a, b], false);
        assert_eq!(m.requests, 100);
        assert_eq!(m.ok, 90);
        assert_eq!(m.errors_by_status.get("500"), Some(&9));
        assert_eq!(m.errors_by_status.get("timeout"), Some(&1));
        assert_eq!(m.errors_by_status.len(), 2);
        assert_eq!(m.acked[&1], 3);
        assert_eq!(m.acked[&2], 3);
        assert_eq!(m.acked_ops, 3);
        let s = LatencySummary::from_histogram(&m.latency);
        assert_eq!(s.count, 99);
        assert!((s.p50 - 0.010).abs() < 0.0001, "{s:?}");
        assert!((s.max - 0.020).abs() < 0.0001, "{s:?}");
        assert!(s.mean > 0.010 && s.mean < 0.012, "{s:?}");
    }

    #[test]
    fn empty_summary_is_zero() {
        let s = LatencySummary::from_histogram(&new_histogram());
        assert_eq!(s, LatencySummary::default());
    }

    #[test]
    fn success_is_2xx() {
        assert!(Outcome::Status(200).is_success());
        assert!(Outcome::Status(202).is_success());
        assert!(!Outcome::Status(409).is_success());
        assert!(!Outcome::Timeout.is_success());
    }
}
