//! A circuit breaker per service instance: after `threshold` consecutive failures it opens
//! and callers fail fast (503 in microseconds instead of waiting out a timeout); after
//! `cooldown` one probe call is let through (half-open); its success closes the breaker,
//! its failure opens it again.
//!
//! State is a few atomics, so the closed fast path is a single load on every call.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::metrics::{families, Gauge};

/// `breaker_state` values (DESIGN.md).
pub const CLOSED: i64 = 0;
pub const HALF_OPEN: i64 = 1;
pub const OPEN: i64 = 2;

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub threshold: u32,
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { threshold: 5, cooldown: Duration::from_secs(2) }
    }
}

pub struct Breaker {
    config: BreakerConfig,
    consecutive_failures: AtomicU32,
    /// 0 while closed; otherwise when the open period ends (ns since `epoch()`).
    open_until: AtomicU64,
    /// 0 when no half-open probe is out; otherwise when it was let through.
    probe_started: AtomicU64,
    gauge: Gauge,
}

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    // +1 so that 0 keeps meaning "unset".
    epoch().elapsed().as_nanos() as u64 + 1
}

impl Breaker {
    pub fn new(target: &str, config: BreakerConfig) -> Self {
        let gauge = families().breaker_state.get([target]);
        gauge.set(CLOSED);
        Breaker {
            config,
            consecutive_failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            probe_started: AtomicU64::new(0),
            gauge,
        }
    }

    /// Whether a call may go to this instance now. While open, no; once the cooldown has
    /// passed, exactly one caller gets through as the half-open probe (another one after a
    /// further cooldown if that probe never reports back).
    pub fn allow(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = now_ns();
        if now < until {
            return false;
        }
        let probe = self.probe_started.load(Ordering::Acquire);
        let stale = probe != 0 && now.saturating_sub(probe) > self.config.cooldown.as_nanos() as u64;
        if (probe == 0 || stale)
            && self.probe_started.compare_exchange(probe, now, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            self.gauge.set(HALF_OPEN);
            return true;
        }
        false
    }

    /// Whether the breaker currently refuses calls (open and not yet due for a probe).
    pub fn is_open(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        until != 0 && now_ns() < until
    }

    pub fn on_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.open_until.load(Ordering::Acquire) != 0 {
            self.open_until.store(0, Ordering::Release);
            self.probe_started.store(0, Ordering::Release);
            self.gauge.set(CLOSED);
            tracing::info!("circuit breaker closed");
        }
    }

    pub fn on_failure(&self) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        let half_open_probe_failed = self.open_until.load(Ordering::Acquire) != 0;
        if failures >= self.config.threshold || half_open_probe_failed {
            self.open_until.store(now_ns() + self.config.cooldown.as_nanos() as u64, Ordering::Release);
            self.probe_started.store(0, Ordering::Release);
            self.gauge.set(OPEN);
        }
    }

    pub fn state(&self) -> i64 {
        self.gauge.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_half_opens_after_cooldown() {
        let b = Breaker::new("test-breaker", BreakerConfig { threshold: 3, cooldown: Duration::from_millis(30) });
        for _ in 0..2 {
            b.on_failure();
        }
        assert!(b.allow(), "still closed below the threshold");
        b.on_failure();
        assert_eq!(b.state(), OPEN);
        assert!(!b.allow());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !b.allow() {
            assert!(Instant::now() < deadline, "never half-opened");
            std::thread::yield_now();
        }
        assert_eq!(b.state(), HALF_OPEN);
        assert!(!b.allow(), "only one probe at a time");
        b.on_failure();
        assert_eq!(b.state(), OPEN, "a failed probe reopens");
        while !b.allow() {
            assert!(Instant::now() < deadline, "never half-opened again");
            std::thread::yield_now();
        }
        b.on_success();
        assert_eq!(b.state(), CLOSED);
        assert!(b.allow());
    }
}
