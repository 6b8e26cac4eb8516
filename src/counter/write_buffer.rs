//! The gateway's asynchronous write buffer (`--write-buffer`): `batch-increment` with
//! `"async": true` is answered 202 at once; the buffer merges deltas per counter and a
//! flusher sends them every 100 ms or every 100 operations, through a worker pool of
//! `--flush-workers N` (a `probe::worker` pool, so an undersized one shows as queue wait).
//!
//! Bounded: a full buffer answers 503 instead of growing. Nothing accepted is lost on
//! graceful shutdown: the buffer closes, flushes, and waits for the flushes. A failed flush
//! is retried with the *same* request id, so a flush that was applied but not answered is
//! not applied twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::counter::client_pool::ServicePool;
use crate::counter::model::{CounterError, Key, Op, MAX_BATCH, MAX_DELTA};
use crate::metrics::{families, Counter, Gauge, Histogram};
use crate::probe::worker::WorkerPool;

pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
pub const FLUSH_OPERATIONS: usize = 100;

#[derive(Debug, Clone)]
pub struct WriteBufferConfig {
    pub flush_workers: usize,
    /// Most merged operations held (buffered plus being flushed) before 503.
    pub capacity: usize,
}

impl Default for WriteBufferConfig {
    fn default() -> Self {
        WriteBufferConfig { flush_workers: 4, capacity: 100_000 }
    }
}

pub struct WriteBuffer {
    state: Mutex<State>,
    capacity: usize,
    kick: Notify,
    workers: WorkerPool,
    pool: Arc<ServicePool>,
    pending: Gauge,
    flushes: Counter,
    batch_size: Histogram,
}

#[derive(Default)]
struct State {
    /// Merged deltas per counter; several partial sums when one would leave ±MAX_DELTA.
    merged: HashMap<Key, Vec<i64>>,
    merged_ops: usize,
    /// Flushes that failed, to be sent again unchanged (same request id).
    retry: VecDeque<Flush>,
    /// Operations buffered or being flushed: what `capacity` bounds.
    pending: usize,
    closed: bool,
}

struct Flush {
    id: String,
    ops: Vec<Op>,
}

/// Why the buffer refused a batch.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("write buffer is full ({0} operations pending); retry later")]
    Full(usize),
    #[error("gateway is shutting down; the write buffer accepts nothing more")]
    Closed,
}

impl From<Refused> for CounterError {
    fn from(r: Refused) -> Self {
        CounterError::Unavailable(r.to_string())
    }
}

impl WriteBuffer {
    pub fn new(pool: Arc<ServicePool>, config: WriteBufferConfig) -> Arc<Self> {
        let f = families();
        let workers = config.flush_workers.max(1);
        Arc::new(WriteBuffer {
            state: Mutex::new(State::default()),
            capacity: config.capacity.max(1),
            kick: Notify::new(),
            workers: WorkerPool::new("write_buffer.flush", workers, workers * 4),
            pool,
            pending: f.write_buffer_pending.clone(),
            flushes: f.write_buffer_flushes.clone(),
            batch_size: f.write_buffer_batch.clone(),
        })
    }

    /// Takes the operations into the buffer, or refuses them all.
    pub fn accept(&self, ops: &[Op]) -> Result<usize, Refused> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(Refused::Closed);
        }
        // Conservative: assume no operation merges into an existing one.
        if s.pending + ops.len() > self.capacity {
            return Err(Refused::Full(s.pending));
        }
        let mut added = 0;
        for op in ops {
            let parts = s.merged.entry(op.key.clone()).or_default();
            match parts.last_mut() {
                Some(last) if (*last + op.delta).abs() <= MAX_DELTA => *last += op.delta,
                _ => {
                    parts.push(op.delta);
                    added += 1;
                }
            }
        }
        s.merged_ops += added;
        s.pending += added;
        self.pending.add(added as i64);
        if s.merged_ops >= FLUSH_OPERATIONS {
            self.kick.notify_one();
        }
        Ok(ops.len())
    }

    /// Operations buffered or being flushed.
    pub fn pending(&self) -> usize {
        self.state.lock().pending
    }

    /// The flusher: every 100 ms, or sooner when 100 operations are waiting.
    pub fn spawn_flusher(self: &Arc<Self>) {
        let me = self.clone();
        crate::probe::task::spawn("write_buffer.flusher", async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(FLUSH_INTERVAL) => {}
                    _ = me.kick.notified() => {}
                }
                if me.state.lock().closed {
                    return; // close_and_flush takes over
                }
                me.flush_once().await;
            }
        });
    }

    /// Hands everything buffered (and every failed flush) to the flush workers, waiting
    /// for room in their queue.
    async fn flush_once(self: &Arc<Self>) {
        let flushes = {
            let mut s = self.state.lock();
            let mut out: Vec<Flush> = s.retry.drain(..).collect();
            let merged = std::mem::take(&mut s.merged);
            s.merged_ops = 0;
            let mut ops: Vec<Op> = Vec::new();
            let mut dropped = 0;
            for (key, parts) in merged {
                for delta in parts {
                    if delta == 0 {
                        dropped += 1; // +n and -n cancelled out: nothing to send
                    } else {
                        ops.push(Op { key: key.clone(), delta });
                    }
                }
            }
            s.pending -= dropped;
            self.pending.add(-(dropped as i64));
            while !ops.is_empty() {
                let rest = ops.split_off(ops.len().min(MAX_BATCH));
                out.push(Flush { id: uuid::Uuid::new_v4().to_string(), ops: std::mem::replace(&mut ops, rest) });
            }
            out
        };
        for flush in flushes {
            let me = self.clone();
            let job = async move { me.send(flush).await };
            if let Err(e) = self.workers.submit_wait(job).await {
                tracing::error!("write buffer flush not queued: {e}");
            }
        }
    }

    async fn send(&self, flush: Flush) {
        match self.pool.batch(&flush.ops, &flush.id).await {
            Ok(results) => {
                let failed = results.iter().filter(|r| r.is_err()).count();
                if failed > 0 {
                    // Per-operation refusals (overflow) are final; retrying cannot help.
                    tracing::warn!(failed, "write buffer: the service refused some merged increments");
                }
                self.flushes.inc();
                self.batch_size.observe(flush.ops.len() as f64);
                self.state.lock().pending -= flush.ops.len();
                self.pending.add(-(flush.ops.len() as i64));
            }
            Err(e) => {
                tracing::warn!("write buffer flush failed, will retry with the same request id: {e}");
                self.state.lock().retry.push_back(flush);
            }
        }
    }

    /// Stops accepting, then flushes until nothing is pending or `deadline` passes.
    /// Returns how many operations could not be delivered.
    pub async fn close_and_flush(self: &Arc<Self>, deadline: Duration) -> usize {
        self.state.lock().closed = true;
        let until = Instant::now() + deadline;
        while self.pending() > 0 && Instant::now() < until {
            self.flush_once().await;
            // Wait for the flushes in flight: pending falls as each is answered.
            let mut backoff = Duration::from_millis(5);
            while self.pending() > 0 && Instant::now() < until && self.state.lock().retry.is_empty() {
                if self.state.lock().merged_ops > 0 {
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(100));
            }
        }
        self.workers.shutdown().await;
        let lost = self.pending();
        if lost > 0 {
            tracing::error!(lost, "write buffer: operations could not be delivered before the shutdown deadline");
        } else {
            tracing::info!("write buffer flushed");
        }
        lost
    }
}
