//! The gateway's local read cache (`--cache-ttl`): GETs are served from memory for up to
//! the TTL, and the gateway's own increments refresh the entries they touch.
//!
//! Sharded so concurrent readers rarely meet on a lock, and bounded: a full shard first
//! drops expired entries, then its oldest ones.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::counter::model::Key;
use crate::metrics::{families, Counter};

const SHARDS: usize = 16;

pub struct ReadCache {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    ttl: Duration,
    per_shard: usize,
    hits: Counter,
    misses: Counter,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<Key, (i64, Instant)>,
    /// Insertion order, for evicting the oldest; may hold keys already replaced or gone.
    order: VecDeque<(Key, Instant)>,
}

impl ReadCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        ReadCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            ttl,
            per_shard: (capacity / SHARDS).max(1),
            hits: families().cache_requests.get(["hit"]),
            misses: families().cache_requests.get(["miss"]),
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// A value no older than the TTL, counting the hit or miss.
    pub fn get(&self, key: &Key) -> Option<i64> {
        let now = Instant::now();
        let found = match self.shard(key).lock().entries.get(key) {
            Some(&(v, at)) if now.duration_since(at) < self.ttl => Some(v),
            _ => None,
        };
        match found {
            Some(_) => self.hits.inc(),
            None => self.misses.inc(),
        }
        found
    }

    pub fn put(&self, key: &Key, value: i64) {
        let now = Instant::now();
        let mut shard = self.shard(key).lock();
        if shard.entries.insert(key.clone(), (value, now)).is_none() {
            shard.order.push_back((key.clone(), now));
        }
        while shard.entries.len() > self.per_shard {
            let Some((old, at)) = shard.order.pop_front() else { break };
            // Only evict if the entry is still the one this order record describes.
            if shard.entries.get(&old).is_some_and(|&(_, t)| t == at) {
                shard.entries.remove(&old);
            }
        }
        // Keep the order queue from growing without bound when keys are rewritten often.
        if shard.order.len() > 2 * self.per_shard {
            let Shard { entries, order } = &mut *shard;
            order.retain(|(k, at)| entries.get(k).is_some_and(|&(_, t)| t == *at));
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_until_ttl_and_stays_bounded() {
        let c = ReadCache::new(Duration::from_millis(50), 64);
        let k = Key::new("r", "t").unwrap();
        assert_eq!(c.get(&k), None);
        c.put(&k, 7);
        assert_eq!(c.get(&k), Some(7));
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.get(&k).is_some() {
            assert!(Instant::now() < deadline, "entry never expired");
            std::thread::yield_now();
        }
        for i in 0..10_000 {
            c.put(&Key::new(format!("r{i}"), "t").unwrap(), i);
        }
        assert!(c.len() <= 64, "cache grew to {}", c.len());
    }
}
