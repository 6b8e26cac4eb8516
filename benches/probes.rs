//! Probe overheads against their uninstrumented twins. Besides criterion's per-benchmark
//! times, `ratios` measures each pair side by side and prints `probe / baseline`.
//!
//! Run: `cargo bench --bench probes --no-default-features -- --measurement-time 2`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use pinchpoint::metrics::{Counter, Histogram};
use pinchpoint::probe::alloc::CountingAlloc;
use pinchpoint::probe::lock::Mutex;

/// Runs `f(iters)` on `threads` threads at once; returns wall time.
fn on_threads(threads: usize, iters: u64, f: impl Fn(u64) + Sync) -> Duration {
    let barrier = Barrier::new(threads);
    let start = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                barrier.wait();
                start.lock().unwrap().get_or_insert_with(Instant::now);
                f(iters);
            });
        }
    });
    let t0 = start.into_inner().unwrap().unwrap();
    t0.elapsed()
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("mutex_uncontended");
    let probe = Mutex::new("bench.uncontended", 0u64);
    let plain = parking_lot::Mutex::new(0u64);
    g.bench_function("probe", |b| b.iter(|| *black_box(&probe).lock() += 1));
    g.bench_function("parking_lot", |b| b.iter(|| *black_box(&plain).lock() += 1));
    g.finish();
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("mutex_contended_2_threads");
    let probe = Arc::new(Mutex::new("bench.contended", 0u64));
    let plain = Arc::new(parking_lot::Mutex::new(0u64));
    g.bench_function("probe", |b| b.iter_custom(|n| on_threads(2, n, |n| (0..n).for_each(|_| *probe.lock() += 1))));
    g.bench_function("parking_lot", |b| {
        b.iter_custom(|n| on_threads(2, n, |n| (0..n).for_each(|_| *plain.lock() += 1)))
    });
    g.finish();
}

fn counters(c: &mut Criterion) {
    let mut g = c.benchmark_group("counter_2_threads");
    let striped = Counter::new();
    let shared = AtomicU64::new(0);
    g.bench_function("striped", |b| b.iter_custom(|n| on_threads(2, n, |n| (0..n).for_each(|_| striped.inc()))));
    g.bench_function("shared_atomic", |b| {
        b.iter_custom(|n| {
            on_threads(2, n, |n| {
                (0..n).for_each(|_| {
                    shared.fetch_add(1, Relaxed);
                })
            })
        })
    });
    g.finish();
}

fn histograms(c: &mut Criterion) {
    let mut g = c.benchmark_group("histogram_observe");
    let ours = Histogram::durations();
    let theirs = prometheus_client::metrics::histogram::Histogram::new(
        pinchpoint::metrics::DURATION_BOUNDS_NS.iter().map(|&b| b as f64 * 1e-9),
    );
    let d = Duration::from_micros(37);
    g.bench_function("pinchpoint", |b| b.iter(|| ours.observe_duration(black_box(d))));
    g.bench_function("prometheus_client", |b| b.iter(|| theirs.observe(black_box(d).as_secs_f64())));
    g.finish();
}

static COUNTING: CountingAlloc = CountingAlloc::system();

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

fn allocator(c: &mut Criterion) {
    let mut g = c.benchmark_group("alloc_free_2_threads");
    g.bench_function("counting", |b| b.iter_custom(|n| on_threads(2, n, |n| alloc_loop(&COUNTING, n))));
    g.bench_function("system", |b| b.iter_custom(|n| on_threads(2, n, |n| alloc_loop(&System, n))));
    g.finish();
}

/// Rounds per pair (`RATIO_ROUNDS` overrides). Short rounds, many of them, interleaved: on a
/// shared machine most rounds get preempted, and the best round of each side is the one that
/// was not.
fn rounds() -> usize {
    std::env::var("RATIO_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(25)
}

/// ns per op of `f(iters / 5)`, best of [`rounds`] (side by side, interleaved), and the
/// median of the per-round ratios.
/// `RATIO_ONLY=substring` runs only the pairs whose name contains it. Rounds alternate which
/// side runs first, so neither always inherits the other's warm (or cold) caches.
fn pair(name: &str, iters: u64, probe: impl Fn(u64) -> Duration, base: impl Fn(u64) -> Duration) {
    if std::env::var("RATIO_ONLY").is_ok_and(|only| !name.contains(&only)) {
        return;
    }
    let iters = (iters / 5).max(1);
    let rounds = rounds();
    let (mut bp, mut bb) = (f64::MAX, f64::MAX);
    let mut ratios = Vec::with_capacity(rounds);
    let ns = |d: Duration| d.as_nanos() as f64 / iters as f64;
    for round in 0..rounds {
        let (p, b) = if round % 2 == 0 {
            let p = ns(probe(iters));
            (p, ns(base(iters)))
        } else {
            let b = ns(base(iters));
            (ns(probe(iters)), b)
        };
        bp = bp.min(p);
        bb = bb.min(b);
        ratios.push(p / b);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "RATIO {name:<40} probe {bp:>8.2} ns  baseline {bb:>8.2} ns  ratio {:>5.2}  (rounds: quartiles {:.2} {:.2} {:.2})",
        bp / bb,
        ratios[rounds / 4],
        ratios[rounds / 2],
        ratios[rounds * 3 / 4],
    );
}

fn ratios(_: &mut Criterion) {
    let timed = |f: &dyn Fn(u64), n: u64| {
        let t = Instant::now();
        f(n);
        t.elapsed()
    };
    let probe = Mutex::new("bench.ratio", 0u64);
    let plain = parking_lot::Mutex::new(0u64);
    pair(
        "mutex uncontended lock+unlock",
        2_000_000,
        |n| timed(&|n| (0..n).for_each(|_| *black_box(&probe).lock() += 1), n),
        |n| timed(&|n| (0..n).for_each(|_| *black_box(&plain).lock() += 1), n),
    );
    // ns/op of the pair: throughput relative to parking_lot is 1 / ratio.
    pair(
        "mutex contended 2 threads (ns/op)",
        1_000_000,
        |n| on_threads(2, n, |n| (0..n).for_each(|_| *probe.lock() += 1)),
        |n| on_threads(2, n, |n| (0..n).for_each(|_| *plain.lock() += 1)),
    );
    // A/A control: parking_lot against a second parking_lot. Its spread is this machine's
    // noise; a probe ratio inside it is no measurable cost.
    let plain_b = parking_lot::Mutex::new(0u64);
    pair(
        "A/A mutex contended 2 threads (parking_lot)",
        1_000_000,
        |n| on_threads(2, n, |n| (0..n).for_each(|_| *plain_b.lock() += 1)),
        |n| on_threads(2, n, |n| (0..n).for_each(|_| *plain.lock() += 1)),
    );
    // A critical section of real work (a hash-map update, ~40 ns) instead of one increment.
    let probe_map = Mutex::new("bench.ratio_map", std::collections::HashMap::<u64, u64>::new());
    let plain_map = parking_lot::Mutex::new(std::collections::HashMap::<u64, u64>::new());
    let update = |m: &mut std::collections::HashMap<u64, u64>, i: u64| *m.entry(i & 1023).or_default() += 1;
    pair(
        "mutex contended 2 threads, map update (ns/op)",
        1_000_000,
        |n| on_threads(2, n, |n| (0..n).for_each(|i| update(&mut probe_map.lock(), i))),
        |n| on_threads(2, n, |n| (0..n).for_each(|i| update(&mut plain_map.lock(), i))),
    );
    let striped = Counter::new();
    let shared = AtomicU64::new(0);
    pair(
        "counter inc, 2 threads (striped vs shared)",
        5_000_000,
        |n| on_threads(2, n, |n| (0..n).for_each(|_| striped.inc())),
        |n| {
            on_threads(2, n, |n| {
                (0..n).for_each(|_| {
                    shared.fetch_add(1, Relaxed);
                })
            })
        },
    );
    let ours = Histogram::durations();
    let theirs = prometheus_client::metrics::histogram::Histogram::new(
        pinchpoint::metrics::DURATION_BOUNDS_NS.iter().map(|&b| b as f64 * 1e-9),
    );
    let d = Duration::from_micros(37);
    pair(
        "histogram observe, 1 thread",
        5_000_000,
        |n| timed(&|n| (0..n).for_each(|_| ours.observe_duration(black_box(d))), n),
        |n| timed(&|n| (0..n).for_each(|_| theirs.observe(black_box(d).as_secs_f64())), n),
    );
    pair(
        "histogram observe, 2 threads",
        2_000_000,
        |n| on_threads(2, n, |n| (0..n).for_each(|_| ours.observe_duration(black_box(d)))),
        |n| on_threads(2, n, |n| (0..n).for_each(|_| theirs.observe(black_box(d).as_secs_f64()))),
    );
    // A regression guard, not a goal: on a ~5 ns malloc/free pair the counting allocator's
    // ratio sits inside the A/A control's spread below. A ratio well outside that spread means
    // the hot path grew (a shared atomic, a branch, a call); the end-to-end cost of the probes
    // is measured with the uninstrumented twin, and the peer comparison is in `benches/peers.rs`.
    println!("GUARD counting allocator: regression guard, no ratio goal; compare with the A/A line after it");
    pair(
        "GUARD alloc+free 64B, 2 thr (counting/system)",
        2_000_000,
        |n| on_threads(2, n, |n| alloc_loop(&COUNTING, n)),
        |n| on_threads(2, n, |n| alloc_loop(&System, n)),
    );
    pair(
        "GUARD A/A alloc+free 64B, 2 thr (system)",
        2_000_000,
        |n| on_threads(2, n, |n| alloc_loop(&System, n)),
        |n| on_threads(2, n, |n| alloc_loop(&System, n)),
    );
}

criterion_group!(benches, uncontended, contended, counters, histograms, allocator, ratios);
criterion_main!(benches);
