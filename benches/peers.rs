//! pinchpoint's probes against the libraries a user would pick instead, each on its own
//! ground, side by side in one run (interleaved rounds; min / median / max of per-round
//! ratios, see `support/rounds.rs`):
//!
//! - allocation counting: `CountingAlloc` against `stats_alloc`, 1 and 2 threads;
//! - histogram observe: against the `prometheus` crate, `prometheus-client`'s histogram and
//!   `metrics` with `metrics-exporter-prometheus`, 1 and 2 threads;
//! - per-task cost: spawn+join through pinchpoint's task hooks and `task::spawn` against
//!   `tokio-metrics`' `TaskMonitor::instrument` and plain tokio;
//! - memory per task: against console-subscriber's layer (bytes per live task and bytes kept
//!   after tasks finished), measured with the counting allocator.
//!
//! Run: `cargo bench --bench peers` (`RATIO_ROUNDS=N`, `RATIO_ONLY=substring`; `PEERS_MEMORY=0`
//! skips the memory part, which waits for console-subscriber's aggregator).

#[path = "support/rounds.rs"]
mod rounds;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use pinchpoint::metrics::{Histogram, DURATION_BOUNDS_NS};
use pinchpoint::probe::alloc::{self, CountingAlloc};
use pinchpoint::probe::{runtime, task};
use rounds::{compare, contender};
use stats_alloc::StatsAlloc;
use tokio::runtime::{Builder, Runtime};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc::system();

/// `cargo bench` passes `--bench`; `cargo test --all-targets` does not and gets a smoke run.
fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Scales an op count down for the smoke run.
fn ops(n: u64) -> u64 {
    if benching() {
        n
    } else {
        (n / 100).max(10)
    }
}

/// Runs `f(iters)` on `threads` threads started together; returns the wall time.
fn on_threads_wall(threads: usize, iters: u64, f: impl Fn(u64) + Sync) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    f(iters);
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        for h in hs {
            h.join().unwrap();
        }
        t.elapsed()
    })
}

/// CPU time of the calling thread: on a shared machine a preempted round does not count the
/// time it waited for a core.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One thread: its CPU time. Several: the wall time from a common start, since the cost under
/// contention is the threads' waiting on each other's cache lines.
fn on_threads(threads: usize, iters: u64, f: impl Fn(u64) + Sync) -> Duration {
    if threads == 1 {
        let t = thread_cpu();
        f(iters);
        return thread_cpu() - t;
    }
    on_threads_wall(threads, iters, f)
}

/// A contender's run: `f` on `threads` threads.
fn threaded<'a>(threads: usize, f: &'a (dyn Fn(u64) + Sync)) -> impl Fn(u64) -> Duration + 'a {
    move |n| on_threads(threads, n, f)
}

fn timed(f: impl Fn(u64), n: u64) -> Duration {
    let t = thread_cpu();
    f(n);
    thread_cpu() - t
}

// ---- allocation counting -----------------------------------------------------------------

static OURS_ALLOC: CountingAlloc = CountingAlloc::system();
static STATS_ALLOC: StatsAlloc<System> = StatsAlloc::system();

fn alloc_loop<A: GlobalAlloc>(a: &A, n: u64) {
    let layout = Layout::from_size_align(64, 8).unwrap();
    for _ in 0..n {
        // SAFETY: matching alloc/dealloc with the same layout.
        unsafe {
            let p = a.alloc(layout);
            black_box(p);
            a.dealloc(p, layout);
        }
    }
}

fn allocation_counting() {
    for threads in [1, 2] {
        compare(
            &format!("alloc+free 64 B, {threads} thread(s)"),
            ops(1_000_000),
            0,
            &[
                contender("stats_alloc", |n| on_threads(threads, n, |n| alloc_loop(&STATS_ALLOC, n))),
                contender("pinchpoint CountingAlloc", |n| on_threads(threads, n, |n| alloc_loop(&OURS_ALLOC, n))),
                contender("System (uncounted)", |n| on_threads(threads, n, |n| alloc_loop(&System, n))),
            ],
        );
    }
    // stats_alloc counted exactly the bench's own calls (it is not the global allocator).
    let theirs = STATS_ALLOC.stats();
    println!("RATIO   counts check: stats_alloc {} allocs / {} frees", theirs.allocations, theirs.deallocations);
}

// ---- histogram observe -------------------------------------------------------------------

fn histogram_observe() {
    let seconds: Vec<f64> = DURATION_BOUNDS_NS.iter().map(|&b| b as f64 * 1e-9).collect();
    let ours = Histogram::durations();
    let client = prometheus_client::metrics::histogram::Histogram::new(seconds.iter().copied());
    let rust_prometheus = prometheus::Histogram::with_opts(
        prometheus::HistogramOpts::new("bench_observe_seconds", "bench").buckets(seconds.clone()),
    )
    .expect("valid buckets");
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&seconds)
        .expect("valid buckets")
        .build_recorder();
    let upkeep = recorder.handle();
    let key = metrics::Key::from_static_name("bench_observe_seconds");
    let meta = metrics::Metadata::new("peers", metrics::Level::INFO, None);
    let metrics_handle = metrics::Recorder::register_histogram(&recorder, &key, &meta);

    // Values spread over the buckets the way request durations are (37 µs ... 3 ms).
    let values: Vec<Duration> = (0..64).map(|i| Duration::from_nanos(37_000 + i * 47_000)).collect();
    let v = |i: u64| values[(i & 63) as usize];
    for threads in [1, 2] {
        let obs_ours = |n: u64| (0..n).for_each(|i| ours.observe_duration(black_box(v(i))));
        let obs_prom = |n: u64| (0..n).for_each(|i| rust_prometheus.observe(black_box(v(i)).as_secs_f64()));
        let obs_client = |n: u64| (0..n).for_each(|i| client.observe(black_box(v(i)).as_secs_f64()));
        let obs_metrics = |n: u64| (0..n).for_each(|i| metrics_handle.record(black_box(v(i)).as_secs_f64()));
        compare(
            &format!("histogram observe, {threads} thread(s)"),
            ops(1_000_000),
            1,
            &[
                contender("pinchpoint Histogram", threaded(threads, &obs_ours)),
                contender("prometheus (crate) Histogram", threaded(threads, &obs_prom)),
                contender("prometheus-client Histogram", threaded(threads, &obs_client)),
                // `metrics` defers the bucketing: `record` appends (value, time) to a shared
                // lock-free bucket that upkeep (a scrape, or every 5 s) drains. Both halves
                // are the cost of an observation; upkeep here runs once per round, as a
                // scrape every 1-2 ms of observations would.
                contender("metrics record (held handle)", threaded(threads, &obs_metrics)),
                contender("metrics record + drain (upkeep)", |n| {
                    let d = on_threads(threads, n, obs_metrics);
                    d + timed(|_| upkeep.run_upkeep(), 1)
                }),
            ],
        );
        // Keep the bucket drained between comparisons (not timed).
        upkeep.run_upkeep();
    }
    let o = ours.snapshot().count;
    println!("RATIO   counts check: pinchpoint {o}, prometheus {}", rust_prometheus.get_sample_count());
}

// ---- per-task cost -----------------------------------------------------------------------

const BATCH: usize = 1_000;

/// Spawns and joins `n` tasks in batches of [`BATCH`] from a task on the current-thread
/// runtime `rt` (services spawn from tasks: a spawn from outside any task costs the hooks one
/// more clock read); returns the thread's CPU time, which is all of it: spawning, polling,
/// finishing, joining.
fn spawn_join<S>(rt: &Runtime, n: u64, spawn: S) -> Duration
where
    S: Fn(u64) -> JoinHandle<u64> + Send + 'static,
{
    rt.block_on(async move {
        let driver = tokio::spawn(async move {
            let t = thread_cpu();
            let mut handles = Vec::with_capacity(BATCH);
            let mut done = 0;
            while done < n {
                let batch = (n - done).min(BATCH as u64);
                for i in 0..batch {
                    handles.push(spawn(done + i));
                }
                for h in handles.drain(..) {
                    black_box(h.await.unwrap());
                }
                done += batch;
            }
            thread_cpu() - t
        });
        driver.await.unwrap()
    })
}

async fn trivial(i: u64) -> u64 {
    i
}

/// Two polls: the task yields once before it returns.
async fn yields_once(i: u64) -> u64 {
    tokio::task::yield_now().await;
    i
}

// Current-thread runtimes: one thread does all the work, so its CPU time is the cost, free of
// cross-thread wake-ups and of the other processes on a shared machine.
fn plain_runtime() -> Runtime {
    Builder::new_current_thread().enable_all().build().unwrap()
}

fn hooked_runtime() -> Runtime {
    runtime::builder_current_thread().build().unwrap()
}

/// tokio's hook mechanism alone: the same four hooks, doing nothing.
fn empty_hooks_runtime() -> Runtime {
    let mut b = Builder::new_current_thread();
    b.enable_all();
    b.on_task_spawn(|m| {
        black_box(m.id());
    })
    .on_task_terminate(|m| {
        black_box(m.id());
    })
    .on_before_task_poll(|m| {
        black_box(m.id());
    })
    .on_after_task_poll(|m| {
        black_box(m.id());
    });
    b.build().unwrap()
}

fn per_task_cost() {
    let plain = plain_runtime();
    let hooked = hooked_runtime();
    let empty = empty_hooks_runtime();
    let monitor = tokio_metrics::TaskMonitor::new();
    macro_rules! variant {
        ($title:expr, $work:ident) => {
            compare(
                $title,
                ops(50_000),
                0,
                &[
                    contender("tokio::spawn (no probes)", |n| spawn_join(&plain, n, |i| tokio::spawn($work(i)))),
                    contender("tokio::spawn, empty hooks", |n| spawn_join(&empty, n, |i| tokio::spawn($work(i)))),
                    contender("tokio-metrics TaskMonitor", |n| {
                        let m = monitor.clone();
                        spawn_join(&plain, n, move |i| tokio::spawn(m.instrument($work(i))))
                    }),
                    contender("pinchpoint hooks (tokio::spawn)", |n| {
                        spawn_join(&hooked, n, |i| tokio::spawn($work(i)))
                    }),
                    contender("pinchpoint task::spawn (hooked)", |n| {
                        spawn_join(&hooked, n, |i| task::spawn("bench.peers", $work(i)))
                    }),
                    contender("pinchpoint task::spawn (no hooks)", |n| {
                        spawn_join(&plain, n, |i| task::spawn("bench.peers", $work(i)))
                    }),
                ],
            )
        };
    }
    variant!("spawn+join, task returns at once (CPU ns/task, current-thread runtime)", trivial);
    variant!("spawn+join, task yields once (CPU ns/task, 2 polls)", yields_once);
    println!("RATIO   counts check: TaskMonitor instrumented {} tasks", monitor.cumulative().instrumented_count);
}

// ---- memory per task ---------------------------------------------------------------------

fn live_bytes() -> i64 {
    alloc::stats().expect("counting allocator installed").live_bytes as i64
}

async fn parked(gate: Arc<Semaphore>, started: Arc<AtomicUsize>) {
    started.fetch_add(1, Relaxed);
    let _ = gate.acquire().await;
}

/// Heap bytes per live task while `live` tasks are parked, and bytes still held per task
/// after they all finished, each read `settle` after the event (console-subscriber's
/// aggregator works on its own thread and needs that time to see the tasks).
fn task_memory(
    rt: &Runtime,
    live: usize,
    settle: Duration,
    spawn: impl Fn(Arc<Semaphore>, Arc<AtomicUsize>) -> JoinHandle<()>,
) -> (f64, f64) {
    rt.block_on(async {
        // Warm up the runtime's and the probes' own structures.
        let gate = Arc::new(Semaphore::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..64).map(|_| spawn(gate.clone(), started.clone())).collect();
        gate.close();
        for h in hs {
            let _ = h.await;
        }
        tokio::time::sleep(settle).await;
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
        tokio::time::sleep(settle).await;
        let during = live_bytes();
        gate.close();
        for h in handles {
            let _ = h.await;
        }
        // The handles' vector is gone too; what is left is what the tracking kept.
        tokio::time::sleep(settle).await;
        let after = live_bytes();
        ((during - before) as f64 / live as f64, (after - before) as f64 / live as f64)
    })
}

fn memory_per_task() {
    if std::env::var("PEERS_MEMORY").is_ok_and(|v| v == "0") {
        return;
    }
    let live = if benching() { 5_000 } else { 200 };
    let settle = Duration::from_millis(if benching() { 1_500 } else { 200 });
    let current = || Builder::new_current_thread().enable_all().build().unwrap();
    let plain = current();
    let hooked = runtime::builder_current_thread().build().unwrap();
    let monitor = tokio_metrics::TaskMonitor::new();
    let spawn_plain = |g, s| tokio::spawn(parked(g, s));
    let mut rows = vec![
        ("tokio alone (no probes)", task_memory(&plain, live, settle, spawn_plain)),
        ("pinchpoint hooks (tokio::spawn)", task_memory(&hooked, live, settle, spawn_plain)),
        (
            "pinchpoint task::spawn",
            task_memory(&hooked, live, settle, |g, s| task::spawn("bench.peers.mem", parked(g, s))),
        ),
        (
            "tokio-metrics TaskMonitor",
            task_memory(&plain, live, settle, |g, s| tokio::spawn(monitor.instrument(parked(g, s)))),
        ),
    ];
    // console-subscriber's layer, scoped to this thread: the current-thread runtime spawns and
    // polls here, so every task span reaches it. Retention 2 s, no client attached.
    let layer = console_subscriber::ConsoleLayer::builder()
        .retention(Duration::from_secs(2))
        .server_addr(([127, 0, 0, 1], 0))
        .spawn();
    let console_rt = current();
    let subscriber = {
        use tracing_subscriber::prelude::*;
        tracing_subscriber::registry().with(layer)
    };
    let console = tracing::subscriber::with_default(subscriber, || task_memory(&console_rt, live, settle, spawn_plain));
    rows.push(("console-subscriber layer", console));
    let base = rows[0].1;
    println!("TASKMEM {live} parked tasks; heap read {settle:?} after they started and after they finished");
    println!("TASKMEM {:<34} {:>12} {:>16} {:>18}", "", "B/live task", "over tokio alone", "B kept/finished");
    for (label, (during, after)) in &rows {
        println!("TASKMEM {label:<34} {during:>12.1} {:>16.1} {after:>18.1}", during - base.0);
    }
}

fn main() {
    println!("RATIO load: {}", std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    allocation_counting();
    histogram_observe();
    per_task_cost();
    memory_per_task();
}
