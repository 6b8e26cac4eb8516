//! `diagnose` at fleet scale: 10 targets of 5,000 series each, scraped over a 3 s window in 3
//! slices and judged, three rounds. Prints how far past its window it finishes, the heap the
//! doctor holds (its windows and verdict, counted by the counting allocator), and the peak
//! resident memory of this process, which also serves the 10 targets (an upper bound).
//!
//! `cargo bench --bench diagnose`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;

/// Counts heap bytes, so the doctor's own footprint is told apart from the servers'.
#[global_allocator]
static ALLOC: pinchpoint::probe::alloc::CountingAlloc = pinchpoint::probe::alloc::CountingAlloc::system();

fn live_mib() -> f64 {
    pinchpoint::probe::alloc::stats().map_or(f64::NAN, |s| s.live_bytes as f64 / (1024.0 * 1024.0))
}

const TARGETS: usize = 10;
const SERIES: usize = 5_000;
const WINDOW: Duration = Duration::from_secs(3);

/// An exposition of `SERIES` series shaped like the probes' (locks, pools, tasks, histograms),
/// whose counters move with every scrape.
fn exposition(scrape: u64) -> String {
    let mut s = String::with_capacity(SERIES * 80);
    let n = scrape as f64;
    let mut written = 0;
    let mut i = 0;
    while written < SERIES {
        let lock = format!("lock.{i}");
        s += &format!("pinchpoint_lock_acquire_total{{lock=\"{lock}\",mode=\"exclusive\"}} {}\n", n * 1000.0);
        s += &format!("pinchpoint_lock_contended_total{{lock=\"{lock}\",mode=\"exclusive\"}} {}\n", n * 10.0);
        for le in ["1e-06", "1e-05", "0.0001", "0.001", "0.01", "0.1", "1.0", "+Inf"] {
            s += &format!(
                "pinchpoint_lock_wait_seconds_bucket{{lock=\"{lock}\",mode=\"exclusive\",le=\"{le}\"}} {}\n",
                n * 10.0
            );
        }
        s += &format!("pinchpoint_lock_wait_seconds_sum{{lock=\"{lock}\",mode=\"exclusive\"}} {}\n", n * 0.01);
        s += &format!("pinchpoint_lock_wait_seconds_count{{lock=\"{lock}\",mode=\"exclusive\"}} {}\n", n * 10.0);
        s += &format!("pinchpoint_tasks_spawned_total{{task=\"src/site_{i}.rs:1\"}} {}\n", n * 5.0);
        s += &format!("pinchpoint_tasks_finished_total{{task=\"src/site_{i}.rs:1\"}} {}\n", n * 5.0);
        written += 14;
        i += 1;
    }
    s += &format!(
        "pinchpoint_http_requests_total{{route=\"/r\",method=\"GET\",status=\"200\"}} {}\n\
         pinchpoint_http_request_duration_seconds_sum{{route=\"/r\",method=\"GET\"}} {}\n",
        n * 1000.0,
        n * 10.0
    );
    s
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let mut urls = Vec::new();
    for _ in 0..TARGETS {
        let scrapes = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new().route(
            "/metrics",
            get(move || {
                let n = scrapes.fetch_add(1, Ordering::Relaxed);
                async move { exposition(n) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        urls.push(format!("http://{}", listener.local_addr().unwrap()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    let series = pinchpoint::diagnose::snapshot::Snapshot::parse(&exposition(0)).samples.len();
    println!("diagnose over {TARGETS} targets × {series} series, window {WINDOW:?} in 3 slices");
    // `cargo test --all-targets` runs this binary too, without `--bench`: one round there.
    let rounds = if std::env::args().any(|a| a == "--bench") { 3 } else { 1 };
    let mut over = Vec::new();
    let mut held_mib = Vec::new();
    for round in 1..=rounds {
        let heap_before = live_mib();
        let started = Instant::now();
        let windows = pinchpoint::diagnose::sources::targets(&urls, WINDOW, 3).await.expect("scrape");
        let scraped = started.elapsed().as_secs_f64() - WINDOW.as_secs_f64();
        let verdict = pinchpoint::diagnose::diagnose(&windows);
        let past = started.elapsed().as_secs_f64() - WINDOW.as_secs_f64();
        over.push(past);
        let held = live_mib() - heap_before;
        held_mib.push(held);
        println!(
            "  round {round}: finished {past:.3} s past the window (last scrape and parse {scraped:.3} s, rules {:.3} s); \
             {} findings checked; the doctor holds {held:.1} MiB of heap (windows and verdict); peak RSS {:.1} MiB",
            past - scraped,
            verdict.findings.len(),
            peak_rss_mib()
        );
        drop((windows, verdict));
    }
    over.sort_by(f64::total_cmp);
    println!(
        "past the window: min {:.3} s, median {:.3} s, max {:.3} s (goal: under 1 s); the doctor's heap at most {:.1} MiB \
         (goal: under 100 MiB); peak RSS of the process, the 10 targets included, {:.1} MiB",
        over[0],
        over[over.len() / 2],
        over[over.len() - 1],
        held_mib.iter().cloned().fold(0.0, f64::max),
        peak_rss_mib()
    );
}
