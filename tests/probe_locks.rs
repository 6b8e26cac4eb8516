//! Lock probes report the truth under controlled contention.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use pinchpoint::metrics::families;
use pinchpoint::probe::contention;
use pinchpoint::probe::lock::{AsyncMutex, Mutex, RwLock};

/// Waits for `cond` up to `deadline`.
fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}

#[test]
fn held_lock_records_one_contended_acquisition_with_its_wait() {
    let name = "test.contended";
    let lock = Arc::new(Mutex::new(name, 0u32));
    let since = Instant::now();
    let held = Arc::new(Barrier::new(2));
    let holder = {
        let (lock, held) = (lock.clone(), held.clone());
        std::thread::spawn(move || {
            let mut g = lock.lock();
            held.wait();
            std::thread::sleep(Duration::from_millis(50));
            *g += 1;
        })
    };
    held.wait(); // the holder has the lock
    let waiters = families().lock_waiters.get([name]);
    let waiter = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            *lock.lock() += 1;
        })
    };
    assert!(wait_until(Duration::from_secs(5), || waiters.get() == 1), "waiter never blocked");
    holder.join().unwrap();
    waiter.join().unwrap();
    assert_eq!(*lock.lock(), 2);

    let f = families();
    let l = [name, "exclusive"];
    assert_eq!(f.lock_contended.get(l).get(), 1);
    assert_eq!(f.lock_acquire.get(l).get(), 3);
    let wait = f.lock_wait.get(l).snapshot();
    assert_eq!(wait.count, 1);
    assert!(wait.sum >= 0.040, "wait {}s", wait.sum);
    assert_eq!(waiters.get(), 0);

    let samples: Vec<_> =
        contention::samples_since(since).into_iter().filter(|s| &*s.resource == "lock:test.contended").collect();
    assert_eq!(samples.len(), 1);
    let s = &samples[0];
    assert!(s.wait >= Duration::from_millis(40));
    assert_eq!(s.events, 1);
    let holder_site = s.holder_site.expect("holder site");
    assert!(holder_site.file().ends_with("probe_locks.rs"), "{holder_site}");
    assert!(s.waiter.is_some());
    let frames = s.frames();
    assert!(frames.iter().any(|f| f.contains("probe_locks")), "waiter stack should show the test: {frames:?}");

    let report = pinchpoint::probe::lock::report();
    let row = report.iter().find(|r| r.lock == name).expect("in report");
    assert_eq!(row.contended, 1);
    assert!(row.wait_seconds_total >= 0.040);
}

#[test]
fn uncontended_locking_counts_acquisitions_but_no_contention() {
    let name = "test.uncontended";
    let m = Mutex::new(name, Vec::new());
    for i in 0..100 {
        m.lock().push(i);
    }
    assert!(m.try_lock().is_some());
    let f = families();
    assert_eq!(f.lock_acquire.get([name, "exclusive"]).get(), 101);
    assert_eq!(f.lock_contended.get([name, "exclusive"]).get(), 0);
    assert_eq!(f.lock_wait.get([name, "exclusive"]).count(), 0);
    // one hold in HOLD_SAMPLE_EVERY is timed, per instance
    let holds = f.lock_hold.get([name]).count();
    let every = pinchpoint::metrics::catalog::HOLD_SAMPLE_EVERY as u64;
    assert!((101 / every..=101 / every + 1).contains(&holds), "holds sampled: {holds}");
    assert_eq!(m.into_inner().len(), 100);
    // The instance is gone; its acquisitions stay counted.
    assert_eq!(f.lock_acquire.get([name, "exclusive"]).get(), 101);
}

#[test]
fn hold_sampling_rate_holds_over_many_acquisitions() {
    let name = "test.hold_rate";
    let m = Mutex::new(name, 0u64);
    let n = 64_000u64;
    for _ in 0..n {
        *m.lock() += 1;
    }
    let every = pinchpoint::metrics::catalog::HOLD_SAMPLE_EVERY as u64;
    let holds = families().lock_hold.get([name]).count();
    let expect = n / every;
    assert!(holds.abs_diff(expect) <= expect / 10, "holds {holds}, expected about {expect}");
}

#[test]
fn dropped_and_live_instances_add_up_and_contention_without_blocking_counts() {
    let name = "test.churn";
    for _ in 0..10 {
        let m = Mutex::new(name, 0u8);
        for _ in 0..3 {
            *m.lock() += 1;
        }
    }
    let live = Mutex::new(name, 0u8);
    drop(live.lock());
    let f = families();
    assert_eq!(f.lock_acquire.get([name, "exclusive"]).get(), 31);

    // Two threads hammering one lock: every acquisition is counted exactly, and the number
    // of contended ones never exceeds the acquisitions.
    let name = "test.hammer";
    let lock = Arc::new(Mutex::new(name, 0u64));
    std::thread::scope(|s| {
        for _ in 0..2 {
            let lock = lock.clone();
            s.spawn(move || {
                for _ in 0..50_000 {
                    *lock.lock() += 1;
                }
            });
        }
    });
    assert_eq!(*lock.lock(), 100_000);
    let acquired = f.lock_acquire.get([name, "exclusive"]).get();
    assert_eq!(acquired, 100_001);
    assert!(f.lock_contended.get([name, "exclusive"]).get() <= acquired);
    assert!(f.lock_wait.get([name, "exclusive"]).count() <= f.lock_contended.get([name, "exclusive"]).get());
    assert_eq!(f.lock_waiters.get([name]).get(), 0);
}

#[test]
fn instances_sharing_a_name_share_series() {
    let name = "test.shard";
    let shards: Vec<Mutex<u64>> = (0..8).map(|_| Mutex::new(name, 0)).collect();
    for s in &shards {
        *s.lock() += 1;
    }
    assert_eq!(families().lock_acquire.get([name, "exclusive"]).get(), 8);
}

#[test]
fn rwlock_readers_wait_for_writer_in_shared_mode() {
    let name = "test.rw";
    let lock = Arc::new(RwLock::new(name, 0u32));
    let held = Arc::new(Barrier::new(2));
    let writer = {
        let (lock, held) = (lock.clone(), held.clone());
        std::thread::spawn(move || {
            let mut g = lock.write();
            held.wait();
            std::thread::sleep(Duration::from_millis(30));
            *g = 7;
        })
    };
    held.wait();
    assert_eq!(*lock.read(), 7);
    writer.join().unwrap();
    let f = families();
    assert_eq!(f.lock_contended.get([name, "shared"]).get(), 1);
    assert_eq!(f.lock_acquire.get([name, "shared"]).get(), 1);
    assert_eq!(f.lock_acquire.get([name, "exclusive"]).get(), 1);
    assert!(f.lock_wait.get([name, "shared"]).snapshot().sum >= 0.020);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_mutex_records_contention_and_cancelled_waiters_leave() {
    let name = "test.async";
    let lock = Arc::new(AsyncMutex::new(name, 0u32));
    let g = lock.lock().await;
    let waiters = families().lock_waiters.get([name]);
    let task = {
        let lock = lock.clone();
        tokio::spawn(async move {
            *lock.lock().await += 1;
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while waiters.get() != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(waiters.get(), 1);
    // A cancelled waiter must not stay counted.
    let cancelled = tokio::time::timeout(Duration::from_millis(10), lock.lock()).await;
    assert!(cancelled.is_err());
    assert_eq!(waiters.get(), 1);
    drop(g);
    task.await.unwrap();
    assert_eq!(waiters.get(), 0);
    let f = families();
    assert_eq!(f.lock_contended.get([name, "exclusive"]).get(), 1);
    assert_eq!(f.lock_acquire.get([name, "exclusive"]).get(), 2);
}
