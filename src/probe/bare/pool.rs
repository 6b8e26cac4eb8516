//! The plain counterparts of the pool probes, compiled with `--cfg pinchpoint_bare` (the
//! uninstrumented twin, see DESIGN.md "Probe overhead"): the same names and methods as
//! [`crate::probe::pool`] in an instrumented build. A [`PoolProbe`] is its name and nothing
//! else, so reporting into it costs nothing and reads back 0; [`Semaphore`] is a
//! `tokio::sync::Semaphore` with no accounting. `/debug/pools` is empty and the `pool_*`
//! families have no series.

// Each item mirrors the documented instrumented one of the same name; docs are built from that.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

/// An acquisition slower than this counts as `waited` even if the caller does not say so.
pub const WAITED_AFTER: Duration = Duration::from_micros(100);

/// Close reasons whose `pool_closed_total` series every pool exposes from the start.
pub const COMMON_CLOSE_REASONS: &[&str] = &["idle", "error", "per-request", "shutdown"];

/// A pool's probe that records nothing.
#[derive(Clone, Debug)]
pub struct PoolProbe {
    name: Arc<str>,
}

impl PoolProbe {
    pub fn new(name: &str, _max_size: usize) -> Self {
        Self { name: name.into() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    #[inline]
    pub fn acquire_started(&self) -> Acquiring {
        Acquiring(())
    }

    #[inline]
    pub fn acquired_immediately(&self) -> Lease {
        Lease(())
    }

    #[inline]
    pub fn opened(&self, _took: Duration) {}

    #[inline]
    pub fn closed(&self, _reason: &'static str) {}

    pub fn set_size(&self, _n: usize) {}

    pub fn set_max_size(&self, _n: usize) {}

    pub fn in_use(&self) -> i64 {
        0
    }

    pub fn waiters(&self) -> i64 {
        0
    }

    pub fn in_use_seconds(&self) -> f64 {
        0.0
    }
}

/// An acquisition in progress; records nothing.
#[must_use = "report the outcome: acquired(), timed_out() or failed()"]
#[derive(Debug)]
pub struct Acquiring(());

impl Acquiring {
    #[inline]
    pub fn acquired(self) -> Lease {
        Lease(())
    }

    #[inline]
    pub fn acquired_after_wait(self) -> Lease {
        Lease(())
    }

    #[inline]
    pub fn timed_out(self) {}

    #[inline]
    pub fn failed(self) {}
}

/// A resource leased from the pool; records nothing.
#[must_use = "dropping the lease releases the resource at once"]
#[derive(Debug)]
pub struct Lease(());

impl Lease {
    pub fn release(self) {}
}

/// A `tokio::sync::Semaphore` with no accounting.
#[derive(Clone, Debug)]
pub struct Semaphore {
    sem: Arc<tokio::sync::Semaphore>,
    probe: PoolProbe,
}

/// A permit of a pool [`Semaphore`]: tokio's owned permit.
pub type Permit = tokio::sync::OwnedSemaphorePermit;

/// The semaphore was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("pool semaphore closed")]
pub struct Closed;

impl Semaphore {
    pub fn new(name: &str, permits: usize) -> Self {
        Self { sem: Arc::new(tokio::sync::Semaphore::new(permits)), probe: PoolProbe::new(name, permits) }
    }

    pub fn probe(&self) -> &PoolProbe {
        &self.probe
    }

    pub async fn acquire(&self) -> Result<Permit, Closed> {
        self.sem.clone().acquire_owned().await.map_err(|_| Closed)
    }

    pub async fn acquire_timeout(&self, timeout: Duration) -> Option<Permit> {
        tokio::time::timeout(timeout, self.sem.clone().acquire_owned()).await.ok()?.ok()
    }

    pub fn try_acquire(&self) -> Option<Permit> {
        self.sem.clone().try_acquire_owned().ok()
    }

    pub fn available_permits(&self) -> usize {
        self.sem.available_permits()
    }

    pub fn close(&self) {
        self.sem.close();
    }
}

pub use super::debug_rows::PoolReport;

/// No pool reports in the uninstrumented twin.
pub fn report() -> Vec<PoolReport> {
    Vec::new()
}
