//! Instrumented `Mutex` and `RwLock` with the parking_lot API.
//!
//! Each lock has a static name; every instance with that name reports into the same series
//! (`lock_*{lock="name"}`). The fast path is `try_lock` plus one striped-counter increment and
//! a store of the caller's site: no clock read. Only when the lock is taken do we read the
//! clock, count the waiter, and record the wait (and, once per sampling window, a contention
//! sample with the waiter's backtrace and the holder's acquire site). Hold time is timed for
//! one exclusive acquisition in 16 per thread.

use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

pub use super::async_lock::{
    AsyncMutex, AsyncMutexGuard, AsyncRwLock, AsyncRwLockReadGuard, AsyncRwLockWriteGuard, Semaphore, SemaphorePermit,
};
use super::lock_meta::{hold_start, meta, LockMeta, Waiting};
pub use super::lock_meta::{report, LockReport, Mode};

/// Where the current holder of an exclusive lock acquired it (`null` = unknown).
#[derive(Default)]
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

/// A mutual-exclusion lock that reports contention (parking_lot API).
pub struct Mutex<T: ?Sized> {
    meta: Arc<LockMeta>,
    holder: HolderSite,
    inner: parking_lot::Mutex<T>,
}

/// Guard of a [`Mutex`]; unlocks on drop.
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized> {
    meta: &'a LockMeta,
    hold: Option<Instant>,
    guard: parking_lot::MutexGuard<'a, T>,
}

impl<T> Mutex<T> {
    /// A lock named `name` (a static, bounded name such as `store.shard`).
    pub fn new(name: &'static str, value: T) -> Self {
        Self { meta: meta(name), holder: HolderSite::default(), inner: parking_lot::Mutex::new(value) }
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
        let guard = match self.inner.try_lock() {
            Some(g) => {
                self.meta.exclusive.acquire.inc();
                g
            }
            None => self.lock_slow(),
        };
        self.holder.set(site);
        MutexGuard { meta: &self.meta, hold: hold_start(), guard }
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self) -> parking_lot::MutexGuard<'_, T> {
        let holder = self.holder.get();
        let waiting = Waiting::new(&self.meta);
        let g = self.inner.lock();
        let wait = waiting.done();
        self.meta.contended(Mode::Exclusive, wait, holder);
        g
    }

    /// Acquires the lock if it is free.
    #[track_caller]
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let guard = self.inner.try_lock()?;
        self.meta.exclusive.acquire.inc();
        self.holder.set(Location::caller());
        Some(MutexGuard { meta: &self.meta, hold: hold_start(), guard })
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// The lock's name.
    pub fn name(&self) -> &'static str {
        self.meta.name
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutex").field("name", &self.meta.name).field("inner", &&self.inner).finish()
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
        // Runs before the inner guard unlocks, so the hold time includes everything.
        if let Some(start) = self.hold {
            self.meta.hold.observe_duration(start.elapsed());
        }
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// A reader-writer lock that reports contention (parking_lot API).
pub struct RwLock<T: ?Sized> {
    meta: Arc<LockMeta>,
    holder: HolderSite,
    inner: parking_lot::RwLock<T>,
}

/// Shared guard of a [`RwLock`].
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    guard: parking_lot::RwLockReadGuard<'a, T>,
}

/// Exclusive guard of a [`RwLock`].
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    meta: &'a LockMeta,
    hold: Option<Instant>,
    guard: parking_lot::RwLockWriteGuard<'a, T>,
}

impl<T> RwLock<T> {
    pub fn new(name: &'static str, value: T) -> Self {
        Self { meta: meta(name), holder: HolderSite::default(), inner: parking_lot::RwLock::new(value) }
    }

    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Shared access; blocks while a writer holds the lock.
    #[inline]
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        let guard = match self.inner.try_read() {
            Some(g) => {
                self.meta.shared.acquire.inc();
                g
            }
            None => self.read_slow(),
        };
        RwLockReadGuard { guard }
    }

    #[cold]
    #[inline(never)]
    fn read_slow(&self) -> parking_lot::RwLockReadGuard<'_, T> {
        let holder = self.holder.get();
        let waiting = Waiting::new(&self.meta);
        let g = self.inner.read();
        self.meta.contended(Mode::Shared, waiting.done(), holder);
        g
    }

    /// Exclusive access; blocks while anyone holds the lock.
    #[track_caller]
    #[inline]
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        let site = Location::caller();
        let guard = match self.inner.try_write() {
            Some(g) => {
                self.meta.exclusive.acquire.inc();
                g
            }
            None => self.write_slow(),
        };
        self.holder.set(site);
        RwLockWriteGuard { meta: &self.meta, hold: hold_start(), guard }
    }

    #[cold]
    #[inline(never)]
    fn write_slow(&self) -> parking_lot::RwLockWriteGuard<'_, T> {
        let holder = self.holder.get();
        let waiting = Waiting::new(&self.meta);
        let g = self.inner.write();
        self.meta.contended(Mode::Exclusive, waiting.done(), holder);
        g
    }

    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        let guard = self.inner.try_read()?;
        self.meta.shared.acquire.inc();
        Some(RwLockReadGuard { guard })
    }

    #[track_caller]
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        let guard = self.inner.try_write()?;
        self.meta.exclusive.acquire.inc();
        self.holder.set(Location::caller());
        Some(RwLockWriteGuard { meta: &self.meta, hold: hold_start(), guard })
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    pub fn name(&self) -> &'static str {
        self.meta.name
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RwLock").field("name", &self.meta.name).field("inner", &&self.inner).finish()
    }
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
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
        if let Some(start) = self.hold {
            self.meta.hold.observe_duration(start.elapsed());
        }
    }
}
