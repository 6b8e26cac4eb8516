//! The rows of `/debug/locks` and `/debug/pools`, and the `mode` label: one definition for the
//! instrumented build and its uninstrumented twin (`--cfg pinchpoint_bare`), whose lock and
//! pool modules are different files with the same API.

use serde::Serialize;

/// Acquisition mode, the `mode` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A `Mutex` lock or an `RwLock` write.
    Exclusive,
    /// An `RwLock` read.
    Shared,
}

impl Mode {
    /// `exclusive` or `shared`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        }
    }
}

/// One row of `/debug/locks`.
#[derive(Debug, Clone, Serialize)]
pub struct LockReport {
    /// The lock's name.
    pub lock: &'static str,
    /// Acquisitions, all modes.
    pub acquisitions: u64,
    /// Acquisitions that found the lock taken.
    pub contended: u64,
    /// `contended / acquisitions`.
    pub contention_ratio: f64,
    /// Seconds waited in total.
    pub wait_seconds_total: f64,
    /// Waiting right now.
    pub waiters: i64,
    /// Where the holder acquired the lock at the last sampled contention (`file:line`).
    pub last_contended_holder: Option<String>,
}

/// One row of `/debug/pools`.
#[derive(Debug, Clone, Serialize)]
pub struct PoolReport {
    /// The pool's name.
    pub pool: String,
    /// The most it may hold.
    pub max_size: i64,
    /// Resources it holds now (open connections).
    pub size: i64,
    /// Resources leased now.
    pub in_use: i64,
    /// Callers waiting for one now.
    pub waiters: i64,
    /// Acquisitions that did not wait.
    pub acquired_immediately: u64,
    /// Acquisitions that waited.
    pub acquired_after_wait: u64,
    /// Acquisitions that gave up at a deadline.
    pub timeouts: u64,
    /// Acquisitions that failed.
    pub errors: u64,
    /// Seconds callers waited in total.
    pub acquire_wait_seconds_total: f64,
    /// Integral of `in_use` over time, in seconds.
    pub in_use_seconds_total: f64,
    /// Resources opened (connections made).
    pub opened: u64,
}
