//! Instrumented `Mutex` and `RwLock` with the parking_lot API.
//!
//! Each lock has a static name; every instance with that name reports into the same series
//! (`lock_*{lock="name"}`).
//!
//! [`Mutex`] has its own lock word (see `mutex.rs`). [`RwLock`] wraps parking_lot's: its write
//! fast path counts the acquisition in the instance's word with a plain load and store under
//! the write lock; shared (read) acquisitions cannot use a field the lock protects, so they bump
//! a striped counter.
//!
//! When `try_read`/`try_write` fails the waiter first spins briefly, as parking_lot does before
//! it parks; an acquisition won while spinning counts in `lock_contended_total` and reads no
//! clock. Only a waiter that is really going to block reads the clock, counts itself in
//! `lock_waiters` and records its wait (and, once per sampling window, a contention sample with
//! its backtrace and the holder's acquire site). All contention bookkeeping happens after the
//! lock is released, so it never lengthens the critical section.

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};
use std::time::Instant;

pub use super::async_lock::{
    AsyncMutex, AsyncMutexGuard, AsyncRwLock, AsyncRwLockReadGuard, AsyncRwLockWriteGuard, Semaphore, SemaphorePermit,
};
use super::lock_cell::Pinned;
use super::lock_meta::{hold_start, Contended, Local, Waiting};
pub use super::lock_meta::{report, LockReport, Mode};
pub use super::mutex::{Mutex, MutexGuard};

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

/// What an exclusive guard records once the lock is free again.
#[inline]
pub(super) fn release_bookkeeping(local: &Local, held: Option<std::time::Duration>, contended: Option<Contended>) {
    if let Some(h) = held {
        local.meta.hold.observe_duration(h);
    }
    if let Some(c) = contended {
        c.record(&local.meta);
    }
}

/// A reader-writer lock that reports contention (parking_lot API).
pub struct RwLock<T: ?Sized> {
    cell: Pinned<parking_lot::RwLock<T>>,
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
    /// A lock named `name` (a static, bounded name such as `cache.map`) holding `value`.
    pub fn new(name: &'static str, value: T) -> Self {
        Self { cell: Pinned::new(name, parking_lot::RwLock::new(value)) }
    }

    /// The value, consuming the lock.
    pub fn into_inner(self) -> T {
        self.cell.into_inner().into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Shared access; blocks while a writer holds the lock.
    #[inline]
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        match self.cell.lock.try_read() {
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
        self.cell.local.meta.shared.acquire.inc();
        RwLockReadGuard { local: &self.cell.local, contended, guard: ManuallyDrop::new(guard) }
    }

    #[cold]
    #[inline(never)]
    fn read_slow(&self) -> RwLockReadGuard<'_, T> {
        let holder = self.cell.local.holder.get();
        let spun = spin(|| if self.cell.lock.is_locked_exclusive() { None } else { self.cell.lock.try_read() });
        if let Some(g) = spun {
            // Readers share the lock: no field it protects, so a striped counter.
            self.cell.local.meta.shared.contended.inc();
            return self.read_guard(g, None);
        }
        let waiting = Waiting::new(&self.cell.local.meta);
        let g = self.cell.lock.read();
        let wait = waiting.done();
        self.read_guard(g, Some(Contended { mode: Mode::Shared, wait, holder }))
    }

    /// Exclusive access; blocks while anyone holds the lock.
    #[track_caller]
    #[inline]
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        let site = Location::caller();
        match self.cell.lock.try_write() {
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
        self.cell.local.holder.set(site);
        self.cell.local.word.count_held();
        RwLockWriteGuard { local: &self.cell.local, hold: hold_start(), contended, guard: ManuallyDrop::new(guard) }
    }

    #[cold]
    #[inline(never)]
    fn write_slow(&self, site: &'static Location<'static>) -> RwLockWriteGuard<'_, T> {
        let holder = self.cell.local.holder.get();
        let spun = spin(|| if self.cell.lock.is_locked() { None } else { self.cell.lock.try_write() });
        if let Some(g) = spun {
            self.cell.local.spun();
            return self.write_guard(g, site, None);
        }
        let waiting = Waiting::new(&self.cell.local.meta);
        let g = self.cell.lock.write();
        let wait = waiting.done();
        self.write_guard(g, site, Some(Contended { mode: Mode::Exclusive, wait, holder }))
    }

    /// Shared access if no writer holds the lock now; never blocks.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        let guard = self.cell.lock.try_read()?;
        Some(self.read_guard(guard, None))
    }

    #[track_caller]
    /// Exclusive access if nobody holds the lock now; never blocks.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        let guard = self.cell.lock.try_write()?;
        Some(self.write_guard(guard, Location::caller(), None))
    }

    /// The value, through a unique borrow (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.cell.lock_mut().get_mut()
    }

    /// The lock's name.
    pub fn name(&self) -> &'static str {
        self.cell.local.meta.name
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RwLock").field("name", &self.cell.local.meta.name).field("inner", &&self.cell.lock).finish()
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
