//! A [bb8](https://docs.rs/bb8) pool that reports into a [`PoolProbe`] (feature `bb8`):
//! every `get` is an acquisition (immediate, waited, timed out or failed, with its wait
//! time), the connection it returns holds a lease until dropped, and `pool_size` follows
//! the pool's open connections.
//!
//! ```no_run
//! # struct Dial;
//! # impl bb8::ManageConnection for Dial {
//! #     type Connection = ();
//! #     type Error = std::io::Error;
//! #     async fn connect(&self) -> Result<(), std::io::Error> { Ok(()) }
//! #     async fn is_valid(&self, _: &mut ()) -> Result<(), std::io::Error> { Ok(()) }
//! #     fn has_broken(&self, _: &mut ()) -> bool { false }
//! # }
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = bb8::Pool::builder().max_size(8).build(Dial).await?;
//! let pool = pinchpoint::probe::bb8::ProbedPool::new("db", pool);
//! let conn = pool.get().await?; // reported as pool_acquire_total{pool="db",outcome=...}
//! # drop(conn);
//! # Ok(())
//! # }
//! ```

use std::ops::{Deref, DerefMut};

use bb8::{ManageConnection, Pool, PooledConnection, RunError};

use super::pool::{Lease, PoolProbe};

/// A bb8 pool and the probe its acquisitions report into. Clones share both.
pub struct ProbedPool<M: ManageConnection> {
    pool: Pool<M>,
    probe: PoolProbe,
}

impl<M: ManageConnection> Clone for ProbedPool<M> {
    fn clone(&self) -> Self {
        ProbedPool { pool: self.pool.clone(), probe: self.probe.clone() }
    }
}

impl<M: ManageConnection> std::fmt::Debug for ProbedPool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbedPool").field("probe", &self.probe).finish()
    }
}

/// A connection from [`ProbedPool::get`]; dropping it returns the connection to the pool and
/// ends its lease (`pool_in_use`, `pool_in_use_seconds_total`).
pub struct Pooled<'a, M: ManageConnection> {
    conn: PooledConnection<'a, M>,
    _lease: Lease,
}

impl<M: ManageConnection> Deref for Pooled<'_, M> {
    type Target = M::Connection;
    fn deref(&self) -> &M::Connection {
        &self.conn
    }
}

impl<M: ManageConnection> DerefMut for Pooled<'_, M> {
    fn deref_mut(&mut self) -> &mut M::Connection {
        &mut self.conn
    }
}

impl<M: ManageConnection> ProbedPool<M> {
    /// Wraps `pool`, reporting as pool `name` (bounded: `db`, `redis`) with bb8's `max_size`.
    pub fn new(name: &str, pool: Pool<M>) -> Self {
        let probe = PoolProbe::new(name, pool.config().max_size as usize);
        probe.set_size(pool.state().connections as usize);
        ProbedPool { pool, probe }
    }

    /// bb8's `get`, reported: the wait, how it ended, and a lease held by the connection.
    pub async fn get(&self) -> Result<Pooled<'_, M>, RunError<M::Error>> {
        let acquiring = self.probe.acquire_started();
        let got = self.pool.get().await;
        self.probe.set_size(self.pool.state().connections as usize);
        match got {
            Ok(conn) => Ok(Pooled { conn, _lease: acquiring.acquired() }),
            Err(RunError::TimedOut) => {
                acquiring.timed_out();
                Err(RunError::TimedOut)
            }
            Err(e) => {
                acquiring.failed();
                Err(e)
            }
        }
    }

    /// The wrapped pool, for what the probe does not need to see.
    pub fn pool(&self) -> &Pool<M> {
        &self.pool
    }

    /// The probe the pool reports into.
    pub fn probe(&self) -> &PoolProbe {
        &self.probe
    }
}
