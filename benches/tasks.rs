//! Task-tracking memory: bytes the probes keep per live task, and flat memory after a million
//! spawned-and-finished tasks. Not a timing benchmark: it prints figures measured with the
//! counting allocator installed (`harness = false`).
//!
//! Run: `cargo bench --bench tasks --no-default-features`
//!
//! `benches/peers.rs` measures the same against tokio-console's `console-subscriber` (about
//! 52 KiB per task: poll-time and scheduled-time histograms, kept after the task finished) and
//! `tokio-metrics`' `TaskMonitor`, side by side.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use pinchpoint::probe::alloc::{self, CountingAlloc};
use pinchpoint::probe::{runtime, task};
use tokio::runtime::{Builder, Runtime};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc::system();

const BATCH: usize = 1_000;

/// `cargo bench` passes `--bench`; `cargo test --all-targets` does not and gets a smaller
/// smoke run.
fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

const TRACKED_NAME: &str = "bench.tracked";

fn live_bytes() -> i64 {
    alloc::stats().expect("counting allocator installed").live_bytes as i64
}

/// Live tasks the probes track under a label matching `pred`.
fn tracked_alive(pred: impl Fn(&str) -> bool) -> i64 {
    task::report(0).by_task.iter().filter(|g| pred(&g.task)).map(|g| g.alive).sum()
}

fn is_ours(label: &str) -> bool {
    label == TRACKED_NAME || label.contains("tasks.rs")
}

/// A task that parks on `gate` until released: its future is the same whichever way it is
/// spawned, so differences in heap use are the tracking's.
async fn parked(gate: Arc<Semaphore>, started: Arc<AtomicUsize>) {
    started.fetch_add(1, Relaxed);
    let _ = gate.acquire().await;
}

/// Heap bytes per live task when `live` tasks are spawned with `spawn` and parked.
fn bytes_per_live_task(
    rt: &Runtime,
    live: usize,
    spawn: impl Fn(Arc<Semaphore>, Arc<AtomicUsize>) -> JoinHandle<()>,
) -> (f64, i64) {
    rt.block_on(async {
        // Warm up: let the runtime, the registry shards and the label series reach their
        // steady size first.
        for _ in 0..2 {
            let gate = Arc::new(Semaphore::new(0));
            let started = Arc::new(AtomicUsize::new(0));
            let hs: Vec<_> = (0..live).map(|_| spawn(gate.clone(), started.clone())).collect();
            gate.close();
            for h in hs {
                let _ = h.await;
            }
        }
        let gate = Arc::new(Semaphore::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::with_capacity(live);
        let before = live_bytes();
        for _ in 0..live {
            handles.push(spawn(gate.clone(), started.clone()));
        }
        while started.load(Relaxed) < live {
            tokio::task::yield_now().await;
        }
        let during = live_bytes();
        let alive = tracked_alive(is_ours);
        gate.close();
        for h in handles {
            let _ = h.await;
        }
        ((during - before) as f64 / live as f64, alive)
    })
}

/// Spawns and joins `churn` trivial tasks; returns (heap before, heap after, tracked alive).
fn churn(rt: &Runtime, churn: usize, spawn: impl Fn(u64) -> JoinHandle<u64>) -> (i64, i64, i64, f64) {
    rt.block_on(async {
        let mut handles = Vec::with_capacity(BATCH);
        for i in 0..BATCH as u64 {
            handles.push(spawn(i));
        }
        for h in handles.drain(..) {
            black_box(h.await.unwrap());
        }
        let before = live_bytes();
        let t = Instant::now();
        for b in 0..(churn / BATCH) as u64 {
            for i in 0..BATCH as u64 {
                handles.push(spawn(b * BATCH as u64 + i));
            }
            for h in handles.drain(..) {
                black_box(h.await.unwrap());
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let after = live_bytes();
        (before, after, tracked_alive(is_ours), secs)
    })
}

fn plain_runtime() -> Runtime {
    Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn hooked_runtime() -> Runtime {
    let mut b = runtime::builder_multi_thread();
    b.worker_threads(2);
    b.build().unwrap()
}

fn main() {
    // Live tasks per measurement; tasks spawned and finished for the flat-memory check.
    let (live, spawned) = if benching() { (20_000, 1_000_000) } else { (2_000, 20_000) };
    let plain = plain_runtime();
    let hooked = hooked_runtime();

    let (base, _) = bytes_per_live_task(&plain, live, |g, s| tokio::spawn(parked(g, s)));
    let (hooked_b, hooked_alive) = bytes_per_live_task(&hooked, live, |g, s| tokio::spawn(parked(g, s)));
    let (named_b, named_alive) = bytes_per_live_task(&hooked, live, |g, s| task::spawn(TRACKED_NAME, parked(g, s)));
    println!("TASKMEM live tasks measured                         {live}");
    println!("TASKMEM tokio alone (no probes), bytes/live task    {base:>8.1}");
    println!(
        "TASKMEM tokio::spawn + hooks, bytes/live task       {hooked_b:>8.1}  tracked extra {:>6.1} B  (alive seen: {hooked_alive})",
        hooked_b - base
    );
    println!(
        "TASKMEM task::spawn(name), bytes/live task          {named_b:>8.1}  tracked extra {:>6.1} B  (alive seen: {named_alive})",
        named_b - base
    );

    let (b0, b1, alive, secs) = churn(&hooked, spawned, |i| task::spawn(TRACKED_NAME, async move { i }));
    println!(
        "TASKMEM task::spawn x {spawned}: heap before {b0} B, after {b1} B, delta {:+} B, tracked alive {alive}, {:.0} ns/task",
        b1 - b0,
        secs * 1e9 / spawned as f64
    );
    let (b0, b1, alive, secs) = churn(&hooked, spawned, |i| tokio::spawn(async move { i }));
    println!(
        "TASKMEM tokio::spawn (hooks) x {spawned}: heap before {b0} B, after {b1} B, delta {:+} B, tracked alive {alive}, {:.0} ns/task",
        b1 - b0,
        secs * 1e9 / spawned as f64
    );
    let (b0, b1, _, secs) = churn(&plain, spawned, |i| tokio::spawn(async move { i }));
    println!(
        "TASKMEM tokio::spawn (no probes) x {spawned}: heap before {b0} B, after {b1} B, delta {:+} B, {:.0} ns/task",
        b1 - b0,
        secs * 1e9 / spawned as f64
    );
}
