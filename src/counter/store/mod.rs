//! Where counters live: in process memory or in Redis. One enum, so the service and the
//! monolith call the same methods whatever the backend, and every call is timed into
//! `pinchpoint_store_op_duration_seconds{backend,op}`.

pub mod dedup;
pub mod memory;
pub mod pool;
pub mod redis;

use std::time::Instant;

pub use self::memory::{LockMode, MemoryConfig, MemoryStore};
pub use self::redis::{RedisConfig, RedisStore};

use crate::counter::model::{ApplyId, CounterError, Key, Op};
use crate::metrics::red;

pub enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl Store {
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }

    pub async fn increment(&self, op: &Op, id: ApplyId<'_>) -> Result<i64, CounterError> {
        let started = Instant::now();
        let r = match self {
            Store::Memory(m) => m.increment(op, id),
            Store::Redis(r) => r.increment(op, id).await,
        };
        red::store_op(self.backend(), "increment", started.elapsed());
        r
    }

    /// Applies each operation (at most once each, under the matching id of `ids`) and
    /// returns per-operation results in order. An error for the whole call means the store
    /// could not be reached and nothing is known to be applied.
    pub async fn batch(&self, ops: &[Op], ids: &[ApplyId<'_>]) -> Result<Vec<Result<i64, CounterError>>, CounterError> {
        assert_eq!(ops.len(), ids.len(), "one apply id per operation");
        let started = Instant::now();
        let r = match self {
            Store::Memory(m) => Ok(ops.iter().zip(ids).map(|(op, id)| m.increment(op, *id)).collect()),
            Store::Redis(r) => r.batch(ops, ids).await,
        };
        red::store_op(self.backend(), "batch", started.elapsed());
        r
    }

    pub async fn get(&self, key: &Key) -> Result<i64, CounterError> {
        let started = Instant::now();
        let r = match self {
            Store::Memory(m) => Ok(m.get(key)),
            Store::Redis(r) => r.get(key).await,
        };
        red::store_op(self.backend(), "get", started.elapsed());
        r
    }

    pub async fn seed(&self, key: &Key, value: i64) -> Result<(), CounterError> {
        match self {
            Store::Memory(m) => {
                m.seed(key, value);
                Ok(())
            }
            Store::Redis(r) => r.seed(key, value).await,
        }
    }
}

/// What `--store` names: `memory` or `redis://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Memory,
    Redis(String),
}

impl std::str::FromStr for StoreSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "memory" {
            Ok(StoreSpec::Memory)
        } else if s.starts_with("redis://") {
            Ok(StoreSpec::Redis(s.to_string()))
        } else {
            Err(format!("unknown store {s:?}: use `memory` or `redis://HOST:PORT`"))
        }
    }
}
