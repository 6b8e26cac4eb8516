//! A bounded worker pool: N tokio tasks taking jobs from a bounded queue.
//!
//! `submit` never waits: a full queue is an immediate [`SubmitError::Full`] (back-pressure
//! the caller can see and count), and `submit_wait` waits for room. The pool reports its
//! shape (workers, queue depth and capacity), how long jobs queued, busy time as an integral
//! (`rate(worker_busy_seconds_total) / workers` = utilization) and job outcomes,
//! including panics, which are caught so one bad job does not kill a worker.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::contention::Sampler;
use crate::metrics::{families, Counter, Gauge, Histogram, Integral};

type Job = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Why a job was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue is at capacity; the job was not queued.
    #[error("worker pool queue is full; job rejected")]
    Full,
    /// The pool is shutting down; the job was not queued.
    #[error("worker pool is shut down; job rejected")]
    Closed,
}

struct Shared {
    name: &'static str,
    queue: Mutex<VecDeque<(Instant, Job)>>,
    /// One permit per queued job (plus one per worker at shutdown, to wake them).
    items: Semaphore,
    /// One permit per free queue slot.
    room: Semaphore,
    closed: AtomicBool,
    depth: Gauge,
    busy: Integral,
    queue_wait: Histogram,
    done: Counter,
    rejected: Counter,
    panicked: Counter,
    sampler: Sampler,
}

/// A pool of `workers` tasks running submitted futures, with a queue of `capacity`.
///
/// Its tasks are labelled with the pool's name (in `tasks_*` and tokio-console), and it
/// reports as `pinchpoint_worker*{pool="NAME"}`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use pinchpoint::probe::worker::{SubmitError, WorkerPool};
///
/// let pool = WorkerPool::new("docs.thumbnails", 2, 100);
/// pool.submit(async { /* resize one image */ }).expect("the queue has room");
/// pool.submit_wait(async {}).await.expect("not shut down");
/// pool.shutdown().await; // runs what is queued, then stops the workers
/// assert_eq!(pool.submit(async {}), Err(SubmitError::Closed));
/// # }
/// ```
pub struct WorkerPool {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    count: usize,
}

impl WorkerPool {
    /// Starts the workers on the current tokio runtime. `name` is bounded (`flush`).
    ///
    /// # Panics
    /// Outside a tokio runtime, or if `workers` or `capacity` is zero.
    pub fn new(name: &'static str, workers: usize, capacity: usize) -> Self {
        assert!(workers > 0 && capacity > 0, "worker pool needs workers and room");
        let f = families();
        f.worker_count.get([name]).set(workers as i64);
        f.worker_queue_capacity.get([name]).set(capacity as i64);
        let outcome = |o: &str| f.worker_jobs.get([name, o]);
        let shared = Arc::new(Shared {
            name,
            queue: Mutex::new(VecDeque::with_capacity(capacity)),
            items: Semaphore::new(0),
            room: Semaphore::new(capacity),
            closed: AtomicBool::new(false),
            depth: f.worker_queue_depth.get([name]),
            busy: f.worker_busy.get([name]),
            queue_wait: f.worker_queue_wait.get([name]),
            done: outcome("done"),
            rejected: outcome("rejected"),
            panicked: outcome("panicked"),
            sampler: Sampler::new(format!("worker:{name}")),
        });
        let handles = (0..workers)
            .map(|_| {
                // Labelled by the pool's name (tasks_alive, tokio-console), not by this line.
                super::task::spawn(name, worker(shared.clone()))
            })
            .collect();
        Self { shared, workers: Mutex::new(handles), count: workers }
    }

    /// The pool's name.
    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    /// Queues `job` if there is room; never waits.
    pub fn submit(&self, job: impl Future<Output = ()> + Send + 'static) -> Result<(), SubmitError> {
        if self.shared.closed.load(Ordering::Acquire) {
            self.shared.rejected.inc();
            return Err(SubmitError::Closed);
        }
        match self.shared.room.try_acquire() {
            Ok(p) => {
                p.forget();
                self.push(Box::pin(job))
            }
            Err(e) => {
                self.shared.rejected.inc();
                Err(match e {
                    tokio::sync::TryAcquireError::Closed => SubmitError::Closed,
                    tokio::sync::TryAcquireError::NoPermits => SubmitError::Full,
                })
            }
        }
    }

    /// Queues `job`, waiting for room if the queue is full.
    pub async fn submit_wait(&self, job: impl Future<Output = ()> + Send + 'static) -> Result<(), SubmitError> {
        if self.shared.closed.load(Ordering::Acquire) {
            self.shared.rejected.inc();
            return Err(SubmitError::Closed);
        }
        let permit = match self.shared.room.try_acquire() {
            Ok(p) => Ok(p),
            Err(_) => {
                let start = Instant::now();
                let p = self.shared.room.acquire().await;
                self.shared.sampler.record(start.elapsed(), None);
                p
            }
        };
        match permit {
            Ok(p) => {
                p.forget();
                self.push(Box::pin(job))
            }
            _ => {
                self.shared.rejected.inc();
                Err(SubmitError::Closed)
            }
        }
    }

    /// Queues `job` unless the pool is closed. The check and the push happen under the queue
    /// lock, which `shutdown` also takes to close the pool: a job is either queued before the
    /// workers learn of the shutdown (and they drain it before exiting) or rejected.
    fn push(&self, job: Job) -> Result<(), SubmitError> {
        {
            let mut queue = self.shared.queue.lock();
            if self.shared.closed.load(Ordering::Acquire) {
                drop(queue);
                self.shared.rejected.inc();
                return Err(SubmitError::Closed);
            }
            queue.push_back((Instant::now(), job));
        }
        self.shared.depth.inc();
        self.shared.items.add_permits(1);
        Ok(())
    }

    /// Jobs queued and not yet started.
    pub fn queue_depth(&self) -> usize {
        self.shared.queue.lock().len()
    }

    /// How many workers it runs.
    pub fn workers(&self) -> usize {
        self.count
    }

    /// Stops accepting jobs, runs every job already queued, and waits for the workers.
    pub async fn shutdown(&self) {
        {
            // Under the queue lock: a concurrent `push` either queued its job already or will
            // see `closed` (see `push`).
            let _queue = self.shared.queue.lock();
            self.shared.closed.store(true, Ordering::Release);
        }
        // Wake submit_wait callers (they see `closed`) and every worker (it exits once the
        // queue is empty).
        self.shared.room.close();
        self.shared.items.add_permits(self.count);
        let handles: Vec<_> = std::mem::take(&mut *self.workers.lock());
        for h in handles {
            let _ = h.await;
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        // Without shutdown(), queued jobs are dropped with the workers.
        for h in self.workers.lock().iter() {
            h.abort();
        }
    }
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("name", &self.shared.name)
            .field("workers", &self.count)
            .field("queue_depth", &self.queue_depth())
            .finish()
    }
}

async fn worker(s: Arc<Shared>) {
    loop {
        match s.items.acquire().await {
            Ok(p) => p.forget(),
            Err(_) => return,
        }
        let next = s.queue.lock().pop_front();
        let Some((queued_at, job)) = next else {
            if s.closed.load(Ordering::Acquire) {
                return;
            }
            continue;
        };
        s.depth.dec();
        s.room.add_permits(1);
        s.queue_wait.observe_duration(queued_at.elapsed());
        let busy = s.busy.enter();
        let result = AssertUnwindSafe(job).catch_unwind().await;
        s.busy.leave(busy);
        match result {
            Ok(()) => s.done.inc(),
            Err(_) => s.panicked.inc(),
        }
    }
}
