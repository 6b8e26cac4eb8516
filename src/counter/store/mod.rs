//! Where counters live: in process memory or in Redis. One enum, so the service and the
//! monolith call the same methods whatever the backend, and every call is timed into
//! `pinchpoint_store_op_duration_seconds{backend,op}`.

pub mod dedup;
pub mod memory;
pub mod pool;
pub mod redis;

use std::sync::OnceLock;
use std::time::Duration;

use crate::probe::Stopwatch;

pub use self::memory::{LockMode, MemoryConfig, MemoryStore};
pub use self::redis::{RedisConfig, RedisStore};

use crate::counter::model::{ApplyId, CounterError, Key, Op};
use crate::metrics::Histogram;

pub enum Backend {
    Memory(MemoryStore),
    Redis(RedisStore),
}

pub struct Store {
    backend: Backend,
    /// Added to every operation (`--store-delay`): a slow store, as a distant or busy
    /// database would be.
    delay: Option<Duration>,
    /// Each operation's `store_op_duration_seconds` series, resolved on first use, so an
    /// operation observes its histogram by reference with no label lookup.
    timings: [OnceLock<Histogram>; 3],
}

/// The operations a store times, indexing [`Store::timings`].
#[derive(Clone, Copy)]
enum Timed {
    Increment,
    Batch,
    Get,
}

impl Timed {
    fn label(self) -> &'static str {
        match self {
            Timed::Increment => "increment",
            Timed::Batch => "batch",
            Timed::Get => "get",
        }
    }
}

impl Store {
    pub fn new(backend: Backend, delay: Option<Duration>) -> Self {
        Store { backend, delay, timings: Default::default() }
    }

    fn record(&self, op: Timed, started: Stopwatch) {
        // The uninstrumented twin (`--cfg pinchpoint_bare`) records nothing.
        if cfg!(pinchpoint_bare) {
            return;
        }
        let histogram = self.timings[op as usize]
            .get_or_init(|| crate::metrics::families().store_op.get([self.backend(), op.label()]));
        histogram.observe_duration(started.elapsed());
    }

    pub fn memory(config: MemoryConfig) -> Self {
        Store::new(Backend::Memory(MemoryStore::new(config)), None)
    }

    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }

    async fn slow(&self) {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
    }

    pub async fn increment(&self, op: &Op, id: ApplyId<'_>) -> Result<i64, CounterError> {
        let started = Stopwatch::start();
        let span = crate::telemetry::store_span(self.backend(), "increment");
        let r = span
            .run(async {
                self.slow().await;
                match &self.backend {
                    Backend::Memory(m) => m.increment(op, id),
                    Backend::Redis(r) => r.increment(op, id).await,
                }
            })
            .await;
        self.record(Timed::Increment, started);
        r
    }

    /// Applies each operation (at most once each, under the matching id of `ids`) and
    /// returns per-operation results in order. An error for the whole call means the store
    /// could not be reached and nothing is known to be applied.
    pub async fn batch(&self, ops: &[Op], ids: &[ApplyId<'_>]) -> Result<Vec<Result<i64, CounterError>>, CounterError> {
        assert_eq!(ops.len(), ids.len(), "one apply id per operation");
        let started = Stopwatch::start();
        let span = crate::telemetry::store_span(self.backend(), "batch");
        let r = span
            .run(async {
                self.slow().await;
                match &self.backend {
                    Backend::Memory(m) => Ok(ops.iter().zip(ids).map(|(op, id)| m.increment(op, *id)).collect()),
                    Backend::Redis(r) => r.batch(ops, ids).await,
                }
            })
            .await;
        self.record(Timed::Batch, started);
        r
    }

    pub async fn get(&self, key: &Key) -> Result<i64, CounterError> {
        let started = Stopwatch::start();
        let span = crate::telemetry::store_span(self.backend(), "get");
        let r = span
            .run(async {
                self.slow().await;
                match &self.backend {
                    Backend::Memory(m) => Ok(m.get(key)),
                    Backend::Redis(r) => r.get(key).await,
                }
            })
            .await;
        self.record(Timed::Get, started);
        r
    }

    pub async fn seed(&self, key: &Key, value: i64) -> Result<(), CounterError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.seed(key, value);
                Ok(())
            }
            Backend::Redis(r) => r.seed(key, value).await,
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
