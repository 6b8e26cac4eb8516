//! The gateway's rate limiter (`--rate-limit PER_SEC`): a token bucket per client key (the
//! `x-client-id` header, else the peer IP), refilling at PER_SEC with a burst of one
//! second's worth.
//!
//! The field report's naive limiter kept a map entry per client forever. Here a bucket that
//! has refilled completely carries no information (a new bucket would be identical), so a
//! sweep drops those: memory follows the clients active in the last second or so, not every
//! client ever seen.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::metrics::{families, Counter, Gauge};

const SHARDS: usize = 32;

pub struct RateLimiter {
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
    hasher: RandomState,
    rate: f64,
    burst: f64,
    allowed: Counter,
    limited: Counter,
    tracked: Gauge,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Allowed,
    /// Over the limit; try again after this long.
    Limited(Duration),
}

impl RateLimiter {
    pub fn new(per_sec: f64) -> Self {
        assert!(per_sec > 0.0, "rate must be positive");
        RateLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            rate: per_sec,
            burst: per_sec.max(1.0),
            allowed: families().ratelimit_decisions.get(["allowed"]),
            limited: families().ratelimit_decisions.get(["limited"]),
            tracked: families().ratelimit_tracked_keys.clone(),
        }
    }

    pub fn check(&self, client: &str) -> Decision {
        self.check_at(client, Instant::now())
    }

    pub fn check_at(&self, client: &str, now: Instant) -> Decision {
        let mut shard = self.shards[self.hasher.hash_one(client) as usize % SHARDS].lock();
        let bucket = match shard.get_mut(client) {
            Some(b) => b,
            None => {
                self.tracked.inc();
                shard.entry(client.to_string()).or_insert(Bucket { tokens: self.burst, at: now })
            }
        };
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            self.allowed.inc();
            Decision::Allowed
        } else {
            self.limited.inc();
            Decision::Limited(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }

    /// Drops buckets that have refilled completely by `now`. Returns how many remain.
    pub fn sweep_at(&self, now: Instant) -> usize {
        let full_after = Duration::from_secs_f64(self.burst / self.rate);
        let mut remaining = 0;
        for shard in &self.shards {
            let mut map = shard.lock();
            let before = map.len();
            map.retain(|_, b| now.saturating_duration_since(b.at) < full_after);
            self.tracked.add(map.len() as i64 - before as i64);
            remaining += map.len();
        }
        remaining
    }

    /// Sweeps every second until `stop` resolves.
    pub fn spawn_sweeper(self: &std::sync::Arc<Self>, stop: impl std::future::Future<Output = ()> + Send + 'static) {
        let me = self.clone();
        crate::probe::task::spawn("gateway.ratelimit_sweep", async move {
            tokio::pin!(stop);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tick.tick() => { me.sweep_at(Instant::now()); }
                }
            }
        });
    }

    pub fn tracked_keys(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_client_and_refills() {
        let l = RateLimiter::new(10.0);
        let t0 = Instant::now();
        let allowed = (0..15).filter(|_| l.check_at("a", t0) == Decision::Allowed).count();
        assert_eq!(allowed, 10, "a burst of one second's worth");
        match l.check_at("a", t0) {
            Decision::Limited(after) => assert!(after > Duration::ZERO && after <= Duration::from_millis(100)),
            d => panic!("expected limited, got {d:?}"),
        }
        assert_eq!(l.check_at("b", t0), Decision::Allowed, "other clients have their own bucket");
        assert_eq!(l.check_at("a", t0 + Duration::from_millis(100)), Decision::Allowed, "refilled one token");
    }

    #[test]
    fn many_distinct_clients_do_not_grow_memory_without_bound() {
        let l = RateLimiter::new(100.0);
        let t0 = Instant::now();
        for i in 0..100_000 {
            l.check_at(&format!("client-{i}"), t0);
        }
        assert_eq!(l.tracked_keys(), 100_000);
        // One second later every bucket is full again and carries no information.
        assert_eq!(l.sweep_at(t0 + Duration::from_millis(1001)), 0);
        assert_eq!(l.tracked_keys(), 0);
    }
}
