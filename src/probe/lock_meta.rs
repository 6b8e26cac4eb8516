//! Per-name lock statistics shared by every lock instance with that name (64 shards named
//! `store.shard` share one set of series), plus the registry the `/debug/locks` view reads.

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use super::contention::Sampler;
use crate::metrics::catalog::HOLD_SAMPLE_EVERY;
use crate::metrics::{families, Counter, Gauge, Histogram};

/// Acquisition mode, the `mode` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Exclusive,
    Shared,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        }
    }
}

#[derive(Debug)]
pub(crate) struct ModeStats {
    pub acquire: Counter,
    pub contended: Counter,
    pub wait_total: Counter,
    pub wait: Histogram,
}

impl ModeStats {
    fn new(name: &str, mode: Mode) -> Self {
        let f = families();
        let l = [name, mode.as_str()];
        Self {
            acquire: f.lock_acquire.get(l),
            contended: f.lock_contended.get(l),
            wait_total: f.lock_wait_total.get(l),
            wait: f.lock_wait.get(l),
        }
    }
}

/// Statistics of every lock with one name.
#[derive(Debug)]
pub(crate) struct LockMeta {
    pub name: &'static str,
    pub exclusive: ModeStats,
    pub shared: ModeStats,
    pub hold: Histogram,
    pub waiters: Gauge,
    pub sampler: Sampler,
    /// Holder site of the most recent sampled contention, for the debug view.
    pub last_holder: Mutex<Option<&'static Location<'static>>>,
}

impl LockMeta {
    #[inline]
    pub fn mode(&self, m: Mode) -> &ModeStats {
        match m {
            Mode::Exclusive => &self.exclusive,
            Mode::Shared => &self.shared,
        }
    }

    /// Bookkeeping of a contended acquisition (slow path only).
    pub fn contended(&self, m: Mode, wait: Duration, holder: Option<&'static Location<'static>>) {
        let s = self.mode(m);
        s.acquire.inc();
        s.contended.inc();
        s.wait_total.add_duration(wait);
        s.wait.observe_duration(wait);
        if holder.is_some() {
            *self.last_holder.lock() = holder;
        }
        self.sampler.record(wait, holder);
    }
}

static REGISTRY: Mutex<Option<HashMap<&'static str, Arc<LockMeta>>>> = Mutex::new(None);

/// The statistics for `name`, created on first use (cold: called at lock construction).
pub(crate) fn meta(name: &'static str) -> Arc<LockMeta> {
    let mut reg = REGISTRY.lock();
    reg.get_or_insert_with(HashMap::new)
        .entry(name)
        .or_insert_with(|| {
            let f = families();
            Arc::new(LockMeta {
                name,
                exclusive: ModeStats::new(name, Mode::Exclusive),
                shared: ModeStats::new(name, Mode::Shared),
                hold: f.lock_hold.get([name]),
                waiters: f.lock_waiters.get([name]),
                sampler: Sampler::new(format!("lock:{name}")),
                last_holder: Mutex::new(None),
            })
        })
        .clone()
}

thread_local! {
    static HOLD_TICK: Cell<u32> = const { Cell::new(0) };
}

/// Whether to time this acquisition's hold: one in [`HOLD_SAMPLE_EVERY`] per thread.
#[inline]
pub(crate) fn hold_start() -> Option<Instant> {
    let take = HOLD_TICK
        .try_with(|t| {
            let v = t.get().wrapping_add(1);
            t.set(v);
            v % HOLD_SAMPLE_EVERY == 0
        })
        .unwrap_or(false);
    take.then(Instant::now)
}

/// Keeps `lock_waiters` right even if an async waiter is cancelled.
pub(crate) struct Waiting<'a> {
    meta: &'a LockMeta,
    start: Instant,
}

impl<'a> Waiting<'a> {
    pub fn new(meta: &'a LockMeta) -> Self {
        meta.waiters.inc();
        Self { meta, start: Instant::now() }
    }

    /// Ends the wait; returns its length.
    pub fn done(self) -> Duration {
        self.start.elapsed()
        // drop decrements the gauge
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.meta.waiters.dec();
    }
}

/// One row of `/debug/locks`.
#[derive(Debug, Clone, Serialize)]
pub struct LockReport {
    pub lock: &'static str,
    pub acquisitions: u64,
    pub contended: u64,
    pub contention_ratio: f64,
    pub wait_seconds_total: f64,
    pub waiters: i64,
    pub last_contended_holder: Option<String>,
}

/// Locks by total wait, most waited-on first.
pub fn report() -> Vec<LockReport> {
    let metas: Vec<Arc<LockMeta>> = REGISTRY.lock().as_ref().map(|m| m.values().cloned().collect()).unwrap_or_default();
    let mut rows: Vec<LockReport> = metas
        .iter()
        .map(|m| {
            let acq = m.exclusive.acquire.get() + m.shared.acquire.get();
            let cont = m.exclusive.contended.get() + m.shared.contended.get();
            LockReport {
                lock: m.name,
                acquisitions: acq,
                contended: cont,
                contention_ratio: if acq == 0 { 0.0 } else { cont as f64 / acq as f64 },
                wait_seconds_total: m.exclusive.wait_total.value() + m.shared.wait_total.value(),
                waiters: m.waiters.get(),
                last_contended_holder: m.last_holder.lock().map(|l| l.to_string()),
            }
        })
        .collect();
    rows.sort_by(|a, b| b.wait_seconds_total.total_cmp(&a.wait_seconds_total).then(b.contended.cmp(&a.contended)));
    rows
}
