//! The in-memory store: a map of counters split into shards, each behind its own lock.
//!
//! `--lock global` is the same code with one shard, so the lab's global-lock bottleneck
//! differs from the tuned store only in how many locks there are — the work under the
//! lock (dedup lookup, overflow check, increment, record) is identical.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use crate::counter::model::{ApplyId, CounterError, Key, Op};
use crate::counter::store::dedup::Dedup;
use crate::probe::lock::Mutex;

/// How the memory store is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// One lock around the whole map: the lab's global-lock bottleneck.
    Global,
    /// Many independent shards (the default).
    Sharded,
}

pub const DEFAULT_SHARDS: usize = 64;

#[derive(Debug, Clone)]
pub struct MemoryConfig {
    pub lock: LockMode,
    pub shards: usize,
    /// How long an applied request id is remembered.
    pub dedup_ttl: Duration,
    /// How many applied increments are remembered at most, over all shards.
    pub dedup_capacity: usize,
    /// CPU work done under the shard lock with each increment (`--store-work`), standing
    /// for what real stores do there (serialization, index upkeep). The same in both lock
    /// modes, so global vs sharded differ only in how the work is locked.
    pub work_under_lock: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            lock: LockMode::Sharded,
            shards: DEFAULT_SHARDS,
            dedup_ttl: Duration::from_secs(600),
            dedup_capacity: 1_000_000,
            work_under_lock: Duration::ZERO,
        }
    }
}

struct Shard {
    counters: HashMap<Key, i64>,
    dedup: Dedup,
}

pub struct MemoryStore {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    work_under_lock: Duration,
}

impl MemoryStore {
    pub fn new(config: MemoryConfig) -> Self {
        let (count, name) = match config.lock {
            LockMode::Global => (1, "store.global"),
            LockMode::Sharded => (config.shards.max(1), "store.shard"),
        };
        let per_shard = (config.dedup_capacity / count).max(1);
        let shards = (0..count)
            .map(|_| {
                Mutex::new(name, Shard { counters: HashMap::new(), dedup: Dedup::new(config.dedup_ttl, per_shard) })
            })
            .collect();
        MemoryStore { shards, hasher: RandomState::new(), work_under_lock: config.work_under_lock }
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        let i = self.hasher.hash_one(key) as usize % self.shards.len();
        &self.shards[i]
    }

    pub fn increment(&self, op: &Op, id: ApplyId<'_>) -> Result<i64, CounterError> {
        let digest = Dedup::digest(id, &op.key);
        let now = Instant::now();
        let mut shard = self.shard(&op.key).lock();
        if let Some(value) = shard.dedup.lookup(digest, now) {
            return Ok(value);
        }
        if !self.work_under_lock.is_zero() {
            spin_for(self.work_under_lock);
        }
        let current = shard.counters.get(&op.key).copied().unwrap_or(0);
        let value = current.checked_add(op.delta).ok_or_else(|| CounterError::Overflow(op.key.to_string()))?;
        shard.counters.insert(op.key.clone(), value);
        shard.dedup.record(digest, value, now);
        Ok(value)
    }

    /// Sets a counter outright, bypassing dedup. For loading a known state (the `--seed`
    /// flag, tests that need a counter near its limit).
    pub fn seed(&self, key: &Key, value: i64) {
        self.shard(key).lock().counters.insert(key.clone(), value);
    }

    pub fn get(&self, key: &Key) -> i64 {
        self.shard(key).lock().counters.get(key).copied().unwrap_or(0)
    }
}

/// Busy work for `d`: keeps the CPU (and the lock) the way real work would.
fn spin_for(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(delta: i64) -> Op {
        Op::new("r", "t", delta).unwrap()
    }

    #[test]
    fn same_apply_id_counts_once_and_returns_first_value() {
        let s = MemoryStore::new(MemoryConfig::default());
        let id = ApplyId { request_id: "req-1", index: 0 };
        assert_eq!(s.increment(&op(5), id).unwrap(), 5);
        assert_eq!(s.increment(&op(5), id).unwrap(), 5);
        assert_eq!(s.increment(&op(1), ApplyId { request_id: "req-2", index: 0 }).unwrap(), 6);
        assert_eq!(s.get(&op(1).key), 6);
    }

    #[test]
    fn overflow_is_an_error_and_changes_nothing() {
        let s = MemoryStore::new(MemoryConfig { lock: LockMode::Global, ..Default::default() });
        let k = op(crate::counter::model::MAX_DELTA);
        s.seed(&k.key, i64::MAX - 10);
        s.increment(&op(10), ApplyId { request_id: "fits", index: 0 }).unwrap();
        assert_eq!(s.get(&k.key), i64::MAX);
        let before = s.get(&k.key);
        let err = s.increment(&op(1), ApplyId { request_id: "over", index: 0 }).unwrap_err();
        assert_eq!(err.code(), "overflow");
        assert_eq!(s.get(&k.key), before);
    }
}
