//! The instrumented blocking `Mutex` (parking_lot API), on its own lock word.
//!
//! The fast path is the lock itself: the compare-and-swap that releases the lock counts the
//! acquisition ([`RawMutex`]), and the instance's counters share the word's cache line (see
//! [`lock_cell`](super::lock_cell)). The caller's site rides in the guard and is written to
//! the instance only when a release finds a sleeper, which then blames it. A failed
//! acquisition spins, then sleeps; one won while spinning is counted in
//! `lock_contended_total` and reads no clock. A waiter about to sleep reads the clock and
//! counts itself in `lock_waiters`; after it releases the lock it records its wait (and, once
//! per sampling window, a contention sample with its backtrace and the holder's acquire site),
//! so none of that lengthens the critical section. One acquisition in 256 has its hold timed,
//! picked from the acquisition number the lock word already returned.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::time::Duration;

use super::clock_ns;
use super::lock::release_bookkeeping;
use super::lock_cell::{Block, Pinned};
use super::lock_meta::{hold_sampled, Contended, Local, Mode, Waiting};
use super::raw_mutex::{Held, Won};

/// A mutual-exclusion lock that reports contention (parking_lot API).
///
/// Every lock with the same name reports into the same series,
/// `pinchpoint_lock_*{lock="NAME"}`: acquisitions, contended acquisitions, waits, holds and
/// waiters.
///
/// ```
/// use pinchpoint::probe::lock::Mutex;
///
/// let hits = Mutex::new("docs.hits", 0u64);
/// *hits.lock() += 1;
/// assert_eq!(*hits.lock(), 1);
/// assert!(pinchpoint::metrics::encode().contains(r#"lock="docs.hits""#));
/// ```
pub struct Mutex<T: ?Sized> {
    cell: Pinned<Data<T>>,
}

/// The value, after the instance's counters and lock word in one block.
struct Data<T: ?Sized>(UnsafeCell<T>);

// SAFETY: the value is only reached through a guard, which the lock word makes exclusive.
unsafe impl<T: ?Sized + Send> Sync for Data<T> {}

/// Guard of a [`Mutex`]; unlocks on drop.
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized> {
    block: &'a Block<Data<T>>,
    held: Held,
    site: &'static Location<'static>,
    /// [`clock_ns`] at acquisition when this hold is timed, else 0. A small guard stays in
    /// registers; an `Option<Instant>` and the contention record spilled it to the stack.
    hold_from: u64,
    /// Won after sleeping: the wait is in the instance's `slept_ns`.
    slept: bool,
    // Shares and sends like the `&mut T` it stands for.
    _value: PhantomData<&'a mut T>,
}

impl<T> Mutex<T> {
    /// A lock named `name` (a static, bounded name such as `store.shard`).
    pub fn new(name: &'static str, value: T) -> Self {
        Self { cell: Pinned::new(name, Data(UnsafeCell::new(value))) }
    }

    /// The value, consuming the lock.
    pub fn into_inner(self) -> T {
        self.cell.into_inner().0.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Acquires the lock, blocking the thread while it is held elsewhere.
    #[track_caller]
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        let (held, slept) = match self.cell.local.word.try_lock() {
            Some(held) => (held, false),
            None => lock_slow(&self.cell.local),
        };
        self.guard(held, Location::caller(), slept)
    }

    /// Call only while holding the lock as `held`.
    #[inline]
    fn guard(&self, held: Held, site: &'static Location<'static>, slept: bool) -> MutexGuard<'_, T> {
        let hold_from = if hold_sampled(held.number()) { clock_ns().max(1) } else { 0 };
        MutexGuard { block: &self.cell, held, site, hold_from, slept, _value: PhantomData }
    }

    /// Acquires the lock if it is free.
    #[track_caller]
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let held = self.cell.local.word.try_lock()?;
        Some(self.guard(held, Location::caller(), false))
    }

    /// The value, through a unique borrow (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.cell.lock_mut().0.get_mut()
    }

    /// Whether anyone holds the lock now.
    pub fn is_locked(&self) -> bool {
        self.cell.local.word.is_locked()
    }

    /// The lock's name.
    pub fn name(&self) -> &'static str {
        self.cell.local.meta.name
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Mutex");
        d.field("name", &self.name());
        match self.try_lock() {
            Some(g) => d.field("data", &&*g),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.block.lock.0.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, and `&mut self` makes this borrow unique.
        unsafe { &mut *self.block.lock.0.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    /// The guard's fields go to the release paths by value: a call that took the guard's
    /// address, even a cold one, would keep the guard on the stack in the hot path.
    #[inline]
    fn drop(&mut self) {
        let local = &self.block.local;
        // SAFETY: the guard holds the lock as `self.held` and releases it once, here.
        unsafe {
            if self.hold_from != 0 || self.slept {
                release_recorded(local, self.held, self.site, self.hold_from, self.slept);
            } else {
                release(local, self.held, self.site);
            }
        }
    }
}

/// Waits for the lock; returns how it is held and whether the wait slept.
#[cold]
#[inline(never)]
fn lock_slow(local: &Local) -> (Held, bool) {
    let mut waiting = None;
    let (won, held) = local.word.lock_contended(|| waiting = Some(Waiting::new(&local.meta)));
    match (won, waiting) {
        (Won::Sleeping, Some(waiting)) => {
            local.set_slept(waiting.done());
            (held, true)
        }
        _ => {
            local.spun();
            (held, false)
        }
    }
}

/// # Safety
/// The caller holds `local`'s lock as `held`, and releases it once.
#[inline]
unsafe fn release(local: &Local, held: Held, site: &'static Location<'static>) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if !local.word.try_unlock_fast(held) {
            release_to_sleeper(local, held, site);
        }
    }
}

/// A sleeper is about to wake: tell it whom it waited for, then wake it.
///
/// # Safety
/// As [`release`].
#[cold]
#[inline(never)]
unsafe fn release_to_sleeper(local: &Local, held: Held, site: &'static Location<'static>) {
    local.holder.set(site);
    // SAFETY: forwarded from the caller.
    unsafe { local.word.unlock_slow(held) };
}

/// # Safety
/// As [`release`].
#[cold]
#[inline(never)]
unsafe fn release_recorded(local: &Local, held: Held, site: &'static Location<'static>, hold_from: u64, slept: bool) {
    // Read the clock and the instance's record before unlocking (the hold includes
    // everything, and the record is ours only while we hold the lock); publish after.
    let hold = (hold_from != 0).then(|| Duration::from_nanos(clock_ns().saturating_sub(hold_from)));
    // The release that woke us published its acquire site (`release_to_sleeper`).
    let contended = slept.then(|| Contended { mode: Mode::Exclusive, wait: local.slept(), holder: local.holder.get() });
    // SAFETY: forwarded from the caller.
    unsafe { release(local, held, site) };
    release_bookkeeping(local, hold, contended);
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}
