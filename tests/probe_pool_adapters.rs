//! The bb8 and deadpool adapters (features `bb8`, `deadpool`) with real pools of one
//! connection: a second `get` while the first connection is out waits, and the probe reports
//! that wait.
#![cfg(all(feature = "bb8", feature = "deadpool"))]

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use pinchpoint::metrics::families;
use pinchpoint::probe::pool::PoolProbe;

/// A manager whose connections are numbers: creating one is real pool work, with no I/O.
#[derive(Default)]
struct Numbers(AtomicU32);

impl bb8::ManageConnection for Numbers {
    type Connection = u32;
    type Error = std::io::Error;
    async fn connect(&self) -> Result<u32, std::io::Error> {
        Ok(self.0.fetch_add(1, Relaxed))
    }
    async fn is_valid(&self, _: &mut u32) -> Result<(), std::io::Error> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u32) -> bool {
        false
    }
}

impl deadpool::managed::Manager for Numbers {
    type Type = u32;
    type Error = std::io::Error;
    async fn create(&self) -> Result<u32, std::io::Error> {
        Ok(self.0.fetch_add(1, Relaxed))
    }
    async fn recycle(
        &self,
        _: &mut u32,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<std::io::Error> {
        Ok(())
    }
}

/// Waits until `probe` has a caller waiting, then lets a little time pass so the wait is
/// measurably longer than an immediate hand-out.
async fn until_waiting(probe: &PoolProbe) {
    let until = Instant::now() + Duration::from_secs(10);
    while probe.waiters() < 1 {
        assert!(Instant::now() < until, "the second get never started waiting");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
}

fn assert_reported_a_wait(name: &str) {
    let f = families();
    assert_eq!(f.pool_max_size.get([name]).get(), 1);
    assert!(f.pool_acquire.get([name, "waited"]).get() >= 1, "{name}: no waited acquisition");
    assert_eq!(f.pool_acquire_wait.get([name]).count(), 2, "{name}: both gets observed");
    assert_eq!(f.pool_in_use.get([name]).get(), 0, "{name}: leases ended with the connections");
    assert_eq!(f.pool_acquire.get([name, "timeout"]).get() + f.pool_acquire.get([name, "error"]).get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bb8_pool_of_one_reports_the_contended_wait() {
    let pool = bb8::Pool::builder()
        .max_size(1)
        .connection_timeout(Duration::from_secs(30))
        .build(Numbers::default())
        .await
        .unwrap();
    let pool = pinchpoint::probe::bb8::ProbedPool::new("adapter.bb8", pool);
    let held = pool.get().await.unwrap();
    assert_eq!(pool.probe().in_use(), 1);
    let second = {
        let pool = pool.clone();
        tokio::spawn(async move { *pool.get().await.unwrap() })
    };
    until_waiting(pool.probe()).await;
    let first = *held;
    drop(held);
    assert_eq!(second.await.unwrap(), first, "the one connection went round");
    assert_reported_a_wait("adapter.bb8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadpool_pool_of_one_reports_the_contended_wait() {
    let pool = deadpool::managed::Pool::builder(Numbers::default())
        .max_size(1)
        .runtime(deadpool::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(30)))
        .build()
        .unwrap();
    let pool = pinchpoint::probe::deadpool::ProbedPool::new("adapter.deadpool", pool);
    let held = pool.get().await.unwrap();
    let second = {
        let pool = pool.clone();
        tokio::spawn(async move { *pool.get().await.unwrap() })
    };
    until_waiting(pool.probe()).await;
    let first = *held;
    drop(held);
    assert_eq!(second.await.unwrap(), first, "the one object went round");
    assert_reported_a_wait("adapter.deadpool");
}
