//! Pool and worker-pool probes under controlled load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinchpoint::metrics::families;
use pinchpoint::probe::contention;
use pinchpoint::probe::pool::{PoolProbe, Semaphore};
use pinchpoint::probe::worker::{SubmitError, WorkerPool};

async fn eventually(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_of_two_with_three_acquirers_records_a_wait() {
    let name = "test.sem";
    let since = Instant::now();
    let sem = Semaphore::new(name, 2);
    let a = sem.acquire().await.unwrap();
    let b = sem.acquire().await.unwrap();
    assert_eq!(sem.probe().in_use(), 2);
    let third = {
        let sem = sem.clone();
        tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
        })
    };
    assert!(eventually(Duration::from_secs(5), || sem.probe().waiters() == 1).await);
    drop(a);
    third.await.unwrap();
    drop(b);
    let f = families();
    assert_eq!(f.pool_acquire.get([name, "immediate"]).get(), 2);
    assert_eq!(f.pool_acquire.get([name, "waited"]).get(), 1);
    assert_eq!(f.pool_acquire_wait.get([name]).count(), 3);
    assert_eq!(sem.probe().in_use(), 0);
    assert_eq!(sem.probe().waiters(), 0);
    assert_eq!(f.pool_max_size.get([name]).get(), 2);
    assert!(contention::samples_since(since).iter().any(|s| &*s.resource == "pool:test.sem"));
    let rows = pinchpoint::probe::pool::report();
    let row = rows.iter().find(|r| r.pool == name).unwrap();
    assert_eq!(row.acquired_after_wait, 1);
}

#[tokio::test]
async fn timeout_and_cancelled_acquisitions_count_as_timeout() {
    let name = "test.sem.timeout";
    let sem = Semaphore::new(name, 1);
    let _held = sem.acquire().await.unwrap();
    assert!(sem.acquire_timeout(Duration::from_millis(20)).await.is_none());
    // Cancelling a pending acquire (caller's own timeout) also counts as timeout.
    assert!(tokio::time::timeout(Duration::from_millis(5), sem.acquire()).await.is_err());
    let f = families();
    assert_eq!(f.pool_acquire.get([name, "timeout"]).get(), 2);
    assert_eq!(sem.probe().waiters(), 0);
}

#[test]
fn utilization_integral_grows_only_while_a_lease_is_held() {
    let probe = PoolProbe::new("test.integral", 4);
    let lease = probe.acquire_started().acquired();
    let start = probe.in_use_seconds();
    std::thread::sleep(Duration::from_millis(20));
    let during = probe.in_use_seconds();
    assert!(during - start >= 0.015, "{start} -> {during}");
    lease.release();
    let after = probe.in_use_seconds();
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(probe.in_use_seconds(), after);
    assert_eq!(probe.in_use(), 0);
}

#[test]
fn open_close_churn_is_counted_by_reason() {
    let name = "test.churn";
    let probe = PoolProbe::new(name, 8);
    for _ in 0..5 {
        probe.opened(Duration::from_millis(1));
        probe.closed("per-request");
    }
    probe.opened(Duration::from_millis(1));
    let f = families();
    assert_eq!(f.pool_opened.get([name]).get(), 6);
    assert_eq!(f.pool_closed.get([name, "per-request"]).get(), 5);
    assert_eq!(f.pool_open.get([name]).count(), 6);
    assert_eq!(f.pool_size.get([name]).get(), 1);
    let failed = probe.acquire_started();
    failed.failed();
    assert_eq!(f.pool_acquire.get([name, "error"]).get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_pool_rejects_when_full_counts_panics_and_drains_on_shutdown() {
    let name = "test.workers";
    let pool = WorkerPool::new(name, 1, 2);
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Arc::new(tokio::sync::Notify::new());
    {
        let started = started.clone();
        pool.submit(async move {
            started.notify_one();
            let _ = release_rx.await;
        })
        .unwrap();
    }
    started.notified().await; // the only worker is busy
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let ran = ran.clone();
        pool.submit(async move {
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    assert_eq!(pool.submit(async {}), Err(SubmitError::Full));
    assert_eq!(SubmitError::Full.to_string(), "worker pool queue is full; job rejected");
    let f = families();
    assert_eq!(f.worker_queue_depth.get([name]).get(), 2);
    release_tx.send(()).unwrap();
    assert!(eventually(Duration::from_secs(5), || pool.queue_depth() == 0).await);
    pool.submit(async { panic!("job panics on purpose") }).unwrap();
    for _ in 0..2 {
        let ran = ran.clone();
        pool.submit_wait(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    }
    pool.shutdown().await;
    assert_eq!(ran.load(Ordering::SeqCst), 4, "queued jobs drained");
    assert_eq!(pool.submit(async {}), Err(SubmitError::Closed));
    assert_eq!(f.worker_jobs.get([name, "done"]).get(), 5);
    assert_eq!(f.worker_jobs.get([name, "panicked"]).get(), 1);
    assert_eq!(f.worker_jobs.get([name, "rejected"]).get(), 2);
    assert_eq!(f.worker_queue_wait.get([name]).count(), 6);
    assert_eq!(f.worker_count.get([name]).get(), 1);
    assert!(f.worker_busy.get([name]).seconds() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_waits_for_room() {
    let pool = WorkerPool::new("test.workers.wait", 1, 1);
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..5 {
        let done = done.clone();
        pool.submit_wait(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            done.fetch_add(1, Ordering::SeqCst);
        })
        .await
        .unwrap();
    }
    pool.shutdown().await;
    assert_eq!(done.load(Ordering::SeqCst), 5);
}

/// A submit racing shutdown never loses its job: every accepted job runs, every other submit
/// returns `Closed` (or `Full`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submit_racing_shutdown_runs_every_accepted_job() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    for round in 0..200 {
        let pool = Arc::new(WorkerPool::new("test.workers.race", 2, 1024));
        let ran = Arc::new(AtomicUsize::new(0));
        // Submitters keep submitting until the pool says Closed, so submits are in flight
        // while shutdown runs.
        let submitters: Vec<_> = (0..3)
            .map(|_| {
                let (pool, ran) = (pool.clone(), ran.clone());
                tokio::spawn(async move {
                    let mut accepted = 0usize;
                    loop {
                        let ran = ran.clone();
                        match pool.submit(async move {
                            ran.fetch_add(1, SeqCst);
                        }) {
                            Ok(()) => accepted += 1,
                            Err(SubmitError::Closed) => return accepted,
                            Err(SubmitError::Full) => tokio::task::yield_now().await,
                        }
                    }
                })
            })
            .collect();
        // Shut down while the submitters are busy.
        while ran.load(SeqCst) < 10 * (round % 4 + 1) {
            tokio::task::yield_now().await;
        }
        pool.shutdown().await;
        let mut accepted = 0;
        for s in submitters {
            accepted += s.await.unwrap();
        }
        // Submits that passed after shutdown returned were rejected; the rest ran.
        assert_eq!(ran.load(SeqCst), accepted, "round {round}: accepted jobs must all run");
        assert_eq!(pool.submit(async {}), Err(SubmitError::Closed));
    }
}
