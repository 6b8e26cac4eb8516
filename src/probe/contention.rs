//! A bounded, sampled record of contended acquisitions, for contention flamegraphs.
//!
//! Each resource (`lock:store.global`, `pool:rpc`, `worker:flush`) has a [`Sampler`]. A
//! contended acquisition is always counted; at most one per resource per [`window`] (1 ms by
//! default) is kept as a [`ContentionSample`] with the waiter's unresolved backtrace and, for
//! exclusive locks, the holder's acquire site. A sample carries the number of contended
//! acquisitions and the total wait it stands for since the resource's previous sample, so a
//! wait-weighted flamegraph built from samples adds up to the true totals.
//!
//! Everything here runs on the slow path only (after a wait), and the ring holds at most
//! [`CAPACITY`] samples: bounded memory whatever the load.

use std::collections::VecDeque;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::clock_ns;

/// Samples kept; older ones are dropped first.
pub const CAPACITY: usize = 2048;

static WINDOW_NS: AtomicU64 = AtomicU64::new(1_000_000);
static BACKTRACES: AtomicBool = AtomicBool::new(true);
static RING: Mutex<VecDeque<ContentionSample>> = Mutex::new(VecDeque::new());

/// The sampling window: at most one sample per resource per window.
pub fn window() -> Duration {
    Duration::from_nanos(WINDOW_NS.load(Relaxed))
}

/// Changes the sampling window (zero keeps every contended acquisition).
pub fn set_window(w: Duration) {
    WINDOW_NS.store(w.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
}

/// Turns waiter backtraces on or off (they cost tens of µs each, once per window).
pub fn set_backtraces(on: bool) {
    BACKTRACES.store(on, Relaxed);
}

/// One sampled contended acquisition.
#[derive(Clone, Debug)]
pub struct ContentionSample {
    /// `kind:name`, e.g. `lock:store.global`, `pool:rpc`, `worker:flush`.
    pub resource: Arc<str>,
    /// This acquisition's wait.
    pub wait: Duration,
    /// When the wait ended.
    pub at: Instant,
    /// Contended acquisitions this sample stands for (itself plus unsampled ones since the
    /// resource's previous sample): scale factor for counts.
    pub events: u64,
    /// Total wait this sample stands for: the weight of a wait-weighted flamegraph.
    pub weight: Duration,
    /// The waiter's stack, unresolved (see [`ContentionSample::frames`]).
    pub waiter: Option<backtrace::Backtrace>,
    /// Where the holder acquired the resource (exclusive locks), when known.
    pub holder_site: Option<&'static Location<'static>>,
}

impl ContentionSample {
    /// The waiter's stack as function names, innermost first, with the probe's own frames
    /// (and the backtrace crate's) removed. Resolving symbols is slow: do it off-line.
    pub fn frames(&self) -> Vec<String> {
        let Some(bt) = &self.waiter else {
            return Vec::new();
        };
        let mut bt = bt.clone();
        bt.resolve();
        let names: Vec<String> = bt
            .frames()
            .iter()
            .flat_map(|f| f.symbols())
            .map(|s| s.name().map(|n| format!("{n:#}")).unwrap_or_else(|| "??".to_string()))
            .collect();
        // Drop everything up to and including the last frame inside the sampler/probe.
        let cut = names
            .iter()
            .rposition(|n| n.starts_with("backtrace::") || n.contains("probe::contention::") || n.contains("_slow"))
            .map_or(0, |i| i + 1);
        names[cut..].to_vec()
    }
}

/// Per-resource sampling state. Create one per resource name and keep it.
#[derive(Debug)]
pub struct Sampler {
    resource: Arc<str>,
    last_ns: AtomicU64,
    pending_events: AtomicU64,
    pending_wait_ns: AtomicU64,
}

impl Sampler {
    /// `resource` is `kind:name`.
    pub fn new(resource: impl Into<Arc<str>>) -> Self {
        Self {
            resource: resource.into(),
            last_ns: AtomicU64::new(0),
            pending_events: AtomicU64::new(0),
            pending_wait_ns: AtomicU64::new(0),
        }
    }

    /// The sampled resource, `kind:name`.
    pub fn resource(&self) -> &Arc<str> {
        &self.resource
    }

    /// Records a contended acquisition that waited `wait`. Call on the slow path only.
    #[inline(never)]
    pub fn record(&self, wait: Duration, holder_site: Option<&'static Location<'static>>) {
        let wait_ns = wait.as_nanos().min(u64::MAX as u128) as u64;
        let now = clock_ns();
        let last = self.last_ns.load(Relaxed);
        let due = now.saturating_sub(last) >= WINDOW_NS.load(Relaxed) || last == 0;
        if !due || self.last_ns.compare_exchange(last, now.max(1), Relaxed, Relaxed).is_err() {
            self.pending_events.fetch_add(1, Relaxed);
            self.pending_wait_ns.fetch_add(wait_ns, Relaxed);
            return;
        }
        let events = self.pending_events.swap(0, Relaxed) + 1;
        let weight = self.pending_wait_ns.swap(0, Relaxed) + wait_ns;
        let waiter = BACKTRACES.load(Relaxed).then(backtrace::Backtrace::new_unresolved);
        let sample = ContentionSample {
            resource: self.resource.clone(),
            wait,
            at: Instant::now(),
            events,
            weight: Duration::from_nanos(weight),
            waiter,
            holder_site,
        };
        let mut ring = RING.lock();
        if ring.len() == CAPACITY {
            ring.pop_front();
        }
        ring.push_back(sample);
    }
}

/// Samples taken at or after `since`, oldest first (the ring keeps them).
pub fn samples_since(since: Instant) -> Vec<ContentionSample> {
    RING.lock().iter().filter(|s| s.at >= since).cloned().collect()
}

/// Takes every sample out of the ring, oldest first.
pub fn drain() -> Vec<ContentionSample> {
    RING.lock().drain(..).collect()
}
