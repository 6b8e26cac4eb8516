//! When and how long to wait before retrying a call to the counter service.
//!
//! Increments are safe to retry because each carries a request id the service applies at
//! most once; what is not safe is retrying in lockstep, so waits grow exponentially and are
//! drawn at random below the cap ("full jitter"), which spreads a retry storm out.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_retries: 3, base: Duration::from_millis(10), cap: Duration::from_secs(1) }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1-based): uniform in [0, min(cap, base·2^(attempt-1))].
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20)).min(self.cap);
        ceiling.mul_f64(random_unit())
    }
}

/// Whether a failed call may have failed for a passing reason, so trying again (possibly
/// on another instance) can succeed. Validation errors and overflow never are.
///
/// A status the service sent has no `source()`; one tonic made from a local transport
/// failure has the error behind it. The latter is retriable whatever its code: an instance
/// shutting down mid-call surfaces as `Internal: h2 protocol error`.
pub fn retriable(status: &tonic::Status) -> bool {
    use tonic::Code::*;
    let transport_failure = std::error::Error::source(status).is_some();
    transport_failure
        || matches!(status.code(), Unavailable | DeadlineExceeded | Unknown | Cancelled | ResourceExhausted | Aborted)
}

/// A cheap per-thread random number in [0, 1) (xorshift), good enough for jitter and
/// power-of-two-choices; not for anything that needs real randomness.
pub fn random_unit() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

pub fn random_u64() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            (t.as_nanos() as u64) ^ (&t as *const _ as u64).rotate_left(32) | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy { max_retries: 5, base: Duration::from_millis(10), cap: Duration::from_millis(50) };
        for _ in 0..1000 {
            assert!(p.backoff(1) <= Duration::from_millis(10));
            assert!(p.backoff(3) <= Duration::from_millis(40));
            assert!(p.backoff(30) <= Duration::from_millis(50));
        }
        let mean = (0..2000).map(|_| p.backoff(3).as_secs_f64()).sum::<f64>() / 2000.0;
        assert!(mean > 0.010 && mean < 0.030, "jitter is spread over [0, 40ms]: mean {mean}");
    }
}
