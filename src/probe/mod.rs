//! The probes a tokio service embeds. Each is a std-like type that reports into the global
//! metrics ([`crate::metrics`]) and a `/debug/*` view ([`crate::admin`]).
//!
//! Built with `--cfg pinchpoint_bare` (the uninstrumented twin) the lock and pool modules are
//! their plain counterparts in `bare/` (parking_lot and tokio types under the same names), and
//! the other probes record nothing: see DESIGN.md, "Probe overhead".

pub mod alloc;
#[cfg(not(pinchpoint_bare))]
mod async_lock;
#[cfg(feature = "bb8")]
pub mod bb8;
mod clock;
pub mod contention;
#[cfg(feature = "deadpool")]
pub mod deadpool;
mod debug_rows;
mod leak;
mod leak_growth;
#[cfg_attr(pinchpoint_bare, path = "bare/lock.rs")]
pub mod lock;
#[cfg(not(pinchpoint_bare))]
mod lock_cell;
#[cfg(not(pinchpoint_bare))]
mod lock_meta;
#[cfg(not(pinchpoint_bare))]
mod mutex;
mod poll_times;
#[cfg_attr(pinchpoint_bare, path = "bare/pool.rs")]
pub mod pool;
#[cfg(not(pinchpoint_bare))]
mod raw_mutex;
pub mod runtime;
pub mod task;
mod task_table;
pub mod worker;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Instant;

use crate::metrics::{self, Families, Source};

/// The families the probes read at scrape time: the allocator's, the live tasks' and the
/// runtime's, in that order. Each is empty until its probe has something to say.
struct Scraped;

impl Source for Scraped {
    fn encode(&self, enc: &mut prometheus_client::encoding::DescriptorEncoder<'_>) -> std::fmt::Result {
        alloc::encode(enc)?;
        task::encode(enc)?;
        runtime::encode(enc)
    }
}

/// Adds the probes' scrape-time families to the metrics, once. Called where each of them
/// first gets data (a thread's first counted allocation, a tracked task, a hooked or
/// registered runtime): lock- and allocation-free, as the allocator calls it.
pub(crate) fn export() {
    static SCRAPED: &dyn Source = &Scraped;
    static ADDED: AtomicBool = AtomicBool::new(false);
    if !ADDED.load(Relaxed) {
        metrics::add_source(&SCRAPED);
        ADDED.store(true, Relaxed);
    }
}

/// [`metrics::families`] for probes whose series appear next to scrape-time families.
pub(crate) fn families() -> &'static Families {
    export();
    metrics::families()
}

/// The probes' epoch: the first time any probe asked for the clock.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub(crate) use clock::Stopwatch;

/// Nanoseconds on a monotonic clock, for timestamps kept in atomics: only differences mean
/// anything. Never 0. See [`clock`] for why it is not simply `Instant`.
#[inline]
pub(crate) fn clock_ns() -> u64 {
    clock::now_ns()
}
