//! The counting allocator, installed as this test binary's global allocator.

use pinchpoint::probe::alloc::{self, CountingAlloc};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::system();

#[test]
fn counts_a_known_one_mib_allocation() {
    let _warm = std::hint::black_box(Box::new(0u64));
    assert!(alloc::is_installed());
    let before = alloc::stats().unwrap();
    let t_before = alloc::thread_allocated_bytes().unwrap();
    let big = vec![1u8; 1 << 20];
    std::hint::black_box(&big);
    let during = alloc::stats().unwrap();
    assert!(during.alloc_bytes - before.alloc_bytes >= 1 << 20);
    assert!(during.large > before.large);
    assert!(alloc::thread_allocated_bytes().unwrap() - t_before >= 1 << 20);
    assert!(during.peak_bytes >= during.live_bytes);
    drop(big);
    let after = alloc::stats().unwrap();
    assert!(after.free_bytes - during.free_bytes >= 1 << 20);
    assert!(after.frees > during.frees);
}

#[test]
fn counts_from_many_threads_fold_on_read() {
    let before = alloc::stats().unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1000 {
                    std::hint::black_box(Box::new([0u8; 100]));
                }
            });
        }
    });
    let after = alloc::stats().unwrap();
    assert!(after.allocs - before.allocs >= 4000);
    assert!(after.alloc_bytes - before.alloc_bytes >= 400_000);
}

#[tokio::test]
async fn request_alloc_bytes_measures_the_request_future() {
    let out = alloc::track_request("/test/alloc", async {
        let v = vec![7u8; 256 * 1024];
        tokio::task::yield_now().await;
        let w = vec![7u8; 256 * 1024];
        v.len() + w.len()
    })
    .await;
    assert_eq!(out, 512 * 1024);
    let h = pinchpoint::metrics::families().request_alloc.get(["/test/alloc"]).snapshot();
    assert_eq!(h.count, 1);
    assert!(h.sum >= (512 * 1024) as f64, "{}", h.sum);
    let text = pinchpoint::metrics::encode();
    for name in [
        "pinchpoint_alloc_total",
        "pinchpoint_alloc_bytes_total",
        "pinchpoint_free_total",
        "pinchpoint_heap_live_bytes",
        "pinchpoint_heap_peak_bytes",
        "pinchpoint_request_alloc_bytes_count",
    ] {
        assert!(text.contains(&format!("\n{name}")), "{name} missing");
    }
}

#[test]
fn counts_stay_exact_across_packed_word_spills() {
    // 200,000 allocations pass the packed word's 2^16 count limit three times; on a thread
    // of its own nothing else allocates between the two readings.
    let n = 200_000u64;
    let delta = std::thread::spawn(move || {
        let _warm = std::hint::black_box(Box::new(0u64));
        let before = alloc::thread_allocated_bytes().unwrap();
        for _ in 0..n {
            std::hint::black_box(Box::new([0u8; 48]));
        }
        alloc::thread_allocated_bytes().unwrap() - before
    })
    .join()
    .unwrap();
    assert_eq!(delta, n * 48);
}

#[test]
fn a_reader_never_sees_counts_go_backwards() {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..1_000_000 {
                std::hint::black_box(Box::new([0u8; 24]));
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        let mut last = alloc::stats().unwrap();
        let mut reads = 0;
        while !done.load(std::sync::atomic::Ordering::Acquire) {
            let now = alloc::stats().unwrap();
            for (name, a, b) in [
                ("allocs", last.allocs, now.allocs),
                ("alloc_bytes", last.alloc_bytes, now.alloc_bytes),
                ("frees", last.frees, now.frees),
                ("free_bytes", last.free_bytes, now.free_bytes),
            ] {
                assert!(b >= a, "{name} went from {a} to {b} after {reads} reads");
            }
            last = now;
            reads += 1;
        }
    });
}

#[test]
fn threads_past_the_slot_limit_share_counters_and_still_count() {
    for _ in 0..alloc::SLOTS {
        std::thread::spawn(|| std::hint::black_box(Box::new(0u8))).join().unwrap();
    }
    let before = alloc::stats().unwrap();
    let shared = std::thread::spawn(|| {
        std::hint::black_box(Box::new([0u8; 3000]));
        alloc::thread_allocated_bytes()
    })
    .join()
    .unwrap();
    assert_eq!(shared, None, "a thread past the limit has no counters of its own");
    let after = alloc::stats().unwrap();
    assert!(after.alloc_bytes - before.alloc_bytes >= 3000);
}
