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
mod task_table;
pub mod worker;

use std::sync::OnceLock;
use std::time::Instant;

/// The probes' epoch: the first time any probe asked for the clock.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds on a monotonic clock, for timestamps kept in atomics: only differences mean
/// anything. On Linux the raw `CLOCK_MONOTONIC` (what `Instant` reads, without its
/// `Duration` arithmetic: the task hooks read it twice per poll); never 0 there, since it
/// counts from boot.
#[inline]
pub(crate) fn clock_ns() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid out-pointer and CLOCK_MONOTONIC always exists on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
    #[cfg(not(target_os = "linux"))]
    {
        epoch().elapsed().as_nanos() as u64
    }
}
