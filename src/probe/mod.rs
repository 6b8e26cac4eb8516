//! The probes a tokio service embeds. Each is a std-like type that reports into the global
//! metrics ([`crate::metrics`]) and a `/debug/*` view ([`crate::admin`]).

pub mod alloc;
mod async_lock;
#[cfg(feature = "bb8")]
pub mod bb8;
pub mod contention;
#[cfg(feature = "deadpool")]
pub mod deadpool;
mod leak;
mod leak_growth;
pub mod lock;
mod lock_cell;
mod lock_meta;
mod mutex;
pub mod pool;
mod raw_mutex;
pub mod runtime;
pub mod task;
pub mod worker;

use std::sync::OnceLock;
use std::time::Instant;

/// The probes' epoch: the first time any probe asked for the clock.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`], for timestamps kept in atomics.
#[inline]
pub(crate) fn clock_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}
