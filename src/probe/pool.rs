//! Pool probes: a [`PoolProbe`] any pool (channel pool, Redis pool, deadpool/bb8, a
//! semaphore) reports into, and [`Semaphore`], a `tokio::sync::Semaphore` that reports as a
//! pool.
//!
//! The probe answers "is this pool the bottleneck?": occupancy gauges, how acquisitions
//! ended, how long they waited, utilization as the integral of in-use over time
//! (`rate(pool_in_use_seconds_total) / pool_max_size`, exact even for leases shorter than a
//! scrape interval), and connection churn (opened/closed). Waits feed contention samples
//! under `pool:NAME`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::probe::Stopwatch;

use parking_lot::{Mutex, RwLock};

use super::contention::Sampler;
use crate::metrics::{families, Counter, Entered, Gauge, Histogram, Integral};

/// An acquisition slower than this counts as `waited` even if the caller does not say so.
pub const WAITED_AFTER: Duration = Duration::from_micros(100);

struct Inner {
    name: Arc<str>,
    max_size: Gauge,
    size: Gauge,
    in_use: Gauge,
    waiters: Gauge,
    immediate: Counter,
    waited: Counter,
    timeout: Counter,
    error: Counter,
    wait: Histogram,
    in_use_seconds: Integral,
    opened: Counter,
    open_time: Histogram,
    closed: RwLock<Vec<(&'static str, Counter)>>,
    sampler: Sampler,
}

/// Close reasons whose `pool_closed_total` series every pool exposes from the start.
pub const COMMON_CLOSE_REASONS: &[&str] = &["idle", "error", "per-request", "shutdown"];

/// A pool's probe. Cheap to clone (an `Arc`); every clone reports into the same series.
///
/// Wrap each acquisition of the pool being measured: [`acquire_started`](Self::acquire_started)
/// before asking the pool, then report how it ended; the [`Lease`] counts the resource as in
/// use until dropped.
///
/// ```
/// use pinchpoint::probe::pool::PoolProbe;
///
/// let probe = PoolProbe::new("docs.connections", 4);
/// let acquiring = probe.acquire_started();
/// // ... take a connection from the pool ...
/// let lease = acquiring.acquired();
/// assert_eq!(probe.in_use(), 1);
/// drop(lease); // the connection went back
/// assert_eq!(probe.in_use(), 0);
/// let families = pinchpoint::metrics::families();
/// assert_eq!(families.pool_acquire.get(["docs.connections", "immediate"]).get(), 1);
/// ```
#[derive(Clone)]
pub struct PoolProbe {
    inner: Arc<Inner>,
}

static POOLS: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());

impl PoolProbe {
    /// A probe for the pool `name` (bounded: `rpc`, `redis`), which holds at most `max_size`.
    pub fn new(name: &str, max_size: usize) -> Self {
        let f = families();
        let outcome = |o: &str| f.pool_acquire.get([name, o]);
        let inner = Arc::new(Inner {
            name: name.into(),
            max_size: f.pool_max_size.get([name]),
            size: f.pool_size.get([name]),
            in_use: f.pool_in_use.get([name]),
            waiters: f.pool_waiters.get([name]),
            immediate: outcome("immediate"),
            waited: outcome("waited"),
            timeout: outcome("timeout"),
            error: outcome("error"),
            wait: f.pool_acquire_wait.get([name]),
            in_use_seconds: f.pool_in_use_seconds.get([name]),
            opened: f.pool_opened.get([name]),
            open_time: f.pool_open.get([name]),
            // The common reasons exist from the start, at 0, so churn reads 0 rather than
            // "no data" until the first close; other reasons appear on first use.
            closed: RwLock::new(COMMON_CLOSE_REASONS.iter().map(|&r| (r, f.pool_closed.get([name, r]))).collect()),
            sampler: Sampler::new(format!("pool:{name}")),
        });
        inner.max_size.set(max_size as i64);
        let mut pools = POOLS.lock();
        pools.retain(|w| w.strong_count() > 0);
        pools.push(Arc::downgrade(&inner));
        Self { inner }
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A caller starts waiting for a resource; report how it ended on the returned value.
    pub fn acquire_started(&self) -> Acquiring {
        self.inner.waiters.inc();
        Acquiring { probe: self.clone(), start: Stopwatch::start(), done: false }
    }

    /// A resource was handed out without any wait (e.g. a successful `try_acquire`).
    pub fn acquired_immediately(&self) -> Lease {
        self.inner.immediate.inc();
        self.inner.wait.observe_raw(0);
        self.lease()
    }

    fn lease(&self) -> Lease {
        self.inner.in_use.inc();
        Lease { probe: self.clone(), entered: Some(self.inner.in_use_seconds.enter()) }
    }

    /// A resource was established; `took` is the dial/handshake time. Also raises `pool_size`.
    pub fn opened(&self, took: Duration) {
        self.inner.opened.inc();
        self.inner.open_time.observe_duration(took);
        self.inner.size.inc();
    }

    /// A resource was closed for `reason` (`idle`, `error`, `per-request`, `shutdown`...).
    /// Also lowers `pool_size`.
    pub fn closed(&self, reason: &'static str) {
        let hit = self.inner.closed.read().iter().find(|(r, _)| *r == reason).map(|(_, c)| c.clone());
        let c = hit.unwrap_or_else(|| {
            let c = families().pool_closed.get([&self.inner.name, reason]);
            self.inner.closed.write().push((reason, c.clone()));
            c
        });
        c.inc();
        self.inner.size.dec();
    }

    /// Sets the number of open resources (for pools that know it better than open/close).
    pub fn set_size(&self, n: usize) {
        self.inner.size.set(n as i64);
    }

    /// Sets the most the pool may hold (`pool_max_size`).
    pub fn set_max_size(&self, n: usize) {
        self.inner.max_size.set(n as i64);
    }

    /// Resources leased out right now.
    pub fn in_use(&self) -> i64 {
        self.inner.in_use.get()
    }

    /// Callers waiting right now.
    pub fn waiters(&self) -> i64 {
        self.inner.waiters.get()
    }

    /// Integral of in-use over time so far, in seconds.
    pub fn in_use_seconds(&self) -> f64 {
        self.inner.in_use_seconds.seconds()
    }
}

impl std::fmt::Debug for PoolProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolProbe").field("name", &self.inner.name).field("in_use", &self.in_use()).finish()
    }
}

/// An acquisition in progress (counts in `pool_waiters`). Dropping it without reporting an
/// outcome counts as `timeout`: a cancelled acquire is almost always a deadline firing.
#[must_use = "report the outcome: acquired(), timed_out() or failed()"]
pub struct Acquiring {
    probe: PoolProbe,
    start: Stopwatch,
    done: bool,
}

impl Acquiring {
    fn finish(&mut self) -> Duration {
        self.done = true;
        self.probe.inner.waiters.dec();
        self.start.elapsed()
    }

    /// Got a resource; `waited` if it took longer than [`WAITED_AFTER`].
    pub fn acquired(mut self) -> Lease {
        let wait = self.finish();
        self.record(wait, wait > WAITED_AFTER)
    }

    /// Got a resource after queueing (the pool said so).
    pub fn acquired_after_wait(mut self) -> Lease {
        let wait = self.finish();
        self.record(wait, true)
    }

    fn record(&self, wait: Duration, waited: bool) -> Lease {
        let i = &self.probe.inner;
        i.wait.observe_duration(wait);
        if waited {
            i.waited.inc();
            i.sampler.record(wait, None);
        } else {
            i.immediate.inc();
        }
        self.probe.lease()
    }

    /// Gave up waiting.
    pub fn timed_out(mut self) {
        let wait = self.finish();
        self.probe.inner.timeout.inc();
        self.probe.inner.sampler.record(wait, None);
    }

    /// The pool failed to provide a resource (e.g. could not connect).
    pub fn failed(mut self) {
        self.finish();
        self.probe.inner.error.inc();
    }
}

impl Drop for Acquiring {
    fn drop(&mut self) {
        if !self.done {
            self.finish();
            self.probe.inner.timeout.inc();
        }
    }
}

/// A resource leased from the pool; dropping it releases it.
#[must_use = "dropping the lease releases the resource at once"]
pub struct Lease {
    probe: PoolProbe,
    entered: Option<Entered>,
}

impl Lease {
    /// Releases the resource (same as dropping the lease).
    pub fn release(self) {}
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(e) = self.entered.take() {
            self.probe.inner.in_use_seconds.leave(e);
            self.probe.inner.in_use.dec();
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("pool", &self.probe.inner.name).finish()
    }
}

/// A `tokio::sync::Semaphore` reporting as pool `name` (max size = permits).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let slots = pinchpoint::probe::pool::Semaphore::new("docs.slots", 2);
/// let permit = slots.acquire().await.expect("not closed");
/// assert_eq!(slots.probe().in_use(), 1);
/// assert_eq!(slots.available_permits(), 1);
/// drop(permit);
/// assert_eq!(slots.probe().in_use(), 0);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Semaphore {
    sem: Arc<tokio::sync::Semaphore>,
    probe: PoolProbe,
}

/// A permit of a pool [`Semaphore`]; returned on drop.
#[derive(Debug)]
pub struct Permit {
    _lease: Lease,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// The semaphore was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("pool semaphore closed")]
pub struct Closed;

impl Semaphore {
    /// A semaphore of `permits` permits, reporting as pool `name`.
    pub fn new(name: &str, permits: usize) -> Self {
        let probe = PoolProbe::new(name, permits);
        probe.set_size(permits);
        Self { sem: Arc::new(tokio::sync::Semaphore::new(permits)), probe }
    }

    /// The probe the semaphore reports into.
    pub fn probe(&self) -> &PoolProbe {
        &self.probe
    }

    /// Waits for a permit.
    pub async fn acquire(&self) -> Result<Permit, Closed> {
        if let Some(p) = self.try_acquire() {
            return Ok(p);
        }
        let acquiring = self.probe.acquire_started();
        match self.sem.clone().acquire_owned().await {
            Ok(permit) => Ok(Permit { _lease: acquiring.acquired_after_wait(), _permit: permit }),
            Err(_) => {
                acquiring.failed();
                Err(Closed)
            }
        }
    }

    /// Waits at most `timeout` for a permit; `None` on timeout or if closed.
    pub async fn acquire_timeout(&self, timeout: Duration) -> Option<Permit> {
        if let Some(p) = self.try_acquire() {
            return Some(p);
        }
        let acquiring = self.probe.acquire_started();
        match tokio::time::timeout(timeout, self.sem.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Some(Permit { _lease: acquiring.acquired_after_wait(), _permit: permit }),
            Ok(Err(_)) => {
                acquiring.failed();
                None
            }
            Err(_) => {
                acquiring.timed_out();
                None
            }
        }
    }

    /// A permit if one is free now.
    pub fn try_acquire(&self) -> Option<Permit> {
        let permit = self.sem.clone().try_acquire_owned().ok()?;
        Some(Permit { _lease: self.probe.acquired_immediately(), _permit: permit })
    }

    /// Permits free now.
    pub fn available_permits(&self) -> usize {
        self.sem.available_permits()
    }

    /// Closes the semaphore: waiting and later acquisitions fail with [`Closed`].
    pub fn close(&self) {
        self.sem.close();
    }
}

pub use super::debug_rows::PoolReport;

/// Every live pool, fullest first. Probes sharing a name are listed once each (they share
/// series, so their rows agree).
pub fn report() -> Vec<PoolReport> {
    let pools: Vec<Arc<Inner>> = POOLS.lock().iter().filter_map(Weak::upgrade).collect();
    let mut seen = std::collections::HashSet::new();
    let mut rows: Vec<PoolReport> = pools
        .iter()
        .filter(|p| seen.insert(p.name.clone()))
        .map(|p| PoolReport {
            pool: p.name.to_string(),
            max_size: p.max_size.get(),
            size: p.size.get(),
            in_use: p.in_use.get(),
            waiters: p.waiters.get(),
            acquired_immediately: p.immediate.get(),
            acquired_after_wait: p.waited.get(),
            timeouts: p.timeout.get(),
            errors: p.error.get(),
            acquire_wait_seconds_total: p.wait.snapshot().sum,
            in_use_seconds_total: p.in_use_seconds.seconds(),
            opened: p.opened.get(),
        })
        .collect();
    rows.sort_by(|a, b| {
        let occ = |r: &PoolReport| r.in_use as f64 / r.max_size.max(1) as f64;
        occ(b).total_cmp(&occ(a)).then(b.waiters.cmp(&a.waiters))
    });
    rows
}
