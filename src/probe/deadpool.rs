//! A [deadpool](https://docs.rs/deadpool) managed pool that reports into a [`PoolProbe`]
//! (feature `deadpool`): every `get` is an acquisition (immediate, waited, timed out or
//! failed, with its wait time), the object it returns holds a lease until dropped, and
//! `pool_size` / `pool_max_size` follow the pool's status.
//!
//! ```no_run
//! # struct Dial;
//! # impl deadpool::managed::Manager for Dial {
//! #     type Type = ();
//! #     type Error = std::io::Error;
//! #     async fn create(&self) -> Result<(), std::io::Error> { Ok(()) }
//! #     async fn recycle(&self, _: &mut (), _: &deadpool::managed::Metrics) -> deadpool::managed::RecycleResult<std::io::Error> { Ok(()) }
//! # }
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = deadpool::managed::Pool::builder(Dial).max_size(8).build()?;
//! let pool = pinchpoint::probe::deadpool::ProbedPool::new("db", pool);
//! let conn = pool.get().await.map_err(|e| e.to_string())?; // pool_acquire_total{pool="db",...}
//! # drop(conn);
//! # Ok(())
//! # }
//! ```

use std::ops::{Deref, DerefMut};

use deadpool::managed::{Manager, Object, Pool, PoolError};

use super::pool::{Lease, PoolProbe};

/// A deadpool pool and the probe its acquisitions report into. Clones share both.
pub struct ProbedPool<M: Manager> {
    pool: Pool<M>,
    probe: PoolProbe,
}

impl<M: Manager> Clone for ProbedPool<M> {
    fn clone(&self) -> Self {
        ProbedPool { pool: self.pool.clone(), probe: self.probe.clone() }
    }
}

impl<M: Manager> std::fmt::Debug for ProbedPool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbedPool").field("probe", &self.probe).finish()
    }
}

/// An object from [`ProbedPool::get`]; dropping it returns the object to the pool and ends
/// its lease (`pool_in_use`, `pool_in_use_seconds_total`).
pub struct Pooled<M: Manager> {
    object: Object<M>,
    _lease: Lease,
}

impl<M: Manager> Pooled<M> {
    /// The deadpool object itself (e.g. for `Object::take`).
    pub fn into_object(self) -> Object<M> {
        self.object
    }
}

impl<M: Manager> Deref for Pooled<M> {
    type Target = M::Type;
    fn deref(&self) -> &M::Type {
        &self.object
    }
}

impl<M: Manager> DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Type {
        &mut self.object
    }
}

impl<M: Manager> ProbedPool<M> {
    /// Wraps `pool`, reporting as pool `name` (bounded: `db`, `redis`).
    pub fn new(name: &str, pool: Pool<M>) -> Self {
        let status = pool.status();
        let probe = PoolProbe::new(name, status.max_size);
        probe.set_size(status.size);
        ProbedPool { pool, probe }
    }

    /// deadpool's `get`, reported: the wait, how it ended, and a lease held by the object.
    pub async fn get(&self) -> Result<Pooled<M>, PoolError<M::Error>> {
        let acquiring = self.probe.acquire_started();
        let got = self.pool.get().await;
        let status = self.pool.status();
        self.probe.set_size(status.size);
        self.probe.set_max_size(status.max_size);
        match got {
            Ok(object) => Ok(Pooled { object, _lease: acquiring.acquired() }),
            Err(e @ PoolError::Timeout(_)) => {
                acquiring.timed_out();
                Err(e)
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
