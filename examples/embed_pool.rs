//! Wrapping a third-party pool (bb8) with a `PoolProbe`.
//!
//! The pattern is the same for deadpool or a hand-written pool: call `acquire_started()`
//! before asking the pool, report the outcome (`acquired()`, `timed_out()`, `failed()`), keep
//! the returned `Lease` next to the pooled object so that dropping the object releases the
//! lease, and report connection churn with `opened(dial_time)` / `closed(reason)` (here from
//! the connection manager and the connection's `Drop`). After each get,
//! `set_size(pool.state().connections)` keeps `pool_size` right.
//!
//! Run: `cargo run --example embed_pool --no-default-features`

use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use pinchpoint::probe::pool::{Lease, PoolProbe};

/// Stand-in for a connection; reports its close to the probe.
struct Conn {
    id: u32,
    probe: PoolProbe,
    close_reason: &'static str,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.probe.closed(self.close_reason);
    }
}

/// The bb8 connection manager: dials (and times the dial for `pool_open_seconds`).
struct Dialer {
    probe: PoolProbe,
    next: AtomicU32,
}

impl bb8::ManageConnection for Dialer {
    type Connection = Conn;
    type Error = std::io::Error;

    async fn connect(&self) -> Result<Conn, std::io::Error> {
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(2)).await; // "dial + handshake"
        self.probe.opened(start.elapsed());
        Ok(Conn { id: self.next.fetch_add(1, Relaxed), probe: self.probe.clone(), close_reason: "idle" })
    }

    async fn is_valid(&self, _conn: &mut Conn) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        let broken = false; // a real manager checks the socket here
        if broken {
            conn.close_reason = "error";
        }
        broken
    }
}

/// The instrumented pool: a bb8 pool plus the probe it reports into.
struct ProbedPool {
    pool: bb8::Pool<Dialer>,
    probe: PoolProbe,
}

/// A pooled connection; dropping it returns the connection to bb8 and releases the lease.
struct Pooled<'a> {
    conn: bb8::PooledConnection<'a, Dialer>,
    _lease: Lease,
}

impl Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl ProbedPool {
    async fn new(name: &str, max: u32, timeout: Duration) -> Self {
        let probe = PoolProbe::new(name, max as usize);
        let manager = Dialer { probe: probe.clone(), next: AtomicU32::new(0) };
        let pool = bb8::Pool::builder().max_size(max).connection_timeout(timeout).build(manager).await.unwrap();
        Self { pool, probe }
    }

    async fn get(&self) -> Option<Pooled<'_>> {
        let acquiring = self.probe.acquire_started();
        let got = self.pool.get().await;
        self.probe.set_size(self.pool.state().connections as usize);
        match got {
            Ok(conn) => Some(Pooled { conn, _lease: acquiring.acquired() }),
            Err(bb8::RunError::TimedOut) => {
                acquiring.timed_out();
                None
            }
            Err(bb8::RunError::User(_)) => {
                acquiring.failed();
                None
            }
        }
    }
}

#[tokio::main]
async fn main() {
    // Two connections, eight concurrent users holding one for 10 ms each: most wait.
    let pool = ProbedPool::new("example.db", 2, Duration::from_millis(50)).await;
    let work = (0..8).map(|_| async {
        if let Some(c) = pool.get().await {
            let _id = c.id;
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
