//! A small connection pool that lends each resource to one caller at a time.
//!
//! Waiting callers queue on a semaphore, so a pool that is too small shows up as acquire
//! waits (in `pinchpoint_pool_*` metrics) rather than as a mystery slowdown elsewhere.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::probe::pool::{Lease as InUse, PoolProbe};

/// Something a pool can open, like a database connection.
pub trait Resource: Sized + Send + 'static {
    type Config: Send + Sync + 'static;
    fn open(config: &Self::Config) -> impl Future<Output = Result<Self, String>> + Send;
}

pub struct Pool<R: Resource> {
    inner: Arc<Inner<R>>,
}

struct Inner<R: Resource> {
    idle: parking_lot::Mutex<Vec<R>>,
    permits: Arc<Semaphore>,
    config: R::Config,
    acquire_timeout: Duration,
    max_size: usize,
    probe: PoolProbe,
}

impl<R: Resource> Pool<R> {
    pub fn new(name: &'static str, max_size: usize, acquire_timeout: Duration, config: R::Config) -> Self {
        let probe = PoolProbe::new(name, max_size);
        Pool {
            inner: Arc::new(Inner {
                idle: parking_lot::Mutex::new(Vec::with_capacity(max_size)),
                permits: Arc::new(Semaphore::new(max_size)),
                config,
                acquire_timeout,
                max_size,
                probe,
            }),
        }
    }

    /// Opens `n` resources now, so the first requests do not pay for connecting.
    pub async fn warm(&self, n: usize) -> Result<(), String> {
        let mut leases = Vec::with_capacity(n);
        for _ in 0..n {
            leases.push(self.get().await?);
        }
        Ok(())
    }

    /// Borrows a resource, opening one if none is idle. Fails after the acquire timeout.
    pub async fn get(&self) -> Result<Lease<R>, String> {
        let inner = &self.inner;
        let acquiring = inner.probe.acquire_started();
        let permit = match inner.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => match tokio::time::timeout(inner.acquire_timeout, inner.permits.clone().acquire_owned()).await {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => {
                    acquiring.failed();
                    return Err("pool closed".into());
                }
                Err(_) => {
                    acquiring.timed_out();
                    return Err(format!(
                        "no connection free within {:?} (pool of {})",
                        inner.acquire_timeout, inner.max_size
                    ));
                }
            },
        };
        let idle = inner.idle.lock().pop();
        let resource = match idle {
            Some(r) => r,
            None => {
                let started = Instant::now();
                match R::open(&inner.config).await {
                    Ok(r) => {
                        inner.probe.opened(started.elapsed());
                        r
                    }
                    Err(e) => {
                        acquiring.failed();
                        return Err(e);
                    }
                }
            }
        };
        let in_use = acquiring.acquired();
        Ok(Lease {
            resource: Some(resource),
            pool: self.inner.clone(),
            _permit: permit,
            _in_use: in_use,
            discard: false,
        })
    }
}

/// A borrowed resource; goes back to the pool on drop unless [`Lease::discard`]ed.
pub struct Lease<R: Resource> {
    resource: Option<R>,
    pool: Arc<Inner<R>>,
    _permit: OwnedSemaphorePermit,
    _in_use: InUse,
    discard: bool,
}

impl<R: Resource> Lease<R> {
    /// Closes the resource instead of returning it: use after an I/O error, when the
    /// connection's state is unknown.
    pub fn discard(&mut self) {
        self.discard = true;
    }
}

impl<R: Resource> Deref for Lease<R> {
    type Target = R;
    fn deref(&self) -> &R {
        self.resource.as_ref().expect("present until drop")
    }
}

impl<R: Resource> DerefMut for Lease<R> {
    fn deref_mut(&mut self) -> &mut R {
        self.resource.as_mut().expect("present until drop")
    }
}

impl<R: Resource> Drop for Lease<R> {
    fn drop(&mut self) {
        if let Some(r) = self.resource.take() {
            if self.discard {
                self.pool.probe.closed("error");
            } else {
                self.pool.idle.lock().push(r);
            }
        }
    }
}
