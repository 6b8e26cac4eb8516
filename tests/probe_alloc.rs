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
