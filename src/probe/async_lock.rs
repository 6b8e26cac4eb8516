//! Async locks over tokio's: `AsyncMutex`, `AsyncRwLock`, `Semaphore`, reporting into the
//! same `lock_*` series as the blocking locks (see [`super::lock`]). The fast path is
//! `try_lock`; only a task that has to wait reads the clock. A waiter cancelled while
//! waiting (its future dropped) leaves `lock_waiters` right and records nothing else.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::Arc;
use std::time::Instant;

use super::lock::HolderSite;
use super::lock_meta::{hold_start, meta, LockMeta, Mode, Waiting};

/// An async mutex (over `tokio::sync::Mutex`) that reports contention.
pub struct AsyncMutex<T: ?Sized> {
    meta: Arc<LockMeta>,
    holder: HolderSite,
    inner: tokio::sync::Mutex<T>,
}

/// Guard of an [`AsyncMutex`].
#[must_use = "if unused the lock will immediately unlock"]
pub struct AsyncMutexGuard<'a, T: ?Sized> {
    meta: &'a LockMeta,
    hold: Option<Instant>,
    guard: tokio::sync::MutexGuard<'a, T>,
}

impl<T> AsyncMutex<T> {
    /// A lock named `name` (a static, bounded name) holding `value`.
    pub fn new(name: &'static str, value: T) -> Self {
        Self { meta: meta(name), holder: HolderSite::default(), inner: tokio::sync::Mutex::new(value) }
    }

    /// The value, consuming the lock.
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> AsyncMutex<T> {
    /// Acquires the lock, waiting asynchronously while it is held.
    #[track_caller]
    pub fn lock(&self) -> impl Future<Output = AsyncMutexGuard<'_, T>> + '_ {
        let site = Location::caller();
        async move {
            let guard = match self.inner.try_lock() {
                Ok(g) => {
                    self.meta.exclusive.acquire.inc();
                    g
                }
                Err(_) => {
                    let holder = self.holder.get();
                    let waiting = Waiting::new(&self.meta);
                    let g = self.inner.lock().await;
                    self.meta.contended(Mode::Exclusive, waiting.done(), holder);
                    g
                }
            };
            self.holder.set(site);
            AsyncMutexGuard { meta: &self.meta, hold: hold_start(), guard }
        }
    }

    #[track_caller]
    /// The lock if it is free now; never waits.
    pub fn try_lock(&self) -> Option<AsyncMutexGuard<'_, T>> {
        let guard = self.inner.try_lock().ok()?;
        self.meta.exclusive.acquire.inc();
        self.holder.set(Location::caller());
        Some(AsyncMutexGuard { meta: &self.meta, hold: hold_start(), guard })
    }

    /// The value, through a unique borrow (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    /// The lock's name.
    pub fn name(&self) -> &'static str {
        self.meta.name
    }
}

impl<T: ?Sized> Deref for AsyncMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: ?Sized> DerefMut for AsyncMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: ?Sized> Drop for AsyncMutexGuard<'_, T> {
    fn drop(&mut self) {
        if let Some(start) = self.hold {
            self.meta.hold.observe_duration(start.elapsed());
        }
    }
}

/// An async reader-writer lock (over `tokio::sync::RwLock`) that reports contention.
pub struct AsyncRwLock<T: ?Sized> {
    meta: Arc<LockMeta>,
    holder: HolderSite,
    inner: tokio::sync::RwLock<T>,
}

/// Shared guard of an [`AsyncRwLock`].
#[must_use = "if unused the lock will immediately unlock"]
pub struct AsyncRwLockReadGuard<'a, T: ?Sized> {
    guard: tokio::sync::RwLockReadGuard<'a, T>,
}

/// Exclusive guard of an [`AsyncRwLock`].
#[must_use = "if unused the lock will immediately unlock"]
pub struct AsyncRwLockWriteGuard<'a, T: ?Sized> {
    meta: &'a LockMeta,
    hold: Option<Instant>,
    guard: tokio::sync::RwLockWriteGuard<'a, T>,
}

impl<T> AsyncRwLock<T> {
    /// A lock named `name` (a static, bounded name) holding `value`.
    pub fn new(name: &'static str, value: T) -> Self {
        Self { meta: meta(name), holder: HolderSite::default(), inner: tokio::sync::RwLock::new(value) }
    }

    /// The value, consuming the lock.
    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> AsyncRwLock<T> {
    /// Shared access; waits asynchronously while a writer holds the lock.
    pub async fn read(&self) -> AsyncRwLockReadGuard<'_, T> {
        let guard = match self.inner.try_read() {
            Ok(g) => {
                self.meta.shared.acquire.inc();
                g
            }
            Err(_) => {
                let holder = self.holder.get();
                let waiting = Waiting::new(&self.meta);
                let g = self.inner.read().await;
                self.meta.contended(Mode::Shared, waiting.done(), holder);
                g
            }
        };
        AsyncRwLockReadGuard { guard }
    }

    #[track_caller]
    /// Exclusive access; waits asynchronously while anyone holds the lock.
    pub fn write(&self) -> impl Future<Output = AsyncRwLockWriteGuard<'_, T>> + '_ {
        let site = Location::caller();
        async move {
            let guard = match self.inner.try_write() {
                Ok(g) => {
                    self.meta.exclusive.acquire.inc();
                    g
                }
                Err(_) => {
                    let holder = self.holder.get();
                    let waiting = Waiting::new(&self.meta);
                    let g = self.inner.write().await;
                    self.meta.contended(Mode::Exclusive, waiting.done(), holder);
                    g
                }
            };
            self.holder.set(site);
            AsyncRwLockWriteGuard { meta: &self.meta, hold: hold_start(), guard }
        }
    }

    /// The value, through a unique borrow (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    /// The lock's name.
    pub fn name(&self) -> &'static str {
        self.meta.name
    }
}

impl<T: ?Sized> Deref for AsyncRwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: ?Sized> Deref for AsyncRwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: ?Sized> DerefMut for AsyncRwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T: ?Sized> Drop for AsyncRwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        if let Some(start) = self.hold {
            self.meta.hold.observe_duration(start.elapsed());
        }
    }
}

/// A counting semaphore (over `tokio::sync::Semaphore`) reporting as a lock in shared mode:
/// `lock_acquire_total{mode="shared"}` counts permits taken, `lock_contended_total` the
/// acquisitions that found no permit free. For a semaphore that guards a pool of resources
/// use [`crate::probe::pool::Semaphore`], which reports pool occupancy instead.
pub struct Semaphore {
    meta: Arc<LockMeta>,
    inner: tokio::sync::Semaphore,
}

/// A permit of a [`Semaphore`]; returned on drop.
pub type SemaphorePermit<'a> = tokio::sync::SemaphorePermit<'a>;

impl Semaphore {
    /// A semaphore named `name` with `permits` permits.
    pub fn new(name: &'static str, permits: usize) -> Self {
        Self { meta: meta(name), inner: tokio::sync::Semaphore::new(permits) }
    }

    /// Waits for a permit. Errors only if the semaphore was closed.
    pub async fn acquire(&self) -> Result<SemaphorePermit<'_>, tokio::sync::AcquireError> {
        match self.inner.try_acquire() {
            Ok(p) => {
                self.meta.shared.acquire.inc();
                Ok(p)
            }
            Err(tokio::sync::TryAcquireError::Closed) => self.inner.acquire().await,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                let waiting = Waiting::new(&self.meta);
                let p = self.inner.acquire().await?;
                self.meta.contended(Mode::Shared, waiting.done(), None);
                Ok(p)
            }
        }
    }

    /// A permit if one is free now; never waits.
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>, tokio::sync::TryAcquireError> {
        let p = self.inner.try_acquire()?;
        self.meta.shared.acquire.inc();
        Ok(p)
    }

    /// Adds `n` permits.
    pub fn add_permits(&self, n: usize) {
        self.inner.add_permits(n);
    }

    /// Permits free now.
    pub fn available_permits(&self) -> usize {
        self.inner.available_permits()
    }

    /// Closes the semaphore: waiting and later acquisitions fail.
    pub fn close(&self) {
        self.inner.close();
    }

    /// The semaphore's name.
    pub fn name(&self) -> &'static str {
        self.meta.name
    }
}
