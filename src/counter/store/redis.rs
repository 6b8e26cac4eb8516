//! The Redis store: counters are Redis integers changed with INCRBY inside a Lua script
//! that also records the request id, so "apply once" is atomic on the server.
//!
//! Connections come from a small pool of `--store-pool N` connections, each lent to one
//! caller at a time. That is deliberate: a pool of 1 must behave like one connection
//! (the lab's small-redis-pool bottleneck), not like a multiplexed pipe that hides the wait.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::Value;

use crate::counter::model::{ApplyId, CounterError, Key, Op};
use crate::counter::store::pool::{Pool, Resource};

/// Applies one increment at most once. KEYS[1] is the counter, KEYS[2] the dedup record;
/// ARGV[1] the delta, ARGV[2] how long the dedup record lives (seconds).
/// The value goes back as a string: Lua numbers are doubles and would round counters
/// above 2^53.
const APPLY_ONCE: &str = r#"
local seen = redis.call('GET', KEYS[2])
if seen then return {1, seen} end
local r = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(r) == 'table' and r.err then return {2, r.err} end
local v = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[2], v, 'EX', ARGV[2])
return {0, v}
"#;

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    pub pool_size: usize,
    pub dedup_ttl: Duration,
    /// How long a caller waits for a pooled connection before failing.
    pub acquire_timeout: Duration,
}

pub struct RedisStore {
    pool: Pool<RedisConn>,
    script: redis::Script,
    dedup_ttl_secs: u64,
}

struct RedisConn {
    conn: MultiplexedConnection,
}

impl Resource for RedisConn {
    type Config = (redis::Client, String);
    async fn open((client, script_source): &Self::Config) -> Result<Self, String> {
        let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
        // Loading the script up front lets every later call use EVALSHA, also in pipelines.
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script_source)
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(RedisConn { conn })
    }
}

fn counter_key(key: &Key) -> String {
    format!("pp:c:{}", key.flat())
}

fn dedup_key(id: ApplyId<'_>, key: &Key) -> String {
    format!("pp:r:{}#{}:{}", id.request_id, id.index, key.flat())
}

fn unavailable(e: impl std::fmt::Display) -> CounterError {
    CounterError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connects one connection up front so a wrong URL fails at start, not on first use.
    pub async fn connect(config: RedisConfig) -> Result<Self, CounterError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| CounterError::invalid(format!("bad redis url {:?}: {e}", config.url)))?;
        let pool =
            Pool::new("redis", config.pool_size.max(1), config.acquire_timeout, (client, APPLY_ONCE.to_string()));
        pool.warm(1).await.map_err(|e| unavailable(format!("cannot connect to {}: {e}", config.url)))?;
        Ok(RedisStore {
            pool,
            script: redis::Script::new(APPLY_ONCE),
            dedup_ttl_secs: config.dedup_ttl.as_secs().max(1),
        })
    }

    fn apply_cmd(&self, op: &Op, id: ApplyId<'_>) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash())
            .arg(2)
            .arg(counter_key(&op.key))
            .arg(dedup_key(id, &op.key))
            .arg(op.delta)
            .arg(self.dedup_ttl_secs);
        cmd
    }

    pub async fn increment(&self, op: &Op, id: ApplyId<'_>) -> Result<i64, CounterError> {
        let mut lease = self.pool.get().await.map_err(unavailable)?;
        let reply: Value = match self.apply_cmd(op, id).query_async(&mut lease.conn).await {
            Ok(v) => v,
            Err(e) => {
                lease.discard();
                return Err(unavailable(e));
            }
        };
        parse_apply(reply, &op.key)
    }

    /// Applies every operation in one round trip (a pipeline of EVALSHA calls). Each
    /// operation is applied at most once on its own; results come back in order.
    pub async fn batch(&self, ops: &[Op], ids: &[ApplyId<'_>]) -> Result<Vec<Result<i64, CounterError>>, CounterError> {
        let mut pipe = redis::pipe();
        for (op, id) in ops.iter().zip(ids) {
            pipe.add_command(self.apply_cmd(op, *id));
        }
        let mut lease = self.pool.get().await.map_err(unavailable)?;
        let replies: Vec<Value> = match pipe.query_async(&mut lease.conn).await {
            Ok(v) => v,
            Err(e) => {
                lease.discard();
                return Err(unavailable(e));
            }
        };
        Ok(replies.into_iter().zip(ops).map(|(reply, op)| parse_apply(reply, &op.key)).collect())
    }

    pub async fn get(&self, key: &Key) -> Result<i64, CounterError> {
        let mut lease = self.pool.get().await.map_err(unavailable)?;
        let value: Option<i64> = match redis::cmd("GET").arg(counter_key(key)).query_async(&mut lease.conn).await {
            Ok(v) => v,
            Err(e) => {
                lease.discard();
                return Err(unavailable(e));
            }
        };
        Ok(value.unwrap_or(0))
    }

    /// Sets a counter outright, bypassing dedup (see `MemoryStore::seed`).
    pub async fn seed(&self, key: &Key, value: i64) -> Result<(), CounterError> {
        let mut lease = self.pool.get().await.map_err(unavailable)?;
        let started = Instant::now();
        let r: Result<(), _> = redis::cmd("SET").arg(counter_key(key)).arg(value).query_async(&mut lease.conn).await;
        tracing::debug!(took = ?started.elapsed(), "seeded {key}");
        r.map_err(|e| {
            lease.discard();
            unavailable(e)
        })
    }
}

fn parse_apply(reply: Value, key: &Key) -> Result<i64, CounterError> {
    let (status, text): (i64, String) =
        redis::from_redis_value(reply).map_err(|e| CounterError::Internal(format!("unexpected redis reply: {e}")))?;
    match status {
        0 | 1 => text.parse().map_err(|e| CounterError::Internal(format!("redis value {text:?}: {e}"))),
        _ if text.contains("overflow") => Err(CounterError::Overflow(key.to_string())),
        _ => Err(CounterError::Internal(format!("redis INCRBY failed: {text}"))),
    }
}
