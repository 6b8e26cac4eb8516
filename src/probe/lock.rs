//! Instrumented `Mutex` and `RwLock` with the parking_lot API.
//!
//! Each lock has a static name; every instance with that name reports into the same series
//! (`lock_*{lock="name"}`).
//!
//! The exclusive fast path adds no atomic read-modify-write to parking_lot's: after `try_lock`
//! succeeds, the acquisition is counted in a per-instance field that the lock itself protects
//! (a plain load and store; scrapes sum the live instances of a name), and the caller's site is
//! stored for a later waiter to blame. Shared (read) acquisitions cannot use a field the lock
//! protects, so they bump a striped counter.
//!
//! When `try_lock` fails the waiter first spins briefly, as parking_lot does before it parks;
//! an acquisition won while spinning (well under a microsecond) counts in
//! `lock_contended_total`, in the same per-instance way, and reads no clock: it has no entry in
//! the wait histogram. Only a waiter that is really going to block reads the clock, counts itself in
//! `lock_waiters` and records its wait (and, once per sampling window, a contention sample
//! with its backtrace and the holder's acquire site). All contention bookkeeping happens after
//! the lock is released, so it never lengthens the critical section. One exclusive acquisition
//! in 64 per instance (`HOLD_SAMPLE_EVERY`) has its hold timed: two clock reads cost more than
//! the rest of the fast path, so timing them all would double it.

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};
use std::time::Instant;

pub use super::async_lock::{
    AsyncMutex, AsyncMutexGuard, AsyncRwLock, AsyncRwLockReadGuard, AsyncRwLockWriteGuard, Semaphore, SemaphorePermit,
};
pub use super::lock_meta::{report, LockReport, Mode};
use super::lock_meta::{Contended, Local, Registered, Waiting};

/// Where the current holder of an exclusive lock acquired it (`null` = unknown).
#[derive(Debug, Default)]
pub(crate) struct HolderSite(AtomicPtr<Location<'static>>);

impl HolderSite {
    #[inline]
    pub fn set(&self, l: &'static Location<'static>) {
        self.0.store(l as *const _ as *mut _, Relaxed);
    }

    pub fn get(&self) -> Option<&'static Location<'static>> {
        // SAFETY: only ever set from `&'static Location`.
        unsafe { self.0.load(Relaxed).as_ref() }
    }
}

/// Rounds of spinning before a waiter blocks (1, 2, 4, 8 pause instructions between tries).
const SPIN_ROUNDS: u32 = 4;

/// Tries `try_get` between short, growing spins; `None` if the lock stayed taken.
#[inline]
fn spin<G>(mut try_get: impl FnMut() -> Option<G>) -> Option<G> {
    for round in 0..SPIN_ROUNDS {
        for _ in 0..1u32 << round {
            std::hint::spin_loop();
        }
        if let Some(g) = try_get() {
            return Some(g);
        }
    }
    None
}

/// A mutual-exclusion lock that reports contention (parking_lot API).
pub struct Mutex<T: ?Sized> {
    local: Registered,
    inner: parking_lot::Mutex<T>,
}

/// Guard of a [`Mutex`]; unlocks on drop.
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized> {
    local: &'a Local,
    hold: Option<Instant>,
    contended: Option<Contended>,
    guard: ManuallyDrop<parking_lot::MutexGuard<'a, T>>,
}

impl<T> Mutex<T> {
    /// A lock named `name` (a static, bounded name such as `store.shard`).
    pub fn new(name: &'static str, value: T) -> Self {
        Self { local: Registered::new(name), inner: parking_lot::Mutex::new(value) }
    }

    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Acquires the lock, blocking the thread while it is held elsewhere.
    #[track_caller]
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        let site = Location::caller();
        match self.inner.try_lock() {
            Some(g) => self.guard(g, site, None),
            None => self.lock_slow(site),
        }
    }

    #[inline]
    fn guard<'a>(
        &'a self,
        guard: parking_lot::MutexGuard<'a, T>,
        site: &'static Location<'static>,
        contended: Option<Contended>,
    ) -> MutexGuard<'a, T> {
        self.local.holder.set(site);
        MutexGuard { local: &self.local, hold: self.local.acquired(), contended, guard: ManuallyDrop::new(guard) }
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self, site: &'static Location<'static>) -> MutexGuard<'_, T> {
        let holder = self.local.holder.get();
        let spun = spin(|| if self.inner.is_locked() { None } else { self.inner.try_lock() });
        if let Some(g) = spun {
            self.local.spun();
            return self.guard(g, site, None);
        }
        let waiting = Waiting::new(&self.local.meta);
        let g = self.inner.lock();
        let wait = waiting.done();
        self.guard(g, site, Some(Contended { mode: Mode::Exclusive, wait, holder }))
    }

    /// Acquires the lock if it is free.
    #[track_caller]
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let guard = self.inner.try_lock()?;
        Some(self.guard(guard, Location::caller(), None))
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// The lock's name.
    pub fn name(&self) -> &'static str {
        self.local.meta.name
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutex").field("name", &self.local.meta.name).field("inner", &&self.inner).finish()
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Read the clock before unlocking (the hold includes everything), record after.
        let held = self.hold.map(|start| start.elapsed());
        // SAFETY: the guard is dropped exactly once, here, and not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        release_bookkeeping(self.local, held, self.contended);
    }
}

/// What an exclusive guard records once the lock is free again.
#[inline]
fn release_bookkeeping(local: &Local, held: Option<std::time::Duration>, contended: Option<Contended>) {
    if let Some(h) = held {
        local.meta.hold.observe_duration(h);
    }
    if let Some(c) = contended {
        c.record(&local.meta);
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// A reader-writer lock that reports contention (parking_lot API).
pub struct RwLock<T: ?Sized> {
    local: Registered,
    inner: parking_lot::RwLock<T>,
}

/// Shared guard of a [`RwLock`].
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    local: &'a Local,
    contended: Option<Contended>,
    guard: ManuallyDrop<parking_lot::RwLockReadGuard<'a, T>>,
}

/// Exclusive guard of a [`RwLock`].
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    local: &'a Local,
    hold: Option<Instant>,
    contended: Option<Contended>,
    guard: ManuallyDrop<parking_lot::RwLockWriteGuard<'a, T>>,
}

impl<T> RwLock<T> {
    pub fn new(name: &'static str, value: T) -> Self {
        Self { local: Registered::new(name), inner: parking_lot::RwLock::new(value) }
    }

    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Shared access; blocks while a writer holds the lock.
    #[inline]
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        match self.inner.try_read() {
            Some(g) => self.read_guard(g, None),
            None => self.read_slow(),
        }
    }

    #[inline]
    fn read_guard<'a>(
        &'a self,
        guard: parking_lot::RwLockReadGuard<'a, T>,
        contended: Option<Contended>,
    ) -> RwLockReadGuard<'a, T> {
        self.local.meta.shared.acquire.inc();
        RwLockReadGuard { local: &self.local, contended, guard: ManuallyDrop::new(guard) }
    }

    #[cold]
    #[inline(never)]
    fn read_slow(&self) -> RwLockReadGuard<'_, T> {
        let holder = self.local.holder.get();
        let spun = spin(|| if self.inner.is_locked_exclusive() { None } else { self.inner.try_read() });
        if let Some(g) = spun {
            // Readers share the lock: no field it protects, so a striped counter.
            self.local.meta.shared.contended.inc();
            return self.read_guard(g, None);
        }
        let waiting = Waiting::new(&self.local.meta);
        let g = self.inner.read();
        let wait = waiting.done();
        self.read_guard(g, Some(Contended { mode: Mode::Shared, wait, holder }))
    }

    /// Exclusive access; blocks while anyone holds the lock.
    #[track_caller]
    #[inline]
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        let site = Location::caller();
        match self.inner.try_write() {
            Some(g) => self.write_guard(g, site, None),
            None => self.write_slow(site),
        }
    }

    #[inline]
    fn write_guard<'a>(
        &'a self,
        guard: parking_lot::RwLockWriteGuard<'a, T>,
        site: &'static Location<'static>,
        contended: Option<Contended>,
    ) -> RwLockWriteGuard<'a, T> {
        self.local.holder.set(site);
        RwLockWriteGuard { local: &self.local, hold: self.local.acquired(), contended, guard: ManuallyDrop::new(guard) }
    }

    #[cold]
    #[inline(never)]
    fn write_slow(&self, site: &'static Location<'static>) -> RwLockWriteGuard<'_, T> {
        let holder = self.local.holder.get();
        let spun = spin(|| if self.inner.is_locked() { None } else { self.inner.try_write() });
        if let Some(g) = spun {
            self.local.spun();
            return self.write_guard(g, site, None);
        }
        let waiting = Waiting::new(&self.local.meta);
        let g = self.inner.write();
        let wait = waiting.done();
        self.write_guard(g, site, Some(Contended { mode: Mode::Exclusive, wait, holder }))
    }

    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        let guard = self.inner.try_read()?;
        Some(self.read_guard(guard, None))
    }

    #[track_caller]
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        let guard = self.inner.try_write()?;
        Some(self.write_guard(guard, Location::caller(), None))
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    pub fn name(&self) -> &'static str {
        self.local.meta.name
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RwLock").field("name", &self.local.meta.name).field("inner", &&self.inner).finish()
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard is dropped exactly once, here, and not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        release_bookkeeping(self.local, None, self.contended);
    }
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let held = self.hold.map(|start| start.elapsed());
        // SAFETY: the guard is dropped exactly once, here, and not used afterwards.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        release_bookkeeping(self.local, held, self.contended);
    }
}
