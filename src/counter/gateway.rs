//! The gateway's backend: the service pool plus the optional read cache and write buffer,
//! each switched by its own flag so the lab can show what it costs and buys.

use std::sync::Arc;

use crate::counter::cache::ReadCache;
use crate::counter::client_pool::ServicePool;
use crate::counter::model::{CounterError, Key, Op};
use crate::counter::write_buffer::WriteBuffer;

pub struct Gateway {
    pub pool: Arc<ServicePool>,
    pub cache: Option<ReadCache>,
    pub buffer: Option<Arc<WriteBuffer>>,
}

impl Gateway {
    pub async fn increment(&self, op: &Op, request_id: &str) -> Result<i64, CounterError> {
        let value = self.pool.increment(op, request_id).await?;
        if let Some(cache) = &self.cache {
            cache.put(&op.key, value);
        }
        Ok(value)
    }

    pub async fn batch(&self, ops: &[Op], request_id: &str) -> Result<Vec<Result<i64, CounterError>>, CounterError> {
        let results = self.pool.batch(ops, request_id).await?;
        if let Some(cache) = &self.cache {
            for (op, r) in ops.iter().zip(&results) {
                if let Ok(v) = r {
                    cache.put(&op.key, *v);
                }
            }
        }
        Ok(results)
    }

    pub async fn get(&self, key: &Key) -> Result<i64, CounterError> {
        if let Some(cache) = &self.cache {
            if let Some(v) = cache.get(key) {
                return Ok(v);
            }
        }
        let value = self.pool.get(key).await?;
        if let Some(cache) = &self.cache {
            cache.put(key, value);
        }
        Ok(value)
    }

    /// Takes an async batch into the write buffer; None when there is no buffer.
    pub fn accept_async(&self, ops: &[Op]) -> Option<Result<usize, CounterError>> {
        self.buffer.as_ref().map(|b| b.accept(ops).map_err(CounterError::from))
    }
}
