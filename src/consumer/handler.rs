//! The work a consumer does per message: a wait (I/O it would do, e.g. a database write)
//! and/or CPU work, both configurable so the lab can make a handler slow in either way.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default)]
pub struct Handler {
    /// Awaited per message (`--handler-time`): holds a worker, not a runtime thread.
    pub wait: Duration,
    /// Computed per message (`--handler-cpu`): holds a worker and its runtime thread.
    pub cpu: Duration,
}

impl Handler {
    pub async fn handle(&self, payload: &[u8]) {
        if !self.cpu.is_zero() {
            spin(payload, self.cpu);
        }
        if !self.wait.is_zero() {
            tokio::time::sleep(self.wait).await;
        }
    }

    /// Mean time one message holds a worker.
    pub fn time(&self) -> Duration {
        self.wait + self.cpu
    }
}

/// Hashes the payload over and over until `for_how_long` has passed.
fn spin(payload: &[u8], for_how_long: Duration) -> u64 {
    let start = Instant::now();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    while start.elapsed() < for_how_long {
        for _ in 0..64 {
            for b in payload.iter().chain(&[0u8]) {
                h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        h = std::hint::black_box(h);
    }
    h
}
