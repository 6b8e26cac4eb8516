//! Wrapping a third-party pool with a `PoolProbe`.
//!
//! The pattern is the same for deadpool, bb8 or a hand-written pool: call
//! `acquire_started()` before asking the pool, report the outcome (`acquired()`,
//! `timed_out()`, `failed()`), keep the returned `Lease` next to the pooled object so that
//! dropping the object releases the lease, and report connection churn with `opened()` /
//! `closed(reason)`. A tiny pool stands in for the real one here so the example needs no extra
//! dependency; with deadpool, wrap `pool.get().await` the same way and call
//! `probe.set_size(pool.status().size)` after each get.
//!
//! Run: `cargo run --example embed_pool --no-default-features`

use std::time::{Duration, Instant};

use pinchpoint::probe::pool::{Lease, PoolProbe};
use tokio::sync::{Mutex, Semaphore};

/// Stand-in for a connection.
struct Conn(u32);

/// Stand-in for a third-party pool: a semaphore and a stack of idle connections.
struct TinyPool {
    permits: Semaphore,
    idle: Mutex<Vec<Conn>>,
    next: std::sync::atomic::AtomicU32,
}

impl TinyPool {
    fn new(max: usize) -> Self {
        Self { permits: Semaphore::new(max), idle: Mutex::new(Vec::new()), next: Default::default() }
    }
}

/// The instrumented pool: the third-party pool plus a probe.
struct ProbedPool {
    pool: TinyPool,
    probe: PoolProbe,
}

/// A pooled connection; dropping it returns the connection and releases the lease.
struct Pooled<'a> {
    conn: Option<Conn>,
    owner: &'a ProbedPool,
    _permit: tokio::sync::SemaphorePermit<'a>,
    _lease: Lease,
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            if let Ok(mut idle) = self.owner.pool.idle.try_lock() {
                idle.push(c);
                return;
            }
            self.owner.probe.closed("idle-full");
        }
    }
}

impl ProbedPool {
    fn new(name: &str, max: usize) -> Self {
        Self { pool: TinyPool::new(max), probe: PoolProbe::new(name, max) }
    }

    async fn get(&self, timeout: Duration) -> Option<Pooled<'_>> {
        let acquiring = self.probe.acquire_started();
        let permit = match tokio::time::timeout(timeout, self.pool.permits.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => {
                acquiring.failed();
                return None;
            }
            Err(_) => {
                acquiring.timed_out();
                return None;
            }
        };
        let idle = self.pool.idle.lock().await.pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let start = Instant::now();
                tokio::time::sleep(Duration::from_millis(2)).await; // "dial"
                self.probe.opened(start.elapsed());
                Conn(self.pool.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
            }
        };
        Some(Pooled { conn: Some(conn), owner: self, _permit: permit, _lease: acquiring.acquired() })
    }
}

#[tokio::main]
async fn main() {
    let pool = ProbedPool::new("example.db", 2);
    let work = (0..8).map(|_| async {
        if let Some(c) = pool.get(Duration::from_millis(50)).await {
            let _id = c.conn.as_ref().map(|c| c.0);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    futures_util::future::join_all(work).await;
    for row in pinchpoint::probe::pool::report() {
        println!("{}", serde_json::to_string_pretty(&row).unwrap());
    }
    let text = pinchpoint::metrics::encode();
    for line in text.lines().filter(|l| l.contains("example.db")) {
        println!("{line}");
    }
}
