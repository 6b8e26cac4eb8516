//! Per-name lock statistics shared by every lock instance with that name (64 shards named
//! `store.shard` share one set of series), plus the registry the `/debug/locks` view reads.

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use super::contention::Sampler;
use super::lock::HolderSite;
use crate::metrics::catalog::HOLD_SAMPLE_EVERY;
use crate::metrics::{families, Counter, Gauge, Histogram, ReadTimeSum};

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
    /// Live blocking-lock instances with this name; their exclusive acquisitions are added to
    /// `exclusive.acquire` at read time.
    pub instances: Arc<Instances>,
}

impl LockMeta {
    #[inline]
    pub fn mode(&self, m: Mode) -> &ModeStats {
        match m {
            Mode::Exclusive => &self.exclusive,
            Mode::Shared => &self.shared,
        }
    }

    /// Bookkeeping of a contended acquisition (slow path only), counting the acquisition too.
    pub fn contended(&self, m: Mode, wait: Duration, holder: Option<&'static Location<'static>>) {
        self.mode(m).acquire.inc();
        self.record_contention(m, wait, holder);
    }

    /// Bookkeeping of a contended acquisition that was counted elsewhere. Blocking locks call
    /// it after releasing the lock, so none of it lengthens the critical section.
    pub fn record_contention(&self, m: Mode, wait: Duration, holder: Option<&'static Location<'static>>) {
        let s = self.mode(m);
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
            let exclusive = ModeStats::new(name, Mode::Exclusive);
            let instances = Arc::new(Instances::default());
            exclusive.acquire.attach(Arc::new(AcquiredPart(instances.clone())));
            exclusive.contended.attach(Arc::new(SpunPart(instances.clone())));
            Arc::new(LockMeta {
                name,
                exclusive,
                shared: ModeStats::new(name, Mode::Shared),
                hold: f.lock_hold.get([name]),
                waiters: f.lock_waiters.get([name]),
                sampler: Sampler::new(format!("lock:{name}")),
                last_holder: Mutex::new(None),
                instances,
            })
        })
        .clone()
}

/// Per-instance state of a blocking lock (`Mutex`, `RwLock`). It lives on the heap so that
/// its name's statistics can read it at scrape time.
#[derive(Debug)]
pub(crate) struct Local {
    pub meta: Arc<LockMeta>,
    /// Exclusive acquisitions of this instance. Only the exclusive holder writes it, with a
    /// plain load and store (no read-modify-write, no shared cache line); scrapes read it.
    acquired: AtomicU64,
    /// Acquisitions (either mode) won within the short spin after `try_lock` failed: contended
    /// but not blocked. Written like `acquired`, under the lock (readers spinning in shared
    /// mode use the striped counter instead).
    spun: AtomicU64,
    /// Where the current exclusive holder acquired the lock.
    pub holder: HolderSite,
}

impl Local {
    /// Counts one exclusive acquisition and says whether to time its hold. Call only while
    /// holding the lock exclusively.
    #[inline]
    pub fn acquired(&self) -> Option<Instant> {
        let n = self.acquired.load(Relaxed).wrapping_add(1);
        self.acquired.store(n, Relaxed);
        sample_hold(n).then(Instant::now)
    }

    /// Counts an exclusive acquisition won while spinning. Call only while holding the lock
    /// exclusively.
    #[inline]
    pub fn spun(&self) {
        self.spun.store(self.spun.load(Relaxed).wrapping_add(1), Relaxed);
    }
}

/// Whether the `n`th acquisition of an instance has its hold timed: one in
/// [`HOLD_SAMPLE_EVERY`] on average, picked by a Weyl sequence (the fractional part of n·φ)
/// rather than every 16th, so call patterns with a period (two sites taking turns) cannot
/// alias with the sampling and bias the quantiles.
#[inline]
fn sample_hold(n: u64) -> bool {
    const PHI: u64 = 0x9E37_79B9_7F4A_7C15; // 2^64 / golden ratio
    n.wrapping_mul(PHI) < u64::MAX / HOLD_SAMPLE_EVERY as u64
}

/// The live instances of one lock name plus what dropped instances counted.
#[derive(Debug, Default)]
pub(crate) struct Instances {
    inner: Mutex<InstanceSet>,
}

#[derive(Debug, Default)]
struct InstanceSet {
    live: HashMap<usize, Arc<Local>>,
    retired_acquired: u64,
    retired_spun: u64,
}

impl Instances {
    fn sum(&self, field: fn(&Local) -> &AtomicU64, retired: fn(&InstanceSet) -> u64) -> u64 {
        let set = self.inner.lock();
        set.live.values().fold(retired(&set), |a, l| a.wrapping_add(field(l).load(Relaxed)))
    }
}

/// The exclusive acquisitions of a name's instances (a read-time part of `lock_acquire_total`).
#[derive(Debug)]
struct AcquiredPart(Arc<Instances>);

impl ReadTimeSum for AcquiredPart {
    fn sum(&self) -> u64 {
        self.0.sum(|l| &l.acquired, |s| s.retired_acquired)
    }
}

/// The spin-won acquisitions of a name's instances (a read-time part of
/// `lock_contended_total{mode="exclusive"}`).
#[derive(Debug)]
struct SpunPart(Arc<Instances>);

impl ReadTimeSum for SpunPart {
    fn sum(&self) -> u64 {
        self.0.sum(|l| &l.spun, |s| s.retired_spun)
    }
}

/// Owns a [`Local`] registered with its name's [`Instances`]; dropping it folds the instance's
/// count into the name's total (under the same lock a scrape takes, so the sum never dips).
#[derive(Debug)]
pub(crate) struct Registered(Arc<Local>);

impl Registered {
    /// Cold: called when a lock is constructed.
    pub fn new(name: &'static str) -> Self {
        let meta = meta(name);
        let local = Arc::new(Local {
            meta: meta.clone(),
            acquired: AtomicU64::new(0),
            spun: AtomicU64::new(0),
            holder: HolderSite::default(),
        });
        meta.instances.inner.lock().live.insert(Arc::as_ptr(&local) as usize, local.clone());
        Self(local)
    }
}

impl std::ops::Deref for Registered {
    type Target = Local;
    #[inline]
    fn deref(&self) -> &Local {
        &self.0
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut set = self.0.meta.instances.inner.lock();
        set.retired_acquired = set.retired_acquired.wrapping_add(self.0.acquired.load(Relaxed));
        set.retired_spun = set.retired_spun.wrapping_add(self.0.spun.load(Relaxed));
        set.live.remove(&(Arc::as_ptr(&self.0) as usize));
    }
}

/// A blocked acquisition of a blocking lock, recorded once the lock is released.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Contended {
    pub mode: Mode,
    pub wait: Duration,
    pub holder: Option<&'static Location<'static>>,
}

impl Contended {
    /// Call after the lock has been released.
    #[cold]
    #[inline(never)]
    pub fn record(self, meta: &LockMeta) {
        meta.record_contention(self.mode, self.wait, self.holder);
    }
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
