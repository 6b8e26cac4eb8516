//! The word under [`Mutex`](super::lock::Mutex): a lock on `parking_lot_core`'s parking lot
//! that counts its own acquisitions and tells its caller how an acquisition was won.
//!
//! Bit 0 is `LOCKED`, bit 1 `PARKED` (somebody sleeps), and the other 62 bits count
//! acquisitions: the compare-and-swap that releases the lock also adds one. Counting therefore
//! costs nothing beyond the lock itself. Under contention a probe's cost is multiplied: every
//! nanosecond the holder spends on bookkeeping is a nanosecond the waiter spins, so a separate
//! count, even on the same cache line and written without a read-modify-write, cost 10-15%
//! of two-thread throughput in `benches/probes.rs`.
//!
//! The protocol is the classic two-bit one: spin with backoff while nobody sleeps, then set
//! `PARKED` and sleep on the word's address; an unlock that finds `PARKED` wakes one sleeper.
//! Fairness comes from the parking lot's `be_fair` hint (about every 0.5 ms per word), on
//! which the lock is handed to the woken thread directly so a sleeper cannot be starved by
//! threads that keep barging in.

use std::sync::atomic::{AtomicU64, Ordering::*};

use parking_lot_core::{ParkResult, SpinWait, UnparkResult, UnparkToken, DEFAULT_PARK_TOKEN};

const LOCKED: u64 = 1;
const PARKED: u64 = 2;
/// One acquisition in the count bits.
const ONE: u64 = 4;

/// The waker handed the lock over: the woken thread owns it already.
const TOKEN_HANDOFF: UnparkToken = UnparkToken(1);
const TOKEN_NORMAL: UnparkToken = UnparkToken(0);

/// How a contended acquisition was won.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Won {
    /// While spinning, without sleeping.
    Spinning,
    /// After sleeping at least once.
    Sleeping,
}

/// The word as its holder took it, without `PARKED`: `LOCKED` plus the count of earlier
/// acquisitions. The fast unlock swaps exactly this value for the word unlocked and counted
/// one more, so it fails whenever `PARKED` is set.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Held(u64);

impl Held {
    /// The number of acquisitions released before this one.
    #[inline]
    pub fn number(self) -> u64 {
        self.0 / ONE
    }
}

#[derive(Debug, Default)]
pub(crate) struct RawMutex {
    state: AtomicU64,
}

impl RawMutex {
    pub const fn new() -> Self {
        Self { state: AtomicU64::new(0) }
    }

    /// Acquisitions released so far (a lock used only as a counter counts
    /// [`RawMutex::count_held`]).
    pub fn acquisitions(&self) -> u64 {
        self.state.load(Relaxed) / ONE
    }

    /// Counts one acquisition of a lock this word only counts for (an `RwLock`'s write side).
    /// Call only while holding that lock exclusively: a plain load and store.
    #[inline]
    pub fn count_held(&self) {
        self.state.store(self.state.load(Relaxed).wrapping_add(ONE), Relaxed);
    }

    /// Takes the lock if it is free; never waits.
    ///
    /// One `lock bts`, like parking_lot's first compare-and-swap: no load before it, which
    /// under contention would first pull the cache line in shared state and then need a
    /// second transfer to own it. The count is read after, from a line we now own; only the
    /// holder changes it.
    #[inline]
    pub fn try_lock(&self) -> Option<Held> {
        if self.state.fetch_or(LOCKED, Acquire) & LOCKED != 0 {
            return None;
        }
        Some(Held(self.state.load(Relaxed) & !PARKED))
    }

    pub fn is_locked(&self) -> bool {
        self.state.load(Relaxed) & LOCKED != 0
    }

    /// Waits for the lock. `before_sleep` runs once, the first time the thread is about to
    /// sleep (a waiter that wins while spinning never calls it).
    #[cold]
    #[inline(never)]
    pub fn lock_contended(&self, before_sleep: impl FnOnce()) -> (Won, Held) {
        let mut before_sleep = Some(before_sleep);
        let won = |b: &Option<_>| if b.is_some() { Won::Spinning } else { Won::Sleeping };
        let mut spin = SpinWait::new();
        let mut state = self.state.load(Relaxed);
        loop {
            if state & LOCKED == 0 {
                let held = state | LOCKED;
                match self.state.compare_exchange_weak(state, held, Acquire, Relaxed) {
                    Ok(_) => return (won(&before_sleep), Held(held & !PARKED)),
                    Err(s) => state = s,
                }
                continue;
            }
            // Spin only while nobody sleeps: a sleeper means the holder is slow.
            if state & PARKED == 0 && spin.spin() {
                state = self.state.load(Relaxed);
                continue;
            }
            if state & PARKED == 0 {
                if let Err(s) = self.state.compare_exchange_weak(state, state | PARKED, Relaxed, Relaxed) {
                    state = s;
                    continue;
                }
            }
            if let Some(f) = before_sleep.take() {
                f();
            }
            // SAFETY: the key is this word's address, used with no other meaning; the callbacks
            // neither panic nor call into the parking lot.
            let parked = unsafe {
                parking_lot_core::park(
                    self.key(),
                    || self.state.load(Relaxed) & (LOCKED | PARKED) == LOCKED | PARKED,
                    || {},
                    |_, last| {
                        if last {
                            self.state.fetch_and(!PARKED, Relaxed);
                        }
                    },
                    DEFAULT_PARK_TOKEN,
                    None,
                )
            };
            if let ParkResult::Unparked(TOKEN_HANDOFF) = parked {
                // The waker counted this acquisition and kept the lock locked for us.
                return (Won::Sleeping, Held(self.state.load(Acquire) & !PARKED));
            }
            spin.reset();
            state = self.state.load(Relaxed);
        }
    }

    /// Releases the lock if nobody sleeps on it; `false` means call [`RawMutex::unlock_slow`].
    ///
    /// # Safety
    /// The caller holds the lock as `held`.
    #[inline]
    pub unsafe fn try_unlock_fast(&self, held: Held) -> bool {
        let released = held.0.wrapping_add(ONE) & !LOCKED;
        self.state.compare_exchange(held.0, released, Release, Relaxed).is_ok()
    }

    /// Releases the lock and wakes a sleeper (or hands the lock to it).
    ///
    /// # Safety
    /// The caller holds the lock as `held`, and `try_unlock_fast` failed: a sleeper set `PARKED`.
    #[cold]
    #[inline(never)]
    pub unsafe fn unlock_slow(&self, held: Held) {
        // While we hold the lock with PARKED set nobody else writes the word, so plain stores
        // inside the callback (run with the parking lot's bucket locked) are safe.
        let base = (held.0 & !(LOCKED | PARKED)).wrapping_add(ONE);
        let callback = |r: UnparkResult| {
            let parked = if r.have_more_threads { PARKED } else { 0 };
            if r.unparked_threads != 0 && r.be_fair {
                // Hand over: the word stays LOCKED for the woken thread.
                self.state.store(base | LOCKED | parked, Relaxed);
                return TOKEN_HANDOFF;
            }
            self.state.store(base | parked, Release);
            TOKEN_NORMAL
        };
        // SAFETY: see `lock_contended`.
        unsafe {
            parking_lot_core::unpark_one(self.key(), callback);
        }
    }

    fn key(&self) -> usize {
        self as *const Self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::UnsafeCell;
    use std::sync::atomic::AtomicBool;

    struct Counted {
        raw: RawMutex,
        value: UnsafeCell<u64>,
    }
    // SAFETY: `value` is only touched with `raw` held.
    unsafe impl Sync for Counted {}

    #[test]
    fn exclusive_and_counts_every_acquisition_including_handoffs() {
        const THREADS: u64 = 4;
        const EACH: u64 = 20_000;
        let c = Counted { raw: RawMutex::new(), value: UnsafeCell::new(0) };
        let slept = AtomicBool::new(false);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (c, slept) = (&c, &slept);
                s.spawn(move || {
                    for i in 0..EACH {
                        let held = match c.raw.try_lock() {
                            Some(h) => h,
                            None => {
                                let (won, h) = c.raw.lock_contended(|| {});
                                if won == Won::Sleeping {
                                    slept.store(true, Relaxed);
                                }
                                h
                            }
                        };
                        // SAFETY: held.
                        unsafe { *c.value.get() += 1 };
                        // Hold now and then long enough for others to go to sleep (and for the
                        // parking lot's fairness timer to ask for hand-offs).
                        if (i + t) % 997 == 0 {
                            std::thread::sleep(std::time::Duration::from_micros(200));
                        }
                        // SAFETY: held as `held`.
                        unsafe {
                            if !c.raw.try_unlock_fast(held) {
                                c.raw.unlock_slow(held);
                            }
                        }
                    }
                });
            }
        });
        assert_eq!(unsafe { *c.value.get() }, THREADS * EACH);
        assert_eq!(c.raw.acquisitions(), THREADS * EACH);
        assert!(!c.raw.is_locked());
        assert!(slept.load(Relaxed), "no waiter slept: the slow path went untested");
    }
}
