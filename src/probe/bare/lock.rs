//! The plain counterparts of the lock probes, compiled with `--cfg pinchpoint_bare` (the
//! uninstrumented twin, see DESIGN.md "Probe overhead"): the same names and methods as
//! [`crate::probe::lock`] in an instrumented build, but each lock is parking_lot's or tokio's
//! own with a name beside it, and its guards are theirs. Nothing is counted, timed or
//! registered: `/debug/locks` is empty and the `lock_*` families have no series.

// Each item mirrors the documented instrumented one of the same name; docs are built from that.
#![allow(missing_docs)]

/// A `parking_lot::Mutex` with a name.
pub struct Mutex<T: ?Sized> {
    name: &'static str,
    inner: parking_lot::Mutex<T>,
}

/// Guard of a [`Mutex`]: parking_lot's.
pub type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub fn new(name: &'static str, value: T) -> Self {
        Self { name, inner: parking_lot::Mutex::new(value) }
    }

    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.inner.lock()
    }

    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.inner.try_lock()
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutex").field("name", &self.name).field("inner", &&self.inner).finish()
    }
}

/// A `parking_lot::RwLock` with a name.
pub struct RwLock<T: ?Sized> {
    name: &'static str,
    inner: parking_lot::RwLock<T>,
}

/// Shared guard of a [`RwLock`]: parking_lot's.
pub type RwLockReadGuard<'a, T> = parking_lot::RwLockReadGuard<'a, T>;
/// Exclusive guard of a [`RwLock`]: parking_lot's.
pub type RwLockWriteGuard<'a, T> = parking_lot::RwLockWriteGuard<'a, T>;

impl<T> RwLock<T> {
    pub fn new(name: &'static str, value: T) -> Self {
        Self { name, inner: parking_lot::RwLock::new(value) }
    }

    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    #[inline]
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.inner.read()
    }

    #[inline]
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.inner.write()
    }

    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        self.inner.try_read()
    }

    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        self.inner.try_write()
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl<T: ?Sized + std::fmt::Debug> std::fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RwLock").field("name", &self.name).field("inner", &&self.inner).finish()
    }
}

/// A `tokio::sync::Mutex` with a name.
pub struct AsyncMutex<T: ?Sized> {
    name: &'static str,
    inner: tokio::sync::Mutex<T>,
}

/// Guard of an [`AsyncMutex`]: tokio's.
pub type AsyncMutexGuard<'a, T> = tokio::sync::MutexGuard<'a, T>;

impl<T> AsyncMutex<T> {
    pub fn new(name: &'static str, value: T) -> Self {
        Self { name, inner: tokio::sync::Mutex::new(value) }
    }

    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> AsyncMutex<T> {
    pub async fn lock(&self) -> AsyncMutexGuard<'_, T> {
        self.inner.lock().await
    }

    pub fn try_lock(&self) -> Option<AsyncMutexGuard<'_, T>> {
        self.inner.try_lock().ok()
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// A `tokio::sync::RwLock` with a name.
pub struct AsyncRwLock<T: ?Sized> {
    name: &'static str,
    inner: tokio::sync::RwLock<T>,
}

/// Shared guard of an [`AsyncRwLock`]: tokio's.
pub type AsyncRwLockReadGuard<'a, T> = tokio::sync::RwLockReadGuard<'a, T>;
/// Exclusive guard of an [`AsyncRwLock`]: tokio's.
pub type AsyncRwLockWriteGuard<'a, T> = tokio::sync::RwLockWriteGuard<'a, T>;

impl<T> AsyncRwLock<T> {
    pub fn new(name: &'static str, value: T) -> Self {
        Self { name, inner: tokio::sync::RwLock::new(value) }
    }

    pub fn into_inner(self) -> T {
        self.inner.into_inner()
    }
}

impl<T: ?Sized> AsyncRwLock<T> {
    pub async fn read(&self) -> AsyncRwLockReadGuard<'_, T> {
        self.inner.read().await
    }

    pub async fn write(&self) -> AsyncRwLockWriteGuard<'_, T> {
        self.inner.write().await
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.inner.get_mut()
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// A `tokio::sync::Semaphore` with a name.
pub struct Semaphore {
    name: &'static str,
    inner: tokio::sync::Semaphore,
}

/// A permit of a [`Semaphore`]: tokio's.
pub type SemaphorePermit<'a> = tokio::sync::SemaphorePermit<'a>;

impl Semaphore {
    pub fn new(name: &'static str, permits: usize) -> Self {
        Self { name, inner: tokio::sync::Semaphore::new(permits) }
    }

    pub async fn acquire(&self) -> Result<SemaphorePermit<'_>, tokio::sync::AcquireError> {
        self.inner.acquire().await
    }

    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>, tokio::sync::TryAcquireError> {
        self.inner.try_acquire()
    }

    pub fn add_permits(&self, n: usize) {
        self.inner.add_permits(n);
    }

    pub fn available_permits(&self) -> usize {
        self.inner.available_permits()
    }

    pub fn close(&self) {
        self.inner.close();
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

pub use super::debug_rows::Mode;

pub use super::debug_rows::LockReport;

/// No lock reports in the uninstrumented twin.
pub fn report() -> Vec<LockReport> {
    Vec::new()
}
