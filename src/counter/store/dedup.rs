//! A bounded, expiring record of applied increments, for at-most-once application in the
//! memory store.
//!
//! Entries are keyed by a 128-bit digest of (request id, operation index, counter) rather
//! than the strings themselves, so a million remembered increments cost tens of MiB, not
//! hundreds. Each entry remembers the value the increment produced, so a retry gets the
//! same answer the first attempt got.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use crate::counter::model::{ApplyId, Key};

/// Lives inside one store shard, guarded by that shard's lock: the check, the increment
/// and the record happen under one acquisition, so two concurrent retries cannot both
/// apply.
#[derive(Debug)]
pub struct Dedup {
    seen: HashMap<u128, i64>,
    order: VecDeque<(u128, Instant)>,
    ttl: Duration,
    capacity: usize,
}

impl Dedup {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Dedup { seen: HashMap::new(), order: VecDeque::new(), ttl, capacity: capacity.max(1) }
    }

    pub fn digest(id: ApplyId<'_>, key: &Key) -> u128 {
        // Two independently seeded SipHash runs; std's DefaultHasher::new() is deterministic.
        let half = |seed: u8| {
            let mut h = std::hash::DefaultHasher::new();
            seed.hash(&mut h);
            id.request_id.hash(&mut h);
            id.index.hash(&mut h);
            key.hash(&mut h);
            h.finish()
        };
        ((half(1) as u128) << 64) | half(2) as u128
    }

    /// The value an earlier application of this increment produced, if it is remembered.
    pub fn lookup(&mut self, digest: u128, now: Instant) -> Option<i64> {
        self.expire(now);
        self.seen.get(&digest).copied()
    }

    pub fn record(&mut self, digest: u128, value: i64, now: Instant) {
        if self.seen.insert(digest, value).is_none() {
            self.order.push_back((digest, now));
        }
        while self.seen.len() > self.capacity {
            match self.order.pop_front() {
                Some((oldest, _)) => {
                    self.seen.remove(&oldest);
                }
                None => break,
            }
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(digest, at)) = self.order.front() {
            if now.duration_since(at) < self.ttl {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::new("r", "t").unwrap()
    }

    #[test]
    fn remembers_until_ttl() {
        let mut d = Dedup::new(Duration::from_secs(10), 100);
        let t0 = Instant::now();
        let g = Dedup::digest(ApplyId { request_id: "a", index: 0 }, &key());
        d.record(g, 5, t0);
        assert_eq!(d.lookup(g, t0 + Duration::from_secs(9)), Some(5));
        assert_eq!(d.lookup(g, t0 + Duration::from_secs(10)), None);
        assert!(d.is_empty());
    }

    #[test]
    fn capacity_bounds_memory() {
        let mut d = Dedup::new(Duration::from_secs(60), 3);
        let now = Instant::now();
        for i in 0..10u32 {
            d.record(Dedup::digest(ApplyId { request_id: "a", index: i }, &key()), i as i64, now);
        }
        assert_eq!(d.len(), 3);
        let newest = Dedup::digest(ApplyId { request_id: "a", index: 9 }, &key());
        assert_eq!(d.lookup(newest, now), Some(9));
    }

    #[test]
    fn index_and_key_distinguish_entries() {
        let a = Dedup::digest(ApplyId { request_id: "a", index: 0 }, &key());
        let b = Dedup::digest(ApplyId { request_id: "a", index: 1 }, &key());
        let c = Dedup::digest(ApplyId { request_id: "a", index: 0 }, &Key::new("r", "u").unwrap());
        assert_ne!(a, b);
        assert_ne!(a, c);
    }
}
