//! Per-name lock statistics shared by every lock instance with that name (64 shards named
//! `store.shard` share one set of series), plus the registry the `/debug/locks` view reads.

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::contention::Sampler;
use super::lock::HolderSite;
use super::raw_mutex::RawMutex;
use crate::metrics::catalog::HOLD_SAMPLE_EVERY;
use crate::metrics::{families, Counter, Gauge, Histogram, ReadTimeSum};

pub use super::debug_rows::Mode;

#[derive(Debug)]
pub(crate) struct ModeStats {
    pub acquire: Counter,
    pub contended: Counter,
    pub wait: Histogram,
}

impl ModeStats {
    fn new(name: &str, mode: Mode) -> Self {
        let f = families();
        let l = [name, mode.as_str()];
        Self { acquire: f.lock_acquire.get(l), contended: f.lock_contended.get(l), wait: f.lock_wait.get(l) }
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

/// Per-instance state of a blocking lock (`Mutex`, `RwLock`). It shares one heap block (and,
/// for small values, one cache line) with the lock word, so that counting an acquisition touches
/// no memory the acquisition did not already own; its name's statistics read it at scrape time.
#[derive(Debug)]
pub(crate) struct Local {
    pub meta: Arc<LockMeta>,
    /// Counts the exclusive acquisitions of this instance. A `Mutex` locks this word itself
    /// (its compare-and-swap counts); an `RwLock`'s writer bumps it with a plain load and
    /// store. Scrapes read it.
    pub word: RawMutex,
    /// Acquisitions (either mode) won within the short spin after `try_lock` failed: contended
    /// but not blocked. Written like `acquired`, under the lock (readers spinning in shared
    /// mode use the striped counter instead).
    spun: AtomicU64,
    /// Where the current exclusive holder acquired the lock (a `Mutex` stores it only when a
    /// release wakes a sleeper, for that sleeper to blame).
    pub holder: HolderSite,
    /// How long the current holder slept before it won (a `Mutex`; written and read by the
    /// holder only).
    slept_ns: AtomicU64,
}

impl Local {
    /// Cold: called when a lock is constructed.
    pub fn new(name: &'static str) -> Self {
        Self {
            meta: meta(name),
            word: RawMutex::new(),
            spun: AtomicU64::new(0),
            holder: HolderSite::default(),
            slept_ns: AtomicU64::new(0),
        }
    }

    /// Makes this instance's counts part of its name's totals until [`Local::unregister`].
    ///
    /// # Safety
    /// `self` must stay at this address, alive, until `unregister` is called on it.
    pub unsafe fn register(&self) {
        self.meta.instances.inner.lock().live.insert(self as *const _ as usize, LocalPtr(self));
    }

    /// Folds this instance's counts into its name's totals (under the same lock a scrape
    /// takes, so the sum never dips) and forgets the instance.
    pub fn unregister(&self) {
        let mut set = self.meta.instances.inner.lock();
        set.retired_acquired = set.retired_acquired.wrapping_add(self.word.acquisitions());
        set.retired_spun = set.retired_spun.wrapping_add(self.spun.load(Relaxed));
        set.live.remove(&(self as *const _ as usize));
    }

    /// Records how long the holder slept before it won. Call only while holding the lock.
    pub fn set_slept(&self, d: Duration) {
        self.slept_ns.store(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    /// What [`Local::set_slept`] recorded. Call only while holding the lock.
    pub fn slept(&self) -> Duration {
        Duration::from_nanos(self.slept_ns.load(Relaxed))
    }

    /// Counts an exclusive acquisition won while spinning. Call only while holding the lock
    /// exclusively.
    #[inline]
    pub fn spun(&self) {
        self.spun.store(self.spun.load(Relaxed).wrapping_add(1), Relaxed);
    }
}

/// A registered instance; valid while it is in the set (see [`Local::register`]).
#[derive(Debug)]
struct LocalPtr(*const Local);

// SAFETY: `Local` is `Sync`; the pointer is only dereferenced under the set's lock, and an
// instance leaves the set before it is freed.
unsafe impl Send for LocalPtr {}

/// The live instances of one lock name plus what dropped instances counted.
#[derive(Debug, Default)]
pub(crate) struct Instances {
    inner: Mutex<InstanceSet>,
}

#[derive(Debug, Default)]
struct InstanceSet {
    live: HashMap<usize, LocalPtr>,
    retired_acquired: u64,
    retired_spun: u64,
}

impl Instances {
    fn sum(&self, field: fn(&Local) -> u64, retired: fn(&InstanceSet) -> u64) -> u64 {
        let set = self.inner.lock();
        set.live.values().fold(retired(&set), |a, l| {
            // SAFETY: registered instances are alive while the set holds them (see `LocalPtr`).
            let local = unsafe { &*l.0 };
            a.wrapping_add(field(local))
        })
    }
}

/// The exclusive acquisitions of a name's instances (a read-time part of `lock_acquire_total`).
#[derive(Debug)]
struct AcquiredPart(Arc<Instances>);

impl ReadTimeSum for AcquiredPart {
    fn sum(&self) -> u64 {
        self.0.sum(|l| l.word.acquisitions(), |s| s.retired_acquired)
    }
}

/// The spin-won acquisitions of a name's instances (a read-time part of
/// `lock_contended_total{mode="exclusive"}`).
#[derive(Debug)]
struct SpunPart(Arc<Instances>);

impl ReadTimeSum for SpunPart {
    fn sum(&self) -> u64 {
        self.0.sum(|l| l.spun.load(Relaxed), |s| s.retired_spun)
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
    static HOLD_TICK: Cell<u64> = const { Cell::new(0) };
}

/// Whether the `n`th acquisition has its hold timed: one in [`HOLD_SAMPLE_EVERY`], picked by a
/// Weyl sequence (the fractional part of n·φ) rather than every 64th, so call patterns with a
/// period (two sites taking turns) cannot alias with the sampling and time only one of them.
#[inline]
pub(crate) fn hold_sampled(n: u64) -> bool {
    const PHI: u64 = 0x9E37_79B9_7F4A_7C15; // 2^64 / golden ratio
    n.wrapping_mul(PHI) < u64::MAX / HOLD_SAMPLE_EVERY as u64
}

/// Reads the clock when this thread's next hold is to be timed: for locks whose acquisition
/// number is not at hand (async locks, `RwLock` writers), numbered per thread.
#[inline]
pub(crate) fn hold_start() -> Option<Instant> {
    let n = HOLD_TICK
        .try_with(|t| {
            let n = t.get().wrapping_add(1);
            t.set(n);
            n
        })
        .unwrap_or(1);
    hold_sampled(n).then(Instant::now)
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

pub use super::debug_rows::LockReport;

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
                wait_seconds_total: m.exclusive.wait.snapshot().sum + m.shared.wait.snapshot().sum,
                waiters: m.waiters.get(),
                last_contended_holder: m.last_holder.lock().map(|l| l.to_string()),
            }
        })
        .collect();
    rows.sort_by(|a, b| b.wait_seconds_total.total_cmp(&a.wait_seconds_total).then(b.contended.cmp(&a.contended)));
    rows
}
